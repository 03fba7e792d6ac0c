"""The Ray cluster that CONVERT's and BUILD's heavy work runs on when ``THANOSQL_RAY_ADDRESS``
names one.

Unset, nothing here imports Ray and every statement runs in the kernel. Set, a statement joins
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

BUILD MODEL trains on the cluster with Ray Train (``workers.train``: a ``TorchTrainer`` of
data-parallel workers, gloo between CPUs, NCCL between GPUs), started from a task of its own
rather than from the kernel: Ray Train's driver takes over the process's SIGINT handler (and
exits the process on the third), which a kernel cannot allow, and a stop then only has to
cancel that task for Ray to end the run's controller and workers with it. Progress and the
trained model come back through a queue actor.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from ..errors import OptionError, ServerError, ThanoSQLError
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

        with self.failing():
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
    def failing(self) -> Iterator[None]:
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
            with self.failing():
                while starts or tasks:
                    if time.monotonic() - watched > _WATCH_S:   # the head still answers?
                        watched = time.monotonic()
                        head_gone = self._head_problem()
                        if head_gone is not None:
                            raise self._gone(head_gone)
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
                            vectors = self.get(ray, ref)
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

    def train(self, paths: list[str], side: int, channels: int, config: Any, seed: int,
              workers: int | None) -> tuple[int, Generator[tuple[Any, ...], None, None]]:
        """How many workers train ``config`` on the images at ``paths`` (``workers``, or one per
        GPU, else one per node with all its CPUs), and the run's messages as they come:
        ("step", TrainProgress) now and then, ("model", packed model files, where the images
        stayed) last. Closing the iterator early (a stop, an error) ends the run."""
        from ray.util.queue import Queue

        from .workers import Training, train

        with self.failing():
            ray = self.ray()
            count, cpus, gpu = plan_workers(ray.nodes(), workers)
            queue = Queue(actor_options={"num_cpus": 0})
            training = Training(paths, side, channels, config, seed, count, cpus, gpu, queue)
            task = ray.remote(num_cpus=0, max_retries=0)(train).remote(training)
        return count, self._run(ray, task, queue)

    def _run(self, ray: ModuleType, task: Any, queue: Any
             ) -> Generator[tuple[Any, ...], None, None]:
        from ray.util.queue import Empty

        ended = False
        watched = time.monotonic()
        try:
            with self.failing():
                while True:
                    if time.monotonic() - watched > _WATCH_S:
                        watched = time.monotonic()
                        head_gone = self._head_problem()
                        if head_gone is not None:
                            ended = True   # nothing left to end
                            raise self._gone(head_gone)
                    try:
                        message = queue.get(timeout=0.2)
                    except Empty:
                        message = None
                    if message is None:
                        if ray.wait([task], timeout=0)[0]:   # the run ended: how?
                            ended = True
                            self.get(ray, task)
                            raise ServerError(f"The Ray cluster at {self.address} ended the "
                                              "training without a model", hint=self._hint())
                        continue
                    yield message
                    if message[0] == "model":   # let the run end by itself, briefly
                        ended = bool(ray.wait([task], timeout=10)[0])
                        return
        finally:
            if not ended:
                ray.cancel(task, force=True)
            try:
                ray.kill(queue.actor, no_restart=True)
            except Exception:  # noqa: BLE001, S110 - a queue gone with its node needs nothing
                pass
            self.lost()

    @staticmethod
    def get(ray: ModuleType, ref: Any) -> Any:
        """``ray.get``, a worker's ThanoSQLError raised as itself."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, ThanoSQLError):
                raise cause from None
            raise

    def _gone(self, problem: str) -> ServerError:
        return ServerError(f"The Ray cluster at {self.address} went away in the middle of the "
                           f"statement ({problem})", hint=self._hint())

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


def plan_workers(nodes: list[Mapping[str, Any]], workers: int | None) -> tuple[int, int, bool]:
    """(workers, CPUs each, on GPUs?) for training on the live ``nodes`` (``ray.nodes()``):
    one worker per GPU where the cluster has GPUs; else ``workers`` (default one per node)
    with as many CPUs each as lets that many fit on the nodes."""
    alive = [node.get("Resources", {}) for node in nodes if node.get("Alive")]
    gpus = sum(int(r.get("GPU", 0)) for r in alive)
    cpus = [int(r.get("CPU", 0)) for r in alive]
    if gpus:
        count, have = workers or gpus, f"{gpus} GPU{'s' * (gpus != 1)}"
        if count <= gpus:
            return count, 1, True
    else:
        count, have = workers or sum(c >= 1 for c in cpus), f"{sum(cpus)} CPUs"
        fits = [k for k in range(1, max(cpus, default=0) + 1)
                if sum(c // k for c in cpus) >= count]
        if count >= 1 and fits:
            return count, max(fits), False
    raise OptionError(f"workers={count}: the Ray cluster has {have} for training workers",
                      hint="Choose fewer workers, or add nodes to the cluster.")


def _alive(ray: ModuleType) -> bool:
    return any(node.get("Alive") for node in ray.nodes())


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]
