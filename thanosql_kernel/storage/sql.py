"""The SQL store: runs statements, streams rows, and writes whole tables atomically."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import json
import re
import sqlite3
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event, exc

from ..errors import (
    DatabaseError,
    DiskFullError,
    NotFoundError,
    ServerError,
    did_you_mean,
    excerpt,
)
from ..imports import import_whole
from ..paths import disk_full, free_space
from ..results import Message, Table
from ..syntax.statements import SQL_PHRASES

if TYPE_CHECKING:
    import pandas as pd

    from ..syntax.shape import Changes, Shape

#: tables the kernel keeps for itself start with this and are not listed to users
INTERNAL_PREFIX = "thanosql_"

# how many SQLite virtual-machine steps between checks for the stop button
_INTERRUPT_CHECK_STEPS = 20_000
# how long a writer waits for another connection's write lock (a long CONVERT in another
# kernel), and in what slices: SQLite sleeps inside C while it waits, so the stop button
# can only act between slices
_WRITE_LOCK_WAIT_S = 600.0
_WRITE_LOCK_SLICE_MS = 100


def _sqlite_setup(engine: sa.Engine) -> None:
    """Make SQLite transactional for DDL too, patient with other writers, and interruptible.

    pysqlite commits before DROP/CREATE on its own, which would make a failed COPY lose the
    old table; SQLAlchemy's documented recipe is to take transaction control from the driver.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # another kernel's CONVERT may hold the write lock for a while: wait, never fail
        cursor.execute(f"PRAGMA busy_timeout={int(_WRITE_LOCK_WAIT_S * 1000)}")
        cursor.close()
        # A Python callback lets a pending SIGINT raise inside long queries; sqlite3 then
        # aborts the statement with "interrupted", which the store turns back into a
        # KeyboardInterrupt.
        dbapi_connection.set_progress_handler(lambda: 0, _INTERRUPT_CHECK_STEPS)

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # A writer takes the lock up front: a deferred transaction that reads and then
        # writes can fail at once with "database is locked" when another process wrote in
        # between, whatever the busy timeout.
        if conn.get_execution_options().get("thanosql_write", False):
            _begin_immediate(conn)
        else:
            conn.exec_driver_sql("BEGIN")


def _begin_immediate(conn: sa.Connection) -> None:
    """BEGIN IMMEDIATE, waiting up to ``_WRITE_LOCK_WAIT_S`` for another writer in short
    slices, so that a pending SIGINT (the stop button) ends the wait within a slice rather
    than after the whole busy timeout."""
    deadline = time.monotonic() + _WRITE_LOCK_WAIT_S
    try:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={_WRITE_LOCK_SLICE_MS}")
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                break
            except exc.OperationalError as e:
                if "locked" not in str(e.orig):
                    raise
                if time.monotonic() >= deadline:
                    raise DatabaseError(
                        f"Another connection has held this workspace's write lock for "
                        f"{_WRITE_LOCK_WAIT_S:g} s; nothing was written.",
                        hint="Wait for the other kernel's statement to finish, then run "
                             "this one again; for many users, use PostgreSQL "
                             "(THANOSQL_DATABASE_URL).") from None
            # Python runs its signal handlers here: a KeyboardInterrupt leaves the loop
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(_WRITE_LOCK_WAIT_S * 1000)}")
    except BaseException:
        # never hand a connection with the short timeout back to the pool
        conn.invalidate()
        raise


_READ_ONLY = re.compile(r"\s*(SELECT|VALUES|EXPLAIN|SHOW|PRAGMA|TABLE)\b", re.I)
_WITH_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|REPLACE)\b", re.I)


#: SQL's words that a misspelt word near a syntax error may have meant
_SQL_WORDS = tuple(dict.fromkeys(w for phrase in SQL_PHRASES for w in phrase.split()))


def writes(sql: str) -> bool:
    """Whether a plain SQL statement may write (so it should take the write lock first)."""
    if re.match(r"\s*WITH\b", sql, re.I):
        return bool(_WITH_WRITE.search(sql))
    return not _READ_ONLY.match(sql)


