"""Pure-PyTorch SimCLR: options, image decoding, backbone, head, loss, transforms, training.

Importing this package (or ``.options``) does not import torch; the torch-backed names below
load their module on first access, so a cell of plain SQL never waits for torch.
"""

from __future__ import annotations

from typing import Any

from ..imports import import_whole, prefetch
from .config import SIMCLR_OPTION_DOCS, SIMCLR_OPTIONS, SimCLRConfig, parse_simclr_options

_LAZY = {
    "TrainProgress": "train", "TrainedModel": "train", "fit": "train", "embed": "train",
    "save_model": "train", "load_model": "train", "resolve_device": "train",
    "load_images": "images", "iter_image_batches": "images", "ImageFiles": "images",
    "default_side": "images", "fits_in_memory": "images", "scan_channels": "images",
    "nt_xent_loss": "loss", "NTXentLoss": "loss",
    "Backbone": "backbone", "BackboneSpec": "backbone", "Encoder": "backbone",
    "ProjectionHead": "head", "BatchAugment": "transforms", "cpu_share": "threads",
}

#: what training imports: the code, and torch's compiler, which torch imports itself, lazily,
#: when the optimiser is made (``torch._dynamo``: about 900 modules, sympy and triton among
#: them, 1-2 s; a stop inside that import used to break every later BUILD)
_TRAINING = (f"{__name__}.images", f"{__name__}.train", "torch._dynamo")

__all__ = ["SIMCLR_OPTIONS", "SIMCLR_OPTION_DOCS", "SimCLRConfig", "parse_simclr_options",
           "prepare_training", "training_ready", *_LAZY]


def prepare_training() -> None:
    """Start importing what training needs, behind the statement's own work (reading the
    images' headers and pixels)."""
    prefetch(*_TRAINING)


def training_ready() -> None:
    """Wait (the stop button ends the wait) until what training imports is imported whole."""
    for module in _TRAINING:
        import_whole(module)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # torch loads with these: in a thread that the stop button cannot interrupt halfway
    return getattr(import_whole(f"{__name__}.{module}"), name)
