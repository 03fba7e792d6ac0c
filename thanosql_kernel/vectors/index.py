"""The vector index port: what the engine asks of any store of (id, vector) collections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorIndex(Protocol):
    """Named collections of (id, vector), searched by cosine similarity.

    The SQL column is the source of truth; a collection is a cache of it that `replace` can
    always rebuild. Similarities are cosine values in [-1, 1], best first.
    """

    def replace(self, name: str, ids: Sequence[str], vectors: np.ndarray, *,
                batch: int = 5000) -> None:
        """Make `name` hold exactly these ids and vectors (N, D) float32, all or nothing."""
        ...

    def query(self, name: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k ids most like `vector` (D,), with their cosine similarity, best first."""
        ...

    def count(self, name: str) -> int:
        """How many vectors `name` holds."""
        ...

    def exists(self, name: str) -> bool:
        """Whether a collection `name` exists."""
        ...

    def drop(self, name: str) -> None:
        """Remove `name`; dropping one that does not exist is not an error."""
        ...

    def names(self) -> list[str]:
        """The collections a user can query, sorted (never a half-built one)."""
        ...

    def close(self) -> None:
        """Release the client; the index must not be used afterwards."""
        ...
