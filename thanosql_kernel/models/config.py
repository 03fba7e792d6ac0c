"""SimCLR training options: the frozen config and the declaration of every option.

The declarations (``SIMCLR_OPTIONS``) are the one source for checking values, the one line of
docs per option (README, errors, completion, inspect) and the defaults, which are the
config's own.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from ..errors import OptionError
from ..options import OptionSpec, documented, read_options

# No torch import here: the engine validates options on every BUILD before torch is loaded.


@dataclass(frozen=True)
class SimCLRConfig:
    """Every hyperparameter and augmentation switch of one SimCLR training run.

    Augmentations are drawn independently for every image (see ``transforms.py``); an
    augmentation whose strength is 0 (or whose switch is False) is skipped entirely.
    """

    max_epochs: int = 5
    backbone: str = "small"
    pretrained: bool = False
    batch_size: int = 16
    views: int = 16
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
    stroke: float | None = None
    color_jitter: float = 0.4
    # colour images only (grey ones never draw these): a colour that changes between views
    # cannot be what tells images apart, so shape decides (bench/QUALITY.md, the shapes set)
    saturation: float = 0.8
    hue: float = 0.5
    grayscale: float = 0.5
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    noise: float = 0.0
    erase: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable copy (tuples become lists), for the model card."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}


_DEFAULTS = SimCLRConfig()
#: the stroke strength of the automatic default (``stroke=None``), on grey images only and
#: from the second epoch: bench/QUALITY.md (the held-out digits' margin over raw pixels)
AUTO_STROKE = 0.5
AUTO_STROKE_FROM_EPOCH = 2


def stroke_schedule(config: SimCLRConfig, channels: int) -> tuple[float, int]:
    """(strength, first epoch) of the stroke augmentation for images of ``channels``.

    An explicit ``stroke`` applies from the first epoch. The automatic one (None) thickens
    and thins grey images only, where strokes are what a picture is made of (colour shapes
    and photos are not), and only once every image has been seen plainly for an epoch: in
    a one-epoch run it moved thin-looped eights to nines (bench/QUALITY.md)."""
    if config.stroke is not None:
        return config.stroke, 1
    return (AUTO_STROKE if channels == 1 else 0.0), AUTO_STROKE_FROM_EPOCH
#: the views of a torchvision backbone's step by default: 16 x 8 views at 224 px are already
#: the activations of 128 photos through ResNet-50
TORCHVISION_VIEWS = 8
#: options whose None means "the default for the rest of the options" (not a value to keep)
_AUTOMATIC = frozenset({"views"})

#: the torchvision backbones BUILD MODEL offers besides our own ``small`` network, with the
#: file torchvision's DEFAULT ImageNet weights have in the torch hub cache and their URL
#: (``tests/test_backbones.py`` checks both against torchvision's weights API)
TORCHVISION_BACKBONES: dict[str, tuple[str, str]] = {
    "resnet18": ("resnet18-f37072fd.pth",
                 "https://download.pytorch.org/models/resnet18-f37072fd.pth"),
    "resnet50": ("resnet50-11ad3fa6.pth",
                 "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"),
}
BACKBONES = ("small", *TORCHVISION_BACKBONES)
#: the side the torchvision backbones train and embed at when no image_size is given
IMAGENET_SIDE = 224


def _int(name: str, lo: int, hi: int, doc: str, *, none: bool = False) -> OptionSpec:
    return OptionSpec(
        name, (int, type(None)) if none else (int,), getattr(_DEFAULTS, name), doc,
        check=lambda v: None if v is None or lo <= v <= hi else "out of range",
        allowed=f"an integer from {lo} to {hi}" + (" or None" if none else ""))


def _float(name: str, lo: float, hi: float, doc: str, *, lo_open: bool = False) -> OptionSpec:
    def check(v: float) -> str | None:
        ok = v == v and lo <= v <= hi and not (lo_open and v == lo)
        return None if ok else "out of range"

    return OptionSpec(name, (float,), getattr(_DEFAULTS, name), doc, check=check,
                      allowed=f"a number {'>' if lo_open else '>='} {lo} and <= {hi}",
                      convert=float)


def _bool(name: str, doc: str) -> OptionSpec:
    return OptionSpec(name, (bool,), getattr(_DEFAULTS, name), doc, allowed="True or False")


def _range(name: str, lo: float, hi: float, doc: str, *, scalar_is: str) -> OptionSpec:
    """A [min, max] pair within (lo, hi]; a lone number is the min (or max) of the pair."""
    default = getattr(_DEFAULTS, name)

    def pair(value: Any) -> tuple[Any, Any] | None:
        if isinstance(value, (int, float)):
            return (value, default[1]) if scalar_is == "min" else (default[0], value)
        if len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   for v in value):
            return value[0], value[1]
        return None

    def check(value: Any) -> str | None:
        found = pair(value)
        return None if found is not None and lo < found[0] <= found[1] <= hi else "bad"

    def convert(value: Any) -> tuple[float, float]:
        found = pair(value)
        assert found is not None   # check() passed
        return float(found[0]), float(found[1])

    return OptionSpec(name, (float, tuple), default, doc, check=check,
                      allowed=f"[min, max] with {lo} < min <= max <= {hi}, or one such number",
                      convert=convert)


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")

#: every SimCLR option, in the order the README documents them
SIMCLR_OPTIONS: tuple[OptionSpec, ...] = (
    _int("max_epochs", 0, 100_000,
         f"passes over the data, integer >= 1; 0 with pretrained=True keeps the ImageNet "
         f"encoder untrained (default {_DEFAULTS.max_epochs})"),
    OptionSpec("backbone", (str,), _DEFAULTS.backbone,
               f"the encoder: 'small' (a small ResNet sized to the images, fast on a CPU), "
               f"'resnet18' or 'resnet50' (torchvision's, at {IMAGENET_SIDE} px unless "
               f"image_size says otherwise) (default '{_DEFAULTS.backbone}')",
               choices=BACKBONES),
    _bool("pretrained",
          f"start a torchvision backbone from its ImageNet weights, read from the torch hub "
          f"cache (TORCH_HOME; downloaded there when missing and the internet is reachable); "
          f"the backbone then learns at a tenth of learning_rate "
          f"(default {_DEFAULTS.pretrained})"),
    _int("batch_size", 2, 65_536,
         f"images per step, integer >= 2, capped at the row count "
         f"(default {_DEFAULTS.batch_size}; each brings `views` views)"),
    OptionSpec("views", (int, type(None)), None,
               f"augmented views of every image in a step, 2..64: the loss pulls all views of "
               f"one image together, so more views teach more per epoch (default: "
               f"{_DEFAULTS.views} with the small network, {TORCHVISION_VIEWS} with a "
               f"torchvision backbone, whose 224-px views cost far more memory; 2 is the "
               f"original SimCLR)",
               check=lambda v: None if v is None or 2 <= v <= 64 else "out of range",
               allowed="an integer from 2 to 64, or None (the default for the backbone)"),
    _float("learning_rate", 0.0, 10.0,
           f"peak AdamW learning rate, > 0 (default {_DEFAULTS.learning_rate})", lo_open=True),
    _float("weight_decay", 0.0, 10.0,
           f"AdamW weight decay, >= 0 (default {_DEFAULTS.weight_decay})"),
    _float("warmup_epochs", 0.0, 1000.0,
           f"epochs of linear warm-up before the cosine decay, >= 0 "
           f"(default {_DEFAULTS.warmup_epochs})"),
    _float("temperature", 0.0, 10.0,
           f"NT-Xent temperature, > 0 (default {_DEFAULTS.temperature})", lo_open=True),
    _int("image_size", 8, 1024,
         "side in pixels of the square the images are resized to, 8..1024 "
         "(default None: the first image's shorter side, at most 224)", none=True),
    _int("embedding_dim", 8, 2048,
         f"length of the search embedding: the output of the projection head, "
         f"the layer the loss trains to match views, 8..2048 "
         f"(default {_DEFAULTS.embedding_dim})"),
    _int("projection_dim", 8, 4096,
         f"width of the projection head's hidden layer, 8..4096 "
         f"(default {_DEFAULTS.projection_dim})"),
    _int("seed", -(2**63), 2**63 - 1,
         f"integer seed making CPU training reproducible at a fixed THANOSQL_THREADS, None "
         f"for a random run (default {_DEFAULTS.seed})", none=True),
    OptionSpec("device", (str,), _DEFAULTS.device,
               "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N' (default 'auto')",
               check=lambda v: None if _DEVICE.fullmatch(v.strip().lower()) else "bad",
               allowed="'auto', 'cpu', 'cuda' or 'cuda:N'",
               convert=lambda v: v.strip().lower()),
    _range("crop_scale", 0.0, 1.0,
           "random resized crop: area fraction kept, [min, max] or a min, in (0, 1] "
           f"(default {list(_DEFAULTS.crop_scale)}; [1, 1] turns it off)", scalar_is="min"),
    _range("crop_ratio", 0.0, 10.0,
           "random resized crop: aspect ratio range [min, max], > 0 "
           "(default [0.75, 1.333])", scalar_is="min"),
    _float("rotation", 0.0, 180.0,
           f"random rotation up to +/- this many degrees, 0..180 "
           f"(default {_DEFAULTS.rotation}; 0 turns it off)"),
    _float("shear", 0.0, 60.0,
           f"random shear up to +/- this many degrees, 0..60 (default {_DEFAULTS.shear})"),
    _bool("flip",
          f"random horizontal flip; leave off for digits and text (default {_DEFAULTS.flip})"),
    _bool("vertical_flip", f"random vertical flip (default {_DEFAULTS.vertical_flip})"),
    OptionSpec("stroke", (float, type(None)), None,
               f"random stroke width: every view is blended toward its 3x3 dilation or its "
               f"3x3 erosion by a random fraction up to this, 0..1, from the first epoch "
               f"(default None: {AUTO_STROKE} on grey images from the second epoch on, as "
               f"suits handwriting, digits and text; 0 on colour images; 0 turns it off)",
               check=lambda v: None if v is None or 0.0 <= v <= 1.0 else "out of range",
               allowed="a number >= 0.0 and <= 1.0, or None (automatic)",
               convert=lambda v: None if v is None else float(v)),
    _float("color_jitter", 0.0, 1.0,
           f"random brightness and contrast strength, 0..1 "
           f"(default {_DEFAULTS.color_jitter}; 0 turns it off)"),
    _float("saturation", 0.0, 1.0,
           f"random saturation strength for colour images, 0..1 "
           f"(default {_DEFAULTS.saturation})"),
    _float("hue", 0.0, 0.5,
           f"random hue shift for colour images, 0..0.5 (default {_DEFAULTS.hue})"),
    _float("grayscale", 0.0, 1.0,
           f"probability of turning a colour view grey, 0..1 "
           f"(default {_DEFAULTS.grayscale})"),
    _float("blur", 0.0, 1.0, f"probability of a Gaussian blur, 0..1 (default {_DEFAULTS.blur})"),
    _range("blur_sigma", 0.0, 100.0,
           "blur sigma range in pixels [min, max] or a max, > 0 "
           f"(default {list(_DEFAULTS.blur_sigma)})", scalar_is="max"),
    _float("noise", 0.0, 1.0,
           f"std of added Gaussian pixel noise (pixels in 0..1), 0..1 "
           f"(default {_DEFAULTS.noise})"),
    _float("erase", 0.0, 1.0,
           f"probability of erasing a random rectangle, 0..1 (default {_DEFAULTS.erase})"),
)

#: option name -> one line: what it does, with its default (README, errors, help)
SIMCLR_OPTION_DOCS: dict[str, str] = documented(SIMCLR_OPTIONS)

assert list(SIMCLR_OPTION_DOCS) == [f.name for f in dataclasses.fields(SimCLRConfig)]


def simclr_config(values: dict[str, Any]) -> SimCLRConfig:
    """The config from values ``read_options`` checked (other statements' options ignored),
    with the checks that involve two options."""
    config = SimCLRConfig(**{name: values[name] for name in SIMCLR_OPTION_DOCS
                             if name in values and not (name in _AUTOMATIC
                                                        and values[name] is None)})
    if values.get("views") is None and config.backbone in TORCHVISION_BACKBONES:
        config = dataclasses.replace(config, views=TORCHVISION_VIEWS)
    if config.pretrained and config.backbone not in TORCHVISION_BACKBONES:
        raise OptionError(f"BUILD MODEL: pretrained=True needs a torchvision backbone; "
                          f"backbone={config.backbone!r} has no ImageNet weights",
                          hint="Add backbone='resnet18' or backbone='resnet50' to the "
                               "OPTIONS, or leave out pretrained.")
    if config.max_epochs == 0 and not config.pretrained:
        raise OptionError("BUILD MODEL: max_epochs=0 trains nothing, and an untrained network "
                          "from scratch embeds noise",
                          hint="Use max_epochs=1 or more, or pretrained=True with a torchvision "
                               "backbone to keep its ImageNet encoder as it is.")
    return config


def parse_simclr_options(options: dict[str, object]) -> SimCLRConfig:
    """Validate user options (names case-insensitive) into a ``SimCLRConfig``.

    Raises ``OptionError`` naming the option, the value received and what is allowed; an
    unknown name lists every valid one.
    """
    return simclr_config(read_options(options, SIMCLR_OPTIONS, "BUILD MODEL"))
