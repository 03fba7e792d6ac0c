"""SimCLR training loop, embedding, and saving / loading a trained model."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, NotFoundError, OptionError
from .backbone import BackboneSpec, Encoder, TorchvisionBackbone
from .config import SimCLRConfig, stroke_schedule
from .head import ProjectionHead
from .images import ImageFiles
from .loss import multi_view_nt_xent_loss
from .parallel import Shard, gather, global_batchnorm, sum_gradients
from .threads import CpuShare
from .transforms import BatchAugment

WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "model.json"
BASE_MODEL = "SimCLR"
#: 2: the embedding is the projection head's output (1 used the backbone's feature)
FORMAT = 2


@dataclass(frozen=True)
class TrainProgress:
    """One training step done (``step`` counts from 1 within the epoch)."""

    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    loss: float
    images_per_second: float
    seconds_elapsed: float
    seconds_left: float


@dataclass
class TrainedModel:
    """An eval-mode encoder (+ its projection head) and what the model card needs.

    ``head`` is ``nn.Identity`` for a pretrained encoder kept untrained (``max_epochs=0``):
    a projection head nobody trained would only scramble the ImageNet feature."""

    encoder: Encoder
    head: torch.nn.Module
    spec: BackboneSpec
    config: SimCLRConfig
    loss_per_epoch: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images_seen: int = 0
    #: where the training images stayed: "device", "host" (RAM, GPU training) or "files"
    images_held: str = "device"
    #: the precision its embeddings are computed in on a CPU: "bf16" where BUILD measured
    #: them close to float32's (``choose_precision``), else "fp32"
    precision: str = "fp32"
    #: the least cosine between a sample's bf16 and float32 embeddings (None: not measured)
    bf16_cosine: float | None = None

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    @property
    def weight_bytes(self) -> int:
        """The size of the model's weights (what saving it writes, about)."""
        return sum(t.numel() * t.element_size()
                   for part in (self.encoder, self.head) for t in part.state_dict().values())

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def embedding_dim(self) -> int:
        """Length of the search embedding: the projection head's output, or the backbone's
        feature when there is no trained head."""
        return self.config.embedding_dim if self.trained else self.spec.feature_dim

    @property
    def trained(self) -> bool:
        return self.config.max_epochs > 0

    @property
    def device(self) -> torch.device:
        return self.encoder.mean.device

    def card_fields(self) -> dict[str, object]:
        """JSON-serialisable facts for the model card (the engine adds query, rows, name)."""
        import torchvision

        return {
            "base_model": BASE_MODEL,
            "options": self.config.to_dict(),
            "image_size": self.image_size,
            "channels": self.channels,
            "embedding_dim": self.embedding_dim,
            "embedding": _EMBEDDING[(self.spec.kind == "small", self.trained)],
            "architecture": self.spec.to_dict(),
            "loss_per_epoch": [round(v, 6) for v in self.loss_per_epoch],
            "seconds": round(self.seconds, 3),
            "images_seen": self.images_seen,
            "images_held": self.images_held,
            "precision": self.precision,
            "bf16_cosine": None if self.bf16_cosine is None else round(self.bf16_cosine, 6),
            "library_versions": {"python": platform.python_version(), "torch": torch.__version__,
                                 "torchvision": torchvision.__version__,
                                 "numpy": np.__version__},
        }


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without CUDA is an OptionError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError(f"device={name!r}: no CUDA device is available here",
                              hint="use device='auto' or device='cpu'")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise OptionError(f"device={name!r}: only {torch.cuda.device_count()} CUDA "
                              f"device(s) here")
    return torch.device(name)