#: the words of SQL statements that can drop or rename a table or a column
_RESHAPES = re.compile(r"\b(alter|drop|rename)\b", re.IGNORECASE)


def reshapes(sql: str) -> bool:
    """Whether a plain SQL statement may drop or rename a table or a column."""
    return bool(_RESHAPES.search(sql))


def _placeholder(style: str, number: int) -> str:
    """The driver's mark for its ``number``-th bound value (from 1), in DB-API ``style``."""
    return {"qmark": "?", "format": "%s", "numeric": f":{number}",
            "numeric_dollar": f"${number}", "named": f":p{number}",
            "pyformat": f"%(p{number})s"}[style]


def _first_line(text: str) -> str:
    return str(text).strip().splitlines()[0] if str(text).strip() else str(text)


def _full(shown_url: str) -> DiskFullError:
    """The full disk under the database: the workspace's folder, or the server's."""
    if shown_url.startswith("sqlite:///"):
        folder = Path(shown_url.removeprefix("sqlite:///")).parent
        return DiskFullError(str(folder), free=free_space(folder))
    return DiskFullError(f"the database server at {shown_url}")


def _lost(shown_url: str, message: str) -> ServerError:
    return ServerError(
        f"The connection to the database at {shown_url} was lost: {_first_line(message)}",
        hint="The server stopped or restarted, and nothing of this statement was kept. "
             "Run it again once the server is up: the kernel reconnects by itself.")


def _not_refused(e: exc.DBAPIError, shown_url: str) -> BaseException | None:
    """What a driver error is when it is no refusal of the statement: the stop button
    (SQLite's "interrupted"), the connection lost, a full disk; None when it is a refusal."""
    message = str(e.orig) if e.orig is not None else str(e)
    if "interrupted" in message.lower() and "sqlite" in type(e.orig).__module__:
        return KeyboardInterrupt()
    if e.connection_invalidated:
        return _lost(shown_url, message)
    if disk_full(e.orig):
        return _full(shown_url)
    return None


@contextmanager
def database_errors(shown_url: str = "the database", sql: str | None = None) -> Iterator[None]:
    """Turn driver errors into DatabaseError (with the database's own words, what kind of
    mistake it is and where in ``sql`` it points), a ServerError when the connection was
    lost, or interrupts."""
    try:
        yield
    except exc.DBAPIError as e:
        other = _not_refused(e, shown_url)
        if other is not None:
            raise other from None
        message = str(e.orig) if e.orig is not None else str(e)
        kind, name, offset = _classify(e.orig, message, sql)
        raise DatabaseError(f"The database refused the statement: {_first_line(message)}",
                            hint=_KIND_HINTS[kind], kind=kind, name=name, offset=offset) \
            from None
    except exc.SQLAlchemyError as e:
        raise DatabaseError(f"The database refused the statement: {_first_line(str(e))}") \
            from None


_KIND_HINTS = {
    "syntax": "The database could not read the SQL at the caret: look for a misspelt keyword "
              "or a missing comma, quote or parenthesis there.",
    "table": "Check the table's name with LIST TABLE.",
    "column": "Check the column's name with LIST TABLE.",
    "type": "A value does not fit the column's or the operator's type: compare and insert "
            "values of one type, or convert with CAST(value AS type).",
    "other": "Check the table and column names with LIST TABLE.",
}
# SQLite's own words for each kind of mistake, and the word it names
_SQLITE = (
    ("syntax", re.compile(r'near "(?P<name>[^"]*)": syntax error')),
    ("syntax", re.compile(r"(?P<name>)incomplete input|unrecognized token: \"?(?P<token>.*?)\"?$")),
    ("table", re.compile(r"no such table: (?P<name>\S+)")),
    ("column", re.compile(r"no such column: (?P<name>\S+)|has no column named (?P<named>\S+)")),
    ("type", re.compile(r"(?P<name>)datatype mismatch")),
)
# PostgreSQL's error classes (SQLSTATE) for each kind, and where its message names the word
_POSTGRES_KINDS = {"42601": "syntax", "42P01": "table", "42703": "column", "42883": "type",
                   "42804": "type", "22P02": "type", "22007": "type", "22003": "type"}
