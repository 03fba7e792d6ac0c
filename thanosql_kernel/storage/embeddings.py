"""Embedding columns: the catalog of the columns CONVERT made, and the SQL that reads and
writes them (the column itself, its indexes, and vectors by image path).

Vectors cross this boundary as bytes (little-endian float32, see ``vectors/blobs.py``), so
no numerical library is imported here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import sqlalchemy as sa

from ..errors import DataError, excerpt
from ..results import Table
from .schema import EMBEDDINGS, add_column, add_missing_columns, create_once
from .sql import SqlStore, database_errors


@dataclass(frozen=True)
class EmbeddingColumn:
    """An embedding column CONVERT made, and the vector collection kept in step with it.

    ``row_count`` is the table's size when every row had an embedding at the last CONVERT,
    else -1, so SEARCH can tell whether the collection still covers the table.
    """

    table_name: str
    column_name: str
    model: str
    image_col: str
    dim: int
    collection: str
    row_count: int
    #: the digest of the model's content when it made the column (a rebuilt model has
    #: another); None for a column made before the kernel recorded it
    model_digest: str | None = None


class EmbeddingColumns:
    """Which columns hold embeddings, from which model, indexed in which collection."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._ensured = False
        #: the catalog's columns as this database has them (an earlier version's lacks some)
        self._columns: list[sa.Column] | None = None

    # -- the catalog -----------------------------------------------------------------------
    def all(self, conn: sa.Connection) -> list[EmbeddingColumn]:
        """Every embedding column (none before the first CONVERT made the catalog)."""
        with database_errors(self.store.shown_url):
            if self._columns is None:
                inspector = sa.inspect(conn)
                if not inspector.has_table(EMBEDDINGS.name):
                    return []
                present = {c["name"] for c in inspector.get_columns(EMBEDDINGS.name)}
                self._columns = [c for c in EMBEDDINGS.columns if c.name in present]
            rows = conn.execute(sa.select(*self._columns)).mappings().all()
        return [EmbeddingColumn(r["table_name"], r["column_name"], r["model"], r["image_col"],
                                r["dim"], r["collection"], r["row_count"],
                                r.get("model_digest")) for r in rows]

    def get(self, conn: sa.Connection, table: str, column: str) -> EmbeddingColumn | None:
        for entry in self.all(conn):
            if (entry.table_name, entry.column_name) == (table, column):
                return entry
        return None

    def names(self, conn: sa.Connection) -> set[str]:
        """The names of every embedding column, in any table."""
        return {e.column_name for e in self.all(conn)}

    def put(self, conn: sa.Connection, entry: EmbeddingColumn) -> None:
        """Record ``entry``, replacing what was recorded for its column."""
        where = ((EMBEDDINGS.c.table_name == entry.table_name)
                 & (EMBEDDINGS.c.column_name == entry.column_name))
        with database_errors(self.store.shown_url):
            conn.execute(sa.delete(EMBEDDINGS).where(where))
            conn.execute(sa.insert(EMBEDDINGS).values(
                table_name=entry.table_name, column_name=entry.column_name, model=entry.model,
                image_col=entry.image_col, dim=entry.dim, collection=entry.collection,
                row_count=entry.row_count, model_digest=entry.model_digest,
                updated_utc=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)))

    def drop(self, conn: sa.Connection, entry: EmbeddingColumn) -> None:
        """Remove the column from its table (with the index on its missing rows) and from the
        catalog."""
        preparer = conn.dialect.identifier_preparer
        with database_errors(self.store.shown_url):
            if entry.column_name in self.store.columns(conn, entry.table_name):
                conn.exec_driver_sql(
                    "DROP INDEX IF EXISTS "
                    f"{preparer.quote(_missing_index(entry.table_name, entry.column_name))}")
                conn.exec_driver_sql(f"ALTER TABLE {preparer.quote(entry.table_name)} DROP "
                                     f"COLUMN {preparer.quote(entry.column_name)}")
            conn.execute(sa.delete(EMBEDDINGS).where(
                (EMBEDDINGS.c.table_name == entry.table_name)
                & (EMBEDDINGS.c.column_name == entry.column_name)))

    def forget(self, conn: sa.Connection, entry: EmbeddingColumn) -> None:
        """Remove the column's entry from the catalog, leaving the table as it is."""
        with database_errors(self.store.shown_url):
            conn.execute(sa.delete(EMBEDDINGS).where(
                (EMBEDDINGS.c.table_name == entry.table_name)
                & (EMBEDDINGS.c.column_name == entry.column_name)))

    def release_indexes(self, conn: sa.Connection, entries: list[EmbeddingColumn]) -> None:
        """Drop the indexes ``prepare`` made for ``entries``, so a user's ALTER TABLE may drop
        or rename the columns they cover (SQLite refuses to while an index names one)."""
        preparer = conn.dialect.identifier_preparer
        with database_errors(self.store.shown_url):
            for entry in entries:
                for index in (_path_index(entry.table_name, entry.image_col),
                              _missing_index(entry.table_name, entry.column_name)):
                    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {preparer.quote(index)}")

    def ensure(self) -> None:
        """Create the catalog table once, in a transaction of its own."""
        if not self._ensured:
            create_once(self.store, EMBEDDINGS)
            add_missing_columns(self.store, EMBEDDINGS)
            self._columns = list(EMBEDDINGS.columns)
            self._ensured = True

    # -- the column ------------------------------------------------------------------------
    def prepare(self, conn: sa.Connection, table: str, column: str, image_col: str) -> None:
        """Add the binary column ``column`` to ``table`` if it is missing, and the indexes
        CONVERT and SEARCH rely on: rows by image path (CONVERT updates and SEARCH fetches
        by path), and the rows that have no vector (so SEARCH can tell in one index lookup
        whether rows came since CONVERT, instead of counting the table)."""
        with database_errors(self.store.shown_url):
            if column not in self.store.columns(conn, table):
                add_column(conn, table, column, sa.LargeBinary())
            reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
            sa.Index(_path_index(table, image_col), reflected.c[image_col]) \
                .create(conn, checkfirst=True)
            missing = reflected.c[column].is_(None)
            sa.Index(_missing_index(table, column), reflected.c[image_col],
                     sqlite_where=missing, postgresql_where=missing).create(conn, checkfirst=True)

    def write(self, conn: sa.Connection, table: str, column: str, image_col: str,
              vectors: list[tuple[str, bytes]]) -> None:
        """Set ``column`` to each vector in the rows whose image path is the one given."""
        target = sa.table(table, sa.column(column, sa.LargeBinary), sa.column(image_col))
        update = sa.update(target).where(target.c[image_col] == sa.bindparam("p")) \
            .values({column: sa.bindparam("v")})
        with database_errors(self.store.shown_url):
            conn.execute(update, [{"p": p, "v": v} for p, v in vectors])

    def vectors(self, conn: sa.Connection, entry: EmbeddingColumn
                ) -> tuple[list[str], list[bytes], int]:
        """The column's vectors, one per distinct image path, and how many rows had one (a
        row whose image could not be read counts, with no vector: an empty value)."""
        target = sa.table(entry.table_name, sa.column(entry.column_name, sa.LargeBinary),
                          sa.column(entry.image_col))
        with database_errors(self.store.shown_url):
            found = conn.execute(sa.select(target.c[entry.image_col], target.c[entry.column_name])
                                 .where(target.c[entry.column_name].is_not(None))).all()
        for _, blob in found:
            if not isinstance(blob, (bytes, bytearray, memoryview)):
                raise _not_embeddings(entry, blob)
        blob_of = {str(path): bytes(blob) for path, blob in found if len(blob)}
        return list(blob_of), list(blob_of.values()), len(found)

    def ranges(self, conn: sa.Connection, entry: EmbeddingColumn, parts: int
               ) -> list[tuple[str | None, str | None]]:
        """At most ``parts`` ranges [low, high) of image paths (None: unbounded) that share
        the column's rows about evenly between them, every row in one, all the rows of one
        path in the same (the shards of ``cluster.shards``). Fewer when the column has fewer
        distinct paths. Read from the index on the paths, ``parts`` - 1 steps into it."""
        if parts <= 1:
            return [(None, None)]
        target = sa.table(entry.table_name, sa.column(entry.column_name),
                          sa.column(entry.image_col))
        path = target.c[entry.image_col]
        each = -(-max(entry.row_count, 0) // parts)
        cuts: list[str] = []
        with database_errors(self.store.shown_url):
            last = None   # the first path, then each cut: the database's order, not Python's
            for part in range(parts):
                cut = conn.execute(sa.select(path).where(target.c[entry.column_name].is_not(None))
                                   .order_by(path).limit(1).offset(part * each)).scalar()
                if cut is None:
                    break
                if part and str(cut) != last:
                    cuts.append(str(cut))
                last = str(cut)
        bounds: list[str | None] = [None, *cuts, None]
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    def count_between(self, conn: sa.Connection, entry: EmbeddingColumn,
                      between: tuple[str | None, str | None]) -> int:
        """How many rows with a vector have their image path in [low, high)."""
        target = sa.table(entry.table_name, sa.column(entry.column_name),
                          sa.column(entry.image_col))
        with database_errors(self.store.shown_url):
            return int(conn.execute(sa.select(sa.func.count()).select_from(target).where(
                target.c[entry.column_name].is_not(None),
                *_within(target.c[entry.image_col], between))).scalar_one())

    def vector_chunks(self, conn: sa.Connection, entry: EmbeddingColumn, size: int,
                      between: tuple[str | None, str | None] = (None, None)
                      ) -> Iterator[tuple[list[str], list[bytes]]]:
        """The column's image paths and vectors, ``size`` rows at a time, read as they come
        (SQLite steps its cursor, which the driver's own cursor does at twice SQLAlchemy's
        speed; PostgreSQL streams through a server-side cursor), so a column of millions of
        rows is never all in memory as Python objects at once. A row per row, in the table's
        order; rows with no vector or an empty one are left out; with ``between`` (low,
        high), only the rows whose image path is in [low, high)."""
        target = sa.table(entry.table_name, sa.column(entry.column_name),
                          sa.column(entry.image_col))
        query = sa.select(target.c[entry.image_col], target.c[entry.column_name]) \
            .where(target.c[entry.column_name].is_not(None),
                   *_within(target.c[entry.image_col], between))
        with database_errors(self.store.shown_url):
            if conn.dialect.name == "sqlite":
                cursor = conn.connection.driver_connection.cursor()   # type: ignore[union-attr]
                cursor.execute(str(query.compile(conn, compile_kwargs={"literal_binds": True})))
                fetch = cursor.fetchmany
            else:
                fetch = conn.execution_options(stream_results=True, yield_per=size) \
                    .execute(query).fetchmany
            while chunk := fetch(size):
                paths, blobs = [row[0] for row in chunk], [row[1] for row in chunk]
                # the usual case checked at C speed: every value bytes, none empty
                if set(map(type, blobs)) != {bytes} or not min(map(len, blobs)) \
                        or set(map(type, paths)) != {str}:
                    for blob in blobs:
                        if not isinstance(blob, (bytes, bytearray, memoryview)):
                            raise _not_embeddings(entry, blob)
                    kept = [(str(p), bytes(b)) for p, b in chunk if len(b)]
                    paths, blobs = [p for p, _ in kept], [b for _, b in kept]
                yield paths, blobs

    def covers(self, conn: sa.Connection, entry: EmbeddingColumn) -> bool:
        """Whether every row of the table had a vector at the last CONVERT and still has one
        (False too when the table was made again without the column)."""
        if entry.row_count < 0:
            return False
        target = sa.table(entry.table_name, sa.column(entry.image_col),
                          sa.column(entry.column_name))
        # PostgreSQL aborts a transaction at its first error, so the probe gets a savepoint
        # there; SQLite goes on after a failed statement and saves the round trips
        guard = conn.begin_nested() if conn.dialect.name == "postgresql" else nullcontext()
        try:
            with guard:
                unconverted = conn.execute(
                    sa.select(target.c[entry.image_col])
                    .where(target.c[entry.column_name].is_(None)).limit(1)).first()
        except sa.exc.DBAPIError:
            return False
        return unconverted is None

    def rows_at(self, conn: sa.Connection, table: str, image_col: str,
                paths: list[str]) -> Table:
        """Every row of ``table`` whose image path is one of ``paths``, all columns."""
        target = sa.table(table, sa.column(image_col))
        with database_errors(self.store.shown_url):
            result = conn.execute(sa.select(sa.text("*")).select_from(target)
                                  .where(target.c[image_col].in_(paths)))
            return Table(tuple(result.keys()), tuple(tuple(r) for r in result))


def _within(path: sa.ColumnElement, between: tuple[str | None, str | None]
            ) -> list[sa.ColumnElement[bool]]:
    """The clauses that keep an image path in [low, high) (None: unbounded)."""
    low, high = between
    return ([path >= low] if low is not None else []) + \
        ([path < high] if high is not None else [])


def _not_embeddings(entry: EmbeddingColumn, value: object) -> DataError:
    # SQLite keeps whatever a user's UPDATE wrote in the column
    return DataError(f"{entry.table_name}.{entry.column_name} holds values that are not "
                     f"embeddings (such as {excerpt(value)})",
                     hint=f"Run CONVERT USING {entry.model} AS SELECT * FROM {entry.table_name} "
                          "to embed the rows anew.")


def _path_index(table: str, image_col: str) -> str:
    """The name of the index on the image paths of ``table``."""
    return f"thanosql_ix_{table}_{image_col}"[:63]


def _missing_index(table: str, column: str) -> str:
    """The name of the index on the rows of ``table`` that have no vector in ``column``."""
    return f"thanosql_nx_{table}_{column}"[:63]
