"""PRINT EMBEDDING's picture: points on a plane coloured by a column, a legend, and
thumbnails of a spread-out sample of the images at their points, drawn with Pillow and numpy
(no plotting library: 100,000 points are stamped as arrays, not drawn one by one)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..text import format_value

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: categorical colours (Tableau's 10, then their light partners): distinct on white
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
)
#: the colour of NULL and of the values past the palette
GREY = (170, 170, 170)
#: a continuous scale (viridis' stops) for a numeric column of many values
_SCALE = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
                  dtype=np.float64)
_INK, _PAPER, _FRAME = (40, 40, 40), (255, 255, 255), (200, 200, 200)


@dataclass(frozen=True)
class Colours:
    """Each point's colour, and what the legend says: (label, colour, count) per entry, or a
    scale from ``low`` to ``high``."""

    rgb: np.ndarray                     # (N, 3) uint8
    entries: tuple[tuple[str, tuple[int, int, int], int], ...] = ()
    scale: tuple[str, str] | None = None


def colours(values: Sequence[Any] | None, n: int) -> Colours:
    """Colours by the values of a column: one colour per value up to 20 values (the most
    common first, the rest 'other'), a continuous scale for numbers of more values, NULL grey;
    one colour for all without a column."""
    if values is None:
        return Colours(np.tile(np.array(PALETTE[0], np.uint8), (n, 1)))
    present = [v for v in values if v is not None]
    numbers = bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                    for v in present)
    counts = Counter(present)
    if numbers and len(counts) > len(PALETTE):
        return _scaled(values, present)
    if numbers:
        kinds = sorted(counts)
    else:
        kinds = [v for v, _ in sorted(counts.items(), key=lambda c: (-c[1], str(c[0])))]
    shown = kinds if len(kinds) <= len(PALETTE) else kinds[:len(PALETTE) - 1]
    colour_of = {v: PALETTE[i] for i, v in enumerate(shown)}
    rgb = np.array([colour_of.get(v, GREY) if v is not None else GREY for v in values],
                   np.uint8).reshape(n, 3)
    entries = [(format_value(v, limit=28), colour_of[v], counts[v]) for v in shown]
    others = sum(counts[v] for v in kinds[len(shown):])
    if others:
        entries.append((f"{len(kinds) - len(shown):,} other values", GREY, others))
    nulls = n - len(present)
    if nulls:
        entries.append(("NULL", GREY, nulls))
    return Colours(rgb, tuple(entries))


def _scaled(values: Sequence[Any], present: list[Any]) -> Colours:
    low, high = float(min(present)), float(max(present))
    where = np.array([np.nan if v is None else float(v) for v in values])
    t = np.nan_to_num((where - low) / (high - low) if high > low else where * 0, nan=-1.0)
    stops = len(_SCALE) - 1
    at = np.clip(t, 0, 1) * stops
    i = np.minimum(at.astype(int), stops - 1)
    mixed = _SCALE[i] + (_SCALE[i + 1] - _SCALE[i]) * (at - i)[:, None]
    mixed[t < 0] = GREY
    return Colours(mixed.round().astype(np.uint8), (), (format_value(low), format_value(high)))


@dataclass(frozen=True)
class Layout:
    """Where things go on the picture, in pixels."""

    width: int
    height: int
    left: int
    top: int
    right: int     # the plot's right edge (the legend beyond it)
    bottom: int

    @classmethod
    def of(cls, width: int, legend: bool) -> Layout:
        key = max(150, width // 5) if legend else 0
        height = round(width * 0.72)
        return cls(width, height, 16, 44, width - key - 16, height - 30)

    def place(self, points: np.ndarray) -> np.ndarray:
        """Plane -> pixel (x, y) int, the points filling the plot with a margin, y up."""
        low, high = points.min(axis=0), points.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        inner = np.array([self.right - self.left, self.bottom - self.top]) * 0.92
        scale = float(min(inner / span))   # the same scale both ways: distances stay true
        middle = (low + high) / 2
        centre = np.array([(self.left + self.right) / 2, (self.top + self.bottom) / 2])
        xy = (points - middle) * scale * np.array([1, -1]) + centre
        return xy.round().astype(np.int64)


def stamp(canvas: np.ndarray, xy: np.ndarray, rgb: np.ndarray, radius: int,
          order: np.ndarray) -> None:
    """Disks of ``radius`` at ``xy`` in their colours, taken in ``order``."""
    h, w, _ = canvas.shape
    xy, rgb = xy[order], rgb[order]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy > radius * radius + radius:
                continue
            x, y = xy[:, 0] + dx, xy[:, 1] + dy
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            # where points share a pixel one of them shows; the shuffled order keeps any one
            # colour from always lying under the others
            canvas[y[inside], x[inside]] = rgb[inside]


def spread_sample(xy: np.ndarray, count: int, layout: Layout) -> np.ndarray:
    """Up to ``count`` row indices spread over the plot, the densest places first: a grid of
    cells, in each the point nearest the cell's centre; the grid is made finer while too few
    of its cells hold points (the points fill a disk, not the whole frame)."""
    if count <= 0 or not len(xy):
        return np.zeros(0, np.int64)
    cells = count
    for _ in range(8):
        picked = _one_per_cell(xy, cells, layout)
        if len(picked) >= min(count, len(xy)):
            break
        # at most 64 cells a thumbnail: points all in one pixel never get more cells
        cells = min(int(cells * 1.25 * count / max(len(picked), 1)) + 1, 64 * count)
    return picked[:count]


def _one_per_cell(xy: np.ndarray, cells: int, layout: Layout) -> np.ndarray:
    """The point nearest the centre of each cell of a grid of about ``cells`` cells that
    holds any, the fullest cells first."""
    w, h = layout.right - layout.left, layout.bottom - layout.top
    columns = max(1, round(math.sqrt(cells * w / h)))
    rows = max(1, math.ceil(cells / columns))
    cx = np.clip((xy[:, 0] - layout.left) * columns // max(w, 1), 0, columns - 1)
    cy = np.clip((xy[:, 1] - layout.top) * rows // max(h, 1), 0, rows - 1)
    cell = cy * columns + cx
    centre_x = layout.left + (cx + 0.5) * w / columns
    centre_y = layout.top + (cy + 0.5) * h / rows
    distance = (xy[:, 0] - centre_x) ** 2 + (xy[:, 1] - centre_y) ** 2
    by = np.lexsort((np.arange(len(xy)), distance, cell))
    first = by[np.r_[True, cell[by][1:] != cell[by][:-1]]]
    sizes = np.bincount(cell, minlength=columns * rows)
    return first[np.argsort(-sizes[cell[first]], kind="stable")]


def thumbnail_side(layout: Layout, count: int) -> int:
    """Thumbnails of about 40 % of a grid cell's side, so the points around them show: 16 to
    56 pixels."""
    area = (layout.right - layout.left) * (layout.bottom - layout.top)
    return int(np.clip(math.sqrt(area / max(count, 1)) * 0.4, 16, 56))


def draw(points: np.ndarray, paint: Colours, width: int, title: str, axes: tuple[str, str],
         legend_title: str | None, thumbs: int,
         open_image: Callable[[int, int], PILImage.Image | None]) -> tuple[bytes, int, int, int]:
    """The map as PNG bytes, its width and height, and how many thumbnails it shows.

    ``open_image(row, side)`` gives a row's image fitted in a ``side`` square, or None when
    it cannot be read (that thumbnail is left out).
    """
    import io

    from PIL import Image, ImageDraw

    layout = Layout.of(width, legend_title is not None or paint.scale is not None)
    n = len(points)
    canvas = np.full((layout.height, layout.width, 3), _PAPER, np.uint8)
    xy = layout.place(points)
    radius = 3 if n <= 2_000 else 2 if n <= 20_000 else 1
    order = np.random.default_rng(0).permutation(n)   # no colour always drawn over another
    stamp(canvas, xy, paint.rgb, radius, order)
    picture = Image.fromarray(canvas)
    pen = ImageDraw.Draw(picture)
    font, small = _font(15), _font(12)
    pen.rectangle((layout.left, layout.top, layout.right, layout.bottom), outline=_FRAME)
    pen.text((layout.left, 12), title, fill=_INK, font=font)
    pen.text((layout.left + 4, layout.bottom + 6), axes[0], fill=_INK, font=small)
    pen.text((layout.left + 4, layout.top + 4), axes[1], fill=_INK, font=small)

    side = thumbnail_side(layout, thumbs)
    placed: list[tuple[int, int, int, int]] = []   # the thumbnails' frames, none overlapping
    for row in spread_sample(xy, 2 * thumbs, layout):   # twice as many places to choose from
        if len(placed) == thumbs:
            break
        x, y = int(xy[row, 0]) - side // 2, int(xy[row, 1]) - side // 2
        x = min(max(x, layout.left + 3), layout.right - side - 3)
        y = min(max(y, layout.top + 3), layout.bottom - side - 3)
        frame = (x - 2, y - 2, x + side + 2, y + side + 2)
        if any(frame[0] < b[2] and b[0] < frame[2] and frame[1] < b[3] and b[1] < frame[3]
               for b in placed):
            continue
        image = open_image(int(row), side)
        if image is None:
            continue
        colour = tuple(int(c) for c in paint.rgb[row])
        pen.rectangle(frame, fill=colour)
        # centred in its square (a picture that is not square leaves its frame's colour)
        picture.paste(image, (x + (side - image.width) // 2, y + (side - image.height) // 2))
        placed.append(frame)
    shown = len(placed)

    _legend(pen, layout, paint, legend_title, font, small)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue(), layout.width, layout.height, shown


def _legend(pen: Any, layout: Layout, paint: Colours, title: str | None, font: Any,
            small: Any) -> None:
    x, y = layout.right + 18, layout.top
    if title:
        pen.text((x, y), title, fill=_INK, font=font)
        y += 24
    if paint.scale is not None:
        low, high = paint.scale
        steps = 120
        for i in range(steps):
            at = i / (steps - 1) * (len(_SCALE) - 1)
            j = min(int(at), len(_SCALE) - 2)
            rgb = _SCALE[j] + (_SCALE[j + 1] - _SCALE[j]) * (at - j)
            pen.line((x, y + steps - i, x + 16, y + steps - i),
                     fill=tuple(int(c) for c in rgb.round()))
        pen.text((x + 22, y - 4), high, fill=_INK, font=small)
        pen.text((x + 22, y + steps - 8), low, fill=_INK, font=small)
        return
    for label, colour, count in paint.entries:
        if y > layout.bottom - 14:
            break
        pen.rectangle((x, y + 2, x + 11, y + 13), fill=colour)
        pen.text((x + 17, y), f"{label}  ({count:,})", fill=_INK, font=small)
        y += 19


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):   # a Pillow without FreeType: its small bitmap font
        return ImageFont.load_default()
