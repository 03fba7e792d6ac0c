"""Photos with the torchvision backbones: CONVERT and BUILD beside the network alone, in one run.

    python bench/photos.py [--images 128] [--sizes 320x240,1024x768] [--backbones resnet18,resnet50]
                           [--phones 48,96] [--build 32]

For each backbone (random weights written into a temporary TORCH_HOME as ImageNet's would
be: speed does not depend on their values), ``BUILD MODEL … OPTIONS (backbone=…,
pretrained=True, max_epochs=0)`` through the engine, then:

1. CONVERT (issue 25, item 1): the network alone (the encoder and head CONVERT runs, at the
   precision and in the memory format the kernel chooses, on torch's threads) on random
   224x224 images already in memory, at the batch sizes given (``--batches``), images/s;
   beside CONVERT end to end through the engine on ``--images`` JPEG photos of each size
   (decode with the JPEG draft mode, resize to 224, embed, write the column, index), and its
   ratio to the network alone at its best batch (goal: >= 0.8x). The precision is the one
   BUILD chose for the model (bf16 on a CPU with native bf16 where its embeddings stay within
   a cosine of 0.999 of float32's), and the network alone in float32 is shown beside it. The
   decode alone of each size on one thread gives the bound the cores allow when decoding and
   the network share them (as in 2.), and CONVERT's ratio to it.
2. Phone photos (item 3): ``--phones`` tables of 4000x3000 JPEGs stored on their side with
   EXIF orientation 6, as a phone saves a photo held upright. The JPEG draft decode alone,
   on one thread (images/s per core), and the bound the machine allows when decoding and
   the network share its cores: cores / (1/decode + cores/network), each image costing its
   decode's core-seconds plus the network's. CONVERT's rate against that bound, and the
   peak resident memory CONVERT added (VmHWM, reset before it): the same for every table
   size, since no more than a few images are held at full size, and none of a JPEG.
3. BUILD (item 2): the network's own training step (forward under the kernel's autocast,
   the multi-view NT-Xent, backward, AdamW: what BUILD's step runs, without augmentation or
   data) on random views already in memory, at BUILD's default batch (16 images x 8 views
   at 224 px), views/s; beside ``BUILD MODEL … max_epochs=1`` end to end through the engine
   on ``--build`` 320x240 photos, from scratch and pretrained (decode, channel statistics,
   augmentation, training, BatchNorm recalibration, storing the model), views/s (goal:
   >= 0.8x).

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


def write_photos(folder: Path, n: int, width: int, height: int, orientation: int = 1,
                 tables: tuple[int, ...] = ()) -> dict[int, str]:
    """n JPEGs of width x height under ``folder`` (an EXIF ``orientation`` tag unless 1); a
    CSV of all of them named after the folder, and one of the first k for each k in
    ``tables``: rows -> table name (the CSV's name without .csv, beside the folder)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    paths = []
    for i in range(n):
        base = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((width, height), Image.BICUBIC)
        noisy = np.clip(np.asarray(img, dtype=np.int16)
                        + rng.integers(-20, 20, (height, width, 3), dtype=np.int16),
                        0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i}.jpg", quality=90, exif=exif.tobytes())
        paths.append(f"{folder.name}/{i}.jpg")
    names = {k: f"{folder.name}_{k}" for k in tables if k != n} | {n: folder.name}
    for k, name in names.items():
        (folder.parent / f"{name}.csv").write_text("\n".join(["image_path", *paths[:k]]) + "\n")
    return names


def shared_bound(cores: int, decode: float, network: float) -> float:
    """images/s the cores allow when each image costs its decode's core-seconds (``decode``
    images/s on one core) plus its share of the network (``network`` images/s on them all)."""
    return cores / (1 / decode + cores / network)


def network_alone(model, batch: int, seconds: float = 6.0, precision: str | None = None) -> float:
    """images/s of the encoder and head alone (what ``models.embed`` runs, in the kernel's
    memory format and in the precision BUILD chose for the model, or ``precision``, on
    torch's threads) on random images in memory, ``batch`` at a time."""
    import torch

    from thanosql_kernel.models.train import inference_autocast

    images = torch.randint(0, 256, (batch, model.channels, model.image_size, model.image_size),
                           dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images = images.contiguous(memory_format=torch.channels_last)
    encoder, head = model.encoder.eval(), model.head.eval()

    chosen = model.precision
    model.precision = precision or chosen

    def once() -> None:
        with torch.inference_mode(), inference_autocast(model):
            torch.nn.functional.normalize(head(encoder(images)).float(), dim=1).numpy()

    once()   # warm: oneDNN picks its kernels
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        once()
        done += batch
    model.precision = chosen
    return done / (time.perf_counter() - started)


def decode_alone(paths: list[str]) -> float:
    """images/s of the decode CONVERT runs (``models.images``: JPEG draft, upright, resize to
    224), on one thread: the rate of one core."""
    from thanosql_kernel.models.images import _open

    _open(paths[0], (224, 224), "RGB")   # warm
    started = time.perf_counter()
    for path in paths:
        _open(path, (224, 224), "RGB")
    return len(paths) / (time.perf_counter() - started)


def training_step_alone(backbone: str, batch: int, views: int, steps: int = 2) -> float:
    """views/s of BUILD's training step without its data: forward (the kernel's autocast),
    multi-view NT-Xent, backward, AdamW, on random views already in memory."""
    import torch

    from thanosql_kernel.models.config import SimCLRConfig
    from thanosql_kernel.models.loss import multi_view_nt_xent_loss
    from thanosql_kernel.models.train import BackboneSpec, Encoder, ProjectionHead, autocast

    config = SimCLRConfig()
    spec = BackboneSpec.for_images(3, 224, kind=backbone)
    encoder = Encoder(spec).to(memory_format=torch.channels_last).train()
    head = ProjectionHead(spec.feature_dim, config.projection_dim, config.embedding_dim).train()
    optimiser = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(batch * views, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with autocast(torch.device("cpu")):
            z = head(encoder.backbone(x))
        loss = multi_view_nt_xent_loss(z.float(), views, config.temperature)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    step()   # warm: oneDNN picks its kernels, AdamW makes its state
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch * views / (time.perf_counter() - started)


def _reset_peak() -> float:
    """Reset this process's peak resident memory (VmHWM) to what it holds now; MB now."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def convert_table(ws: Workspace, model: str, table: str, n: int) -> float:
    started = time.perf_counter()
    ws.run(f"CONVERT USING {model} AS SELECT * FROM {table}")
    return n / (time.perf_counter() - started)


def print_table(title: str, header: list[str], rows: list[str]) -> None:
    """A Markdown table of ``rows`` (already formatted), after a blank line and ``title``;
    nothing when there are no rows."""
    if not rows:
        return
    print()
    if title:
        print(title)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--sizes", default="320x240,1024x768")
    ap.add_argument("--backbones", default="resnet18,resnet50")
    ap.add_argument("--batches", default="8,16,32")
    ap.add_argument("--phones", default="48,96",
                    help="table sizes of 4000x3000 phone photos (empty: none)")
    ap.add_argument("--build", type=int, default=32,
                    help="320x240 photos BUILD trains on, one epoch (0: no BUILD)")
    args = ap.parse_args()
    import torch

    from thanosql_kernel.models.config import TORCHVISION_VIEWS, SimCLRConfig
    from thanosql_kernel.models.train import cpu_has_native_bf16

    cores = torch.get_num_threads()
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {cores} threads, native bf16: "
          f"{cpu_has_native_bf16()}", flush=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    phones = sorted(int(k) for k in args.phones.split(",") if k)
    with tempfile.TemporaryDirectory(prefix="photos-") as tmp:
        folder = Path(tmp)
        random_weights(folder / "torch_home")
        tables = {}
        for w, h in sizes:
            tables[(w, h)] = write_photos(folder / f"photos_{w}x{h}", args.images, w,
                                          h)[args.images]
        phone_tables = write_photos(folder / "phones", phones[-1], 4000, 3000, orientation=6,
                                    tables=tuple(phones)) if phones else {}
        ws = Workspace(folder)
        for table in [*tables.values(), *phone_tables.values()]:
            ws.run(f"COPY {table} FROM '{table}.csv'")
        convert_rows, phone_rows, build_rows = [], [], []
        decode = decode_alone([str(folder / "phones" / f"{i}.jpg") for i in range(
            min(24, phones[-1]))]) if phones else 0.0
        decodes = {(w, h): decode_alone([str(folder / f"photos_{w}x{h}" / f"{i}.jpg")
                                         for i in range(min(48, args.images))])
                   for w, h in sizes}
        for backbone in args.backbones.split(","):
            model_name = f"m_{backbone}"
            ws.run(f"BUILD MODEL {model_name} USING SimCLR OPTIONS (backbone='{backbone}', "
                   f"pretrained=True, max_epochs=0) AS SELECT * FROM {tables[sizes[0]]}")
            model = ws.services.loader.load(model_name)[0]
            alone = {b: network_alone(model, b) for b in batches}
            fp32 = network_alone(model, batches[0], precision="fp32")
            cosine = "-" if model.bf16_cosine is None else f"{model.bf16_cosine:.5f}"
            chosen = f"{model.precision} (bf16 cosine {cosine}; fp32 alone {fp32:.1f})"
            # once untimed: the model loaded, oneDNN's kernels chosen for CONVERT's batches
            ws.run(f"CONVERT USING {model_name} AS SELECT * FROM {tables[sizes[0]]}")
            best = max(alone.values())
            shown = ", ".join(f"{b}: {r:.1f}" for b, r in alone.items())
            for (w, h), table in tables.items():
                rate = convert_table(ws, model_name, table, args.images)
                shared = shared_bound(cores, decodes[(w, h)], best)
                convert_rows.append(f"| {backbone} | {chosen} | {shown} | {w}x{h} | "
                                    f"{decodes[(w, h)]:.0f} | {shared:.1f} | {rate:.1f} | "
                                    f"{rate / best:.2f}x | {rate / shared:.2f}x |")
                print(convert_rows[-1], flush=True)
            bound = shared_bound(cores, decode, best) if phones else 0.0
            for k in phones:
                table = phone_tables[k]
                before = _reset_peak()
                rate = convert_table(ws, model_name, table, k)
                added = _status_mb("VmHWM") - before
                phone_rows.append(f"| {backbone} | {k} | {decode:.1f} | {best:.1f} | "
                                  f"{bound:.1f} | {rate:.1f} | {rate / bound:.2f}x | "
                                  f"{added:,.0f} |")
                print(phone_rows[-1], flush=True)
            if args.build:
                step = training_step_alone(backbone, SimCLRConfig.batch_size, TORCHVISION_VIEWS)
                views = args.build * TORCHVISION_VIEWS
                for pretrained in (False, True):
                    started = time.perf_counter()
                    ws.run(f"BUILD MODEL b_{backbone} USING SimCLR OPTIONS (backbone="
                           f"'{backbone}', pretrained={pretrained}, max_epochs=1, "
                           f"overwrite=True) AS SELECT * FROM {tables[sizes[0]]} "
                           f"LIMIT {args.build}")
                    rate = views / (time.perf_counter() - started)
                    weights = "pretrained" if pretrained else "from scratch"
                    build_rows.append(f"| {backbone} | {weights} | {step:.1f} | {rate:.1f} | "
                                      f"{rate / step:.2f}x |")
                    print(build_rows[-1], flush=True)
        ws.close()
    print_table(f"Photos; bound = {cores} cores / (1/decode + {cores}/network): what the cores "
                f"allow when each image costs its decode and its share of the network",
                ["backbone", "precision chosen", "network alone images/s by batch",
                 "photo size", "decode alone, 1 thread, images/s", "bound images/s",
                 "CONVERT images/s", "CONVERT / best alone", "CONVERT / bound"], convert_rows)
    print_table(f"Phone photos, 4000x3000 JPEG, EXIF orientation 6; bound = {cores} cores / "
                f"(1/decode + {cores}/network)",
                ["backbone", "photos", "decode alone, 1 thread, images/s",
                 "network alone images/s", "bound images/s", "CONVERT images/s",
                 "CONVERT / bound", "peak RSS added MB"], phone_rows)
    print_table(f"BUILD, max_epochs=1, {args.build} photos of {sizes[0][0]}x{sizes[0][1]}, "
                f"batch {SimCLRConfig.batch_size} x {TORCHVISION_VIEWS} views at 224 px",
                ["backbone", "weights", "training step alone views/s",
                 "BUILD end to end views/s", "BUILD / step"], build_rows)

if __name__ == "__main__":
    main()
