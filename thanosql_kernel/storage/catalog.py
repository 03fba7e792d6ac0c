"""The model registry: a catalog table in the SQL database and one folder per model.

A model's folder is written completely under a temporary name before it replaces an older
model of the same name, and the catalog row changes in the same step, so a failed or
interrupted BUILD leaves the old model (files and row) exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import AlreadyExistsError, DatabaseError, NotFoundError, ThanoSQLError
from .sql import INTERNAL_PREFIX, SqlStore

_METADATA = sa.MetaData()
MODELS = sa.Table(
    f"{INTERNAL_PREFIX}models", _METADATA,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("base_model", sa.String(64), nullable=False),
    sa.Column("trained_on", sa.Text, nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("last_updated_utc", sa.DateTime, nullable=False),
    sa.Column("card", sa.Text, nullable=False),
)
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")


def _create_once(store: SqlStore, table: sa.Table) -> None:
    """Create a catalog table unless it exists, also when another kernel races to do it."""
    try:
        with store.begin(write=True) as conn:
            _METADATA.create_all(conn, tables=[table], checkfirst=True)
    except DatabaseError:
        # PostgreSQL lets two sessions both see "missing" and then refuses the second CREATE
        with store.begin() as conn:
            if not sa.inspect(conn).has_table(table.name):
                raise


@dataclass(frozen=True)
class ModelEntry:
    """One catalog row: where the model's files are and what its card says."""

    name: str
    base_model: str
    trained_on: str
    row_count: int
    status: str
    last_updated_utc: dt.datetime
    card: dict[str, Any]
    folder: Path


