"""The one error hierarchy: every failure a user can cause is a ThanoSQLError."""

from __future__ import annotations


class ThanoSQLError(Exception):
    """Base of every error the kernel reports to the user (never with a Python traceback)."""

    #: the name the user sees as ``ename``; subclasses override it
    ename = "ThanoSQLError"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class ThanoSQLSyntaxError(ThanoSQLError):
    """Text that is not a statement: carries line, column and the offending line."""

    ename = "ThanoSQLSyntaxError"

    def __init__(self, message: str, *, line: int, column: int, text: str,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.line = line
        self.column = column
        self.text = text

    def __str__(self) -> str:
        caret = " " * (self.column - 1) + "^"
        body = f"{self.message} (line {self.line}, column {self.column})\n  {self.text}\n  {caret}"
        return body if not self.hint else f"{body}\n{self.hint}"


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
    """The SQL database refused a statement; carries its own message and the statement."""

    ename = "DatabaseError"


class ServerError(ThanoSQLError):
    """A server the kernel needs (the database, the Chroma server) cannot be reached, or is
    set up in a way the kernel cannot use; names the server's URL, never its password."""

    ename = "ServerError"


class InternalError(ThanoSQLError):
    """An unexpected failure inside the kernel (a bug): reported with its Python type."""

    ename = "InternalError"

