"""What every handler works with: the settings and typed, storage-level services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..results import Progress
from ..settings import Settings
from ..storage import EmbeddingColumns, ModelRegistry, SqlStore

if TYPE_CHECKING:
    from ..vectors import VectorIndex


def _ignore(_: Progress) -> None:
    """The progress sink of a context nobody watches (tests, sub-queries)."""


@dataclass
class Context:
    """The services a handler may use.

    ``store`` runs SQL and owns the tables, ``models`` the models and their files,
    ``embeddings`` the columns CONVERT makes; ``vectors`` (the vector index) opens on first
    use, so plain SQL never loads Chroma, and again after a failed open (a server that was
    down). ``loaded`` and ``matrices`` keep what is costly to load between statements.
    """

    settings: Settings
    store: SqlStore
    models: ModelRegistry
    embeddings: EmbeddingColumns
    report: Callable[[Progress], None] = _ignore
    #: models ready to embed, by name: (the content digest they were loaded from, model)
    loaded: dict[str, tuple[str, Any]] = field(default_factory=dict)
    #: the normalised vectors of one converted column, by collection: (image paths, matrix)
    matrices: dict[str, tuple[list[str], Any]] = field(default_factory=dict)
    _vectors: VectorIndex | None = None

    @classmethod
    def open(cls, settings: Settings, report: Callable[[Progress], None] = _ignore) -> Context:
        store = SqlStore(settings.database_url)
        return cls(settings, store, ModelRegistry(store, settings.workspace),
                   EmbeddingColumns(store), report)

    @property
    def vectors(self) -> VectorIndex:
        if self._vectors is None:
            from ..vectors import ChromaIndex

            url = self.settings.chroma_url
            self._vectors = (ChromaIndex.http(url) if url
                             else ChromaIndex(self.settings.workspace / "chroma"))
        return self._vectors

    def close(self) -> None:
        """Release the database and, if one was opened, the vector index."""
        if self._vectors is not None:
            self._vectors.close()
            self._vectors = None
        self.store.dispose()
