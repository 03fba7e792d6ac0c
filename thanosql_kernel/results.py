"""The only values the engine hands back: rows, a message, images, progress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Table:
    """Rows with named columns; ``total`` counts every row, ``rows`` may hold only the first."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    total: int | None = None
    #: columns whose values are float32 embeddings stored as bytes (shown compactly)
    vector_columns: frozenset[str] = frozenset()

    @property
    def row_count(self) -> int:
        return len(self.rows) if self.total is None else self.total


@dataclass(frozen=True)
class Message:
    """A one-line outcome such as ``Success``."""

    text: str


@dataclass(frozen=True)
class Image:
    """One image to show: the PNG bytes (or why there are none) and its caption; ``width``
    and ``height``, the PNG's pixels, are the size to show it at."""

    path: str
    caption: str
    png: bytes | None = None
    problem: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Images:
    """The images of PRINT IMAGE, in order; ``total`` counts the rows the query returned."""

    images: tuple[Image, ...]
    total: int


@dataclass(frozen=True)
class Progress:
    """The state of long work (a download, training, embedding) at one moment."""

    key: str
    title: str
    done: int
    total: int
    unit: str = "items"
    elapsed: float = 0.0
    detail: str = ""
    finished: bool = False
    #: a line worth keeping in the log (an epoch's summary), or None
    log_line: str | None = None
    #: "stopped" or "failed" when the work ended before it was done
    ended: str | None = None

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        if self.done <= 0 or self.elapsed <= 0:
            return None
        return (self.total - self.done) / self.rate


Result = Table | Message | Images | None
