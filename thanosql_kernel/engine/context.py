"""What every handler works with: the settings and the ports to storage, models and vectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..results import Progress
from ..settings import Settings
from ..storage import SqlStore


def _ignore(_: Progress) -> None:
    """The progress sink of a context nobody watches (tests, sub-queries)."""


@dataclass
class Context:
    """The ports a handler may use; heavy ones (models, vectors) are opened on first use."""

    settings: Settings
    store: SqlStore
    report: Callable[[Progress], None] = _ignore
    ports: dict[str, object] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, report: Callable[[Progress], None] = _ignore) -> Context:
        return cls(settings, SqlStore(settings.database_url), report)

    def close(self) -> None:
        """Release the database and, if one was opened, the vector index."""
        index = self.ports.pop("vectors", None)
        if index is not None:
            index.close()  # type: ignore[attr-defined]
        self.store.dispose()
