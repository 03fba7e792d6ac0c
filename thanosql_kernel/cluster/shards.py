"""Exact SEARCH of a column too big for one process: its rows in shards, each held by a
long-lived actor on the Ray cluster.

Each shard is the rows whose image path lies in one range (``EmbeddingColumns.ranges``: a
path's rows are all in one shard), read by its actor from the database itself into the
compact copy that exact search scans in the kernel (``vectors.CompactVectors``). A search
sends the query to every shard; each returns the paths that can be in its own exact top k,
and the kernel scores their union from the column, as for a column in its own memory. The
global top k is in that union (each of its rows is in its own shard's top k), so the answer
is the single-process exact answer.

The actors are detached and named after the column's collection, in a namespace of the
database's: they outlive the kernel's visit to the cluster (a kernel joins it for a
statement's work and leaves after, see ``Cluster``), so a search after the first, from this
kernel or another kernel on the same database, finds them loaded. A CONVERT makes a new
collection, so new shards; the old ones, and those of a dropped column, are killed by the
kernel that saw them go, and any left over (a kernel that died) by the next kernel that
makes shards. An actor whose process or node dies is started again by Ray, reading its
rows anew; a search waits for it.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from . import Cluster

if TYPE_CHECKING:
    import numpy as np

    from ..storage import EmbeddingColumn

#: rows an actor reads from the column at a time into its compact copy
_LOAD_CHUNK = 50_000


class Shard:
    """One shard's actor: the compact copy of the rows whose image path is in
    [``low``, ``high``) (None: unbounded), read from the database at ``url``."""

    def __init__(self, url: str, entry: EmbeddingColumn, low: str | None,
                 high: str | None) -> None:
        import numpy as np

        from ..storage import EmbeddingColumns, SqlStore
        from ..vectors import CompactVectors, blobs_to_matrix

        store = SqlStore(url)
        paths: list[np.ndarray] = []

        def chunks() -> Any:
            for chunk_paths, blobs in columns.vector_chunks(
                    conn, entry, _LOAD_CHUNK, between=(low, high)):
                paths.append(np.array([p.encode() for p in chunk_paths], dtype=bytes))
                yield blobs_to_matrix(blobs, entry.dim)

        columns = EmbeddingColumns(store)
        try:
            with store.begin() as conn:
                rows = columns.count_between(conn, entry, (low, high))
                self._compact = CompactVectors.from_chunks(chunks(), rows, entry.dim)
        finally:
            store.dispose()
        self._paths = np.concatenate(paths) if paths else np.empty(0, dtype=bytes)
        self.node = f"{socket.gethostname()} (pid {os.getpid()})"

    def ready(self) -> tuple[int, int]:
        """(rows held, this actor's process id), once loaded."""
        return self._compact.count, os.getpid()

    def candidates(self, query: np.ndarray, k: int) -> list[str]:
        """The image paths of this shard's rows that can be in its exact top k."""
        return [self._paths[i].decode() for i in self._compact.candidates(query, k)]


def namespace(database_url: str) -> str:
    """The Ray namespace of one database's shards."""
    return "thanosql-" + hashlib.sha256(database_url.encode()).hexdigest()[:12]


def shard_names(collection: str, count: int) -> list[str]:
    return [f"{collection}:{i + 1}/{count}" for i in range(count)]


class SearchShards:
    """The shards of columns with more than ``rows`` rows, on ``cluster``, each reading the
    database at ``database_url`` (which every node reaches: a server, or a SQLite file on
    storage every node mounts at the same path)."""

    def __init__(self, cluster: Cluster, database_url: str, rows: int) -> None:
        self.cluster = cluster
        self.database_url = database_url
        self.rows = rows
        self.namespace = namespace(database_url)
        #: collections this kernel searched by shards (to kill theirs when they go)
        self._made: set[str] = set()

    def applies(self, entry: EmbeddingColumn) -> bool:
        return self.cluster.configured and entry.row_count > self.rows

    def count(self, entry: EmbeddingColumn) -> int:
        return -(-entry.row_count // self.rows)

    def candidates(self, entry: EmbeddingColumn, ranges: Callable[[], Sequence[
                       tuple[str | None, str | None]]], vector: np.ndarray, k: int,
                   live: Collection[str],
                   loading: Callable[[int, int, bool], None] | None = None) -> list[str]:
        """The union of every shard's candidates for the top k (``Shard.candidates``).

        Shards not on the cluster yet are made from ``ranges()`` (a [low, high) of image
        paths per shard) and waited for, ``loading(done, total, finished)`` hearing how;
        shards of collections not in ``live`` are killed then. A stop while they load kills
        the shards this call made."""
        with self.cluster.failing():
            ray = self.cluster.ray()
            try:
                actors = self._actors(ray, entry, ranges, live, loading)
                refs = [actor.candidates.remote(vector, k) for actor in actors]
                found: dict[str, None] = {}
                for ref in refs:
                    found.update(dict.fromkeys(self.cluster.get(ray, ref)))
                return list(found)
            finally:
                self.cluster.lost()

    def _actors(self, ray: Any, entry: EmbeddingColumn,
                ranges: Callable[[], Sequence[tuple[str | None, str | None]]],
                live: Collection[str],
                loading: Callable[[int, int, bool], None] | None) -> list[Any]:
        names = shard_names(entry.collection, self.count(entry))
        actors: list[Any] = []
        made: list[Any] = []
        bounds: Sequence[tuple[str | None, str | None]] | None = None
        shard = ray.remote(Shard)
        for i, name in enumerate(names):
            try:
                actors.append(ray.get_actor(name, namespace=self.namespace))
                continue
            except ValueError:
                pass
            if bounds is None:
                bounds = _padded(ranges(), len(names))
                self._sweep(ray, live)
            low, high = bounds[i]
            actor = shard.options(
                name=name, namespace=self.namespace, lifetime="detached", get_if_exists=True,
                num_cpus=0, max_restarts=-1, max_task_retries=-1,
                scheduling_strategy="SPREAD").remote(self.database_url, entry, low, high)
            actors.append(actor)
            made.append(actor)
        self._made.add(entry.collection)
        if made:
            self._wait(ray, made, entry, loading)
        return actors

    def _wait(self, ray: Any, made: list[Any], entry: EmbeddingColumn,
              loading: Callable[[int, int, bool], None] | None) -> None:
        pending = {actor.ready.remote(): actor for actor in made}
        done = 0
        total = max(entry.row_count, 0)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                for ref in ready:
                    pending.pop(ref)
                    done += self.cluster.get(ray, ref)[0]
                if loading is not None:
                    loading(min(done, total), total, False)
            if loading is not None:
                loading(done, done, True)
        except BaseException:
            for actor in made:   # half-loaded shards of this call go with it
                _kill(ray, actor)
            raise

    def _sweep(self, ray: Any, live: Collection[str]) -> None:
        """Kill the shards of this database whose collection is no column's any more."""
        from ray.util import list_named_actors

        for found in list_named_actors(all_namespaces=True):
            if found.get("namespace") == self.namespace and \
                    found["name"].rsplit(":", 1)[0] not in live:
                _kill_named(ray, found["name"], self.namespace)

    def drop(self, collection: str) -> None:
        """Kill the shards of a collection this kernel searched, now gone (a new CONVERT, a
        dropped column); failing to is only memory held until the next kernel's sweep."""
        if collection not in self._made:
            return
        self._made.discard(collection)
        try:
            ray = self.cluster.ray()
            try:
                from ray.util import list_named_actors

                for found in list_named_actors(all_namespaces=True):
                    if found.get("namespace") == self.namespace and \
                            found["name"].rsplit(":", 1)[0] == collection:
                        _kill_named(ray, found["name"], self.namespace)
            finally:
                self.cluster.lost()
        except Exception:  # noqa: BLE001, S110 - the statement that dropped it succeeded
            pass


def _padded(ranges: Sequence[tuple[str | None, str | None]], count: int
            ) -> list[tuple[str | None, str | None]]:
    """``count`` ranges: a column with fewer distinct paths than shards gets empty ones."""
    out = list(ranges)[:count]
    while len(out) < count:
        out.append(("", ""))   # low == high: no row
    return out


def _kill_named(ray: Any, name: str, space: str) -> None:
    try:
        _kill(ray, ray.get_actor(name, namespace=space))
    except ValueError:
        pass   # gone already


def _kill(ray: Any, actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001, S110 - a dead actor needs no killing
        pass