class ModelCatalog:
    """Models of one workspace: the catalog table plus ``<workspace>/models/<name>/``."""

    def __init__(self, store: SqlStore, workspace: Path) -> None:
        self.store = store
        self.root = workspace / "models"
        self._ensured = False

    def folder(self, name: str) -> Path:
        """The folder of a model; a name can never reach outside the workspace."""
        if not _NAME.match(name):
            raise ThanoSQLError(f"{name!r} is not a valid model name",
                                hint="Use letters, digits and _, starting with a letter.")
        path = (self.root / name).resolve()
        if path.parent != self.root.resolve():
            raise ThanoSQLError(f"{name!r} is not a valid model name")
        return path

    def _ensure(self) -> None:
        """Create the catalog table once, in a transaction that writes."""
        if not self._ensured:
            _create_once(self.store, MODELS)
            self._ensured = True

    def entries(self) -> list[ModelEntry]:
        self._ensure()
        with self.store.begin() as conn:
            rows = conn.execute(sa.select(MODELS).order_by(MODELS.c.name)).mappings().all()
        return [self._entry(r) for r in rows]

    def get(self, name: str) -> ModelEntry:
        self._ensure()
        with self.store.begin() as conn:
            row = conn.execute(sa.select(MODELS).where(MODELS.c.name == name)).mappings() \
                .first()
        if row is None:
            known = [e.name for e in self.entries()]
            raise NotFoundError(f"There is no model {name!r}",
                                hint=f"Models: {', '.join(known)}." if known else
                                "No model has been built yet: use BUILD MODEL … USING SimCLR.")
        return self._entry(row)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except NotFoundError:
            return False
        return True

    def _entry(self, row: Any) -> ModelEntry:
        return ModelEntry(row["name"], row["base_model"], row["trained_on"], row["row_count"],
                          row["status"], row["last_updated_utc"], json.loads(row["card"]),
                          self.folder(row["name"]))

    def register(self, name: str, *, base_model: str, trained_on: str, row_count: int,
                 card: dict[str, Any], write: Callable[[Path], None], overwrite: bool) -> None:
        """Write a model with ``write(folder)`` and make it ``name``, all or nothing."""
        final = self.folder(name)
        self.root.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        staging = self.root / f".new-{name}-{token}"
        retired = self.root / f".old-{name}-{token}"
        staging.mkdir()
        try:
            write(staging)
            (staging / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
            self._ensure()
            with self.store.begin(write=True) as conn:
                exists = conn.execute(sa.select(MODELS.c.name).where(MODELS.c.name == name)) \
                    .first() is not None
                if exists and not overwrite:
                    raise AlreadyExistsError(
                        f"A model named {name!r} already exists",
                        hint="Add OPTIONS (overwrite=True) to replace it, or choose another "
                             "name.")
                conn.execute(sa.delete(MODELS).where(MODELS.c.name == name))
                conn.execute(sa.insert(MODELS).values(
                    name=name, base_model=base_model, trained_on=trained_on,
                    row_count=row_count, status="ready",
                    last_updated_utc=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                    card=json.dumps(card, default=str)))
                # the files move inside the transaction: if the commit fails they move back
                if final.exists():
                    final.rename(retired)
                try:
                    staging.rename(final)
                except BaseException:
                    if retired.exists():
                        retired.rename(final)
                    raise
        except BaseException:
            if retired.exists():  # the commit failed after the files moved: put them back
                if final.exists():
                    shutil.rmtree(final)
                retired.rename(final)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(retired, ignore_errors=True)

    def delete(self, name: str, *, missing_ok: bool = False) -> bool:
        """Remove a model's row and files; False when it did not exist and that is fine."""
        if not missing_ok:
            self.get(name)
        folder = self.folder(name)
        retired = self.root / f".old-{name}-{uuid.uuid4().hex[:8]}"
        self._ensure()
        with self.store.begin(write=True) as conn:
            deleted = conn.execute(sa.delete(MODELS).where(MODELS.c.name == name)).rowcount
            if folder.exists():
                folder.rename(retired)
        shutil.rmtree(retired, ignore_errors=True)
        return bool(deleted)


EMBEDDINGS = sa.Table(
    f"{INTERNAL_PREFIX}embeddings", _METADATA,
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("column_name", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("image_col", sa.String(128), nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("collection", sa.String(256), nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("updated_utc", sa.DateTime, nullable=False),
)


@dataclass(frozen=True)
class EmbeddingColumn:
    """An embedding column CONVERT made, and the vector collection kept in step with it."""

    table_name: str
    column_name: str
    model: str
    image_col: str
    dim: int
    collection: str
    row_count: int


class EmbeddingCatalog:
    """Which columns hold embeddings, from which model, indexed in which collection."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._ensured = False

    def ensure(self) -> None:
        """Create the catalog table once, in a transaction that writes."""
        if not self._ensured:
            _create_once(self.store, EMBEDDINGS)
            self._ensured = True

    def all(self, conn: sa.Connection) -> list[EmbeddingColumn]:
        """Every embedding column (none before the first CONVERT made the catalog)."""
        if not self._ensured and not sa.inspect(conn).has_table(EMBEDDINGS.name):
            return []
        rows = conn.execute(sa.select(EMBEDDINGS)).mappings().all()
        return [EmbeddingColumn(r["table_name"], r["column_name"], r["model"], r["image_col"],
                                r["dim"], r["collection"], r["row_count"]) for r in rows]

    def get(self, conn: sa.Connection, table: str, column: str) -> EmbeddingColumn | None:
        for entry in self.all(conn):
            if (entry.table_name, entry.column_name) == (table, column):
                return entry
        return None

    def put(self, conn: sa.Connection, entry: EmbeddingColumn) -> None:
        conn.execute(sa.delete(EMBEDDINGS).where(
            (EMBEDDINGS.c.table_name == entry.table_name)
            & (EMBEDDINGS.c.column_name == entry.column_name)))
        conn.execute(sa.insert(EMBEDDINGS).values(
            table_name=entry.table_name, column_name=entry.column_name, model=entry.model,
            image_col=entry.image_col, dim=entry.dim, collection=entry.collection,
            row_count=entry.row_count,
            updated_utc=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)))