_POSTGRES_NAME = re.compile(r'(?:at or near|relation|column) "(?P<name>[^"]*)"')


def _classify(orig: Any, message: str, sql: str | None) -> tuple[str, str | None, int | None]:
    """(kind, the word the database named, its offset in ``sql``) for a driver error."""
    first = _first_line(message)
    offset: int | None = None
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:   # PostgreSQL (psycopg): a class code and often a position
        kind = _POSTGRES_KINDS.get(sqlstate, "other")
        found = _POSTGRES_NAME.search(first)
        name = found["name"] if found else None
        position = getattr(getattr(orig, "diag", None), "statement_position", None)
        if position and sql is not None:
            offset = min(int(position) - 1, len(sql))
    else:
        kind, name = "other", None
        for candidate, pattern in _SQLITE:
            found = pattern.search(first)
            if found:
                kind = candidate
                name = next((v for v in found.groupdict().values() if v), None)
                if candidate == "syntax" and "incomplete input" in first and sql is not None:
                    offset = len(sql.rstrip())
                break
    if offset is None and name and sql is not None:
        word = re.search(rf"(?<![\w.]){re.escape(name.split('.')[-1])}(?!\w)", sql, re.I) \
            if kind != "syntax" else re.search(re.escape(name), sql)
        offset = word.start() if word else None
    return kind, name, offset


#: how SQLite (3.24 on: "SEARCH TABLE t …" before 3.36, "SEARCH t …" after) says it finds
#: a table's rows; a scan of a sub-query's rows, which come from the lines below it, reads
#: no table ("SCAN thanosql_few", "SCAN (subquery-2)", "SCAN SUBQUERY 2")
_SQLITE_ACCESS = re.compile(r"(?P<how>SEARCH|SCAN) (?:TABLE )?(?P<what>\S+)(?P<rest>.*)")


def _sqlite_counts_by_index(lines: list[str]) -> bool:
    """Whether an ``EXPLAIN QUERY PLAN`` reads every table it touches through a covering
    index, by a search (not a scan of the whole index)."""
    searched = False
    for line in lines:
        access = _SQLITE_ACCESS.match(line)
        if access is None:
            continue   # CO-ROUTINE, SCALAR SUBQUERY, USE TEMP B-TREE …
        what = access["what"]
        if access["how"] == "SCAN":
            if not (what.startswith(("thanosql_", "(subquery")) or what == "SUBQUERY"):
                return False   # a table, or a whole index, read from end to end
        elif "USING COVERING INDEX" not in access["rest"]:
            return False   # rows of the table itself read, or a search by rowid
        else:
            searched = True
    return searched


def _postgresql_counts_by_index(node: Mapping[str, Any]) -> bool:
    """Whether a PostgreSQL plan (``EXPLAIN (FORMAT JSON)``'s) reads its tables by index
    only scans."""
    kind = str(node.get("Node Type", ""))
    if kind.endswith("Scan") and kind not in ("Index Only Scan", "Subquery Scan"):
        return False
    return all(_postgresql_counts_by_index(child) for child in node.get("Plans", ()))


