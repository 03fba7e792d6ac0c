"""SimCLR training options: the frozen config, its validation and one line of docs per option."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import OptionError

# No torch import here: the engine validates options on every BUILD before torch is loaded.


@dataclass(frozen=True)
class SimCLRConfig:
    """Every hyperparameter and augmentation switch of one SimCLR training run.

    Augmentations are drawn independently for every image (see ``transforms.py``); an
    augmentation whose strength is 0 (or whose switch is False) is skipped entirely.
    """

    max_epochs: int = 5
    batch_size: int = 16
    views: int = 8
    learning_rate: float = 3e-2
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    temperature: float = 0.2
    image_size: int | None = None
    embedding_dim: int = 128
    projection_dim: int = 256
    seed: int | None = 0
    device: str = "auto"
    # augmentations
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)
    rotation: float = 15.0
    shear: float = 0.0
    flip: bool = False
    vertical_flip: bool = False
    stroke: float = 0.0
    color_jitter: float = 0.4
    saturation: float = 0.0
    hue: float = 0.0
    grayscale: float = 0.0
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    noise: float = 0.0
    erase: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable copy (tuples become lists), for the model card."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}


_DEFAULTS = SimCLRConfig()

#: option name -> one line: what it does, with its default. Shared by README and errors.
SIMCLR_OPTION_DOCS: dict[str, str] = {
    "max_epochs": f"passes over the data, integer >= 1 (default {_DEFAULTS.max_epochs})",
    "batch_size": f"images per step, integer >= 2, capped at the row count "
                  f"(default {_DEFAULTS.batch_size}; each brings `views` views)",
    "views": f"augmented views of every image in a step, 2..64: the loss pulls all views of "
             f"one image together, so more views teach more per epoch (default "
             f"{_DEFAULTS.views}; 2 is the original SimCLR)",
    "learning_rate": f"peak AdamW learning rate, > 0 (default {_DEFAULTS.learning_rate})",
    "weight_decay": f"AdamW weight decay, >= 0 (default {_DEFAULTS.weight_decay})",
    "warmup_epochs": f"epochs of linear warm-up before the cosine decay, >= 0 "
                     f"(default {_DEFAULTS.warmup_epochs})",
    "temperature": f"NT-Xent temperature, > 0 (default {_DEFAULTS.temperature})",
    "image_size": "side in pixels of the square the images are resized to, 8..1024 "
                  "(default None: the first image's shorter side, at most 224)",
    "embedding_dim": f"length of the search embedding: the output of the projection head, "
                     f"the layer the loss trains to match views, 8..2048 "
                     f"(default {_DEFAULTS.embedding_dim})",
    "projection_dim": f"width of the projection head's hidden layer, 8..4096 "
                      f"(default {_DEFAULTS.projection_dim})",
    "seed": f"integer seed making CPU training reproducible, None for a random run "
            f"(default {_DEFAULTS.seed})",
    "device": "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N' (default 'auto')",
    "crop_scale": "random resized crop: area fraction kept, [min, max] or a min, in (0, 1] "
                  f"(default {list(_DEFAULTS.crop_scale)}; [1, 1] turns it off)",
    "crop_ratio": "random resized crop: aspect ratio range [min, max], > 0 "
                  "(default [0.75, 1.333])",
    "rotation": f"random rotation up to +/- this many degrees, 0..180 "
                f"(default {_DEFAULTS.rotation}; 0 turns it off)",
    "shear": f"random shear up to +/- this many degrees, 0..60 (default {_DEFAULTS.shear})",
    "flip": f"random horizontal flip; leave off for digits and text (default {_DEFAULTS.flip})",
    "vertical_flip": f"random vertical flip (default {_DEFAULTS.vertical_flip})",
    "stroke": f"random stroke width: every view is blended toward its 3x3 dilation or its "
              f"3x3 erosion by a random fraction up to this, 0..1 (default {_DEFAULTS.stroke}; "
              f"0.5 suits handwriting, digits and text)",
    "color_jitter": f"random brightness and contrast strength, 0..1 "
                    f"(default {_DEFAULTS.color_jitter}; 0 turns it off)",
    "saturation": f"random saturation strength for colour images, 0..1 "
                  f"(default {_DEFAULTS.saturation})",
    "hue": f"random hue shift for colour images, 0..0.5 (default {_DEFAULTS.hue})",
    "grayscale": f"probability of turning a colour view grey, 0..1 "
                 f"(default {_DEFAULTS.grayscale})",
    "blur": f"probability of a Gaussian blur, 0..1 (default {_DEFAULTS.blur})",
    "blur_sigma": "blur sigma range in pixels [min, max] or a max, > 0 "
                  f"(default {list(_DEFAULTS.blur_sigma)})",
    "noise": f"std of added Gaussian pixel noise (pixels in 0..1), 0..1 "
             f"(default {_DEFAULTS.noise})",
    "erase": f"probability of erasing a random rectangle, 0..1 (default {_DEFAULTS.erase})",
}


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _fail(name: str, value: object, allowed: str) -> OptionError:
    return OptionError(
        f"BUILD MODEL: option {name}={value!r} ({_type_name(value)}) is not allowed: "
        f"{name} must be {allowed}",
        hint=f"{name}: {SIMCLR_OPTION_DOCS[name]}")


def _int(lo: int, hi: int, *, none: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        allowed = f"an integer from {lo} to {hi}" + (" or None" if none else "")
        if value is None and none:
            return None
        # bool is a subclass of int in Python; TRUE is never meant as 1 here
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(name, value, allowed)
        if not lo <= value <= hi:
            raise _fail(name, value, allowed)
        return value
    return check


def _float(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        allowed = f"a number {'>' if lo_open else '>='} {lo} and <= {hi}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(name, value, allowed)
        v = float(value)
        if v != v or v > hi or v < lo or (lo_open and v == lo):
            raise _fail(name, value, allowed)
        return v
    return check


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, value, "TRUE or FALSE")
    return value


def _range(lo: float, hi: float, *, scalar_is: str) -> Callable[[str, Any], tuple[float, float]]:
    """A [min, max] pair within (lo, hi]; a lone number is the min (or max) of the pair."""

    def check(name: str, value: Any) -> tuple[float, float]:
        allowed = f"[min, max] with {lo} < min <= max <= {hi}, or one such number"
        if isinstance(value, bool):
            raise _fail(name, value, allowed)
        if isinstance(value, (int, float)):
            default = getattr(_DEFAULTS, name)
            pair = ((value, default[1]) if scalar_is == "min" else (default[0], value))
        elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            pair = (value[0], value[1])
        else:
            raise _fail(name, value, allowed)
        a, b = float(pair[0]), float(pair[1])
        if not (lo < a <= b <= hi):
            raise _fail(name, value, allowed)
        return (a, b)
    return check


def _device(name: str, value: Any) -> str:
    allowed = "'auto', 'cpu', 'cuda' or 'cuda:N'"
    if not isinstance(value, str):
        raise _fail(name, value, allowed)
    v = value.strip().lower()
    if v not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", v):
        raise _fail(name, value, allowed)
    return v


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "max_epochs": _int(1, 100_000),
    "batch_size": _int(2, 65_536),
    "views": _int(2, 64),
    "learning_rate": _float(0.0, 10.0, lo_open=True),
    "weight_decay": _float(0.0, 10.0),
    "warmup_epochs": _float(0.0, 1000.0),
    "temperature": _float(0.0, 10.0, lo_open=True),
    "image_size": _int(8, 1024, none=True),
    "embedding_dim": _int(8, 2048),
    "projection_dim": _int(8, 4096),
    "seed": _int(-(2**63), 2**63 - 1, none=True),
    "device": _device,
    "crop_scale": _range(0.0, 1.0, scalar_is="min"),
    "crop_ratio": _range(0.0, 10.0, scalar_is="min"),
    "rotation": _float(0.0, 180.0),
    "shear": _float(0.0, 60.0),
    "flip": _bool,
    "vertical_flip": _bool,
    "stroke": _float(0.0, 1.0),
    "color_jitter": _float(0.0, 1.0),
    "saturation": _float(0.0, 1.0),
    "hue": _float(0.0, 0.5),
    "grayscale": _float(0.0, 1.0),
    "blur": _float(0.0, 1.0),
    "blur_sigma": _range(0.0, 100.0, scalar_is="max"),
    "noise": _float(0.0, 1.0),
    "erase": _float(0.0, 1.0),
}

assert set(_CHECKS) == set(SIMCLR_OPTION_DOCS) == {f.name for f in dataclasses.fields(SimCLRConfig)}


def parse_simclr_options(options: dict[str, object]) -> SimCLRConfig:
    """Validate user options (names case-insensitive) into a ``SimCLRConfig``.

    Raises ``OptionError`` naming the option, the value received and what is allowed; an
    unknown name lists every valid one.
    """
    values: dict[str, Any] = {}
    for raw_name, value in options.items():
        name = raw_name.lower()
        check = _CHECKS.get(name)
        if check is None:
            valid = ", ".join(sorted(_CHECKS))
            raise OptionError(
                f"BUILD MODEL: unknown option {raw_name!r} for SimCLR",
                hint=f"Valid options: image_col, label_col, overwrite, {valid}")
        values[name] = check(name, value)
    return SimCLRConfig(**values)