def _channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std in 0..1 of (N, C, H, W) uint8, over at most 10,000 images."""
    sample = images[:: max(1, images.shape[0] // 10_000)].float().div_(255.0)
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp(min=1e-3)
    return mean, std


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to ``peak``, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


#: the model card's words for the embedding: (small backbone?, trained?) -> text
_EMBEDDING = {
    (True, True): "L2-normalised output of the projection head (an MLP on the backbone's last "
                  "stage pooled to 4x4)",
    (False, True): "L2-normalised output of the projection head (an MLP on the torchvision "
                   "backbone's pooled last stage)",
    (False, False): "L2-normalised pooled last stage of the torchvision backbone, with its "
                    "ImageNet weights as they are (max_epochs=0)",
}


def _build(spec: BackboneSpec, config: SimCLRConfig) -> tuple[Encoder, torch.nn.Module]:
    encoder = Encoder(spec)
    if config.max_epochs == 0:   # nothing trains a head: the embedding is the feature
        return encoder, torch.nn.Identity()
    # a narrow hidden layer (default 256): 1024x1024 would cost more than the convolutions
    # on a CPU
    head = ProjectionHead(spec.feature_dim, config.projection_dim, config.embedding_dim)
    return encoder, head


#: ImageNet's channel mean and std, which torchvision's weights expect their input scaled by
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _imagenet_stats(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet's mean and std for ``channels``: a grey channel, repeated into the three the
    network reads, gets their averages."""
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if channels == 1:
        return mean.mean().view(1), std.mean().view(1)
    return mean, std


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from
    /proc/cpuinfo; elsewhere bf16 is emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast for the training forward on a CPU with native bf16 (convolutions and
    matmuls run in bf16, BatchNorm, loss and weights stay float32); float32 elsewhere.
    Set THANOSQL_BF16=0 to turn it off."""
    return torch.autocast("cpu", dtype=torch.bfloat16,
                          enabled=device.type == "cpu" and _bf16_wanted())


#: bf16 embeddings are used when every image of BUILD's sample has at least this cosine
#: with its float32 embedding (issue 25)
BF16_MIN_COSINE = 0.999
#: images of the training set that sample holds
BF16_SAMPLE = 32


def _bf16_wanted() -> bool:
    import os

    return os.environ.get("THANOSQL_BF16", "1") != "0" and cpu_has_native_bf16()


def inference_autocast(model: TrainedModel) -> torch.autocast:
    """The precision ``embed`` runs ``model`` in: bf16 autocast on a CPU that computes bf16
    natively when BUILD chose it for this model (``choose_precision``), float32 otherwise
    (THANOSQL_BF16=0 turns bf16 off)."""
    use = model.precision == "bf16" and model.device.type == "cpu" and _bf16_wanted()
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=use)


def choose_precision(model: TrainedModel, sample: torch.Tensor) -> None:
    """Set ``model.precision`` to "bf16" when bf16 autocast is faster here and keeps the
    embeddings of every image of ``sample`` (uint8, the model's shape) within a cosine of
    ``BF16_MIN_COSINE`` of float32's, else "fp32"; record the least cosine measured.

    Only the torchvision backbones are tried: bf16 runs resnet18 1.7x and resnet50 2.3x
    faster on an AVX512-BF16 CPU, but the small network of the tutorial not at all (0.9x at
    224 px). A randomly initialised ResNet can amplify bf16's rounding far past the limit
    (cosines of 0.64 measured), so the choice is measured per model, never assumed."""
    model.precision, model.bf16_cosine = "fp32", None
    if (model.spec.kind == "small" or model.device.type != "cpu" or not _bf16_wanted()
            or len(sample) == 0):
        return
    exact = embed(model, sample)
    model.precision = "bf16"
    rounded = embed(model, sample)
    cosine = float(np.min(np.sum(exact.astype(np.float64) * rounded, axis=1)))
    model.bf16_cosine = cosine
    model.precision = "bf16" if cosine >= BF16_MIN_COSINE else "fp32"


class _Batches:
    """Where the training images stay during training, and how a batch of them reaches the
    device: ``batches(rows)`` -> (B, C, S, S) uint8 on the device, rows a 1-d index tensor.

    ``where`` says which: "device" (one copy on the training device: always on a CPU, and on
    a GPU when the images take at most half of its free memory), "host" (kept in RAM, each
    batch copied to the GPU) or "files" (``ImageFiles``: each batch decoded from its files).
    """

    def __init__(self, images: torch.Tensor | ImageFiles, device: torch.device) -> None:
        self.device = device
        #: the images as given: a tensor in RAM, or the files
        self.source = images
        #: the tensor batches are indexed from ("device", "host"); None for "files"
        self._held: torch.Tensor | None = None
        if isinstance(images, ImageFiles):
            self.where = "files"
        elif device.type == "cuda" and images.nbytes > torch.cuda.mem_get_info(device)[0] // 2:
            self.where, self._held = "host", images
        else:
            self.where, self._held = "device", images.to(device)

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        if self._held is None:
            assert isinstance(self.source, ImageFiles)
            return self.source.take(rows.tolist()).to(self.device)
        if self.where == "host":
            return self._held[rows.cpu()].to(self.device)
        return self._held[rows]

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``_channel_stats`` of the images; from files, over the same rows, decoded and
        summed a chunk at a time (float64 sums, so equal to a few units in the last place)."""
        if not isinstance(self.source, ImageFiles):
            return _channel_stats(self.source)
        n, c, h, w = self.source.shape
        rows = list(range(0, n, max(1, n // 10_000)))
        total = torch.zeros(c, dtype=torch.float64)
        squares = torch.zeros(c, dtype=torch.float64)
        for i in range(0, len(rows), 256):
            x = self.source.take(rows[i:i + 256]).double().div_(255.0)
            total += x.sum(dim=(0, 2, 3))
            squares += x.square().sum(dim=(0, 2, 3))
        count = len(rows) * h * w
        mean = total / count
        var = (squares - count * mean.square()) / max(1, count - 1)
        return mean.float(), var.clamp(min=0).sqrt().float().clamp(min=1e-3)

    def close(self) -> None:
        if isinstance(self.source, ImageFiles):
            self.source.close()


def _recalibrate_batchnorm(encoder: Encoder, batches: _Batches, n: int, batch: int,
                           cpu: CpuShare | None, shard: Shard | None = None) -> None:
    """Set every BatchNorm's running mean/var to exact averages over the un-augmented
    training images (all ``n`` of them, ``batch`` at a time).

    A short run (4 steps for one epoch of 1,000 images) leaves the momentum-averaged
    statistics near their initial 0/1, and search embeds clean images, not augmented ones;
    measured on MNIST this step alone lifts precision@4 substantially. With a ``shard``
    each worker runs its part of every batch (its BatchNorms sum the statistics over all).
    """
    def clean_batches() -> Iterator[torch.Tensor]:
        for i in range(0, n, batch):
            rows = torch.arange(i, min(i + batch, n), device=batches.device)
            if shard is not None:
                rows = shard.part(rows)
            yield batches(rows).contiguous(memory_format=torch.channels_last)
            if cpu is not None:
                cpu.tick()

    # update_bn resets the statistics, averages them cumulatively (every batch weighs the
    # same) and puts the momenta back; it runs the forward with autograd on, hence no_grad
    with torch.no_grad():
        torch.optim.swa_utils.update_bn(clean_batches(), encoder)


def fit(images: torch.Tensor | ImageFiles, config: SimCLRConfig,
        progress: Callable[[TrainProgress], None] | None = None,
        cpu: CpuShare | None = None, shard: Shard | None = None) -> TrainedModel:
    """Train SimCLR on ``images`` (N, C, S, S) uint8, or on ``ImageFiles`` for a set too big
    for memory (the same training, each batch decoded from its files; only the channel mean
    and std are summed differently), and return the eval-mode model.

    Each step takes a batch, draws ``config.views`` independently augmented views of every
    image on the training device, and minimises the multi-view NT-Xent between their
    projections (with 2 views, exactly SimCLR's NT-Xent). ``progress`` is called
    after every step. With a ``seed``, CPU training is reproducible; the global RNG state is
    left as it was. A KeyboardInterrupt propagates at the next step (steps take well under a
    second on 28x28 images). ``cpu``, when given, is ticked after every step (its
    ``running()`` is the caller's).

    With a ``shard``, this process is one of ``shard.size`` data-parallel workers in a
    ``torch.distributed`` process group, each given the same ``images``: each step it takes
    its part of the batch, and the workers together train as one process would on the whole
    batch (``parallel``); every worker ends with the same model.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise DataError(f"training images must be uint8 (N, C, S, S), got "
                        f"{images.dtype} {tuple(images.shape)}")
    n = images.shape[0]
    if n < 2:
        raise DataError(f"SimCLR needs at least 2 images to train, the query returned {n}")
    if config.image_size is not None and images.shape[2] != config.image_size:
        raise DataError(f"images are {images.shape[2]} px, image_size is {config.image_size}")
    device = resolve_device(config.device)
    batches = _Batches(images, device)
    try:
        return _fit(batches, n, images.shape[1], images.shape[2], config, progress, cpu,
                    shard)
    finally:
        batches.close()


def _fit(batches: _Batches, n: int, channels: int, side: int, config: SimCLRConfig,
         progress: Callable[[TrainProgress], None] | None,
         cpu: CpuShare | None, shard: Shard | None) -> TrainedModel:
    device = batches.device
    spec = BackboneSpec.for_images(channels, side, kind=config.backbone)
    if shard is not None:
        seed = shard.seed
    else:
        seed = config.seed if config.seed is not None else int(torch.seed() % 2**63)

    with torch.random.fork_rng(devices=[]):   # initialise from the seed, global RNG untouched
        torch.manual_seed(seed)
        encoder, head = _build(spec, config)
    if config.pretrained:
        from .pretrained import ensure_weights, load_imagenet_state

        state = load_imagenet_state(config.backbone, ensure_weights(config.backbone))
        try:
            backbone = encoder.backbone
            assert isinstance(backbone, TorchvisionBackbone)   # simclr_config checked it
            backbone.net.load_state_dict(state)
        except RuntimeError as e:
            raise DataError(f"BUILD MODEL: the weights file for {config.backbone} does not fit "
                            f"its network: {str(e).splitlines()[0][:200]}",
                            hint="Delete the file in the torch hub cache (TORCH_HOME) and "
                                 "put torchvision's own there.") from None
        mean, std = _imagenet_stats(channels)
    else:
        mean, std = batches.channel_stats()
    encoder.mean.copy_(mean.view(1, -1, 1, 1))
    encoder.std.copy_(std.view(1, -1, 1, 1))
    # channels_last lets oneDNN pick its fast convolutions: ~1.5x training speed on the CPU
    encoder = encoder.to(device).to(memory_format=torch.channels_last)
    head = head.to(device)
    model = TrainedModel(encoder, head, spec, config, images_held=batches.where)
    if not model.trained:   # max_epochs=0: the pretrained encoder as it is
        encoder.eval()
        choose_precision(model, _sample(batches, n))
        return model
    if shard is not None:   # BatchNorm over the whole batch, on every worker
        global_batchnorm(encoder)
        global_batchnorm(head)
    strength, stroked_from = stroke_schedule(config, channels)
    plain = BatchAugment(dataclasses.replace(config, stroke=0.0), mean.to(device),
                         std.to(device))
    stroked = BatchAugment(dataclasses.replace(config, stroke=strength), mean.to(device),
                           std.to(device))
    aug_gen = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed + 1)

    batch = min(config.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    total_steps = steps_per_epoch * config.max_epochs
    warmup = min(total_steps, round(config.warmup_epochs * steps_per_epoch))
    # pretrained weights learn at a tenth of the rate: the full rate, meant for a network
    # from scratch, would wash out what ImageNet taught them in the first steps
    groups = [{"params": list(encoder.parameters()), "scale": 0.1 if config.pretrained else 1.0},
              {"params": list(head.parameters()), "scale": 1.0}]
    # fused AdamW: one kernel for all parameters instead of several per tensor on CUDA
    optimiser = torch.optim.AdamW(groups, lr=config.learning_rate,
                                  weight_decay=config.weight_decay,
                                  fused=device.type == "cuda")
    encoder.train()
    head.train()
    if cpu is not None:   # a first answer from the time the images took to decode
        cpu.tick()
    start = time.perf_counter()
    step_global = 0
    for epoch in range(1, config.max_epochs + 1):
        # equal-sized chunks (not drop_last): every image is seen each epoch, no tiny tail
        order = torch.randperm(n, generator=order_gen).to(device)
        augment = stroked if epoch >= stroked_from else plain
        losses = torch.zeros((), device=device)
        for step, idx in enumerate(torch.tensor_split(order, steps_per_epoch), start=1):
            lr = _lr_at(step_global, total_steps, warmup, config.learning_rate)
            for group in optimiser.param_groups:
                group["lr"] = lr * group["scale"]
            part = None if shard is None else (config.views * len(idx),
                                               shard.view_rows(len(idx), config.views))
            x = batches(idx if shard is None else shard.part(idx))
            # view-major: row v * B + k is view v of image k
            views = augment(x.repeat(config.views, 1, 1, 1), aug_gen, part)
            views = views.contiguous(memory_format=torch.channels_last)
            # one forward over all views: BatchNorm sees the whole batch, as in SimCLR
            with autocast(device):
                z = head(encoder.backbone(views))
            if shard is not None:   # the whole batch's embeddings: negatives from every worker
                z = gather(z, shard, len(idx), config.views)
            loss = multi_view_nt_xent_loss(z.float(), config.views, config.temperature)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if shard is not None:
                sum_gradients(p for module in (encoder, head) for p in module.parameters())
            optimiser.step()
            losses += loss.detach()
            step_global += 1
            model.images_seen += len(idx)
            if cpu is not None:
                cpu.tick()
            if progress is not None:
                elapsed = time.perf_counter() - start
                rate = model.images_seen / elapsed if elapsed > 0 else 0.0
                left = elapsed / step_global * (total_steps - step_global)
                progress(TrainProgress(epoch, config.max_epochs, step, steps_per_epoch,
                                       float(loss.detach()), rate, elapsed, left))
        model.loss_per_epoch.append(float(losses) / steps_per_epoch)
    # big batches: with 16-image batches the recalibration cost as much as half an epoch
    _recalibrate_batchnorm(encoder, batches, n, max(batch, 256), cpu, shard)
    model.seconds = time.perf_counter() - start
    encoder.eval()
    head.eval()
    choose_precision(model, _sample(batches, n))
    return model


def _sample(batches: _Batches, n: int) -> torch.Tensor:
    """Up to ``BF16_SAMPLE`` training images spread over the set, un-augmented."""
    rows = torch.linspace(0, n - 1, min(n, BF16_SAMPLE)).round().long().unique()
    return batches(rows.to(batches.device))


#: the pixels (per channel) of the images one forward step takes on a CPU: 8 at 224 px
_CPU_STEP_PIXELS = 8 * 224 * 224


def cpu_step(image_size: int) -> int:
    """Images per forward step on a CPU: few enough that a step's activations stay in the
    caches (resnet18 at 224 px: 42.8 images/s at 8 a step, 38.1 at 32, and slower still at
    CONVERT's 256; ``bench/photos.py``), and all of them for small images (256 of the
    tutorial's 28-px digits)."""
    return max(1, _CPU_STEP_PIXELS // max(1, image_size * image_size))


def embed(model: TrainedModel, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Search embeddings of ``images`` (N, C, S, S) uint8 -> float32 (N, D): the projection
    head's output on the backbone's feature (measured better for search than the feature
    itself, see ``bench/QUALITY.md``).

    Rows are L2-normalised, so cosine similarity is a plain dot product. Images must already
    have the model's size and channel count (``load_images(paths, model.image_size,
    model.channels)``).
    """
    expected = (model.channels, model.image_size, model.image_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise DataError(f"images must be (N, {expected[0]}, {expected[1]}, {expected[2]}) "
                        f"for this model, got {tuple(images.shape)}")
    out = np.empty((images.shape[0], model.embedding_dim), dtype=np.float32)
    encoder, head = model.encoder.eval(), model.head.eval()
    device = model.device
    step = batch_size if device.type != "cpu" else min(batch_size, cpu_step(model.image_size))
    with torch.inference_mode(), inference_autocast(model):
        for i in range(0, images.shape[0], step):
            x = images[i:i + step].to(device, non_blocking=True)
            h = head(encoder(x.contiguous(memory_format=torch.channels_last)))
            out[i:i + len(x)] = torch.nn.functional.normalize(h.float(), dim=1).cpu().numpy()
    return out


def save_model(model: TrainedModel, directory: Path) -> None:
    """Write ``weights.pt`` (state dicts only) and ``model.json`` (how to rebuild) into
    ``directory``, which is created if needed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # an untrained head (nn.Identity) has no parameters: its entry is empty
    state = {"encoder": {k: v.detach().cpu() for k, v in model.encoder.state_dict().items()},
             "head": {k: v.detach().cpu() for k, v in model.head.state_dict().items()}}
    torch.save(state, directory / WEIGHTS_FILE)
    meta = {"format": FORMAT, "base_model": BASE_MODEL, "architecture": model.spec.to_dict(),
            "config": model.config.to_dict(), "loss_per_epoch": model.loss_per_epoch,
            "seconds": model.seconds, "images_seen": model.images_seen,
            "precision": model.precision, "bf16_cosine": model.bf16_cosine}
    (directory / SPEC_FILE).write_text(json.dumps(meta, indent=2))


def load_model(directory: Path, device: str = "cpu") -> TrainedModel:
    """Rebuild a model saved by ``save_model``; weights load with ``weights_only=True``."""
    directory = Path(directory)
    if not (directory / SPEC_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise NotFoundError(f"no saved model in {directory}")
    meta = json.loads((directory / SPEC_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise DataError(f"the model in {directory} was saved in format {meta.get('format')} "
                        f"(this kernel reads {FORMAT}): its embedding was another layer",
                        hint="Run BUILD MODEL again with OPTIONS (overwrite=True).")
    spec = BackboneSpec.from_dict(meta["architecture"])
    cfg = dict(meta["config"])
    for key, value in cfg.items():
        if isinstance(value, list):
            cfg[key] = tuple(value)
    config = SimCLRConfig(**cfg)
    encoder, head = _build(spec, config)
    state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    encoder.load_state_dict(state["encoder"])
    head.load_state_dict(state["head"])
    dev = resolve_device(device)
    encoder = encoder.to(dev).to(memory_format=torch.channels_last).eval()
    head = head.to(dev).eval()
    # saved before precision was chosen: float32, as they were converted
    return TrainedModel(encoder, head, spec, config, list(meta["loss_per_epoch"]),
                        float(meta["seconds"]), int(meta.get("images_seen", 0)),
                        precision=str(meta.get("precision", "fp32")),
                        bf16_cosine=meta.get("bf16_cosine"))