class SqlStore:
    """One database, opened lazily so a kernel starts without touching it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: sa.Engine | None = None
        # the kernel's warm-up thread and the first statement may both open the database:
        # one makes the engine (importing the driver), the other waits for it, since two
        # threads importing a driver at once can see it half-initialised
        self._engine_lock = threading.Lock()

    @functools.cached_property
    def shown_url(self) -> str:
        """The URL as errors show it: the password hidden."""
        try:
            return sa.make_url(self.url).render_as_string(hide_password=True)
        except exc.ArgumentError:
            return "(a URL that cannot be read)"

    @property
    def engine(self) -> sa.Engine:
        with self._engine_lock:
            if self._engine is None:
                self._engine = self._make_engine()
            return self._engine

    def _make_engine(self) -> sa.Engine:
        """The engine for ``url``: SQLite made transactional and patient, a server's
        connections tested before use."""
        try:
            url = sa.make_url(self.url)
        except exc.ArgumentError:
            # not shown: a URL that cannot be read may still hold a password
            raise ServerError("THANOSQL_DATABASE_URL cannot be read as a database URL",
                              hint="Write it like postgresql+psycopg://user@host:5432/db, "
                                   "or unset it for the embedded SQLite database.") from None
        sqlite = url.get_backend_name() == "sqlite"
        if sqlite and url.database not in (None, "", ":memory:"):
            folder = Path(url.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DatabaseError(
                    f"Cannot make the workspace folder {folder}: {e.strerror or e}",
                    hint="Move or remove what stands in its place, or set "
                         "THANOSQL_WORKSPACE to a folder the kernel may write.") from None
        # a server may restart under a running kernel: test a pooled connection before
        # using it, so the first statement after a restart just works
        _import_driver(url)
        engine = sa.create_engine(url, pool_pre_ping=not sqlite)
        if sqlite:
            _sqlite_setup(engine)
        elif url.get_backend_name() == "postgresql":
            # before SQLAlchemy's own first look at the server, which a SQL_ASCII
            # database already confuses
            event.listen(engine, "connect", functools.partial(
                _check_encoding, shown_url=self.shown_url), insert=True)
        return engine

    def _connect(self) -> sa.Connection:
        """A pooled connection; a server that cannot be reached is a ServerError."""
        engine = self.engine
        try:
            return engine.connect()
        except exc.DBAPIError as e:
            message = _first_line(str(e.orig) if e.orig is not None else str(e))
            if engine.dialect.name == "sqlite":
                raise DatabaseError(f"Cannot open the workspace database {engine.url.database}: "
                                    f"{message}",
                                    hint="Check that the workspace folder (THANOSQL_WORKSPACE) "
                                         "is a folder the kernel may write.") from None
            raise ServerError(
                f"Cannot connect to the database at {self.shown_url}: {message}",
                hint="Start the database server (or check THANOSQL_DATABASE_URL), then run the "
                     "statement again: nothing of it was kept, and the kernel reconnects by "
                     "itself.") from None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def quote(self, name: str) -> str:
        """``name`` as an identifier in this database's SQL, quoted where it needs it."""
        return str(self.engine.dialect.identifier_preparer.quote(name))

    # -- the bind step: a query's shape, read in this database's SQL dialect -----------------
    def shape(self, sql: str) -> Shape | None:
        """What a SELECT reads and keeps (see ``syntax.shape``), or None if it cannot tell."""
        from ..syntax.shape import shape

        return shape(sql, self.dialect)

    def changes(self, sql: str) -> Changes:
        """Which tables a statement writes and reads (see ``syntax.shape.table_changes``)."""
        from ..syntax.shape import table_changes

        return table_changes(sql, self.dialect)

    def top_n(self, sql: str, source: str) -> tuple[str, int] | None:
        """(column, n) when ``sql`` keeps only the top n rows of ``source`` by column."""
        from ..syntax.shape import top_n

        return top_n(sql, source, self.dialect)

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def begin(self, write: bool = False) -> Iterator[sa.Connection]:
        """A connection in a transaction: committed on success, rolled back on any exception.

        ``write`` says the transaction will write, so it waits for the write lock first.
        """
        wal = False   # whether SQLite's write-ahead log is to be emptied at the end
        try:
            with database_errors(self.shown_url), self._connect() as conn:
                wal = write and conn.dialect.name == "sqlite"
                if write:
                    conn = conn.execution_options(thanosql_write=True)
                with conn.begin():
                    yield conn
        except DiskFullError as full:
            if not wal:
                raise
            wal = False
            self._give_back_wal()   # then say how much is free, the failed write's pages gone
            raise DiskFullError(full.place, free=free_space(full.place), need=full.need) \
                from None
        finally:
            if wal:   # committed, or failed otherwise (a stop, a refused statement)
                self._give_back_wal()

    def _give_back_wal(self) -> None:
        """Empty SQLite's write-ahead log once a writing transaction has ended. Left alone it
        keeps the size of the largest transaction ever made, and the pages a failed one
        wrote: after a COPY that filled the disk, every later write failed for lack of the
        space the failed COPY still held. Costs about a millisecond; a reader in another
        kernel makes it wait for the next time (timeout 0), never blocks."""
        database = self.engine.url.database
        if not database or database == ":memory:":
            return
        with suppress(sqlite3.Error):
            connection = sqlite3.connect(database, timeout=0)
            try:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                connection.close()

    # -- statements --------------------------------------------------------------------
    def check_user_table(self, name: str, statement: str) -> None:
        """Refuse to let a statement change one of the kernel's own tables (its catalogs)."""
        if name.lower().startswith(INTERNAL_PREFIX):
            raise DatabaseError(
                f"{statement}: {name} is one of the kernel's own tables (its catalog of models "
                "or embedding columns); statements may read it, not change it",
                hint="Tables whose names start with thanosql_ are the kernel's: pick another "
                     "name. Models change with BUILD MODEL and DROP MODEL.")

    def run(self, conn: sa.Connection, sql: str, limit: int | None,
            params: Mapping[str, Any] | None = None) -> Table | Message:
        """Run one SQL statement; rows stream, and only the first ``limit`` are kept (all of
        them for None). ``params`` holds the values of its ``:name`` parameters."""
        if INTERNAL_PREFIX in sql.lower() and writes(sql):
            from ..syntax.shape import written_tables

            for table in written_tables(sql, self.dialect):
                self.check_user_table(table, _first_line(sql).split()[0].upper())
        with self._explained(sql):
            result = self._execute(conn, sql, params)
            if not result.returns_rows:
                count = result.rowcount
                result.close()
                return Message("Success" if count is None or count < 0
                               else f"Success ({count:,} row{'s' if count != 1 else ''} "
                                    "affected)")
            columns = tuple(result.keys())
            kept: list[tuple[Any, ...]] = []
            total = 0
            for row in result:
                if limit is None or total < limit:
                    kept.append(tuple(row))
                total += 1
            return Table(columns, tuple(kept), total)

    def read(self, conn: sa.Connection, sql: str,
             params: Mapping[str, Any] | None = None) -> Table:
        """Every row of a query (for sub-queries and models, which need them all)."""
        with self._explained(sql):
            result = self._execute(conn, sql, params)
            if not result.returns_rows:
                raise DatabaseError("The query returned no rows to use",
                                    hint="Use a SELECT here.")
            return Table(tuple(result.keys()), tuple(tuple(r) for r in result))

    def stream(self, conn: sa.Connection, sql: str, params: Mapping[str, Any] | None = None,
               size: int = 256) -> Generator[Table, None, None]:
        """A query's rows as Tables of ``size`` rows at most, read as they are asked for
        (SQLite steps its statement; PostgreSQL fetches from a server-side cursor), so a
        caller can stop early and run other statements on ``conn`` between them. The
        query's errors come as ``read``'s do; closing the iterator closes the cursor."""
        with self._explained(sql):
            result = self._execute(conn, sql, params,
                                   {"stream_results": True, "yield_per": size})
            try:
                if not result.returns_rows:
                    raise DatabaseError("The query returned no rows to use",
                                        hint="Use a SELECT here.")
                columns = tuple(result.keys())
                while chunk := result.fetchmany(size):
                    yield Table(columns, tuple(tuple(row) for row in chunk))
            finally:
                result.close()

    def count_by_index(self, conn: sa.Connection, sql: str, params: Mapping[str, Any] | None,
                       most: int) -> int | None:
        """How many rows a query returns, where the database counts them from its indexes
        alone (no table scanned, no row of a table read: its plan searches covering
        indexes only) and they are ``most`` or fewer; else None, having counted nothing.

        Cheap where it counts (SQLite: 10,000 entries of an index in 0.4 ms), so a caller
        may ask before choosing a way to answer; a plan that would read the table is never
        run. SQLite and PostgreSQL read their plans; other databases: None."""
        counting = (f"SELECT count(*) FROM (SELECT 1 AS thanosql_one FROM ({sql}) AS "
                    f"thanosql_counted LIMIT {int(most) + 1}) AS thanosql_few")
        with self._explained(sql):
            if conn.dialect.name == "sqlite":
                lines = [str(row[-1]) for row in
                         self._execute(conn, "EXPLAIN QUERY PLAN " + counting, params)]
                if not _sqlite_counts_by_index(lines):
                    return None
            elif conn.dialect.name == "postgresql":
                plan = self._execute(conn, "EXPLAIN (FORMAT JSON) " + counting,
                                     params).scalar_one()
                plan = json.loads(plan) if isinstance(plan, str) else plan
                if not _postgresql_counts_by_index(plan[0]["Plan"]):
                    return None
            else:
                return None
            count = int(self._execute(conn, counting, params).scalar_one())
        return count if count <= most else None

    def _execute(self, conn: sa.Connection, sql: str, params: Mapping[str, Any] | None,
                 options: Mapping[str, Any] | None = None) -> sa.CursorResult[Any]:
        """Run ``sql`` as it is, or, where it has ``:name`` parameters, with their values
        bound by the driver in its own parameter style: a value is never part of the text.

        A tuple binds one value per item, in parentheses (``WHERE label IN :labels``, or
        ``IN (:labels)``). ``options``: SQLAlchemy's execution options for this statement.
        """
        from ..syntax.params import parameters

        found = parameters(sql) if params else ()
        if not params or not found:
            # no parameter collection at all: psycopg would otherwise read every % in the
            # text (LIKE '5%') as the start of a placeholder
            return conn.exec_driver_sql(sql, execution_options={**(options or {}),
                                                                "no_parameters": True})
        style = conn.dialect.paramstyle
        named = style in ("named", "pyformat")
        pieces: list[str] = []
        values: list[Any] = []
        cursor = 0
        for offset, name in found:
            pieces.append(sql[cursor:offset])
            cursor = offset + 1 + len(name)
            value = params[name]
            items = value if isinstance(value, tuple) else (value,)
            marks = []
            for item in items:
                values.append(item)
                marks.append(_placeholder(style, len(values)))
            enclosed = sql[:offset].rstrip().endswith("(") and sql[cursor:].lstrip()[:1] == ")"
            listed = ", ".join(marks)
            pieces.append(f"({listed})" if isinstance(value, tuple) and not enclosed else listed)
        pieces.append(sql[cursor:])
        if style in ("format", "pyformat"):   # a literal % must be doubled for the driver
            pieces = [p if i % 2 else p.replace("%", "%%") for i, p in enumerate(pieces)]
        text = "".join(pieces)
        if named:
            return conn.exec_driver_sql(text, {f"p{i + 1}": v for i, v in enumerate(values)},
                                        execution_options=options)
        return conn.exec_driver_sql(text, tuple(values), execution_options=options)

    @contextmanager
    def _explained(self, sql: str) -> Iterator[None]:
        """Database errors of a user's statement, with a hint that fits the mistake: the
        closest table or column name there is ("did you mean …"), or what else to check."""
        try:
            with database_errors(self.shown_url, sql):
                yield
        except DatabaseError as error:
            if error.kind in ("table", "column") and error.name:
                try:
                    error.hint = self._names_hint(error.kind, error.name, sql) or error.hint
                except DatabaseError:
                    pass   # the hint is a courtesy: the database's own error stands
            elif error.kind == "syntax" and error.name:
                # a keyword misspelt by a letter or two, not any word that shares letters
                error.hint = did_you_mean(error.name, _SQL_WORDS, cutoff=0.75) + str(error.hint)
            raise

    def _names_hint(self, kind: str, name: str, sql: str) -> str | None:
        with self.begin() as conn:   # a connection of its own: the failed one may be aborted
            tables = self.table_names(conn)
            if kind == "table":
                return (f"{did_you_mean(name, tables)}Tables: {', '.join(tables) or 'none yet'}"
                        ". LIST TABLE shows their columns.")
            shape = self.shape(sql)
            read = [t for t in (shape.tables if shape else ()) if t in tables]
            columns = {t: self.columns(conn, t) for t in read}
        if not columns:
            return None
        known = [c for cs in columns.values() for c in cs]
        listed = "; ".join(f"{t}: {', '.join(cs)}" for t, cs in columns.items())
        return f"{did_you_mean(name.split('.')[-1], known)}Columns of {listed}."

    # -- tables ------------------------------------------------------------------------
    def table_names(self, conn: sa.Connection | None = None) -> list[str]:
        with database_errors(self.shown_url):
            inspector = sa.inspect(conn if conn is not None else self.engine)
            return sorted(n for n in inspector.get_table_names()
                          if not n.startswith(INTERNAL_PREFIX))

    def has_table(self, conn: sa.Connection, name: str) -> bool:
        with database_errors(self.shown_url):
            return sa.inspect(conn).has_table(name)

    def columns(self, conn: sa.Connection, table: str) -> list[str]:
        with database_errors(self.shown_url):
            try:
                return [c["name"] for c in sa.inspect(conn).get_columns(table)]
            except exc.NoSuchTableError:
                tables = self.table_names(conn)
                raise NotFoundError(
                    f"There is no table {excerpt(table)}",
                    hint=f"{did_you_mean(table, tables)}Tables: {', '.join(tables) or 'none yet'}."
                ) from None

    def describe(self, conn: sa.Connection, table: str) -> list[tuple[str, str]]:
        """(name, SQL type) of each column of ``table``."""
        self.columns(conn, table)   # the error that names the tables there are
        with database_errors(self.shown_url):
            return [(c["name"], str(c["type"])) for c in sa.inspect(conn).get_columns(table)]

    def count_rows(self, conn: sa.Connection, table: str) -> int:
        with database_errors(self.shown_url):
            t = sa.table(table)
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())

    def drop_table(self, conn: sa.Connection, name: str) -> None:
        with database_errors(self.shown_url):
            sa.Table(name, sa.MetaData()).drop(conn, checkfirst=True)

    def drop_temporary(self, conn: sa.Connection, name: str) -> None:
        """Drop a temporary table made by ``create_rows_table(temporary=True)``, where the
        database does not drop it at commit by itself (PostgreSQL does: ON COMMIT DROP)."""
        if conn.dialect.name != "postgresql":
            self.drop_table(conn, name)

    def insert_frame(self, conn: sa.Connection, table: str, frame: pd.DataFrame) -> None:
        """Append a data frame's rows to ``table``, creating it with types read off the frame."""
        pd = import_whole("pandas")
        try:
            frame.to_sql(table, conn, if_exists="append", index=False, chunksize=20_000)
        except (pd.errors.DatabaseError, exc.DBAPIError) as e:
            wrapped = e if isinstance(e, exc.DBAPIError) else e.__cause__
            # the stop button, a server lost, a full disk: as every other statement says them
            other = _not_refused(wrapped, self.shown_url) \
                if isinstance(wrapped, exc.DBAPIError) else None
            if other is not None:
                raise other from None
            cause = getattr(wrapped, "orig", None) or wrapped or e
            if "interrupted" in str(cause).lower():   # the stop button, through SQLite
                raise KeyboardInterrupt from None
            raise DatabaseError(f"The database refused the rows of COPY {table}: "
                                f"{_first_line(str(cause))}") from None

    def create_rows_table(self, conn: sa.Connection, name: str, columns: Sequence[str],
                          rows: Iterable[Sequence[Any]], *, temporary: bool = False) -> None:
        """Create ``name`` with column types read off the values, and insert the rows."""
        rows = list(rows)
        types = [_sql_type([r[i] for r in rows]) for i in range(len(columns))]
        marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
        if marker and all(isinstance(t, _PLAIN_TYPES) for t in types):
            # text, numbers and bytes go to the driver as they are: the DDL and the INSERT as
            # SQL text skip SQLAlchemy's compiling, half the cost of a SEARCH sub-query's rows
            # (measured: 1 ms of a 10 ms search of 100,000 rows)
            quote = conn.dialect.identifier_preparer.quote
            spec = ", ".join(f"{quote(c)} {t.compile(dialect=conn.dialect)}"
                             for c, t in zip(columns, types, strict=True))
            drop = " ON COMMIT DROP" if temporary and conn.dialect.name == "postgresql" else ""
            with database_errors(self.shown_url):
                conn.exec_driver_sql(f"CREATE {'TEMPORARY ' if temporary else ''}TABLE "
                                     f"{quote(name)} ({spec}){drop}")
                if rows:
                    conn.exec_driver_sql(
                        f"INSERT INTO {quote(name)} VALUES ({', '.join([marker] * len(columns))})",
                        [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                         for r in rows])
            return
        # PostgreSQL drops it with the transaction, which saves a DROP on every sub-query
        dialect_options: dict[str, Any] = {"postgresql_on_commit": "drop"} if temporary else {}
        table = sa.Table(
            name, sa.MetaData(),
            *(sa.Column(c, t) for c, t in zip(columns, types, strict=True)),
            prefixes=["TEMPORARY"] if temporary else [], **dialect_options)
        with database_errors(self.shown_url):
            table.create(conn)
            if rows:
                conn.execute(table.insert(), [dict(zip(columns, r, strict=True)) for r in rows])


