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


def glyphs(root: Path, n_train: int = 1000, n_test: int = 200, seed: int = 0) -> ImageSet:
    """Render the glyph set under ``root/bench_data/glyphs`` (balanced classes)."""
    fonts = font_files()
    if not fonts:
        raise RuntimeError("no fonts found (fc-list, /usr/share/fonts)")
    base = Path("bench_data/glyphs")
    rng = random.Random(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        folder = root / base / split
        folder.mkdir(parents=True, exist_ok=True)
        labels = [GLYPH_CHARS[i % len(GLYPH_CHARS)] for i in range(n)]
        rng.shuffle(labels)
        rows = []
        for i, ch in enumerate(labels):
            name = f"{split}_{i:04d}.jpg"
            _render(ch, rng.choice(fonts), rng).save(folder / name, quality=95)
            rows.append((str(base / split / name), name, ch))
        csv_rel = base / f"glyphs_{split}.csv"
        with open(root / csv_rel, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image_path", "filename", "label"])
            w.writerows(rows)
        out[split] = csv_rel
    return ImageSet(f"glyphs ({len(GLYPH_CHARS)} letters x {len(fonts)} fonts)", "glyphs_train",
                    "glyphs_test", out["train"], out["test"], *_read(root, out["train"]),
                    *_read(root, out["test"]))
