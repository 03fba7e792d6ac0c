"""Embeddings to and from the SQL column: little-endian float32 bytes, pure numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError

#: the on-disk element type; explicit byte order so a column written on one machine reads on any
DTYPE = np.dtype("<f4")
#: what CONVERT OPTIONS (on_error='skip') writes for a row whose image could not be read: no
#: vector, yet not NULL (a NULL is a row that came after CONVERT, which SEARCH embeds itself)
UNREADABLE = b""


def to_blob(vector: np.ndarray) -> bytes:
    """One vector (D,) as D * 4 bytes of little-endian float32."""
    array = np.asarray(vector)
    if array.ndim != 1:
        raise DataError(f"an embedding must be one vector, got an array of shape {array.shape}")
    return array.astype(DTYPE, copy=False).tobytes()


def from_blob(blob: bytes | bytearray | memoryview, dim: int | None = None) -> np.ndarray:
    """The vector (D,) float32 stored in `blob`; read-only, since it shares the bytes' memory."""
    if len(blob) % DTYPE.itemsize:
        raise DataError(f"an embedding of {len(blob)} bytes is not a whole number of float32")
    vector = np.frombuffer(blob, dtype=DTYPE)
    if dim is not None and vector.shape[0] != dim:
        raise DataError(f"expected an embedding of {dim} values, got {vector.shape[0]}")
    return vector


def blobs_to_matrix(blobs: Sequence[bytes], dim: int | None = None) -> np.ndarray:
    """Stack N blobs into one (N, D) float32 matrix with a single copy (join, then frombuffer).

    `dim` defaults to the length of the first blob; with no blobs and no `dim` the result is
    (0, 0). Every blob must hold exactly D values (a NULL is the caller's to filter out).
    """
    if dim is None:
        dim = len(blobs[0]) // DTYPE.itemsize if len(blobs) else 0
    width = dim * DTYPE.itemsize
    try:
        lengths = set(map(len, blobs))
    except TypeError:
        raise DataError("an embedding is NULL: convert the table again to fill it") from None
    if lengths - {width}:
        bad = sorted(n // DTYPE.itemsize for n in lengths - {width})
        raise DataError(f"expected embeddings of {dim} values, found some of {bad}")
    matrix = np.frombuffer(b"".join(blobs), dtype=DTYPE)
    # native float32 so BLAS takes it without a byte swap on big-endian hosts
    return matrix.reshape(len(blobs), dim).astype(np.float32, copy=False)
