"""Cosine similarity with numpy: the one definition SEARCH reports (``cosine_scores``), and
the float32 scans beside it (``cosine_similarities``, ``exact_top_k``)."""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def normalize(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32; an all-zero row stays zero (similarity 0, not NaN)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    norms[norms == 0] = 1
    return matrix / norms


def cosine_similarities(matrix: np.ndarray, query: np.ndarray, *,
                        normalized: bool = False) -> np.ndarray:
    """Cosine similarity (N,) of every row of `matrix` (N, D) to `query` (D,).

    `normalized=True` promises the rows are already unit length, which saves a pass over the
    matrix: worth it when one matrix answers many queries.
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    query = np.asarray(query, dtype=np.float32)
    if matrix.ndim != 2 or query.shape != (matrix.shape[1],):
        raise DataError(f"cannot compare a query of shape {query.shape} "
                        f"with vectors of shape {matrix.shape}")
    sims = matrix @ normalize(query)
    if not normalized:
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        norms[norms == 0] = 1
        sims /= norms
    # rounding can push a vector's similarity to itself just past 1
    return np.clip(sims, -1.0, 1.0, out=sims)


def exact_top_k(matrix: np.ndarray, query: np.ndarray, k: int | None, *,
                normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and cosine similarities of the k rows most like `query`, best first.

    `k=None` (or k >= N) ranks every row. Among the rows returned, ties keep the lower index
    first, so results are deterministic. argpartition keeps this O(N) rather than a full
    O(N log N) sort.
    """
    sims = cosine_similarities(matrix, query, normalized=normalized)
    n = sims.shape[0]
    if k is not None and k < 0:
        raise DataError(f"k must be at least 0, got {k}")
    if k is None or k >= n:
        order = np.argsort(-sims, kind="stable")
    elif k == 0:
        order = np.empty(0, dtype=np.intp)
    else:
        top = np.argpartition(-sims, k - 1)[:k]
        order = top[np.lexsort((top, -sims[top]))]
    return order, sims[order]


#: rows scored at once, so a long column never makes one n x D float64 temporary
_SCORE_BLOCK = 16_384


def cosine_scores(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The cosine similarity (n,) float64 of each row of ``vectors`` (n, D) to ``query`` (D,).

    This is the similarity every path of SEARCH shows, whichever found the row (the
    in-memory scan, the embedded index, a Chroma server, a table read row by row), so it is
    computed such that a row's value depends only on its own D numbers and the query's: the
    products of float32 values are exact in float64, and each row's products are summed in
    one fixed order (``_fixed_sum``), which no SIMD width, alignment, BLAS or block of rows
    can change. A zero vector has similarity 0.
    """
    matrix = np.asarray(vectors, dtype=np.float32)
    q = np.asarray(query, dtype=np.float32).astype(np.float64)
    if matrix.ndim != 2 or q.shape != (matrix.shape[1],):
        raise DataError(f"cannot compare a query of shape {q.shape} "
                        f"with vectors of shape {matrix.shape}")
    out = np.zeros(matrix.shape[0], dtype=np.float64)
    width = matrix.shape[1]
    if width == 0:
        return out
    size = 1 << (width - 1).bit_length()   # the sums' width: a power of two
    # one buffer for every block's products, zeros past the width
    buffer = np.zeros((max(1, min(len(matrix), _SCORE_BLOCK)), size))
    np.multiply(q, q, out=buffer[0, :width])
    q_norm = np.sqrt(_fixed_sum(buffer[:1])[0])
    for start in range(0, matrix.shape[0], _SCORE_BLOCK):
        block = matrix[start:start + _SCORE_BLOCK]
        products = buffer[:len(block)]
        np.multiply(block, q, out=products[:, :width])   # float32 x float32: exact in float64
        dots = _fixed_sum(products)
        np.multiply(block, block, out=products[:, :width], dtype=np.float64)
        norms = np.sqrt(_fixed_sum(products)) * q_norm
        np.divide(dots, norms, out=out[start:start + len(block)], where=norms > 0)
    # rounding can push a vector's similarity to itself just past 1
    return np.clip(out, -1.0, 1.0, out=out)


def _fixed_sum(values: np.ndarray) -> np.ndarray:
    """Each row of ``values`` (n, S) float64, S a power of two, summed pairwise in a fixed
    order: the row's second half is added to its first, element by element, until one value
    is left (in place: ``values`` is overwritten, but for the columns past S/2, which stay).
    Each addition is one IEEE operation on two given numbers, so the sum is the same on
    every machine; as whole-array additions it runs at several times a cumulative sum's
    speed, which goes a row at a time."""
    size = values.shape[1]
    while size > 1:
        size //= 2
        np.add(values[:, :size], values[:, size:2 * size], out=values[:, :size])
    return values[:, 0].copy()
