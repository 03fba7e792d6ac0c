"""What runs on the Ray cluster's nodes: an actor that loads one model once and embeds the
images of the paths it is given, reading them from the node's own file system; and BUILD's
training, a Ray Train run of data-parallel workers started by a task of its own.

Imported by Ray on each worker (by name, so every node needs this package installed, as the
README says); the kernel itself only names what runs here, and packs and unpacks models.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Ray Train's settings for BUILD's runs: no watcher of cloud preemptions and no metrics
#: exporter (each an actor process more to start, 4-6 s apiece on a busy 2-core node), and
#: the controller polling its workers every 0.5 s rather than 2 s (it notices the end sooner)
_RAY_TRAIN = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_METRICS_ENABLED": "0",
              "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
#: how often the first training worker sends its progress to the kernel, at most (seconds)
_PROGRESS_S = 0.2


def pack_model(folder: Path) -> bytes:
    """A model's files as one tar archive, to put in the cluster's object store once."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                archive.add(path, arcname=path.name)
    return buffer.getvalue()


def unpack_model(packed: bytes, folder: Path) -> None:
    """``pack_model``'s files, written into ``folder``."""
    with tarfile.open(fileobj=io.BytesIO(packed)) as archive:
        archive.extractall(folder, filter="data")


class Embedder:
    """One worker: the model, loaded once from its packed files, on the node's device (the
    GPU Ray gave it, else the CPU threads Ray gave it)."""

    def __init__(self, packed: bytes, threads: int) -> None:
        import torch

        from ..models.train import load_model

        torch.set_num_threads(max(1, threads))
        self._folder = tempfile.TemporaryDirectory(prefix="thanosql-model-")
        unpack_model(packed, Path(self._folder.name))
        self._model = load_model(Path(self._folder.name), device="auto")
        self.node = _node()

    def embed(self, paths: list[str]) -> Any:
        """The float32 embeddings (N, D) of the images at ``paths``. An image this node
        cannot read is a DataError naming the node and the path."""
        from ..models.train import embed

        model = self._model
        return embed(model, read_images(paths, model.image_size, model.channels, self.node))


def _node() -> str:
    return f"{socket.gethostname()} (pid {os.getpid()})"


def read_images(paths: list[str], side: int, channels: int, node: str) -> Any:
    """``load_images`` on this node; an image it cannot read is a DataError naming the node
    and the path."""
    from ..errors import DataError, ThanoSQLError
    from ..models.images import load_images

    try:
        return load_images(paths, side, channels, check=False)
    except ThanoSQLError as error:
        raise DataError(f"on the cluster node {node}: {error.message}",
                        hint="Every node reads the images by the same paths: mount the "
                             "shared storage at the same place on each, or give "
                             "absolute paths that every node sees.") from None


@dataclass(frozen=True)
class Training:
    """One BUILD's training on the cluster: what every worker is given."""

    paths: list[str]
    side: int
    channels: int
    config: Any        # SimCLRConfig
    seed: int
    workers: int
    cpus: int          # per worker
    gpu: bool
    #: a ``ray.util.queue.Queue`` the first worker sends ("step", TrainProgress), then
    #: ("model", packed files, where the images stayed) to
    queue: Any


def train(training: Training) -> None:
    """The task that runs the Ray Train run (its driver, on a node of the cluster): a stop
    cancels this task, and Ray ends the run's controller and workers with it. Ray Train's
    own records of the run go to a folder of the task's, removed after."""
    for name, value in _RAY_TRAIN.items():   # read by Ray Train here, passed to its actors
        os.environ.setdefault(name, value)
    with tempfile.TemporaryDirectory(prefix="thanosql-train-") as storage:
        _train(training, storage)


def _train(training: Training, storage: str) -> None:
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer

    from ..errors import ThanoSQLError

    resources = {"CPU": training.cpus, **({"GPU": 1} if training.gpu else {})}
    trainer = TorchTrainer(
        _train_worker, train_loop_config={"training": training},
        scaling_config=ScalingConfig(num_workers=training.workers, use_gpu=training.gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=f"thanosql-build-{os.getpid()}", storage_path=storage,
                             failure_config=FailureConfig(max_failures=0)))
    try:
        trainer.fit()
    except TrainingFailedError as failed:   # a worker's own error is the statement's
        for error in getattr(failed, "worker_failures", {}).values():
            cause = getattr(error, "cause", error)
            if isinstance(cause, ThanoSQLError):
                raise cause from None
        raise


def _train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the images, decoded on this node (or read a batch at a time when
    they do not fit its memory), and its part of every step (``models.parallel``)."""
    import time

    import ray.train
    import torch

    from ..models.images import ImageFiles, fits_in_memory
    from ..models.parallel import Shard
    from ..models.train import TrainProgress, fit, save_model

    training: Training = loop_config["training"]
    context = ray.train.get_context()
    rank, size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(training.cpus)
    if fits_in_memory(len(training.paths), training.channels, (training.side, training.side)):
        images: Any = read_images(training.paths, training.side, training.channels, _node())
    else:
        images = ImageFiles(training.paths, training.side, training.channels)
    sent = 0.0

    def progress(p: TrainProgress) -> None:
        nonlocal sent
        if time.monotonic() - sent >= _PROGRESS_S or p.step == p.steps_per_epoch:
            sent = time.monotonic()
            training.queue.put(("step", p))

    model = fit(images, training.config, progress if rank == 0 else None,
                shard=Shard(rank, size, training.seed))
    if rank == 0:
        with tempfile.TemporaryDirectory(prefix="thanosql-model-") as folder:
            save_model(model, Path(folder))
            training.queue.put(("model", pack_model(Path(folder)), model.images_held))
