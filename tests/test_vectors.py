"""The vector index layer: exact numpy search, blob round trips, and Chroma's atomic replace."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from thanosql_kernel.errors import DataError, DiskFullError, NotFoundError, OptionError, ServerError
from thanosql_kernel.vectors import (
    ChromaIndex,
    VectorIndex,
    blobs_to_matrix,
    cosine_similarities,
    exact_top_k,
    from_blob,
    to_blob,
)


def random_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def naive_cosine(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarity as written in a textbook, in float64, row by row."""
    m = matrix.astype(np.float64)
    q = query.astype(np.float64)
    return np.array([row @ q / (np.linalg.norm(row) * np.linalg.norm(q)) for row in m])


@pytest.fixture
def index(tmp_path: Path) -> Iterator[ChromaIndex]:
    with ChromaIndex(tmp_path / "index") as opened:
        yield opened


# -- exact search -----------------------------------------------------------------------------

def test_cosine_similarities_match_the_textbook_formula() -> None:
    matrix, query = random_vectors(200), random_vectors(1, seed=1)[0]
    assert np.allclose(cosine_similarities(matrix, query), naive_cosine(matrix, query),
                       atol=1e-6)


def test_a_zero_vector_has_similarity_zero_not_nan() -> None:
    matrix = np.array([[0, 0, 0], [1, 0, 0]], dtype=np.float32)
    assert cosine_similarities(matrix, np.array([1, 1, 0], dtype=np.float32))[0] == 0


