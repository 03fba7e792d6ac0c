"""The model registry: each model's catalog row and its files, both in the SQL database.

A model's files (weights, model description, card) are stored in ``thanosql_model_files`` in
chunks, keyed by the digest of their content, beside the model's catalog row. So every
kernel that shares the database lists and uses every model, whatever its folder or machine.
The workspace folder only caches files by digest (``cache/models/<digest>/``): a kernel
fetches a model's files once, checks them against the digest, and notices a model rebuilt by
another kernel because the row's digest changed.

BUILD's overwrite and DROP MODEL change the row and the files in one transaction, so a failed
or interrupted statement leaves the old model exactly as it was. Files move in chunks of
``CHUNK_BYTES``: a model of hundreds of MB is never held in memory, neither on the way in nor
on the way out. Workspaces of earlier versions kept a model only in ``models/<name>/``; the
registry moves such models into the database the first time it is used.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import (
    AlreadyExistsError,
    DataError,
    DiskFullError,
    NotFoundError,
    ThanoSQLError,
    did_you_mean,
    excerpt,
)
from ..paths import disk_full, free_space
from .schema import MODEL_FILES, MODELS, add_missing_columns, create_once
from .sql import SqlStore, database_errors

#: the size of one stored piece of a model file (a row of thanosql_model_files)
CHUNK_BYTES = 8 * 2**20
#: a half-written model folder this old is nobody's any more (a killed BUILD's)
STALE_AFTER_S = 3600.0
#: the card, written beside the files a model's trainer writes
CARD_FILE = "card.json"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_LEGACY_FILES = ("weights.pt", "model.json")


@dataclass(frozen=True)
class ModelEntry:
    """One catalog row: what LIST MODEL shows, the card, and which files make the model."""

    name: str
    base_model: str
    trained_on: str
    row_count: int
    status: str
    #: None where the catalog holds a time that cannot be read (SQLite keeps any text)
    last_updated_utc: dt.datetime | None
    card: dict[str, Any]
    #: sha256 of ``files``; None for a model whose files never reached the database
    digest: str | None
    #: file name -> {"size": bytes, "sha256": hex}
    files: dict[str, dict[str, Any]]


def check_name(name: str) -> str:
    """``name`` if it may name a model (it never reaches outside a folder), else an error."""
    if not _NAME.match(name):
        raise ThanoSQLError(f"{excerpt(name)} is not a valid model name",
                            hint="Use letters, digits and _, starting with a letter.")
    return name


def _hash_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file of a model folder with its size and sha256, by name."""
    return {p.name: {"size": p.stat().st_size, "sha256": _hash_file(p)}
            for p in sorted(folder.iterdir()) if p.is_file()}


