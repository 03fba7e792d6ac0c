"""Decode image files once into uint8 tensors (N, C, H, W), in parallel, with clear errors."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, NotFoundError
from ..paths import not_a_file
from ..pictures import upright, upright_size

# Pillow releases the GIL while it decodes, so threads overlap file reads and decoding of
# photos; small JPEGs are mostly Python overhead (see _Decoder), hence a small pool.
_WORKERS = max(2, min(8, os.cpu_count() or 2))


#: Pillow modes that load as one grey channel; every other mode loads as RGB
_GREY_MODES = ("L", "1", "I;16", "I", "F", "LA")
#: what a decoded image is replaced with once it is copied into the batch (frees its memory)
_RELEASED = np.empty((0, 0, 0), dtype=np.uint8)


@contextmanager
def _reading(path: str) -> Iterator[None]:
    """A missing file -> NotFoundError, anything unreadable -> DataError, naming the path."""
    try:
        problem = not_a_file(path)
        if problem is not None:
            raise DataError(f"not an image file ({problem}): {path}")
        yield
    except FileNotFoundError:
        raise NotFoundError(f"image file not found: {path}") from None
    except Image.DecompressionBombError:
        raise DataError(f"cannot read image {path}: it claims more pixels than any image this "
                        "kernel reads (Pillow's limit against decompression bombs)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def _open(path: str, size: tuple[int, int] | None, mode: str | None) -> np.ndarray:
    """One file -> uint8 array (H, W, C); ``mode`` None keeps L for grey, RGB otherwise."""
    with _reading(path), Image.open(path) as opened:
        if size is not None and opened.format == "JPEG":
            # the JPEG decoder can scale down by 1/2..1/8 for free: big photos decode fast
            opened.draft(opened.mode, size)
        img: Image.Image = upright(opened)   # a phone photo as it was held, not on its side
        target = mode or ("L" if img.mode in _GREY_MODES else "RGB")
        if img.mode != target:
            img = img.convert(target)
        if size is not None and img.size != size:
            img = img.resize(size, Image.Resampling.BILINEAR)
        arr = np.asarray(img)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _probe(path: str) -> tuple[tuple[int, int], str]:
    """Size (W, H) as viewed (EXIF orientation applied) and whether the image is grey ('L')
    or colour ('RGB'), from the file's header alone (nothing is decoded)."""
    with _reading(path), Image.open(path) as img:
        return upright_size(img), ("L" if img.mode in _GREY_MODES else "RGB")


#: a decoding run times its first images serially (at most this many, or as many as
#: ``_TRIAL_S`` allows), then the next ones on the pool, and goes on the faster way
_TRIAL, _TRIAL_S = 16, 0.02


class _Decoder:
    """Decodes lists of files on one thread or on a pool of ``_WORKERS``, whichever it
    measured faster on the first ones: a pool pays for photos (Pillow decodes them with the
    GIL released: 1024x768 JPEGs 1.9x faster on 2 threads than on one), and costs for small
    images, whose decoding is mostly Python holding the GIL (28x28 JPEGs 2.3x *slower* on 2
    threads than on one, the threads waiting on each other; 2-core EPYC, 2026-12-04). The
    first images (``_TRIAL``, fewer when they are slow) are decoded serially, the next ones
    on the pool (at least 4 a thread), each timed per image; from then on, the faster way.
    The answer is the same either way, in the order of the paths."""

    def __init__(self, size: tuple[int, int] | None, mode: str | None) -> None:
        self.size, self.mode = size, mode
        self._pool: ThreadPoolExecutor | None = None
        self._serial: float | None = None   # seconds an image, serially
        self._pooled: bool | None = None    # the choice, once both are timed

    def __call__(self, paths: list[str]) -> list[np.ndarray]:
        if not paths:
            return []
        if self._pooled is not None:
            return self._on_pool(paths) if self._pooled else self._one_by_one(paths)
        out: list[np.ndarray] = []
        if self._serial is None:
            # the first image is not timed: a process's first decode loads Pillow's plugins
            out.append(_open(paths[0], self.size, self.mode))
            started = time.perf_counter()
            for path in paths[1:_TRIAL + 1]:
                out.append(_open(path, self.size, self.mode))
                if time.perf_counter() - started > _TRIAL_S:
                    break
            if len(out) > 1:
                self._serial = (time.perf_counter() - started) / (len(out) - 1)
        rest = paths[len(out):]
        # too few left to time the pool by (its threads start): serially, the choice later
        if self._serial is None or len(rest) < 4 * _WORKERS:
            return out + self._one_by_one(rest)
        started = time.perf_counter()
        out += self._on_pool(rest)
        self._pooled = (time.perf_counter() - started) / len(rest) < self._serial
        return out

    def _one_by_one(self, paths: list[str]) -> list[np.ndarray]:
        return [_open(p, self.size, self.mode) for p in paths]

    def _on_pool(self, paths: list[str]) -> list[np.ndarray]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="thanosql-decode")
        size, mode = self.size, self.mode
        return list(self._pool.map(lambda p: _open(p, size, mode), paths))

    def all(self, paths: list[str]) -> list[np.ndarray]:
        """Every file, the first ones timing the two ways."""
        trial = self(paths[:3 * _TRIAL])
        return trial + self(paths[3 * _TRIAL:])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _stack(arrays: list[np.ndarray], paths: list[str]) -> torch.Tensor:
    """list of (H, W, C) -> (N, C, H, W); colour wins when modes differ.

    Memory peaks at about twice the images (the decoded arrays and the result), not three
    times (arrays, stack, channel-first copy): grey images need no channel-first copy, and
    colour ones are copied channel-first one by one, dropping each array from the list."""
    channels = max(a.shape[2] for a in arrays)
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        raise DataError(f"images differ in size: {sorted(sizes)} (first: {paths[0]})")
    (h, w), n = sizes.pop(), len(arrays)
    if channels == 1:   # (N, H, W, 1) is already (N, 1, H, W) in memory
        return torch.from_numpy(np.stack(arrays)).reshape(n, 1, h, w)
    out = np.empty((n, channels, h, w), dtype=np.uint8)
    for i in range(n):
        out[i] = arrays[i].transpose(2, 0, 1)   # a grey image broadcasts to RGB
        arrays[i] = _RELEASED   # the decoded image is copied: let it go now
    return torch.from_numpy(out)


