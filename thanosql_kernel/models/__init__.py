"""Pure-PyTorch SimCLR: options, image decoding, backbone, head, loss, transforms, training.

Importing this package (or ``.options``) does not import torch; the torch-backed names below
load their module on first access, so a cell of plain SQL never waits for torch.
"""

from __future__ import annotations

from typing import Any

from ..imports import import_whole
from .config import SIMCLR_OPTION_DOCS, SIMCLR_OPTIONS, SimCLRConfig, parse_simclr_options

_LAZY = {
    "TrainProgress": "train", "TrainedModel": "train", "fit": "train", "embed": "train",
    "save_model": "train", "load_model": "train", "resolve_device": "train",
    "load_images": "images", "iter_image_batches": "images", "ImageFiles": "images",
    "default_side": "images", "fits_in_memory": "images", "scan_channels": "images",
    "nt_xent_loss": "loss", "NTXentLoss": "loss",
    "Backbone": "backbone", "BackboneSpec": "backbone", "Encoder": "backbone",
    "ProjectionHead": "head", "BatchAugment": "transforms",
}

__all__ = ["SIMCLR_OPTIONS", "SIMCLR_OPTION_DOCS", "SimCLRConfig", "parse_simclr_options", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # torch loads with these: in a thread that the stop button cannot interrupt halfway
    return getattr(import_whole(f"{__name__}.{module}"), name)
