"""Training views/s of each backbone at 224 px, and CONVERT images/s of the pretrained encoders.

    python bench/backbones.py [--images 64] [--convert 256] [--device auto]

1. ``fit`` (the training BUILD MODEL runs: augmentation, forward, loss, backward, AdamW, with
   the CPU's bf16 autocast where it has one) on ``--images`` random 224x224 colour images,
   batch 8 x 2 views, one epoch; views/s is taken from the last step's rate, so the model's
   construction and the BatchNorm recalibration after training are not counted.
2. Through the engine: ``BUILD MODEL … OPTIONS (backbone=…, pretrained=True, max_epochs=0)``
   on ``--convert`` 320x240 JPEG photos (random weights written into a temporary TORCH_HOME:
   speed does not depend on their values), then ``CONVERT USING`` that model, timed end to
   end (decode, resize to 224, embed, write, index). The default small backbone at
   ``image_size=224``, trained one epoch, is the baseline of the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import Workspace  # noqa: E402 - the engine driven statement by statement

BACKBONES = ("small", "resnet18", "resnet50")


def training_views_per_second(backbone: str, n: int, device: str) -> float:
    import torch

    from thanosql_kernel.models import fit
    from thanosql_kernel.models.config import SimCLRConfig

    images = torch.randint(0, 256, (n, 3, 224, 224), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    config = SimCLRConfig(max_epochs=1, batch_size=8, views=2, backbone=backbone, seed=0,
                          device=device)
    rates: list[float] = []
    fit(images, config, lambda p: rates.append(p.images_per_second))
    return rates[-1] * config.views


def photos(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    lines = ["image_path"]
    for i in range(n):   # smooth colour fields with noise: JPEG sizes like small photos
        base = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((320, 240), Image.BICUBIC)
        noisy = np.clip(np.asarray(img, dtype=np.int16) + rng.integers(-20, 20, (240, 320, 3)),
                        0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i}.jpg", quality=90)
        lines.append(f"{folder.name}/{i}.jpg")
    (folder.parent / "photos.csv").write_text("\n".join(lines) + "\n")


def random_weights(torch_home: Path) -> None:
    """Random weights of every torchvision backbone where ``pretrained=True`` reads ImageNet's
    (TORCH_HOME set to ``torch_home``): no download, and speed does not depend on them."""
    import torch
    import torchvision

    from thanosql_kernel.models.config import TORCHVISION_BACKBONES

    os.environ["TORCH_HOME"] = str(torch_home)
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name, (file, _) in TORCHVISION_BACKBONES.items():
        torch.save(getattr(torchvision.models, name)().state_dict(), checkpoints / file)


def convert_rates(n: int) -> dict[str, tuple[float, float]]:
    """backbone -> (BUILD s, CONVERT images/s) through the engine."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="backbones-") as tmp:
        folder = Path(tmp)
        random_weights(folder / "torch_home")
        photos(folder / "photos", n)
        ws = Workspace(folder)

        def run(sql: str) -> float:
            started = time.perf_counter()
            ws.run(sql)
            return time.perf_counter() - started

        run("COPY photos FROM 'photos.csv'")
        for backbone in BACKBONES:
            options = ("image_size=224, max_epochs=1" if backbone == "small" else
                       f"backbone='{backbone}', pretrained=True, max_epochs=0")
            build = run(f"BUILD MODEL m_{backbone} USING SimCLR OPTIONS ({options}) "
                        f"AS SELECT * FROM photos")
            seconds = run(f"CONVERT USING m_{backbone} AS SELECT * FROM photos")
            out[backbone] = (build, n / seconds)
        ws.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--convert", type=int, default=256)
    ap.add_argument("--device", default="auto", help="training device (CONVERT: 'auto')")
    args = ap.parse_args()
    import torch

    from thanosql_kernel.models.train import cpu_has_native_bf16

    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() and \
        args.device != "cpu" else f"CPU, {torch.get_num_threads()} threads, bf16 autocast " \
        f"{'on' if cpu_has_native_bf16() else 'off'}"
    print(f"torch {torch.__version__}, {where}", flush=True)
    views = {b: training_views_per_second(b, args.images, args.device) for b in BACKBONES}
    for b, v in views.items():
        print(f"  training {b}: {v:,.1f} views/s", flush=True)
    rates = convert_rates(args.convert)
    print()
    print("| backbone | training views/s at 224 px | BUILD (pretrained, max_epochs=0) s | "
          "CONVERT images/s | vs small |")
    print("|---|---|---|---|---|")
    for b in BACKBONES:
        build, rate = rates[b]
        label = "1 epoch from scratch, the baseline" if b == "small" else f"{build:.1f}"
        print(f"| {b} | {views[b]:,.1f} | {label} | {rate:,.1f} | "
              f"{rate / rates['small'][1]:.2f}x |")


if __name__ == "__main__":
    main()
