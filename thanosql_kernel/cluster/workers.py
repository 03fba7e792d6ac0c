"""What runs on the Ray cluster's nodes: an actor that loads one model once and embeds the
images of the paths it is given, reading them from the node's own file system.

Imported by Ray on each worker (by name, so every node needs this package installed, as the
README says); the kernel itself only names the class.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import tempfile
from pathlib import Path
from typing import Any


def pack_model(folder: Path) -> bytes:
    """A model's files as one tar archive, to put in the cluster's object store once."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                archive.add(path, arcname=path.name)
    return buffer.getvalue()


class Embedder:
    """One worker: the model, loaded once from its packed files, on the node's device (the
    GPU Ray gave it, else the CPU threads Ray gave it)."""

    def __init__(self, packed: bytes, threads: int) -> None:
        import torch

        from ..models.train import load_model

        torch.set_num_threads(max(1, threads))
        self._folder = tempfile.TemporaryDirectory(prefix="thanosql-model-")
        with tarfile.open(fileobj=io.BytesIO(packed)) as archive:
            archive.extractall(self._folder.name, filter="data")
        self._model = load_model(Path(self._folder.name), device="auto")
        self.node = f"{socket.gethostname()} (pid {os.getpid()})"

    def embed(self, paths: list[str]) -> Any:
        """The float32 embeddings (N, D) of the images at ``paths``. An image this node
        cannot read is a DataError naming the node and the path."""
        from ..errors import DataError, ThanoSQLError
        from ..models.images import load_images
        from ..models.train import embed

        model = self._model
        try:
            images = load_images(paths, model.image_size, model.channels, check=False)
        except ThanoSQLError as error:
            raise DataError(f"on the cluster node {self.node}: {error.message}",
                            hint="Every node reads the images by the same paths: mount the "
                                 "shared storage at the same place on each, or give "
                                 "absolute paths that every node sees.") from None
        return embed(model, images)
