"""The one error hierarchy: every failure a user can cause is a ThanoSQLError."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class ThanoSQLError(Exception):
    """Base of every error the kernel reports to the user (never with a Python traceback).

    An error may know where in the cell the problem is: ``at``, an offset into the cell, set
    by whoever found the problem (the parser, the SQL statement, a parameter). Only
    ``describe`` turns it into a line, a column and a caret, and it changes nothing.
    """

    #: the name the user sees as ``ename``; subclasses override it
    ename = "ThanoSQLError"

    def __init__(self, message: str, *, hint: str | None = None, at: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: the offset in the cell where the problem is, when known
        self.at = at

    def where(self, cell: str | None) -> tuple[int, int, str] | None:
        """(line, column, that line's text) of the problem in ``cell``, when known."""
        if self.at is None or cell is None:
            return None
        return position(cell, self.at)

    def describe(self, cell: str | None = None) -> str:
        """The message, with the line, column and a caret under the line when the error
        knows its offset in ``cell``, and the hint."""
        body = self.message
        found = self.where(cell)
        if found is not None:
            line, column, text = found
            shown, caret_at = _window(text, column)
            body = (f"{self.message} (line {line}, column {column})\n"
                    f"  {shown}\n  {' ' * (caret_at - 1)}^")
        return body if not self.hint else f"{body}\n{self.hint}"

    def __str__(self) -> str:
        return self.describe()


def position(text: str, offset: int) -> tuple[int, int, str]:
    """1-based line and column of ``offset`` in ``text``, and that line's text."""
    offset = max(0, min(offset, len(text)))
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end < 0 else line_end
    return text.count("\n", 0, offset) + 1, offset - line_start + 1, text[line_start:line_end]


#: how much of a line an error shows around its caret
_WINDOW = 100


def _window(text: str, column: int) -> tuple[str, int]:
    """At most about ``_WINDOW`` characters of ``text`` around ``column``, and where the
    column falls in them: a megabyte-long line is not echoed whole."""
    if len(text) <= _WINDOW:
        return text, column
    start = max(0, min(column - 1 - _WINDOW // 2, len(text) - _WINDOW))
    shown = text[start:start + _WINDOW]
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + _WINDOW < len(text) else ""
    return prefix + shown + suffix, column - start + len(prefix)


def excerpt(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to at most ``limit`` characters, for quoting input in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class ThanoSQLSyntaxError(ThanoSQLError):
    """Text that is not a statement: it keeps the cell it was found in, so it always says
    where (``line``, ``column``)."""

    ename = "ThanoSQLSyntaxError"

    def __init__(self, message: str, *, cell: str, at: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, at=at)
        self.cell = cell

    @property
    def line(self) -> int:
        return position(self.cell, self.at or 0)[0]

    @property
    def column(self) -> int:
        return position(self.cell, self.at or 0)[1]

    def where(self, cell: str | None = None) -> tuple[int, int, str] | None:
        return super().where(self.cell)


def did_you_mean(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """"Did you mean 'x'? " for the candidate closest to ``name`` (any case), or ""."""
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=cutoff)
    return f"Did you mean {by_lower[close[0]]!r}? " if close else ""


class NotFoundError(ThanoSQLError):
    """A table, column, model, file or data set that does not exist."""

    ename = "NotFoundError"


class AlreadyExistsError(ThanoSQLError):
    """Something of that name exists and the statement did not ask to replace it."""

    ename = "AlreadyExistsError"


class OptionError(ThanoSQLError):
    """An unknown option, or an option value of the wrong type or out of range."""

    ename = "OptionError"


class DataError(ThanoSQLError):
    """Input data that cannot be read: bad encoding, a file that is not an image, …"""

    ename = "DataError"


class DamagedIndex(DataError):
    """The embedded vector index's files cannot be read. The embedding columns are the truth,
    so the kernel sets the folder aside and rebuilds the index from them."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        super().__init__(f"The vector index in {path} is damaged ({type(cause).__name__}: "
                         f"{str(cause)[:120]})",
                         hint="Run the statement again: the kernel sets the damaged index "
                              "aside and rebuilds it from the embedding columns.")
        self.path = path


class DatabaseError(ThanoSQLError):
    """The SQL database refused a statement; carries its own message and the statement.

    ``kind`` says what went wrong as far as the kernel can tell ("syntax", "table", "column",
    "type" or "other"), ``name`` the word the database named, and ``offset`` where in the
    statement's text the database points, when it does.
    """

    ename = "DatabaseError"

    def __init__(self, message: str, *, hint: str | None = None, kind: str = "other",
                 name: str | None = None, offset: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.name = name
        self.offset = offset


class ServerError(ThanoSQLError):
    """A server the kernel needs (the database, the Chroma server) cannot be reached, or is
    set up in a way the kernel cannot use; names the server's URL, never its password."""

    ename = "ServerError"


class DiskFullError(ThanoSQLError):
    """The disk a statement writes to (the workspace's, or the database server's) is full.
    Names the place, the space left and, where the statement knows it, the space it needed;
    nothing of the statement was kept."""

    ename = "DiskFullError"

    def __init__(self, place: str, *, free: int | None = None, need: int | None = None) -> None:
        self.place, self.free, self.need = place, free, need
        left = f" ({size_words(free)} free)" if free is not None else ""
        needed = f"; this statement needed about {size_words(need)}" if need else ""
        super().__init__(f"The disk is full under {place}{left}{needed}",
                         hint="Free space on that disk (or set THANOSQL_WORKSPACE to a folder "
                              "on a bigger one), then run the statement again: nothing of it "
                              "was kept, and the kernel needs no restart.")

    def needing(self, need: int) -> DiskFullError:
        """The same error, saying how much the statement needed (when it did not yet)."""
        if self.need is not None:
            return self
        again = DiskFullError(self.place, free=self.free, need=need)
        again.at = self.at
        return again


def size_words(size: int) -> str:
    """A number of bytes as people read it: 512 bytes, 3.2 MB, 1.5 GB."""
    if size < 1000:
        return f"{size} bytes"
    scaled = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        scaled /= 1000
        if scaled < 1000 or unit == "TB":
            break
    return f"{scaled:.1f} {unit}"


class InternalError(ThanoSQLError):
    """An unexpected failure inside the kernel (a bug): reported with its Python type."""

    ename = "InternalError"