@pytest.mark.parametrize("dim", [1, 3, 128, 130])
def test_cosine_scores_are_float64_and_the_same_however_rows_are_grouped(
        dim: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """SEARCH's similarity: within float64 rounding of the textbook formula, and a row's
    value bit for bit the same scored alone, among others, or past a block of rows."""
    from thanosql_kernel.vectors import cosine_scores
    from thanosql_kernel.vectors import exact as exact_module

    rng = np.random.default_rng(dim)
    matrix = rng.standard_normal((300, dim)).astype(np.float32)
    matrix[7] = 0
    query = rng.standard_normal(dim).astype(np.float32)
    scores = cosine_scores(matrix, query)
    assert scores.dtype == np.float64 and scores[7] == 0.0
    kept = np.arange(300) != 7
    assert np.allclose(scores[kept], naive_cosine(matrix[kept], query), rtol=0, atol=1e-14)
    assert all(cosine_scores(matrix[i:i + 1], query)[0] == scores[i] for i in (0, 150, 299))
    assert np.array_equal(np.concatenate([cosine_scores(matrix[:17], query),
                                          cosine_scores(matrix[17:], query)]), scores)
    monkeypatch.setattr(exact_module, "_SCORE_BLOCK", 64)
    assert np.array_equal(cosine_scores(matrix, query), scores)
    assert cosine_scores(matrix[:0], query).shape == (0,)


def test_exact_top_k_is_the_sorted_prefix() -> None:
    matrix, query = random_vectors(1000), random_vectors(1, seed=1)[0]
    sims = naive_cosine(matrix, query)
    idx, top = exact_top_k(matrix, query, 10)
    assert list(idx) == list(np.argsort(-sims)[:10])
    assert np.allclose(top, sims[idx], atol=1e-6)
    assert all(a >= b for a, b in zip(top, top[1:], strict=False))


@pytest.mark.parametrize("k", [None, 50, 51, 10_000])
def test_exact_top_k_with_k_none_or_beyond_n_ranks_every_row(k: int | None) -> None:
    matrix, query = random_vectors(50), random_vectors(1, seed=1)[0]
    idx, top = exact_top_k(matrix, query, k)
    assert sorted(idx) == list(range(50))
    assert list(idx) == list(np.argsort(-naive_cosine(matrix, query)))


def test_exact_top_k_of_zero_and_normalized_rows() -> None:
    matrix, query = random_vectors(30), random_vectors(1, seed=1)[0]
    assert exact_top_k(matrix, query, 0)[0].shape == (0,)
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    assert list(exact_top_k(unit, query, 5, normalized=True)[0]) == \
        list(exact_top_k(matrix, query, 5)[0])


def test_exact_top_k_refuses_a_query_of_another_dimension() -> None:
    with pytest.raises(DataError):
        exact_top_k(random_vectors(5, dim=4), np.ones(3, dtype=np.float32), 2)


# -- blobs ------------------------------------------------------------------------------------

def test_blob_round_trip_is_little_endian_float32() -> None:
    vector = random_vectors(1, dim=128)[0]
    blob = to_blob(vector)
    assert len(blob) == 128 * 4
    assert np.array_equal(np.frombuffer(blob, dtype="<f4"), vector)
    assert np.array_equal(from_blob(blob, 128), vector)
    assert np.array_equal(from_blob(to_blob(vector.astype(np.float64))), vector)


def test_blobs_to_matrix_stacks_rows() -> None:
    matrix = random_vectors(100, dim=8)
    stacked = blobs_to_matrix([to_blob(row) for row in matrix])
    assert stacked.dtype == np.float32 and stacked.shape == (100, 8)
    assert np.array_equal(stacked, matrix)
    assert blobs_to_matrix([], dim=8).shape == (0, 8)


def test_bad_blobs_are_data_errors() -> None:
    with pytest.raises(DataError):
        from_blob(b"abc")
    with pytest.raises(DataError):
        from_blob(to_blob(np.ones(3)), 4)
    with pytest.raises(DataError):
        blobs_to_matrix([to_blob(np.ones(3)), to_blob(np.ones(4))])
    with pytest.raises(DataError):
        blobs_to_matrix([to_blob(np.ones(3)), None])  # type: ignore[list-item]


# -- the Chroma index -------------------------------------------------------------------------

def ids_of(n: int, prefix: str = "r") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_chroma_index_is_a_vector_index(index: ChromaIndex) -> None:
    assert isinstance(index, VectorIndex)


def test_query_returns_the_exact_cosine_top_k(index: ChromaIndex) -> None:
    matrix = random_vectors(500)
    index.replace("images", ids_of(500), matrix, batch=128)
    for seed in range(5):
        query = random_vectors(1, seed=100 + seed)[0]
        hits = index.query("images", query, 10)
        idx, sims = exact_top_k(matrix, query, 10)
        assert [h[0] for h in hits] == [f"r{i}" for i in idx]
        assert np.allclose([h[1] for h in hits], sims, atol=1e-5)
        assert all(-1 <= s <= 1 for _, s in hits)


def test_similarities_cover_the_whole_range(index: ChromaIndex) -> None:
    basis = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    index.replace("axes", ["same", "orthogonal", "opposite"], basis)
    hits = dict(index.query("axes", np.array([2, 0], dtype=np.float32), 3))
    assert hits["same"] == pytest.approx(1, abs=1e-5)
    assert hits["orthogonal"] == pytest.approx(0, abs=1e-5)
    assert hits["opposite"] == pytest.approx(-1, abs=1e-5)


def test_replace_twice_replaces(index: ChromaIndex) -> None:
    index.replace("images", ids_of(50, "old"), random_vectors(50), version="1")
    index.replace("images", ids_of(20, "new"), random_vectors(20, seed=1), version="2")
    assert index.count("images") == 20
    assert index.version("images") == "2"
    hits = index.query("images", random_vectors(1, seed=2)[0], 100)
    assert len(hits) == 20 and all(id_.startswith("new") for id_, _ in hits)
    assert index.names() == ["images"]


def test_names_exists_and_drop(index: ChromaIndex) -> None:
    index.replace("one", ids_of(3), random_vectors(3))
    index.replace("two", ids_of(3), random_vectors(3))
    assert index.names() == ["one", "two"] and index.exists("one")
    index.drop("one")
    index.drop("one")  # already gone: not an error
    assert index.names() == ["two"] and not index.exists("one")
    with pytest.raises(NotFoundError, match="two"):
        index.query("one", np.ones(16, dtype=np.float32), 3)


def test_an_empty_replace_makes_an_empty_index(index: ChromaIndex) -> None:
    index.replace("empty", [], np.zeros((0, 16), dtype=np.float32))
    assert index.count("empty") == 0
    assert index.query("empty", np.ones(16, dtype=np.float32), 5) == []


def test_bad_input_is_refused_before_anything_changes(index: ChromaIndex) -> None:
    index.replace("images", ids_of(5), random_vectors(5))
    with pytest.raises(DataError, match="unique"):
        index.replace("images", ["a", "a"], random_vectors(2))
    with pytest.raises(DataError):
        index.replace("images", ids_of(3), random_vectors(2))
    with pytest.raises(DataError):
        index.replace("images", ids_of(1), np.full((1, 16), np.nan, dtype=np.float32))
    with pytest.raises(DataError):
        index.query("images", np.ones(3, dtype=np.float32), 2)
    for bad in ("ab", "has space", "x-tmp-0123456789abcd", "-dash"):
        with pytest.raises(OptionError):
            index.replace(bad, ids_of(1), random_vectors(1))
    assert index.count("images") == 5 and index.names() == ["images"]


@pytest.mark.parametrize("failure, seen", [
    (RuntimeError("hnsw add failed"), RuntimeError),
    (OSError(errno.ENOSPC, "No space left on device"), DiskFullError),
    (KeyboardInterrupt(), KeyboardInterrupt)])
def test_a_replace_that_fails_midway_changes_nothing(
        index: ChromaIndex, monkeypatch: pytest.MonkeyPatch, failure: BaseException,
        seen: type[BaseException]) -> None:
    from chromadb.api.models.Collection import Collection

    matrix = random_vectors(100)
    index.replace("images", ids_of(100), matrix, version="before")
    query = random_vectors(1, seed=7)[0]
    before = index.query("images", query, 10)

    real_add = Collection.add
    calls = []

    def add_then_fail(self: Collection, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) > 1:
            raise failure
        real_add(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Collection, "add", add_then_fail)
    with pytest.raises(seen):
        index.replace("images", ids_of(300, "new"), random_vectors(300, seed=3), batch=100,
                      version="after")
    monkeypatch.undo()

    assert len(calls) == 2
    assert index.query("images", query, 10) == before
    assert index.count("images") == 100 and index.version("images") == "before"
    assert index.names() == ["images"]
    assert [c.name for c in index._client.list_collections()] == ["images"]


def test_leftovers_of_a_killed_replace_are_swept_on_open(tmp_path: Path) -> None:
    with ChromaIndex(tmp_path) as index:
        index.replace("kept", ids_of(10), random_vectors(10))
        index.replace("swapping", ids_of(10), random_vectors(10))
        client = index._client
        # as a process killed mid-fill, and one killed between the two renames, leave them
        client.create_collection("kept-tmp-000000010abcde", embedding_function=None)
        client.get_collection("swapping").modify(name="swapping-old-000000010abcde")
        assert index.names() == ["kept"]
    with ChromaIndex(tmp_path) as reopened:
        assert sorted(c.name for c in reopened._client.list_collections()) == \
            ["kept", "swapping"]
        assert reopened.count("swapping") == 10


def test_two_indexes_on_one_folder_see_each_others_replace(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from thanosql_kernel.vectors import ChromaIndex\n"
        "with ChromaIndex(Path(sys.argv[1])) as index:\n"
        "    index.replace('shared', ['other'], np.ones((1, 4), dtype=np.float32))\n"
    )
    with ChromaIndex(tmp_path) as index:
        index.replace("shared", ["mine"], np.ones((1, 4), dtype=np.float32))
        assert index.query("shared", np.ones(4, dtype=np.float32), 1)[0][0] == "mine"
        subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
        assert index.query("shared", np.ones(4, dtype=np.float32), 1)[0][0] == "other"


def test_nothing_reaches_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection",
                        lambda address, *a, **k: refuse(None, address))  # type: ignore[arg-type]
    with ChromaIndex(tmp_path) as index:
        index.replace("images", ids_of(20), random_vectors(20))
        assert len(index.query("images", random_vectors(1)[0], 3)) == 3
    assert attempts == []


