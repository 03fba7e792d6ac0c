"""Embeddings onto a plane: PCA of the unit vectors, the two directions they spread most in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: rows centred and projected at a time (memory stays at a block, whatever the rows)
_BLOCK = 65_536


@dataclass(frozen=True)
class Projection:
    """``points`` (N, 2) float32: each row's place; ``explained``: the share of the spread
    (variance) each axis holds, from 0 to 1."""

    points: np.ndarray
    explained: tuple[float, float]


def pca_2d(vectors: np.ndarray) -> Projection:
    """The rows of ``vectors`` (N, D), scaled to unit length as cosine similarity sees them,
    projected onto their first two principal axes.

    The covariance is summed block by block in float64 (D x D, whatever N), its
    eigenvectors give the axes; each axis's sign is chosen so its largest loading is
    positive, so the same vectors always give the same picture.
    """
    n, d = vectors.shape
    if n < 2:
        raise ValueError("a projection needs at least two vectors")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True).astype(np.float64)
    norms[norms == 0] = 1.0
    total = np.zeros(d)
    for start in range(0, n, _BLOCK):
        total += (vectors[start:start + _BLOCK] / norms[start:start + _BLOCK]).sum(axis=0)
    mean = total / n
    scatter = np.zeros((d, d))
    for start in range(0, n, _BLOCK):
        block = vectors[start:start + _BLOCK] / norms[start:start + _BLOCK] - mean
        scatter += block.T @ block
    values, axes = np.linalg.eigh(scatter / n)   # ascending
    order = np.argsort(values)[::-1]
    values, axes = values[order], axes[:, order]
    if d == 1:   # one dimension: the second axis holds nothing
        axes = np.concatenate([axes, np.zeros((1, 1))], axis=1)
        values = np.concatenate([values, [0.0]])
    axes = axes[:, :2]
    axes *= np.where(axes[np.abs(axes).argmax(axis=0), [0, 1]] < 0, -1.0, 1.0)
    points = np.empty((n, 2), np.float32)
    for start in range(0, n, _BLOCK):
        block = vectors[start:start + _BLOCK] / norms[start:start + _BLOCK] - mean
        points[start:start + _BLOCK] = block @ axes
    spread = float(values.clip(min=0).sum())
    explained = tuple(float(v) / spread if spread > 0 else 0.0 for v in values.clip(min=0)[:2])
    return Projection(points, (explained[0], explained[1]))
