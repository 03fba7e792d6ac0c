"""What every handler works with: the settings and typed, storage-level services."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ThanoSQLError
from ..results import Progress
from ..settings import Settings
from ..storage import EmbeddingColumns, ModelRegistry, SqlStore

if TYPE_CHECKING:
    from ..vectors import VectorIndex


def _ignore(_: Progress) -> None:
    """The progress sink of a context nobody watches (tests, sub-queries)."""


def _unheard(_: str) -> None:
    """The notice sink of a context nobody watches."""


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
    #: one line about something the kernel put right by itself (a damaged index rebuilt)
    notify: Callable[[str], None] = _unheard
    #: models ready to embed, by name: (the content digest they were loaded from, model)
    loaded: dict[str, tuple[str, Any]] = field(default_factory=dict)
    #: the normalised vectors of one converted column, by collection: (image paths, matrix)
    matrices: dict[str, tuple[list[str], Any]] = field(default_factory=dict)
    #: the values of the ``:name`` parameters of the statements now running (see ``bound``)
    params: Mapping[str, Any] = field(default_factory=dict)
    #: plain SQL keeps every row (rows become a DataFrame), not only the display limit's
    keep_all_rows: bool = False
    _vectors: VectorIndex | None = None
    #: the embedded index was found damaged: set it aside and rebuild it on next use
    _damaged: bool = False

    @classmethod
    def open(cls, settings: Settings, report: Callable[[Progress], None] = _ignore,
             notify: Callable[[str], None] = _unheard) -> Context:
        store = SqlStore(settings.database_url)
        return cls(settings, store, ModelRegistry(store, settings.workspace, notify),
                   EmbeddingColumns(store), report, notify)

    @contextmanager
    def bound(self, params: Mapping[str, Any]) -> Iterator[None]:
        """Statements run inside bind their ``:name`` parameters to ``params``."""
        before, self.params = self.params, params
        try:
            yield
        finally:
            self.params = before

    @property
    def vectors(self) -> VectorIndex:
        if self._vectors is None:
            from ..vectors import ChromaIndex, DamagedIndex

            url = self.settings.chroma_url
            if url:
                self._vectors = ChromaIndex.http(url)
            else:
                folder = self.settings.workspace / "chroma"
                try:
                    if self._damaged:
                        raise DamagedIndex(folder, RuntimeError("found damaged before"))
                    self._vectors = ChromaIndex(folder)
                except DamagedIndex:
                    self._vectors = self._rebuilt_index(folder)
        return self._vectors

    def index_damaged(self) -> None:
        """Drop the open embedded index, whose files cannot be read: the next use sets its
        folder aside and rebuilds it from the embedding columns."""
        if self._vectors is not None:
            with suppress(Exception):
                self._vectors.close()
        self._vectors = None
        self._damaged = not self.settings.chroma_url

    def _rebuilt_index(self, folder: Path) -> VectorIndex:
        """A new embedded index in ``folder``, holding every embedding column's vectors again;
        the damaged folder is kept aside for whoever wants to look at it."""
        from ..vectors.chroma import ChromaIndex, forget_client
        from .convert import reindex

        aside = folder.with_name(f"{folder.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-"
                                 f"{uuid.uuid4().hex[:6]}")
        forget_client(folder)
        folder.rename(aside)
        self._vectors = ChromaIndex(folder)
        self._damaged = False
        with self.store.begin() as tx:
            made = self.embeddings.all(tx)
        rebuilt = 0
        for entry in made:   # each in its own transaction: a table dropped since is skipped
            with suppress(ThanoSQLError), self.store.begin(write=True) as tx:
                reindex(self, tx, entry)
                rebuilt += 1
        self.notify(f"The vector index in {folder} was damaged: it was set aside as "
                    f"{aside.name} and rebuilt from {rebuilt} embedding column"
                    f"{'s' * (rebuilt != 1)}.")
        return self._vectors

    def close(self) -> None:
        """Release the database and, if one was opened, the vector index."""
        if self._vectors is not None:
            self._vectors.close()
            self._vectors = None
        self.store.dispose()
