"""EVALUATE's measure (``vectors.neighbours``): each row's k nearest other rows, in blocks, as
brute force in float64 finds them, ties in row order; and the scores against labels."""

from __future__ import annotations

import numpy as np
import pytest

from thanosql_kernel.vectors import chance_precision, nearest_others, neighbours, scores


def brute(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """float64 cosine of whole numbers: exact dot products over the product of the norms,
    so equal similarities are equal floats and their order is the rows'."""
    v = vectors.astype(np.float64)
    norms = np.sqrt((v * v).sum(axis=1))
    norms[norms == 0] = 1
    sims = (v[queries] @ v.T) / (norms[queries, None] * norms[None])
    sims[np.arange(len(queries)), queries] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("block", [None, 7 * 50])   # one block; blocks of 7 queries
def test_nearest_others_are_brute_forces_with_ties_in_row_order(
        block: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if block:
        monkeypatch.setattr(neighbours, "_BLOCK_VALUES", block)
    rng = np.random.default_rng(0)
    vectors = rng.integers(0, 4, (50, 6)).astype(np.float32)   # many exact ties
    vectors[10] = vectors[3]       # duplicates: equal similarity to everyone
    vectors[20] = 0                # a zero row: similarity 0 to all
    queries = np.arange(50)
    for k in (1, 4, 49):
        assert (nearest_others(vectors, queries, k) == brute(vectors, queries, k)).all()
    some = np.array([3, 10, 20, 49])
    assert (nearest_others(vectors, some, 5) == brute(vectors, some, 5)).all()
    pixels = rng.integers(0, 256, (30, 64)).astype(np.uint8)   # raw pixels come as uint8
    assert (nearest_others(pixels, np.arange(30), 3) == brute(pixels, np.arange(30), 3)).all()


def test_nearest_others_reports_progress_and_refuses_a_k_it_cannot_give() -> None:
    heard: list[int] = []
    vectors = np.eye(5, dtype=np.float32)
    nearest_others(vectors, np.arange(5), 2, heard.append)
    assert heard[-1] == 5
    for k in (0, 5):
        with pytest.raises(ValueError):
            nearest_others(vectors, np.arange(5), k)


def test_scores_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 2])
    found = np.array([[1, 2],     # row 0 (label 0): same, other -> 1/2, vote 0 (nearer), rr 1
                      [2, 0],     # row 1: other, same -> 1/2, vote tie -> 1 (nearer), rr 1/2
                      [3, 4],     # row 2: same, other -> 1/2, vote 1, rr 1
                      [0, 1],     # row 3: none -> 0, vote 0, rr 0
                      [2, 3]])    # row 4: none -> 0, vote 1, rr 0
    got = scores(found, np.arange(5), labels)
    assert got.precision_at_k == pytest.approx(1.5 / 5)
    assert got.knn_accuracy == pytest.approx(2 / 5)
    assert got.mrr_at_k == pytest.approx(2.5 / 5)
    # a sample of queries: only their rows count
    part = scores(found[[0, 3]], np.array([0, 3]), labels)
    assert (part.precision_at_k, part.knn_accuracy, part.mrr_at_k) == (0.25, 0.5, 0.5)


def test_chance_precision_is_the_share_of_same_label_pairs() -> None:
    assert chance_precision(np.array([0, 0, 1, 1])) == pytest.approx(4 / 12)
    assert chance_precision(np.array([0, 1, 2])) == 0
    labels = np.random.default_rng(1).integers(0, 3, 400)
    same = (labels[:, None] == labels[None]).sum() - len(labels)
    assert chance_precision(labels) == pytest.approx(same / (400 * 399))
