"""The encoders: a small ResNet-style network whose depth of downsampling follows the image
size (``small``, the default), or torchvision's ResNet-18 / ResNet-50, optionally starting
from their ImageNet weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: the feature is the last stage average-pooled to GRID x GRID cells, then flattened
GRID = 4
#: length of that feature (last stage 64 channels x 4 x 4); the projection head maps it to
#: the search embedding
FEATURE_DIM = 1024


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to rebuild the encoder (stored as JSON next to the weights)."""

    channels: int
    image_size: int
    feature_dim: int
    stem_downsamples: int
    widths: tuple[int, ...]
    #: "small", or a torchvision backbone ("resnet18", "resnet50")
    kind: str = "small"

    @classmethod
    def for_images(cls, channels: int, image_size: int, feature_dim: int = FEATURE_DIM,
                   kind: str = "small") -> BackboneSpec:
        """Choose the layout for ``image_size``: stride-2 stem convs until the map is at most
        16 px (28 -> 14, 224 -> 14), then three residual stages at 1x, 1/2x, 1/4x of that,
        so the last map is at most 4x4. The feature keeps that 4x4 grid (``GRID``), so the
        last stage is ``feature_dim / 16`` channels wide.

        Keeping the residual stages at <= 16 px and narrow is what makes a 28x28 epoch cheap
        on a CPU: widths (16, 32, 64) train ~4x faster than (32, 64, 128) there.
        """
        if kind != "small":   # torchvision's layout: the feature is the pooled last stage
            return cls(channels, image_size, _TORCHVISION_FEATURE[kind], 0, (), kind)
        downsamples = max(0, math.ceil(math.log2(image_size / 16))) if image_size > 16 else 0
        last = max(8, feature_dim // (GRID * GRID))
        widths = (max(8, last // 4), max(8, last // 2), last)
        return cls(channels, image_size, last * GRID * GRID, downsamples, widths)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["widths"] = list(self.widths)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BackboneSpec:
        """The spec ``to_dict`` wrote (older files name the feature ``embedding_dim``)."""
        dim = d["feature_dim"] if "feature_dim" in d else d["embedding_dim"]
        return cls(int(d["channels"]), int(d["image_size"]), int(dim),
                   int(d["stem_downsamples"]), tuple(int(w) for w in d["widths"]),
                   str(d.get("kind", "small")))


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs plus a (projected when the shape changes) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = _conv_bn(cout, cout, 1)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))
        # zero-init of the last BN makes each block start as identity: steadier short runs
        last_norm = self.conv2[1]
        assert isinstance(last_norm, nn.BatchNorm2d)
        nn.init.zeros_(last_norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, cin, H, W) -> (B, cout, H / stride, W / stride)."""
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class Backbone(nn.Module):
    """Normalised float images (B, C, S, S) -> feature (B, feature_dim).

    The feature is the last stage average-pooled to a GRID x GRID map and flattened. Measured
    on MNIST (1,000 training digits, 200 queries, 5 epochs), keeping the 4x4 layout instead
    of one global average pool raised precision@4 from ~0.41 to ~0.70: where a stroke is
    matters for "looks like", and a global pool throws that away. The search embedding is
    the projection head's output on this feature (see ``bench/QUALITY.md``).
    """

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        w0 = spec.widths[0]
        stem: list[nn.Module] = []
        cin = spec.channels
        for i in range(max(1, spec.stem_downsamples)):
            stride = 2 if i < spec.stem_downsamples else 1
            # narrower early convs: at large sizes they run on the most pixels
            last = i == spec.stem_downsamples - 1 or spec.stem_downsamples == 0
            cout = w0 if last else max(8, w0 // 2)
            stem += [*_conv_bn(cin, cout, stride), nn.ReLU(inplace=True)]
            cin = cout
        self.stem = nn.Sequential(*stem)
        stages: list[nn.Module] = []
        for i, w in enumerate(spec.widths):
            stages.append(BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, S, S) float -> (B, feature_dim)."""
        f = self.stages(self.stem(x))
        if f.shape[-2:] != (GRID, GRID):   # 28 px ends at 4x4: pooling would be a costly no-op
            f = F.adaptive_avg_pool2d(f, GRID)
        return f.flatten(1)


#: length of the feature of each torchvision backbone (its pooled last stage)
_TORCHVISION_FEATURE = {"resnet18": 512, "resnet50": 2048}


class TorchvisionBackbone(nn.Module):
    """torchvision's ResNet without its classifier: normalised (B, C, S, S) -> (B, 512 or
    2048), the last stage average-pooled. Grey images are repeated into the three channels
    the ImageNet weights were trained on."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        import torchvision

        self.spec = spec
        self.net = getattr(torchvision.models, spec.kind)(weights=None)
        self.net.fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)


def make_backbone(spec: BackboneSpec) -> nn.Module:
    return Backbone(spec) if spec.kind == "small" else TorchvisionBackbone(spec)


class Encoder(nn.Module):
    """uint8 images (B, C, S, S) -> feature (B, D): scales to 0..1, standardises with the
    training set's per-channel mean and std (kept as buffers, saved with the weights), then
    runs the backbone. Training feeds ``backbone`` directly with already normalised views."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.backbone = make_backbone(spec)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.zeros(1, spec.channels, 1, 1))
        self.register_buffer("std", torch.ones(1, spec.channels, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, S, S) float in 0..1 -> standardised (B, C, S, S)."""
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, C, S, S) uint8 -> (B, D) float."""
        return self.backbone(self.normalise(images.float().div_(255.0)))