def content_digest(files: dict[str, dict[str, Any]]) -> str:
    """The digest of a model's content: of its manifest, so of every file's bytes and name."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


class ModelRegistry:
    """Every model of the database, with a local cache of their files in the workspace."""

    def __init__(self, store: SqlStore, workspace: Path,
                 notify: Callable[[str], None] = lambda _: None) -> None:
        self.store = store
        #: says in one line what the registry put right by itself
        self.notify = notify
        self.cache = workspace / "cache" / "models"
        #: where versions before the database kept each model's files
        self.legacy = workspace / "models"
        self._ensured = False
        #: digests whose cached files this process has hashed and found whole
        self._verified: set[str] = set()

    # -- reading ---------------------------------------------------------------------------
    def entries(self) -> list[ModelEntry]:
        self._ensure()
        with self.store.begin() as conn:
            rows = conn.execute(sa.select(MODELS).order_by(MODELS.c.name)).mappings().all()
        return [_entry(r) for r in rows]

    def get(self, name: str) -> ModelEntry:
        self._ensure()
        with self.store.begin() as conn:
            row = conn.execute(sa.select(MODELS).where(MODELS.c.name == name)).mappings() \
                .first()
        if row is None:
            raise self._not_found(name)
        return _entry(row)

    def _not_found(self, name: str) -> NotFoundError:
        """The error for a model there is not, with the closest name and the models there are."""
        known = [e.name for e in self.entries()]
        return NotFoundError(f"There is no model {excerpt(name)}",
                             hint=f"{did_you_mean(name, known)}Models: {', '.join(known)}."
                             if known else
                             "No model has been built yet: use BUILD MODEL … USING SimCLR.")

    def exists(self, name: str) -> bool:
        self._ensure()
        with self.store.begin() as conn:
            return conn.execute(sa.select(MODELS.c.name).where(MODELS.c.name == name)) \
                .first() is not None

    def _ready_cache(self) -> None:
        """Make the cache folder; something else in its place is set aside (it is a cache:
        whatever it held can be fetched again)."""
        for folder in (self.cache.parent, self.cache):
            if folder.exists() and not folder.is_dir():
                aside = folder.with_name(f"{folder.name}.damaged-{uuid.uuid4().hex[:8]}")
                folder.rename(aside)
                self.notify(f"{folder} was not a folder: it was set aside as {aside.name}, "
                            "and model files are fetched into a new cache.")
        self.cache.mkdir(parents=True, exist_ok=True)

    def files(self, entry: ModelEntry) -> Path:
        """A local folder holding the model's files, checked against its digest: the cached
        copy, or one fetched from the database now."""
        if entry.digest is None:
            raise NotFoundError(
                f"The files of the model {entry.name!r} are not in the database: an earlier "
                "version kept them in the workspace folder of the kernel that built it",
                hint="Run LIST MODEL once in that kernel (it moves them into the database), "
                     "or build the model again with OPTIONS (overwrite=True).")
        if not _DIGEST.fullmatch(entry.digest) or not _well_formed(entry.files):
            raise DataError(f"The catalog row of the model {entry.name!r} is damaged: it does "
                            "not say which files make the model",
                            hint=f"Build it again with OPTIONS (overwrite=True), or DROP MODEL "
                                 f"{entry.name}.")
        folder = self.cache / entry.digest
        if self._whole(folder, entry):
            return folder
        self._ready_cache()
        fetching = self.cache / f".fetch-{entry.digest}-{uuid.uuid4().hex[:8]}"
        fetching.mkdir()
        try:
            self._fetch(entry, fetching)
            shutil.rmtree(folder, ignore_errors=True)   # a damaged copy
            try:
                fetching.rename(folder)
            except OSError:  # another kernel on this workspace fetched it at the same moment
                if not self._whole(folder, entry):
                    raise
        finally:
            shutil.rmtree(fetching, ignore_errors=True)
        self._verified.add(entry.digest)
        self._prune()
        return folder

    # -- writing ---------------------------------------------------------------------------
    def register(self, name: str, *, base_model: str, trained_on: str, row_count: int,
                 card: dict[str, Any], write: Callable[[Path], None],
                 overwrite: bool) -> ModelEntry:
        """Write a model's files with ``write(folder)`` and make it ``name``, all or nothing."""
        check_name(name)
        self._ensure()
        self._ready_cache()
        staging = self.cache / f".new-{name}-{uuid.uuid4().hex[:8]}"
        try:
            with _disk_full_said(self.cache):
                staging.mkdir()
                write(staging)
                (staging / CARD_FILE).write_text(json.dumps(card, indent=2, default=str) + "\n")
            files = manifest(staging)
            digest = content_digest(files)
            with self.store.begin(write=True) as conn:
                old = conn.execute(sa.select(MODELS.c.digest).where(MODELS.c.name == name)) \
                    .first()
                if old is not None and not overwrite:
                    raise AlreadyExistsError(
                        f"A model named {name!r} already exists",
                        hint="Add OPTIONS (overwrite=True) to replace it, or choose another "
                             "name.")
                self._store_files(conn, staging, files, digest)
                conn.execute(sa.delete(MODELS).where(MODELS.c.name == name))
                conn.execute(sa.insert(MODELS).values(
                    name=name, base_model=base_model, trained_on=trained_on,
                    row_count=row_count, status="ready", last_updated_utc=_now(),
                    card=json.dumps(card, default=str), digest=digest,
                    files=json.dumps(files)))
                if old is not None and old.digest not in (None, digest):
                    _drop_unused_files(conn, old.digest)
            # committed: the staged folder becomes this content's cached copy
            with _disk_full_said(self.cache):
                _move(staging, self.cache / digest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if old is not None and old.digest != digest:
            self._uncache(old.digest)
        shutil.rmtree(self.legacy / name, ignore_errors=True)
        return self.get(name)

    def delete(self, name: str, *, missing_ok: bool = False,
               with_it: Callable[[sa.Connection], None] | None = None) -> bool:
        """Remove a model's row and files; False when it did not exist and that is fine.

        ``with_it(transaction)`` runs in the same transaction, for what goes with the model.
        """
        self._ensure()
        with self.store.begin(write=True) as conn:
            old = conn.execute(sa.select(MODELS.c.digest).where(MODELS.c.name == name)).first()
            if old is not None:
                conn.execute(sa.delete(MODELS).where(MODELS.c.name == name))
                if old.digest is not None:
                    _drop_unused_files(conn, old.digest)
                if with_it is not None:
                    with_it(conn)
        if old is None:
            if missing_ok:
                return False
            raise self._not_found(name)
        self._uncache(old.digest)
        shutil.rmtree(self.legacy / name, ignore_errors=True)
        return True

    def _uncache(self, digest: str | None) -> None:
        """Remove the cached copy of ``digest`` (a damaged row's digest names no folder)."""
        if digest is not None and _DIGEST.fullmatch(digest):
            shutil.rmtree(self.cache / digest, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------
    def _ensure(self) -> None:
        """Create the tables once; move the models of an earlier version's workspace in."""
        if self._ensured:
            return
        create_once(self.store, MODELS, MODEL_FILES)
        add_missing_columns(self.store, MODELS)
        self._sweep()
        self._move_legacy_models()
        self._ensured = True

    def _sweep(self) -> None:
        """Remove the folders a stopped or killed BUILD or fetch left half-written, once they
        are old enough that no kernel can still be writing them; an earlier version's model
        that a kill left renamed aside is put back."""
        removed = 0
        now = time.time()
        for folder in (self.cache, self.legacy):
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                kind, _, rest = entry.name[1:].partition("-")
                if not entry.name.startswith(".") or kind not in ("new", "fetch", "old"):
                    continue
                name = rest.rsplit("-", 1)[0]
                if kind == "old" and folder == self.legacy and _NAME.match(name) \
                        and not (folder / name).exists():
                    entry.rename(folder / name)   # killed between the two renames of a BUILD
                    continue
                try:
                    if now - entry.stat().st_mtime < STALE_AFTER_S:
                        continue
                except OSError:
                    continue
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        if removed:
            self.notify(f"Removed {removed} unfinished model folder{'s' * (removed > 1)} that "
                        "a stopped or killed BUILD MODEL left in the workspace.")

    def _move_legacy_models(self) -> None:
        with self.store.begin() as conn:
            names = conn.execute(sa.select(MODELS.c.name).where(MODELS.c.digest.is_(None))) \
                .scalars().all()
        for name in names:
            folder = self.legacy / name
            if not _NAME.match(name) or not all((folder / f).is_file() for f in _LEGACY_FILES):
                continue   # built in another workspace: its kernel moves it
            files = {f: v for f, v in manifest(folder).items()
                     if f in _LEGACY_FILES or f == CARD_FILE}
            digest = content_digest(files)
            with self.store.begin(write=True) as conn:
                self._store_files(conn, folder, files, digest)
                conn.execute(sa.update(MODELS).where(
                    (MODELS.c.name == name) & MODELS.c.digest.is_(None)).values(
                    digest=digest, files=json.dumps(files)))
            self._ready_cache()
            _move(folder, self.cache / digest)
            shutil.rmtree(folder, ignore_errors=True)

    def _store_files(self, conn: sa.Connection, folder: Path,
                     files: dict[str, dict[str, Any]], digest: str) -> None:
        """Insert the files' chunks, unless the same content is stored already."""
        with database_errors(self.store.shown_url):
            stored = conn.execute(sa.select(MODEL_FILES.c.digest)
                                  .where(MODEL_FILES.c.digest == digest).limit(1)).first()
            if stored is not None:
                return
            for file in files:
                with (folder / file).open("rb") as f:
                    seq = 0
                    while chunk := f.read(CHUNK_BYTES):
                        conn.execute(sa.insert(MODEL_FILES).values(
                            digest=digest, file=file, seq=seq, data=chunk))
                        seq += 1

    def _fetch(self, entry: ModelEntry, folder: Path) -> None:
        """Write the entry's files into ``folder`` chunk by chunk, checking every byte."""
        assert entry.digest is not None
        where = MODEL_FILES.c.digest == entry.digest
        with self.store.begin() as conn, database_errors(self.store.shown_url):
            pieces = conn.execute(sa.select(MODEL_FILES.c.file, MODEL_FILES.c.seq).where(where)
                                  .order_by(MODEL_FILES.c.file, MODEL_FILES.c.seq)).all()
            if not pieces:
                raise NotFoundError(f"The model {entry.name!r} was rebuilt or dropped by "
                                    "another kernel while this statement ran",
                                    hint="Run the statement again.")
            for file, info in entry.files.items():
                digest = hashlib.sha256()
                with (folder / file).open("wb") as out:
                    for _, seq in (p for p in pieces if p.file == file):
                        data = conn.execute(sa.select(MODEL_FILES.c.data).where(
                            where & (MODEL_FILES.c.file == file) & (MODEL_FILES.c.seq == seq))
                        ).scalar_one()
                        if not isinstance(data, (bytes, memoryview)):   # not a BLOB: damaged
                            data = str(data).encode()
                        out.write(data)
                        digest.update(data)
                if digest.hexdigest() != info["sha256"]:
                    raise DataError(
                        f"The stored files of the model {entry.name!r} are damaged: {file} "
                        "does not match its checksum",
                        hint="Build the model again with OPTIONS (overwrite=True).")

    def _prune(self) -> None:
        """Remove cached copies of content no model has any more (rebuilt or dropped by
        another kernel), so the cache holds about one copy per model."""
        with self.store.begin() as conn:
            live = set(conn.execute(sa.select(MODELS.c.digest)).scalars())
        for folder in self.cache.iterdir():
            if _DIGEST.fullmatch(folder.name) and folder.name not in live:
                shutil.rmtree(folder, ignore_errors=True)

    def _whole(self, folder: Path, entry: ModelEntry) -> bool:
        """Whether the cached folder holds exactly the entry's files (hashed once a process,
        their sizes checked every time)."""
        try:
            sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
        except OSError:
            return False
        if sizes != {f: info["size"] for f, info in entry.files.items()}:
            return False
        if entry.digest not in self._verified:
            if any(_hash_file(folder / f) != info["sha256"] for f, info in entry.files.items()):
                return False
            self._verified.add(str(entry.digest))
        return True


def _move(folder: Path, target: Path) -> None:
    """Make ``folder`` the cached copy ``target``, unless a copy is there already (a cached
    copy is checked before use, so a damaged one is fetched again)."""
    try:
        folder.rename(target)
    except OSError:
        pass


def _well_formed(files: dict[str, Any]) -> bool:
    """Whether a manifest names plain files (nothing that reaches outside a folder) with a
    size and a checksum each, as ``manifest`` writes it."""
    return bool(files) and all(
        _FILE.fullmatch(name) and isinstance(info, dict)
        and isinstance(info.get("size"), int) and isinstance(info.get("sha256"), str)
        for name, info in files.items())


def _drop_unused_files(conn: sa.Connection, digest: str) -> None:
    """Delete the chunks of ``digest`` unless another model row still holds that content."""
    used = sa.select(MODELS.c.name).where(MODELS.c.digest == digest).exists()
    conn.execute(sa.delete(MODEL_FILES).where((MODEL_FILES.c.digest == digest) & ~used))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _entry(row: Any) -> ModelEntry:
    """The entry of a catalog row; a row whose JSON cannot be read is listed as damaged
    (one bad row must not break LIST MODEL or any other model)."""
    status = row["status"]
    try:
        card = json.loads(row["card"])
        files = json.loads(row["files"]) if row["files"] else {}
        if not isinstance(card, dict) or not isinstance(files, dict):
            raise ValueError("not a JSON object")
    except (ValueError, TypeError):
        card, files, status = {}, {}, "damaged: its catalog row cannot be read"
    return ModelEntry(row["name"], row["base_model"], row["trained_on"], row["row_count"],
                      status, row["last_updated_utc"], card, row["digest"], files)


__all__ = ["CARD_FILE", "CHUNK_BYTES", "ModelEntry", "ModelRegistry", "check_name",
           "content_digest", "manifest"]


#: below this much free space, a failed write of model files is taken for a full disk (torch's
#: writer reports one as "unexpected pos 64 vs 0", without the words)
_NEARLY_FULL = 1 << 20


@contextmanager
def _disk_full_said(folder: Path) -> Iterator[None]:
    """A write of model files that fails for want of space is a DiskFullError naming
    ``folder``, whatever layer (Python, torch's zip writer) noticed it."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        free = free_space(folder)
        if disk_full(e) or (free is not None and free < _NEARLY_FULL):
            raise DiskFullError(str(folder), free=free) from None
        raise
