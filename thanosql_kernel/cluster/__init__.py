"""The Ray cluster that CONVERT's heavy work runs on when ``THANOSQL_RAY_ADDRESS`` names one.

Unset, nothing here imports Ray and every statement runs in the kernel. Set, CONVERT joins
the cluster for the time of its work and leaves it after: a Ray driver whose cluster head goes
away is ended by Ray itself after 60 s ("Failed to connect to GCS ... The program will
terminate", measured here), and a kernel must outlive its cluster. So a cluster that restarts
between statements is simply joined again by the next one, and one whose head goes in the
middle of a CONVERT is noticed by a watch on the head's port, left, and reported.

CONVERT hands the rows' image paths to workers on the cluster's nodes (``workers.Embedder``:
an actor per CPU, or per GPU where the cluster has them, each loading the model once from the
object store), two batches in flight per worker; the embeddings come back to the kernel,
which writes them to the table and the index as a local CONVERT does. A worker that dies (its
node gone) has its batches given to the others; the stop button ends the wait and kills every
worker of the statement.

Ray Core's actors rather than Ray Data: a stop must free the cluster within seconds and a
CONVERT of a few thousand images should not pay for a streaming executor's start-up (Ray
Data took 11.8 s for 1,000 trivial rows on the two-node test cluster, here).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from ..errors import ServerError, ThanoSQLError
from ..imports import import_whole

#: batches each worker has in flight: one computing, one waiting (back-pressure)
_IN_FLIGHT = 2
#: how long the kernel waits on workers that make no progress while no node is alive
_NO_NODES_S = 30.0
#: how long a reach of the cluster's address may take
_REACH_S = 5.0
#: how often a CONVERT on the cluster checks that its head still answers (Ray ends a driver
#: 60 s after it lost the head; the kernel leaves well before)
_WATCH_S = 2.0


class Cluster:
    """The cluster at ``address`` (None: no cluster, everything runs in the kernel)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._connected = False
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self.address is not None

    def _hint(self) -> str:
        return ("Start the cluster (ray start --head …) or fix THANOSQL_RAY_ADDRESS, then run "
                "the statement again: nothing of it was kept, and the kernel reconnects by "
                "itself. Unset THANOSQL_RAY_ADDRESS to run everything in the kernel.")

    def check(self) -> None:
        """Ray is installed and the cluster's head answers; before a statement's work."""
        self._import()
        self._reach()

    def _import(self) -> ModuleType:
        try:
            return import_whole("ray")
        except ImportError:
            raise ServerError(
                f"THANOSQL_RAY_ADDRESS is {self.address}, but Ray is not installed in "
                "this kernel's Python",
                hint="pip install 'thanosql-kernel[ray]' (Ray of the cluster's version), "
                     "or unset THANOSQL_RAY_ADDRESS to run everything in the kernel.") from None

    def ray(self) -> ModuleType:
        """Ray, joined to the cluster (``lost`` leaves it)."""
        assert self.address is not None
        with self._lock:
            ray = self._import()
            if self._connected and ray.is_initialized():
                return ray
            self._reach()
            try:
                if ray.is_initialized():
                    ray.shutdown()
                ray.init(address=self.address, logging_level="ERROR", log_to_driver=False,
                         configure_logging=False)
            except Exception as e:  # noqa: BLE001 - any failure to join is the same answer
                raise ServerError(f"Cannot join the Ray cluster at {self.address}: "
                                  f"{_first_line(e)}", hint=self._hint()) from None
            self._connected = True
            return ray

    def _reach(self) -> None:
        """A plain TCP connect to the address: ray.init waits long for a head that is not
        there, this answers within seconds."""
        assert self.address is not None
        text = self.address if "://" in self.address else f"tcp://{self.address}"
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
        if not host or not port:
            raise ServerError(f"THANOSQL_RAY_ADDRESS={self.address} is not host:port or "
                              "ray://host:port", hint=self._hint())
        try:
            with socket.create_connection((host, port), timeout=_REACH_S):
                pass
        except OSError as e:
            raise ServerError(f"The Ray cluster at {self.address} does not answer "
                              f"({e.strerror or e})", hint=self._hint()) from None

    def lost(self) -> None:
        """Forget the connection (the cluster went away): the next use joins again."""
        with self._lock:
            self._connected = False
            try:
                ray = import_whole("ray")
                if ray.is_initialized():
                    ray.shutdown()
            except Exception:  # noqa: BLE001, S110 - only the next join matters
                pass

    def close(self) -> None:
        if self._connected:
            self.lost()

    # -- work ---------------------------------------------------------------------------------
    def embed(self, model_folder: Path, paths: list[str], batch_size: int
              ) -> tuple[int, Iterator[tuple[int, Any]]]:
        """How many workers embed ``paths``, and (the index of the first path, the embeddings)
        of each batch as they finish, in any order; every path exactly once. The workers are
        made now (the model goes to the object store once); the iterator ends them."""
        from .workers import Embedder, pack_model

        with self._failing():
            ray = self.ray()
            starts = deque(range(0, len(paths), batch_size))
            resources = ray.cluster_resources()
            gpus = int(resources.get("GPU", 0))
            options: dict[str, Any] = {"num_cpus": 1, "num_gpus": 1} if gpus else {"num_cpus": 1}
            count = max(1, min(gpus or int(resources.get("CPU", 1)), len(starts)))
            worker = ray.remote(max_restarts=0, max_task_retries=0)(Embedder)
            packed = ray.put(pack_model(model_folder))
            actors = [worker.options(**options).remote(packed, 1) for _ in range(count)]
        return count, self._results(ray, worker, actors, packed, options, paths, batch_size,
                                    starts)

    @contextmanager
    def _failing(self) -> Iterator[None]:
        """Ray's own failures (not the statement's errors, not a stop) are the cluster's."""
        try:
            yield
        except (ThanoSQLError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - whatever Ray raised, the cluster is the cause
            self.lost()
            raise ServerError(f"The Ray cluster at {self.address} failed the statement: "
                              f"{_first_line(e)}", hint=self._hint()) from None

    def _results(self, ray: ModuleType, worker: Any, actors: list[Any], packed: Any,
                 options: dict[str, Any], paths: list[str], batch_size: int,
                 starts: deque[int]) -> Iterator[tuple[int, Any]]:
        exceptions = ray.exceptions
        #: the batch each task embeds, and the actor it runs on
        tasks: dict[Any, tuple[int, Any]] = {}
        idle_since = watched = time.monotonic()
        head_gone: str | None = None
        try:
            with self._failing():
                while starts or tasks:
                    if time.monotonic() - watched > _WATCH_S:   # the head still answers?
                        watched = time.monotonic()
                        head_gone = self._head_problem()
                        if head_gone is not None:
                            raise ServerError(f"The Ray cluster at {self.address} went away in "
                                              f"the middle of the statement ({head_gone})",
                                              hint=self._hint())
                    for actor in actors:   # keep each live worker busy, two batches deep
                        while starts and sum(a is actor for _, a in tasks.values()) < _IN_FLIGHT:
                            start = starts.popleft()
                            ref = actor.embed.remote(paths[start:start + batch_size])
                            tasks[ref] = (start, actor)
                    done, _ = ray.wait(list(tasks), num_returns=1, timeout=0.2)
                    if not done:
                        if time.monotonic() - idle_since > _NO_NODES_S and not _alive(ray):
                            raise ServerError(f"The Ray cluster at {self.address} has no live "
                                              "node left to finish the statement",
                                              hint=self._hint())
                        continue
                    idle_since = time.monotonic()
                    for ref in done:
                        start, actor = tasks.pop(ref)
                        try:
                            vectors = ray.get(ref)
                        except exceptions.RayTaskError as e:
                            cause = getattr(e, "cause", None)
                            if isinstance(cause, ThanoSQLError):
                                raise cause from None
                            raise
                        except (exceptions.RayActorError, exceptions.ActorUnavailableError):
                            # its node went: its batches go to the others (or to new workers)
                            starts.appendleft(start)
                            actors = self._replace(ray, worker, actors, actor, packed, options)
                            continue
                        yield start, vectors
        finally:
            if head_gone is None:
                for actor in actors:
                    try:
                        ray.kill(actor, no_restart=True)
                    except Exception:  # noqa: BLE001, S110 - a dead worker needs no killing
                        pass
            self.lost()   # leave the cluster: a kernel must not die with its head

    def _head_problem(self) -> str | None:
        """Why the head does not answer (None: it does)."""
        try:
            self._reach()
        except ServerError as error:
            return error.message.rsplit("(", 1)[-1].rstrip(")")
        return None

    def _replace(self, ray: ModuleType, worker: Any, actors: list[Any], dead: Any,
                 packed: Any, options: dict[str, Any]) -> list[Any]:
        """The workers without ``dead``; when none is left, new ones where the cluster has
        room (they wait for a node to come back, up to ``_NO_NODES_S``)."""
        left = [a for a in actors if a is not dead]
        if left:
            return left
        count = max(1, int(ray.available_resources().get("CPU", 1)))
        return [worker.options(**options).remote(packed, 1) for _ in range(count)]


def _alive(ray: ModuleType) -> bool:
    return any(node.get("Alive") for node in ray.nodes())


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]
