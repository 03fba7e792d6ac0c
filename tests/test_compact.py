"""The compact copy exact SEARCH scans (int8 codes, a scale and an error bound per row): its
candidates always hold the exact top k, over random and adversarial columns and queries."""

from __future__ import annotations

import numpy as np
import pytest

from thanosql_kernel.vectors import CompactVectors, cosine_scores


def _exact_top(vectors: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    """Every row whose exact (float64) cosine reaches the k-th best: ties at the cut included."""
    scores = cosine_scores(vectors, query)
    kth = np.sort(scores)[-k]
    return set(np.flatnonzero(scores >= kth).tolist())


def _columns() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    d = 64
    spread = rng.standard_normal((4_000, d)).astype(np.float32)
    # near-duplicates: one direction and tiny steps off it, the hardest case for a bound
    base = rng.standard_normal(d).astype(np.float32)
    crowd = base + rng.standard_normal((4_000, d)).astype(np.float32) * 1e-3
    # exact ties: the same vector many times, at different lengths (cosine ignores length)
    ties = np.repeat(rng.standard_normal((40, d)).astype(np.float32), 100, axis=0)
    ties *= rng.uniform(0.01, 100.0, (len(ties), 1)).astype(np.float32)
    # coordinates of very different sizes in one row (one big, the rest tiny), zero rows,
    # and sparse rows
    spiky = rng.standard_normal((2_000, d)).astype(np.float32) * 1e-4
    spiky[np.arange(2_000), rng.integers(0, d, 2_000)] = 1.0
    spiky[:20] = 0.0
    sparse = np.where(rng.random((2_000, d)) < 0.05,
                      rng.standard_normal((2_000, d)), 0.0).astype(np.float32)
    return {"spread": spread, "crowd": crowd, "ties": ties, "spiky": spiky, "sparse": sparse,
            "mixed": np.concatenate([spread, crowd[:1000], ties[:1000], spiky, sparse])}


@pytest.mark.parametrize("name", ["spread", "crowd", "ties", "spiky", "sparse", "mixed"])
def test_the_candidates_hold_the_exact_top_k(name: str) -> None:
    vectors = _columns()[name]
    rng = np.random.default_rng(11)
    compact = CompactVectors.from_matrix(vectors)
    n, d = vectors.shape
    for trial in range(60):
        kind = trial % 4
        if kind == 0:     # a row of the column itself
            query = vectors[rng.integers(n)].copy()
        elif kind == 1:   # a row slightly moved
            query = vectors[rng.integers(n)] + rng.standard_normal(d).astype(np.float32) * 1e-3
        elif kind == 2:   # anywhere
            query = rng.standard_normal(d).astype(np.float32)
        else:             # a query of one big coordinate
            query = np.zeros(d, dtype=np.float32)
            query[rng.integers(d)] = 1.0
            query += rng.standard_normal(d).astype(np.float32) * 1e-6
        for k in (1, 10, 100):
            found = set(compact.candidates(query, k).tolist())
            missing = _exact_top(vectors, query, k) - found
            assert not missing, f"{name}, trial {trial}, k={k}: rows {sorted(missing)[:5]}"


def test_every_scanned_value_lies_within_its_margin() -> None:
    vectors = _columns()["mixed"]
    compact = CompactVectors.from_matrix(vectors)
    rng = np.random.default_rng(3)
    for _ in range(20):
        query = rng.standard_normal(vectors.shape[1]).astype(np.float32)
        scanned, margin = compact.scan(query)
        assert np.all(np.abs(cosine_scores(vectors, query) - scanned) <= margin)


def test_the_candidates_are_few() -> None:
    """The bound is tight enough to be worth scanning: on spread vectors the candidates for
    the top 10 are a small multiple of 10, not a share of the column."""
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((50_000, 128)).astype(np.float32)
    compact = CompactVectors.from_matrix(vectors)
    counts = [len(compact.candidates(vectors[i] + rng.standard_normal(128).astype(np.float32),
                                     10)) for i in range(10)]
    assert max(counts) < 200, counts


def test_the_copy_reads_a_quarter_of_float32s_bytes_or_less() -> None:
    vectors = np.ones((1000, 128), dtype=np.float32)
    compact = CompactVectors.from_matrix(vectors)
    assert compact.nbytes <= vectors.nbytes * 0.3
    assert compact.count == 1000 and compact.dim == 128


def test_chunks_give_the_same_copy_as_one_matrix_and_may_come_short() -> None:
    rng = np.random.default_rng(9)
    vectors = rng.standard_normal((1000, 32)).astype(np.float32)
    whole = CompactVectors.from_matrix(vectors)
    parts = CompactVectors.from_chunks((vectors[i:i + 128] for i in range(0, 1000, 128)),
                                       1200, 32)
    assert parts.count == 1000
    assert np.array_equal(whole.codes.numpy(), parts.codes.numpy())
    assert np.array_equal(whole.errors, parts.errors)
    query = vectors[3]
    assert np.array_equal(whole.candidates(query, 5), parts.candidates(query, 5))
    with pytest.raises(ValueError, match="more than"):
        CompactVectors.from_chunks([vectors], 999, 32)


def test_candidates_among_some_rows_only() -> None:
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((5000, 32)).astype(np.float32)
    compact = CompactVectors.from_matrix(vectors)
    rows = np.flatnonzero(rng.random(5000) < 0.01)
    query = rng.standard_normal(32).astype(np.float32)
    found = compact.candidates(query, 10, rows=rows)
    assert set(found.tolist()) <= set(rows.tolist())
    exact = {int(rows[i]) for i in _exact_top(vectors[rows], query, 10)}
    assert exact <= set(found.tolist())


def test_best_first_rounds_cover_every_row_once_and_their_bounds_hold() -> None:
    vectors = _columns()["mixed"]
    compact = CompactVectors.from_matrix(vectors)
    rng = np.random.default_rng(13)
    for _ in range(10):
        query = vectors[rng.integers(len(vectors))] + rng.standard_normal(
            vectors.shape[1]).astype(np.float32) * 0.1
        exact = cosine_scores(vectors, query)
        seen: list[np.ndarray] = []
        for rows, bound in compact.best_first(query, 8, 4, 512):
            later = np.setdiff1d(np.arange(len(vectors)), np.concatenate(seen + [rows]))
            assert np.all(exact[later] <= bound)
            seen.append(rows)
        every = np.concatenate(seen)
        assert len(every) == len(set(every.tolist())) == len(vectors)
        assert bound == -np.inf


@pytest.mark.parametrize("d", [1, 7, 100, 130])
def test_any_length_of_vector(d: int) -> None:
    """The kernel reads codes 8 or 16 at a time: other lengths are padded, exactly."""
    rng = np.random.default_rng(d)
    vectors = rng.standard_normal((3000, d)).astype(np.float32)
    compact = CompactVectors.from_matrix(vectors)
    assert compact.dim == d
    for i in range(20):
        query = vectors[i] + rng.standard_normal(d).astype(np.float32) * 0.1
        scanned, margin = compact.scan(query)
        assert np.all(np.abs(cosine_scores(vectors, query) - scanned) <= margin)
        assert _exact_top(vectors, query, 5) <= set(compact.candidates(query, 5).tolist())


def test_a_stored_copy_reads_back_bit_for_bit_and_only_when_it_is_whole(tmp_path) -> None:
    """StoredCopies: what is written reads back identical (codes, scales, bounds, paths) and
    scans the same; a file of other counts, cut short, lengthened or of another format reads
    as None; a new collection's file replaces the column's old one; drop removes it."""
    import torch

    from thanosql_kernel.vectors import StoredCopies

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((1_000, 40)).astype(np.float32)
    vectors[5] = 0.0
    compact = CompactVectors.from_matrix(vectors)
    paths = np.array([f"img/{i}{'x' * (i % 7)}.png".encode() for i in range(1_000)])
    copies = StoredCopies(tmp_path / "cache", "sqlite:///a.db")
    heard: list[tuple[int, int, bool]] = []
    assert copies.load("t", "c", "coll1", 1_000, 40) is None   # nothing stored yet
    assert copies.save("t", "c", "coll1", paths, compact)
    got = copies.load("t", "c", "coll1", 1_000, 40, lambda *a: heard.append(a))
    assert got is not None
    got_paths, got_compact = got
    assert got_paths.tolist() == paths.tolist()
    assert torch.equal(got_compact.codes, compact.codes)
    assert torch.equal(got_compact.scales, compact.scales)
    assert np.array_equal(got_compact.errors, compact.errors) and got_compact.dim == 40
    q = rng.standard_normal(40).astype(np.float32)
    assert np.array_equal(got_compact.candidates(q, 10), compact.candidates(q, 10))
    assert heard and heard[-1][:2] == (1_000, 1_000)
    # another database, table, row count or dimension: not this file
    assert StoredCopies(tmp_path / "cache", "sqlite:///b.db").load(
        "t", "c", "coll1", 1_000, 40) is None
    assert copies.load("t", "c", "coll1", 999, 40) is None
    assert copies.load("t", "c", "coll1", 1_000, 41) is None
    file = copies.file("t", "c", "coll1")
    whole = file.read_bytes()
    for broken in (whole[:-1], whole + b"\0", b"something else\n" + whole[20:], b""):
        file.write_bytes(broken)
        assert copies.load("t", "c", "coll1", 1_000, 40) is None
    file.write_bytes(whole)
    # CONVERT again makes a new collection: its file replaces the old one
    assert copies.save("t", "c", "coll2", paths, compact)
    assert not file.exists() and copies.file("t", "c", "coll2").exists()
    assert copies.save("t", "other", "coll3", paths, compact)   # another column's stays
    copies.drop("coll2")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [
        copies.file("t", "other", "coll3").name]
