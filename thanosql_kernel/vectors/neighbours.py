"""Each row's k most similar other rows by cosine, in blocks, and the scores EVALUATE gives
from them (precision@k, k-NN accuracy, reciprocal rank) against the rows' labels.

The scan is float32 (the speed of the machine's matrix product), block by block, so memory
holds one block of similarities, never an N x N matrix; the few best of each row are then
scored again in float64 from the vectors as given and ordered by (similarity, row), so the
answer is the float64 one, ties going to the earlier row, whatever the block sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: the extra candidates each row keeps from the float32 scan for the float64 re-scoring
_SPARE = 8
#: how far a float32 similarity may be from the float64 one (about 1e-7 for unit vectors):
#: every row within it of the last candidate is a candidate too, ties included
_SLACK = 1e-5
#: similarities a block holds at most (float32): 64 MB
_BLOCK_VALUES = 16 * 1024 * 1024


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows scaled to unit length in float32 (a zero row stays zero), and the float64
    norms they were divided by (1 for a zero row)."""
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    norms[norms == 0] = 1.0
    unit = np.empty(vectors.shape, np.float32)
    step = max(1, _BLOCK_VALUES // max(vectors.shape[1], 1))
    for start in range(0, len(vectors), step):
        unit[start:start + step] = vectors[start:start + step] / norms[start:start + step, None]
    return unit, norms


def nearest_others(vectors: np.ndarray, queries: np.ndarray, k: int,
                   done: Callable[[int], None] | None = None) -> np.ndarray:
    """(Q, k) indices: for each query row (an index into ``vectors``, (N, D) of any numeric
    type), the k rows other than itself with the highest cosine similarity, best first;
    equal similarities in row order. ``done(rows)`` hears how many queries are finished
    after each block (a KeyboardInterrupt there, or between blocks, stops the work)."""
    import torch

    n = len(vectors)
    if not 1 <= k < n:
        raise ValueError(f"k must be from 1 to {n - 1}")
    unit, norms = unit_rows(vectors)
    keep = min(n - 1, k + _SPARE)
    block = max(1, min(len(queries), _BLOCK_VALUES // n))
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), block):
        rows = queries[start:start + block]
        scores = unit[rows] @ unit.T                      # (b, N) float32
        scores[np.arange(len(rows)), rows] = -np.inf      # never itself
        if keep < n - 1:
            # torch's top k runs on every core and is ~25x numpy's argpartition over a
            # block (one core, and a negated copy first): bench/evaluate.py
            picked = torch.topk(torch.from_numpy(scores), keep, dim=1,
                                sorted=False).indices.numpy()
        else:
            picked = np.argsort(-scores, axis=1)[:, :keep]
        out[start:start + len(rows)] = _exact_order(vectors, norms, rows, picked)[:, :k]
        # a row with more candidates within the slack of its last one than were kept (ties
        # at the cut, which the top k splits as it likes) is ordered from all of them
        last = np.take_along_axis(scores, picked, axis=1).min(axis=1)
        crowded = np.nonzero((scores >= (last - _SLACK)[:, None]).sum(axis=1) > keep)[0]
        for i in crowded.tolist():
            close = np.nonzero(scores[i] >= last[i] - _SLACK)[0]
            out[start + i] = _exact_order(vectors, norms, rows[i:i + 1], close[None])[0, :k]
        if done is not None:
            done(start + len(rows))
    return out


def _exact_order(vectors: np.ndarray, norms: np.ndarray, rows: np.ndarray,
                 picked: np.ndarray) -> np.ndarray:
    """``picked`` (b, c) ordered by float64 cosine with each row, best first, ties by row.

    The dot products come first, then one division by the two norms: for whole-number
    vectors (pixels) the dots are exact, so equal images tie exactly."""
    mine = vectors[rows].astype(np.float64)
    theirs = vectors[picked].astype(np.float64)
    exact = np.einsum("bd,bcd->bc", mine, theirs) / (norms[rows, None] * norms[picked])
    order = np.lexsort((picked, -exact), axis=1)
    return np.take_along_axis(picked, order, axis=1)


@dataclass(frozen=True)
class Scores:
    """What EVALUATE reports for one method (every figure from 0 to 1)."""

    precision_at_k: float
    knn_accuracy: float
    mrr_at_k: float


def scores(neighbours: np.ndarray, queries: np.ndarray, labels: np.ndarray) -> Scores:
    """The scores of ``neighbours`` (Q, k) of the ``queries`` rows, against ``labels`` (N,)
    integer codes.

    precision@k: the share of each row's k neighbours with its label, averaged over rows.
    k-NN accuracy: the share of rows whose label is the commonest among their neighbours,
    a tie going to the label met first (the nearer). MRR@k: 1 / the rank of the first
    neighbour with the row's label, 0 when none of the k has it, averaged over rows.
    """
    own = labels[queries]
    theirs = labels[neighbours]
    same = theirs == own[:, None]
    precision = float(same.mean()) if same.size else 0.0
    first = np.where(same.any(axis=1), same.argmax(axis=1) + 1, 0)
    mrr = float(np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0).mean())
    right = 0
    for row, label in zip(theirs.tolist(), own.tolist(), strict=True):
        counts: dict[int, int] = {}
        for value in row:
            counts[value] = counts.get(value, 0) + 1
        most = max(counts.values())
        vote = next(value for value in row if counts[value] == most)   # nearest of the tied
        right += vote == label
    return Scores(precision, right / len(queries) if len(queries) else 0.0, mrr)


def chance_precision(labels: np.ndarray) -> float:
    """precision@k of neighbours drawn at random: the chance that another row, drawn at
    random, has a row's label, sum over labels of n(n-1) / (N(N-1))."""
    n = len(labels)
    counts = np.bincount(labels).astype(np.float64)
    return float((counts * (counts - 1)).sum() / (n * (n - 1))) if n > 1 else 0.0
