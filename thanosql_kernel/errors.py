"""The one error hierarchy: every failure a user can cause is a ThanoSQLError."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ThanoSQLError(Exception):
    """Base of every error the kernel reports to the user (never with a Python traceback).

    An error may know where in the cell the problem is: ``at``, an offset into the cell,
    which the kernel turns into a line, a column and a caret under the line (``place``).
    """

    #: the name the user sees as ``ename``; subclasses override it
    ename = "ThanoSQLError"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: the offset in the cell where the problem is, when known
        self.at: int | None = None
        self.line: int | None = None
        self.column: int | None = None
        self.text = ""

    def place(self, line: int, column: int, text: str) -> None:
        """Point the error at ``column`` of cell line ``line``, whose text is ``text``."""
        self.line, self.column, self.text = line, column, text

    def __str__(self) -> str:
        body = self.message
        if self.line is not None and self.column is not None:
            text, column = _window(self.text, self.column)
            caret = " " * (column - 1) + "^"
            body = (f"{self.message} (line {self.line}, column {self.column})\n"
                    f"  {text}\n  {caret}")
        return body if not self.hint else f"{body}\n{self.hint}"


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
    """Text that is not a statement: carries line, column and the offending line."""

    ename = "ThanoSQLSyntaxError"

    def __init__(self, message: str, *, line: int, column: int, text: str,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.place(line, column, text)


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


class InternalError(ThanoSQLError):
    """An unexpected failure inside the kernel (a bug): reported with its Python type."""

    ename = "InternalError"