def _check_encoding(dbapi_connection: Any, _record: Any, *, shown_url: str) -> None:
    """Refuse a PostgreSQL database that does not store text as UTF-8: with SQL_ASCII the
    driver hands back bytes, and every statement would fail in a confusing way."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SHOW server_encoding")
        encoding = cursor.fetchone()[0]
        cursor.execute("SELECT current_database()")
        database = cursor.fetchone()[0]
    finally:
        cursor.close()
        dbapi_connection.rollback()
    encoding, database = (v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)
                          for v in (encoding, database))
    if encoding.upper().replace("-", "") != "UTF8":
        dbapi_connection.close()
        raise ServerError(
            f"The database at {shown_url} stores text as {encoding}, and thanosql-kernel "
            "needs UTF8", hint=f"Create a UTF-8 database and point THANOSQL_DATABASE_URL at it: "
            f"createdb -E UTF8 --locale=C.UTF-8 -T template0 {database}_utf8 (or make the "
            "cluster with initdb -E UTF8 --locale=C.UTF-8).")


#: the column types whose values the drivers take as Python gives them
_PLAIN_TYPES = (sa.Text, sa.BigInteger, sa.Float, sa.LargeBinary)


def _sql_type(values: list[Any]) -> sa.types.TypeEngine:
    """The narrowest SQL type that holds every non-null value of a column."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return sa.Text()
    if kinds <= {bool}:
        return sa.Boolean()
    if kinds <= {int, bool}:
        return sa.BigInteger()
    if kinds <= {int, float, bool}:
        return sa.Float()
    if kinds <= {bytes, bytearray, memoryview}:
        return sa.LargeBinary()
    if kinds <= {dt.datetime}:
        return sa.DateTime()
    if kinds <= {dt.date}:
        return sa.Date()
    return sa.Text()


def _import_driver(url: sa.URL) -> None:
    """Import the URL's dialect and its driver (psycopg, ...) whole, in the import thread,
    before SQLAlchemy imports them in whichever thread opens the database first. A driver
    that is not installed is left for ``create_engine`` to report."""
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "sqlite":
        return
    for module in (f"sqlalchemy.dialects.{backend}.{driver}", driver):
        try:
            imported = import_whole(module)
        except ImportError:
            return
    if getattr(imported, "__version__", None) == "0.0.0.0":
        # psycopg says so when reading its own package metadata failed, as it did once in CI
        # (the cause not found); SQLAlchemy then refuses the driver as too old. Read again.
        with suppress(Exception):
            setattr(imported, "__version__", importlib.metadata.version(driver))  # noqa: B010
