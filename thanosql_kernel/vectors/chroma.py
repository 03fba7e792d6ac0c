"""The vector index on Chroma: an embedded PersistentClient by default, a Chroma server by URL.

Atomic replace. Chroma cannot swap two collections in one step, but it can rename one
(`Collection.modify(name=...)`). `replace` therefore fills a new collection under a temporary
name (`<name>-tmp-<stamp>`) and only then swaps: the live one is renamed aside
(`<name>-old-<stamp>`), the new one takes `<name>`, the old one is deleted. An error or
KeyboardInterrupt while filling deletes the temporary collection and leaves `<name>` as it
was; SIGINT is held back during the three quick swap steps. A process killed at any point
leaves only names that the next writer's sweep understands: a `-tmp-` is deleted, an `-old-`
whose `<name>` is missing is renamed back (the swap never finished), any other `-old-` is
deleted. `names()` never lists them.

Several processes. Chroma's embedded client is not made for several processes on one folder:
each keeps its own HNSW segments in memory and its own SQLite connection. Every writer
(`replace`, `drop`, the sweep) therefore holds an exclusive `fcntl.flock` on
`<folder>/thanosql-index.lock`, so two kernels take turns and a sweep never deletes a
collection that another kernel is still filling. The swap itself also holds
`thanosql-index.swap.lock`. Readers take no lock on the way that succeeds: each query looks
the collection up by name, so it reads either the old or the new one. Only when the name is
missing (or vanishes between lookup and query) does a reader wait on the swap lock and look
again, since another process may be between the two renames. Measured with two processes
replacing 20k vectors in a loop and a third querying for 40 s: no "database is locked", no
mixed or missing answer (without the swap lock the reader saw "missing" 7 times in 4,000).
With a Chroma server (`ChromaIndex.http`) kernels may live on different machines, so there is
no file lock: a reader that finds the name missing waits briefly and looks again, and the
sweep leaves alone leftovers younger than `stale_after` seconds, which may belong to a
replace still running.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

import numpy as np

from ..errors import (
    DamagedIndex,
    DataError,
    DiskFullError,
    NotFoundError,
    OptionError,
    ServerError,
)
from ..imports import import_whole
from ..paths import disk_full, free_space
from .locking import FileLock, NoLock

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.collection_configuration import CreateCollectionConfiguration
    from chromadb.api.models.Collection import Collection

#: Measured on 100k random 128-d vectors (the hardest case: no structure for the graph to use),
#: recall@10 against exact search: M=16/ef_construction=100 reaches only 0.96 at ef_search=1600;
#: M=32/ef_construction=100 gives 0.964 at ef_search=800 and 0.99 at 1200 (6 ms a query).
#: ef_construction=200 gained little recall for a slower build, so the build stays at 100.
HNSW: Mapping[str, Any] = {"space": "cosine", "max_neighbors": 32, "ef_construction": 100,
                           "ef_search": 1200}

LOCK_FILE = "thanosql-index.lock"
SWAP_LOCK_FILE = "thanosql-index.swap.lock"
VERSION_KEY = "thanosql_version"

# Chroma's own rule (3-512 characters, alphanumeric at both ends, no "..", not an IPv4
# address), less the room our temporary suffix needs.
_SUFFIX_LENGTH = len("-tmp-") + 8 + 6
_NAME = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?")
_IPV4 = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")
#: how long a server client waits before it believes a collection is really missing
_SERVER_SWAP_WAIT = 0.2
_LEFTOVER = re.compile(r"(?P<name>.+)-(?P<kind>tmp|old)-(?P<stamp>[0-9a-f]{8})[0-9a-f]{6}")
_Call = TypeVar("_Call", bound=Callable[..., Any])


def _unreachable(url: str, detail: object) -> ServerError:
    return ServerError(f"The Chroma server at {url} does not answer: {detail}",
                       hint="Start it (chroma run --path … --port …) or fix "
                            "THANOSQL_CHROMA_URL, then run the statement again: the kernel "
                            "reconnects by itself. Plain SQL works meanwhile.")


def _reaching_server(method: _Call) -> _Call:
    """Report a Chroma server that went away as a ServerError naming its URL, and an embedded
    index whose files cannot be read as a DamagedIndex."""

    @functools.wraps(method)
    def call(self: ChromaIndex, *args: Any, **kwargs: Any) -> Any:
        if self._url is None:
            try:
                return method(self, *args, **kwargs)
            except (self._chroma_internal, sqlite3.DatabaseError, OSError, RuntimeError) as e:
                if disk_full(e):   # a healthy index on a full disk: not damaged
                    raise DiskFullError(str(self._path), free=free_space(self._path)) from None
                if isinstance(e, RuntimeError) and not isinstance(e, self._chroma_internal):
                    raise
                # an OSError here is the index's own files (a folder where its lock file
                # should be …): damaged, set aside and rebuilt like unreadable files
                raise DamagedIndex(self._path, e) from None
        import httpx

        try:
            return method(self, *args, **kwargs)
        except httpx.TransportError as e:
            raise _unreachable(self._url, e) from None

    return cast(_Call, call)


class ChromaIndex:
    """A `VectorIndex` on Chroma. Vectors are always passed in: Chroma never embeds anything."""

    def __init__(self, path: Path, *, hnsw: Mapping[str, Any] = HNSW) -> None:
        """The embedded index in folder `path` (created if missing)."""
        # lazily (a cell of plain SQL must not pay for importing Chroma), and whole
        chromadb = import_whole("chromadb")
        from chromadb.config import Settings

        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:   # something else stands where the index's folder should be
            if disk_full(e):
                raise DiskFullError(str(path), free=free_space(path)) from None
            raise DamagedIndex(path, e) from None
        lock = FileLock(path / LOCK_FILE)
        self._path = path
        try:
            with lock:  # the first open creates and migrates Chroma's SQLite file
                client = chromadb.PersistentClient(
                    path=str(path),
                    settings=Settings(anonymized_telemetry=False, allow_reset=False))
            self._setup(client, lock, FileLock(path / SWAP_LOCK_FILE), hnsw, stale_after=0.0,
                        url=None)
        except (chromadb.errors.ChromaError, sqlite3.DatabaseError, OSError) as e:
            forget_client(path)
            if disk_full(e):
                raise DiskFullError(str(path), free=free_space(path)) from None
            raise DamagedIndex(path, e) from None

    @classmethod
    def http(cls, url: str, *, hnsw: Mapping[str, Any] = HNSW,
             stale_after: float = 3600.0) -> ChromaIndex:
        """The index on the Chroma server at `url` (`http://host:port` or `https://…`)."""
        chromadb = import_whole("chromadb")
        from chromadb.config import Settings

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OptionError(f"expected a Chroma server URL like http://localhost:8000, "
                              f"got {url!r}")
        ssl = parts.scheme == "https"
        shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        import httpx

        try:
            client = chromadb.HttpClient(host=parts.hostname,
                                         port=parts.port or (443 if ssl else 80), ssl=ssl,
                                         settings=Settings(anonymized_telemetry=False))
        except (ValueError, httpx.TransportError) as e:  # chromadb: "Could not connect …"
            raise _unreachable(shown, e) from None
        index = cls.__new__(cls)
        index._setup(client, NoLock(), NoLock(), hnsw, stale_after=stale_after, url=shown)
        return index

    def _setup(self, client: ClientAPI, lock: FileLock | NoLock, swap_lock: FileLock | NoLock,
               hnsw: Mapping[str, Any], *, stale_after: float, url: str | None) -> None:
        from chromadb import errors

        #: the server's address as errors show it; None for the embedded index
        self._url = url
        if hnsw.get("space", "cosine") != "cosine":
            raise OptionError("the vector index measures cosine similarity: space must be "
                              "'cosine'")
        self._client = client
        self._lock = lock
        self._swap_lock = swap_lock
        self._hnsw = {**hnsw, "space": "cosine"}
        self._stale_after = stale_after
        self._chroma_not_found = errors.NotFoundError
        self._chroma_invalid = errors.InvalidArgumentError
        self._chroma_internal = errors.InternalError
        self._first_sweep()

    @_reaching_server
    def _first_sweep(self) -> None:
        with self._lock:
            self._sweep()

    # -- the VectorIndex interface ------------------------------------------------------------

    @_reaching_server
    def replace(self, name: str, ids: Sequence[str], vectors: np.ndarray, *,
                batch: int = 5000, version: str | None = None) -> None:
        """Make `name` hold exactly `ids` and `vectors` (N, D), all or nothing.

        `version` is kept with the collection (see `version`) so a caller can tell whether the
        index was built from the column as it is now.
        """
        _check_name(name)
        ids = [str(i) for i in ids]
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise DataError(f"expected one vector per id: {len(ids)} ids, vectors of shape "
                            f"{vectors.shape}")
        if len(set(ids)) != len(ids):
            # Chroma silently ignores an id added twice, which would lose a vector
            raise DataError("the ids of a vector index must be unique")
        if not np.isfinite(vectors).all():
            raise DataError("an embedding holds NaN or infinity")
        if batch < 1:
            raise OptionError(f"batch must be at least 1, got {batch}")
        batch = min(batch, self._client.get_max_batch_size())
        metadata = {VERSION_KEY: version} if version is not None else None

        with self._lock:
            self._sweep()
            temp_name = _leftover_name(name, "tmp")
            temp = self._client.create_collection(
                temp_name, configuration=cast("CreateCollectionConfiguration",
                                              {"hnsw": dict(self._hnsw)}),
                metadata=metadata, embedding_function=None)
            try:
                for start in range(0, len(ids), batch):
                    temp.add(ids=ids[start:start + batch], embeddings=vectors[start:start + batch])
            except BaseException:
                self._delete_quietly(temp_name)
                raise
            with _interrupts_held(), self._swap_lock:
                self._swap(name, temp)

    @_reaching_server
    def query(self, name: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k ids nearest `vector` (D,) with cosine similarity, best first (fewer if N < k)."""
        _check_name(name)
        vector = np.asarray(vector, dtype=np.float32)
        if vector.ndim != 1:
            raise DataError(f"a query must be one vector, got an array of shape {vector.shape}")
        if k < 0:
            raise OptionError(f"k must be at least 0, got {k}")
        if k == 0:
            return []
        for attempt in (1, 2):
            collection = self._collection(name)
            try:
                result = collection.query(query_embeddings=vector[None, :], n_results=k,
                                          include=["distances"])
                break
            except self._chroma_not_found:
                if attempt == 2:  # replaced by another process between lookup and query
                    raise
            except self._chroma_invalid as error:
                raise DataError(f"cannot search {name!r}: {error}") from None
        distances = result["distances"]
        assert distances is not None
        # Chroma's cosine distance is 1 - cosine similarity
        return [(id_, min(1.0, max(-1.0, 1.0 - float(d))))
                for id_, d in zip(result["ids"][0], distances[0], strict=True)]

    @_reaching_server
    def count(self, name: str) -> int:
        """How many vectors `name` holds."""
        _check_name(name)
        return self._collection(name).count()

    @_reaching_server
    def exists(self, name: str) -> bool:
        """Whether `name` exists (a name Chroma would refuse never does)."""
        try:
            _check_name(name)
            self._collection(name)
        except (OptionError, NotFoundError):
            return False
        return True

    @_reaching_server
    def drop(self, name: str) -> None:
        """Remove `name`; an index that does not exist is already dropped."""
        _check_name(name)
        with self._lock:
            self._delete_quietly(name, missing_only=True)

    @_reaching_server
    def names(self) -> list[str]:
        """The queryable collections, sorted; temporary ones of a replace are left out."""
        return sorted(n for n in self._all_names() if not _LEFTOVER.fullmatch(n))

    @_reaching_server
    def version(self, name: str) -> str | None:
        """The `version` that the last `replace` of `name` stored, if any."""
        _check_name(name)
        value = (self._collection(name).metadata or {}).get(VERSION_KEY)
        return None if value is None else str(value)

    def close(self) -> None:
        """Release Chroma's client (its SQLite connection when it is the last one open)."""
        # ClientAPI does not declare close(); the Client every chromadb factory returns has it
        self._client.close()  # type: ignore[attr-defined]  # declared on Client, not ClientAPI

    def __enter__(self) -> ChromaIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------------

    def _collection(self, name: str) -> Collection:
        try:
            return self._client.get_collection(name, embedding_function=None)
        except self._chroma_not_found:
            pass
        # Missing, or another process is between the two renames of a swap: once that swap
        # is over the name answers again. A server offers no lock to wait on, only time.
        if isinstance(self._swap_lock, NoLock):
            time.sleep(_SERVER_SWAP_WAIT)
        with self._swap_lock:
            try:
                return self._client.get_collection(name, embedding_function=None)
            except self._chroma_not_found:
                known = ", ".join(self.names()) or "none"
                raise NotFoundError(f"no vector index named {name!r}",
                                    hint=f"vector indexes: {known}") from None

    def _all_names(self) -> list[str]:
        return [c.name for c in self._client.list_collections()]

    def _swap(self, name: str, temp: Collection) -> None:
        old_name = None
        if name in self._all_names():
            old_name = _leftover_name(name, "old")
            self._client.get_collection(name, embedding_function=None).modify(name=old_name)
        try:
            temp.modify(name=name)
        except BaseException:
            if old_name is not None:
                self._client.get_collection(old_name, embedding_function=None).modify(name=name)
            self._delete_quietly(temp.name)
            raise
        if old_name is not None:
            # the new index is live already; a failure here leaves a leftover the sweep removes
            with contextlib.suppress(Exception):
                self._client.delete_collection(old_name)

    def _sweep(self) -> None:
        """Finish or undo what a replace killed midway left behind (callers hold the lock)."""
        now = time.time()
        names = set(self._all_names())
        for leftover in sorted(names):
            match = _LEFTOVER.fullmatch(leftover)
            if match is None or now - int(match["stamp"], 16) < self._stale_after:
                continue
            if match["kind"] == "old" and match["name"] not in names:
                # killed between renaming the old one aside and the new one in: keep the old
                with self._swap_lock:
                    self._client.get_collection(leftover, embedding_function=None).modify(
                        name=match["name"])
                names.add(match["name"])
            else:
                self._delete_quietly(leftover)

    def _delete_quietly(self, name: str, *, missing_only: bool = False) -> None:
        """Delete `name`; it being gone already is fine, and so (unless `missing_only`) is any
        other failure, because the sweep retries what is left behind."""
        try:
            self._client.delete_collection(name)
        except self._chroma_not_found:
            pass
        except Exception:
            if missing_only:
                raise