#: BUILD MODEL trains at the first image's shorter side when no image_size is given, but at
#: most this: a 4000x3000 photo would cost ~300x the compute of 224 and needs ~36 MB a copy
DEFAULT_MAX_SIDE = 224
#: the smallest side images are trained and embedded at (image_size's lower bound)
MIN_SIDE = 8
#: decoding holds the decoded files and the result at once, so it needs about twice the result
_DECODE_PEAK = 2


def default_side(path: str) -> int:
    """The square side BUILD MODEL trains at when no ``image_size`` is given: the shorter side
    of the image at ``path`` (the first row's), at most ``DEFAULT_MAX_SIDE`` and at least
    ``MIN_SIDE`` (the smallest image_size: below it the backbone has nothing to pool)."""
    (w, h), _ = _probe(path)
    return max(MIN_SIDE, min(w, h, DEFAULT_MAX_SIDE))


def scan_channels(paths: list[str]) -> int:
    """Read every file's header (nothing is decoded): 3 if any image is in colour, else 1,
    the rule ``load_images`` applies. A missing or unreadable file fails here, before any
    training starts."""
    # one thread: reading a header is mostly Python, so a pool only adds overhead (measured)
    modes = {_probe(p)[1] for p in paths}   # every file, also after the first colour one
    return 3 if "RGB" in modes else 1


class ImageFiles:
    """Training images read from their files a batch at a time, for a set too big to keep in
    memory: what ``fit`` needs of an (N, C, S, S) uint8 tensor (``shape``, ``dtype``,
    ``ndim``) plus ``take(rows)``. Every image becomes ``channels`` x ``side`` x ``side``
    (give ``scan_channels(paths)`` to get what ``load_images`` would make)."""

    dtype = torch.uint8
    ndim = 4

    def __init__(self, paths: list[str], side: int, channels: int) -> None:
        self.paths = list(paths)
        self.shape = torch.Size((len(self.paths), channels, side, side))
        self._size = (side, side)
        self._mode = "L" if channels == 1 else "RGB"
        self._decoder: _Decoder | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, rows: list[int]) -> torch.Tensor:
        """The images of these rows, decoded now: (len(rows), C, S, S) uint8."""
        if self._decoder is None:
            self._decoder = _Decoder(self._size, self._mode)
        chosen = [self.paths[i] for i in rows]
        return _stack(self._decoder(chosen), chosen)

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _cgroup_room() -> int | None:
    """Bytes this process's cgroup (a container's memory limit) still allows, None if none."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            return max(0, limit - usage)
    return None


def available_memory() -> int | None:
    """Bytes of RAM this process could get now: the system's MemAvailable, or less when a
    container's memory limit leaves less room; None if unknown."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = None
    room = _cgroup_room()
    if room is not None:
        free = room if free is None else min(free, room)
    return free