def test_http_needs_a_server_url() -> None:
    with pytest.raises(OptionError):
        ChromaIndex.http("localhost:8000")


def test_a_chroma_server_that_does_not_answer_is_a_server_error_naming_it() -> None:
    with socket.socket() as s:   # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerError, match=f"Chroma server at http://127.0.0.1:{port} ") as e:
        ChromaIndex.http(f"http://127.0.0.1:{port}")
    assert "THANOSQL_CHROMA_URL" in (e.value.hint or "")


def test_importing_the_package_does_not_import_chromadb() -> None:
    code = ("import sys, thanosql_kernel.vectors\n"
            "assert 'chromadb' not in sys.modules, 'chromadb imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_an_interrupt_during_the_swap_waits_until_the_swap_is_done(
        index: ChromaIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    index.replace("images", ids_of(5, "old"), random_vectors(5))
    real_swap = ChromaIndex._swap

    def interrupted_swap(self: ChromaIndex, *args: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        real_swap(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ChromaIndex, "_swap", interrupted_swap)
    with pytest.raises(KeyboardInterrupt):
        index.replace("images", ids_of(5, "new"), random_vectors(5))
    assert index.names() == ["images"]
    assert all(id_.startswith("new") for id_, _ in index.query("images", np.ones(16), 5))