def forget_client(path: Path) -> None:
    """Drop what Chroma keeps in this process for the folder ``path``: it keeps one client
    system per folder, and a failed or damaged one would be handed to every later open."""
    from chromadb.api.shared_system_client import SharedSystemClient

    key = str(path)
    system = getattr(SharedSystemClient, "_identifier_to_system", {}).pop(key, None)
    getattr(SharedSystemClient, "_identifier_to_refcount", {}).pop(key, None)
    if system is not None:
        with contextlib.suppress(Exception):
            system.stop()


def collection_name(table: str, column: str) -> str:
    """A new, valid collection name for a table's embedding column, whatever the two are
    called: letters, digits and _ only, starting and ending with one, short enough."""
    def safe(part: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", part)[:60]

    return f"thanosql__{safe(table)}__{safe(column)}__{secrets.token_hex(4)}"


def _check_name(name: str) -> None:
    if (not isinstance(name, str) or not 3 <= len(name) <= 512 - _SUFFIX_LENGTH
            or not _NAME.fullmatch(name) or ".." in name or _IPV4.fullmatch(name)
            or _LEFTOVER.fullmatch(name)):
        raise OptionError(
            f"{name!r} cannot name a vector index",
            hint=f"use 3 to {512 - _SUFFIX_LENGTH} letters, digits, '.', '_' or '-', starting "
                 "and ending with a letter or digit")


def _leftover_name(name: str, kind: str) -> str:
    # the creation time in the name lets a lockless sweep tell a stale leftover from a live one
    return f"{name}-{kind}-{int(time.time()):08x}{secrets.token_hex(3)}"


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold SIGINT back for the duration, then deliver it: the swap's few steps must not be
    cut in half. Only the main thread can handle signals, so elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, FrameType | None]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(*received[0])
    elif received and previous == signal.SIG_DFL:
        raise KeyboardInterrupt


__all__ = ["HNSW", "ChromaIndex", "collection_name", "forget_client"]
