"""What many test modules share: a tiny image set, options that train on it in seconds, and
where a model's files are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from .conftest import Engine

TINY = "OPTIONS (max_epochs=2, batch_size=8, embedding_dim=128, seed=1{extra})"


def unshare(namespaces: str) -> list[str]:
    """The ``unshare`` command into new ``namespaces`` ("m": mounts, "n": network): as root
    directly, otherwise inside a user namespace of one's own (``-r``)."""
    return ["unshare", f"-{namespaces}" if os.geteuid() == 0 else f"-r{namespaces}"]


def make_images(folder: Path, count: int = 16, size: int = 12) -> Path:
    """Blobs at different places: a small image set any model can train on quickly. No two
    images are the same, so no search of one ties with another (whose order would be the
    engine's choice)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image_path,label"]
    places = (size - 4) ** 2
    assert count <= places, f"{count} different {size}x{size} images cannot be made"
    for i, place in enumerate(rng.choice(places, size=count, replace=False)):
        pixels = np.zeros((size, size), np.uint8)
        y, x = divmod(int(place), size - 4)
        pixels[y:y + 4, x:x + 4] = 255
        Image.fromarray(pixels).save(folder / f"{i}.png")
        lines.append(f"{folder.name}/{i}.png,{i % 2}")
    csv = folder.parent / f"{folder.name}.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def model_files(engine: Engine, name: str = "m") -> Path:
    """The folder of the model's files, fetched from the database (or the cache) and checked."""
    return engine.services.registry.files(engine.services.registry.get(name))