def _decode_room(count: int, channels: int, side: tuple[int, int]) -> tuple[int, int | None]:
    """Bytes that decoding ``count`` images of ``side`` (W, H) x ``channels`` needs at its
    peak, and the bytes free now (None when that cannot be told)."""
    return count * channels * side[0] * side[1] * _DECODE_PEAK, available_memory()


def fits_in_memory(count: int, channels: int, side: tuple[int, int]) -> bool:
    """Whether ``count`` images of ``side`` (W, H) x ``channels`` can be decoded into the RAM
    that is free now (True when that cannot be told)."""
    need, free = _decode_room(count, channels, side)
    return free is None or need <= free


def check_memory(count: int, channels: int, side: tuple[int, int], what: str) -> None:
    """DataError, before anything is decoded, when ``count`` images of ``side`` (W, H) x
    ``channels`` would not fit in the RAM that is free now."""
    need, free = _decode_room(count, channels, side)
    if free is None or need <= free:
        return
    gib = 1024 ** 3
    raise DataError(
        f"{what}: {count:,} images of {side[0]}x{side[1]}x{channels} need "
        f"{need / gib:.1f} GiB of memory to decode, and {free / gib:.1f} GiB "
        f"is free; nothing was changed",
        hint="Use fewer rows at a time (a WHERE clause or LIMIT in the query), or free "
             "memory in other programs.")


class _Plan:
    """What every image is converted to, fixed by the caller or by the first image."""

    def __init__(self, first: str, image_size: int | None, channels: int | None) -> None:
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be None, 1 or 3, not {channels!r}")
        first_size, first_mode = _probe(first)
        self.size = (image_size, image_size) if image_size else first_size
        # grey stays grey unless the caller asks for 3 channels; mixed sets end up RGB in _stack
        self.mode = {None: None, 1: "L", 3: "RGB"}[channels]
        self.first_mode = first_mode


def load_images(paths: list[str], image_size: int | None,
                channels: int | None = None, what: str = "loading images",
                check: bool = True) -> torch.Tensor:
    """Decode every file once into one uint8 tensor (N, C, H, W).

    ``image_size`` resizes to a square of that side; None keeps the first image's size (and
    resizes others to it). ``channels`` None keeps grey images at C=1 (RGB if any image is in
    colour); 1 or 3 forces it. Missing file -> NotFoundError, unreadable -> DataError; so is
    a set too big for the free memory (checked first unless ``check`` is False, for a caller
    that has just checked; ``what`` names the statement).
    """
    if not paths:
        c = channels or 1
        s = image_size or 0
        return torch.empty((0, c, s, s), dtype=torch.uint8)
    plan = _Plan(paths[0], image_size, channels)
    if check:
        first_channels = {"L": 1, "RGB": 3}[plan.mode or plan.first_mode]
        check_memory(len(paths), first_channels, plan.size, what)
    decoder = _Decoder(plan.size, plan.mode)
    try:
        arrays = decoder.all(list(paths))
    finally:
        decoder.close()
    return _stack(arrays, paths)


#: the first batch iter_image_batches yields at most (the next ones double up to batch_size)
FIRST_BATCH = 16


def _batch_bounds(count: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of each batch: FIRST_BATCH, doubling, then batch_size each."""
    start, size = 0, min(batch_size, FIRST_BATCH)
    while start < count:
        yield start, min(count, start + size)
        start, size = start + size, min(batch_size, 2 * size)


def iter_image_batches(paths: list[str], batch_size: int, image_size: int | None,
                       channels: int | None = None) -> Iterator[torch.Tensor]:
    """Yield uint8 batches (B, C, H, W) of at most ``batch_size`` images, in order.

    Memory stays at about two batches whatever the number of paths: the next batch is
    decoded while the caller works on the current one. The first batches are smaller
    (``FIRST_BATCH`` images, doubling up to ``batch_size``) so the caller starts on them
    while the rest decodes, instead of waiting for a whole first batch (``bench/photos.py``:
    8% of a 192-photo CONVERT went so, and more of a smaller one's). ``channels`` None takes
    the first image's (1 for grey, 3 for colour) for every batch, so all batches have one
    shape.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not paths:
        return
    plan = _Plan(paths[0], image_size, channels)
    plan.mode = plan.mode or plan.first_mode
    chunks = [list(paths[a:b]) for a, b in _batch_bounds(len(paths), batch_size)]
    decoder = _Decoder(plan.size, plan.mode)
    try:
        with ThreadPoolExecutor(1) as ahead:
            pending = ahead.submit(decoder, chunks[0])
            for i in range(len(chunks)):
                arrays = pending.result()
                if i + 1 < len(chunks):
                    pending = ahead.submit(decoder, chunks[i + 1])
                yield _stack(arrays, chunks[i])
    finally:
        decoder.close()
