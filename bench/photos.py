"""CONVERT of photos with the torchvision backbones, beside the network alone, in one run.

    python bench/photos.py [--images 96] [--sizes 320x240,1024x768] [--backbones resnet18,resnet50]

For each backbone (random weights written into a temporary TORCH_HOME as ImageNet's would
be: speed does not depend on their values), ``BUILD MODEL … OPTIONS (backbone=…,
pretrained=True, max_epochs=0)`` through the engine, then:

- the network alone: the encoder and head CONVERT runs (at the precision and in the memory
  format the kernel chooses, on torch's threads) on random 224x224 images already in memory,
  at the batch sizes given (``--batches``), images/s;
- CONVERT end to end through the engine on ``--images`` JPEG photos of each size (decode with
  the JPEG draft mode, resize to 224, embed, write the column, index), images/s; and its
  ratio to the network alone at its best batch (goal, issue 25: >= 0.8x).

The photos are smooth colour fields with noise, so their JPEG files are photo-like in size.
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

from backbones import random_weights  # noqa: E402
from quality import Workspace  # noqa: E402 - the engine driven statement by statement


def write_photos(folder: Path, n: int, width: int, height: int) -> str:
    """n JPEGs of width x height under ``folder``; the CSV's path (relative to its parent)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    lines = ["image_path"]
    for i in range(n):
        base = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((width, height), Image.BICUBIC)
        noisy = np.clip(np.asarray(img, dtype=np.int16)
                        + rng.integers(-20, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i}.jpg", quality=90)
        lines.append(f"{folder.name}/{i}.jpg")
    csv = folder.parent / f"{folder.name}.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv.name


def network_alone(model, batch: int, seconds: float = 6.0) -> float:
    """images/s of the encoder and head alone (what ``models.embed`` runs, in the kernel's
    memory format and precision, on torch's threads) on random images in memory, ``batch``
    at a time."""
    import torch

    images = torch.randint(0, 256, (batch, model.channels, model.image_size, model.image_size),
                           dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images = images.contiguous(memory_format=torch.channels_last)
    encoder, head = model.encoder.eval(), model.head.eval()

    def once() -> None:
        with torch.inference_mode():
            torch.nn.functional.normalize(head(encoder(images)), dim=1).numpy()

    once()   # warm: oneDNN picks its kernels
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        once()
        done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--sizes", default="320x240,1024x768")
    ap.add_argument("--backbones", default="resnet18,resnet50")
    ap.add_argument("--batches", default="8,16,32")
    args = ap.parse_args()
    import torch

    from thanosql_kernel.models.train import cpu_has_native_bf16

    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {torch.get_num_threads()} "
          f"threads, native bf16: {cpu_has_native_bf16()}", flush=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="photos-") as tmp:
        folder = Path(tmp)
        random_weights(folder / "torch_home")
        tables = {}
        for w, h in sizes:
            tables[(w, h)] = write_photos(folder / f"photos_{w}x{h}", args.images, w,
                                          h).removesuffix(".csv")
        ws = Workspace(folder)
        for table in tables.values():
            ws.run(f"COPY {table} FROM '{table}.csv'")
        print("| backbone | network alone images/s by batch | photo size | CONVERT images/s | "
              "CONVERT / best alone |")
        print("|---|---|---|---|---|", flush=True)
        for backbone in args.backbones.split(","):
            model_name = f"m_{backbone}"
            ws.run(f"BUILD MODEL {model_name} USING SimCLR OPTIONS (backbone='{backbone}', "
                   f"pretrained=True, max_epochs=0) AS SELECT * FROM {tables[sizes[0]]}")
            model = ws.services.loader.load(model_name)[0]
            alone = {b: network_alone(model, b) for b in batches}
            # once untimed: the model loaded, oneDNN's kernels chosen for CONVERT's batches
            ws.run(f"CONVERT USING {model_name} AS SELECT * FROM {tables[sizes[0]]}")
            best = max(alone.values())
            shown = ", ".join(f"{b}: {r:.1f}" for b, r in alone.items())
            for (w, h), table in tables.items():
                started = time.perf_counter()
                ws.run(f"CONVERT USING {model_name} AS SELECT * FROM {table}")
                rate = args.images / (time.perf_counter() - started)
                print(f"| {backbone} | {shown} | {w}x{h} | {rate:.1f} | {rate / best:.2f}x |",
                      flush=True)
        ws.close()


if __name__ == "__main__":
    main()
