"""The kernel's own tables (hidden from LIST TABLE by their prefix), created on first use."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ..errors import DatabaseError
from .sql import INTERNAL_PREFIX, SqlStore

METADATA = sa.MetaData()

class _LenientTime(sa.types.TypeDecorator[dt.datetime]):
    """A catalog time in SQLite, which stores it as text and keeps any text a hand-made
    UPDATE wrote there: read as None unless it is ISO 8601 (SQLAlchemy's own reader raised
    ValueError on 'last Tuesday', and the model or column became unusable)."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else value.isoformat(sep=" ")

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None or isinstance(value, dt.datetime):
            return value
        try:
            return dt.datetime.fromisoformat(str(value))
        except ValueError:
            return None


#: a catalog time: a timestamp in PostgreSQL, ISO text read leniently in SQLite
CatalogTime = sa.DateTime().with_variant(_LenientTime(), "sqlite")

#: one row per model: what LIST MODEL shows, its card, and which files make it
MODELS = sa.Table(
    f"{INTERNAL_PREFIX}models", METADATA,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("base_model", sa.String(64), nullable=False),
    sa.Column("trained_on", sa.Text, nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("last_updated_utc", CatalogTime, nullable=False),
    sa.Column("card", sa.Text, nullable=False),
    # sha256 of the manifest below; NULL for a model an earlier version kept only in the
    # workspace folder of the kernel that built it
    sa.Column("digest", sa.String(64), nullable=True),
    # JSON: file name -> {"size": bytes, "sha256": hex}
    sa.Column("files", sa.Text, nullable=True),
)

#: the model files themselves, in chunks, keyed by the content they belong to
MODEL_FILES = sa.Table(
    f"{INTERNAL_PREFIX}model_files", METADATA,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("file", sa.String(128), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

#: one row per embedding column CONVERT made, and the vector collection kept in step with it
EMBEDDINGS = sa.Table(
    f"{INTERNAL_PREFIX}embeddings", METADATA,
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("column_name", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("image_col", sa.String(128), nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("collection", sa.String(256), nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("updated_utc", CatalogTime, nullable=False),
    # the digest of the model that made the column (models.digest), so a rebuilt model's
    # search never reads the vectors of the one before
    sa.Column("model_digest", sa.String(64), nullable=True),
)


def create_once(store: SqlStore, *tables: sa.Table) -> None:
    """Create the tables that do not exist, also when another kernel races to do it."""
    try:
        with store.begin(write=True) as conn:
            METADATA.create_all(conn, tables=list(tables), checkfirst=True)
    except DatabaseError:
        # PostgreSQL lets two sessions both see "missing" and then refuses the second CREATE
        with store.begin() as conn:
            inspector = sa.inspect(conn)
            if not all(inspector.has_table(t.name) for t in tables):
                raise


def add_column(conn: sa.Connection, table: str, column: str,
               kind: sa.types.TypeEngine) -> None:
    """ALTER TABLE … ADD COLUMN, the names quoted the way the database wants them."""
    preparer = conn.dialect.identifier_preparer
    conn.exec_driver_sql(f"ALTER TABLE {preparer.quote(table)} ADD COLUMN "
                         f"{preparer.quote(column)} {kind.compile(dialect=conn.dialect)}")


def _missing_columns(conn: sa.Connection, table: sa.Table) -> list[sa.Column]:
    present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    return [c for c in table.columns if c.name not in present]


def add_missing_columns(store: SqlStore, table: sa.Table) -> bool:
    """Add the columns of ``table`` that a table made by an earlier version lacks; True when
    there were any (also when another kernel added them at the same moment)."""
    with store.begin() as conn:
        if not _missing_columns(conn, table):
            return False
    try:
        with store.begin(write=True) as conn:
            for column in _missing_columns(conn, table):
                add_column(conn, table.name, column.name, column.type)
    except DatabaseError:
        with store.begin() as conn:   # another kernel added them first
            if _missing_columns(conn, table):
                raise
    return True
