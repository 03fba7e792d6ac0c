"""Where each table's relative image paths are relative to: the folders of the kernels that
loaded its rows, recorded at COPY, so a kernel in another folder reads the same files."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .schema import METADATA, CatalogTime, create_once
from .sql import INTERNAL_PREFIX, SqlStore

if TYPE_CHECKING:
    from ..syntax.shape import Changes

#: the words of SQL statements that can make, drop or rename a table
_MOVES = re.compile(r"\b(create|alter|drop|rename)\b", re.IGNORECASE)

#: one row per table and folder its rows were loaded from, the first one first
TABLE_FOLDERS = sa.Table(
    f"{INTERNAL_PREFIX}table_folders", METADATA,
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("folder", sa.Text, primary_key=True),
    sa.Column("recorded_utc", CatalogTime, nullable=False),
)


class TableFolders:
    """The folders each table's rows were loaded from (a table made before they were
    recorded, or by SQL from no recorded table, has none)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._ready = False

    def ensure(self) -> None:
        """Create the catalog table if it is missing: before the write transaction that records
        (SQLite would wait on itself for the lock)."""
        if not self._ready:
            create_once(self.store, TABLE_FOLDERS)
            self._ready = True

    def of(self, conn: sa.Connection, tables: Iterable[str]) -> tuple[str, ...]:
        """The folders of ``tables``, each once: table by table, each table's first first."""
        names = [t.lower() for t in tables]
        if not names or not self.store.has_table(conn, TABLE_FOLDERS.name):
            return ()
        rows = conn.execute(
            sa.select(TABLE_FOLDERS.c.table_name, TABLE_FOLDERS.c.folder)
            .where(TABLE_FOLDERS.c.table_name.in_(names))
            .order_by(TABLE_FOLDERS.c.recorded_utc, TABLE_FOLDERS.c.folder)).all()
        found: dict[str, None] = {}
        for name in names:
            found.update((folder, None) for table, folder in rows if table == name)
        return tuple(found)

    def record(self, conn: sa.Connection, table: str, folders: Iterable[str],
               replace: bool = False) -> None:
        """Add ``folders`` to the table's (all that it has, with ``replace``); ``ensure``
        first."""
        if not self._ready:
            raise RuntimeError("TableFolders.record before ensure")
        table = table.lower()
        if replace:
            self.forget(conn, table)
        have = set(self.of(conn, [table]))
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        for step, folder in enumerate(dict.fromkeys(folders)):
            if folder not in have:
                # a microsecond apart, so their order is the order given
                conn.execute(sa.insert(TABLE_FOLDERS).values(
                    table_name=table, folder=folder,
                    recorded_utc=now + dt.timedelta(microseconds=step)))

    def forget(self, conn: sa.Connection, table: str) -> None:
        if self.store.has_table(conn, TABLE_FOLDERS.name):
            conn.execute(sa.delete(TABLE_FOLDERS).where(
                TABLE_FOLDERS.c.table_name == table.lower()))

    @staticmethod
    def moved_by(sql: str) -> bool:
        """Whether a user's SQL statement may make, drop or rename a table (then ``ensure``
        before it and ``follow`` after it)."""
        return bool(_MOVES.search(sql))

    def follow(self, conn: sa.Connection, changes: Changes) -> None:
        """After a user's SQL statement: a table it renamed keeps its folders, one it made
        from others gains theirs (CREATE TABLE … AS SELECT), one it dropped loses its own."""
        if changes.renamed is not None:
            old, new = changes.renamed
            folders = self.of(conn, [old])
            self.forget(conn, old)
            if folders:
                self.record(conn, new, folders, replace=True)
            return
        sources = self.of(conn, changes.read)
        for table in changes.written:
            if not self.store.has_table(conn, table):
                self.forget(conn, table)
            elif sources:
                self.record(conn, table, sources)
