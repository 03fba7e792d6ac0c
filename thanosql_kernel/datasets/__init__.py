"""The data sets GET THANOSQL DATASET can write, made locally from files already installed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFoundError, did_you_mean, excerpt
from .written import DatasetWritten, ProgressFn


@dataclass(frozen=True)
class DatasetInfo:
    """One fetchable data set: what LIST THANOSQL DATASET shows, and how to write it."""

    name: str
    data_type: str
    description: str
    write: Callable[..., DatasetWritten]  # (root, *, overwrite, progress) -> DatasetWritten


def _write_mnist(root: Path, *, overwrite: bool = False,
                 progress: ProgressFn | None = None) -> DatasetWritten:
    # imported on use so that loading the registry (LIST THANOSQL DATASET) stays cheap
    from .mnist import write_mnist_data

    return write_mnist_data(root, overwrite=overwrite, progress=progress)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info for info in (
        DatasetInfo(
            name="mnist_data",
            data_type="image",
            description=("MNIST handwritten digits, 28x28 grayscale JPEG: 1,000 training and "
                         "200 test images, balanced across the ten digits, with labels"),
            write=_write_mnist,
        ),
    )
}


def get_dataset(name: str) -> DatasetInfo:
    """The data set called ``name`` (case-insensitive), or a NotFoundError naming the known ones."""
    info = DATASETS.get(name.lower())
    if info is None:
        known = ", ".join(sorted(DATASETS))
        raise NotFoundError(f"There is no data set called {excerpt(name)}.",
                            hint=f"{did_you_mean(name, DATASETS)}Known data sets: {known}.")
    return info


__all__ = ["DATASETS", "DatasetInfo", "DatasetWritten", "ProgressFn", "get_dataset"]
