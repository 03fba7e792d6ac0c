"""Exact cosine similarity and top-k with numpy: the reference the index is measured against."""

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
