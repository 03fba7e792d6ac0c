"""PRINT IMAGE: the images a query names, each with its path and the row's values."""

from __future__ import annotations

import io

from ..imports import import_whole
from ..options import OptionSpec, read_options
from ..paths import not_a_file
from ..pictures import upright
from ..results import Image, Images
from ..syntax import PrintImage
from ..text import format_value
from .image_rows import Places, image_column, places
from .run import Run
from .services import Services

PRINT_OPTIONS = (
    OptionSpec("image_col", (str,), "image_path",
               "the column of image paths (default 'image_path')"),
    OptionSpec("limit", (int,), 20, "images shown at most (default 20)",
               check=lambda v: None if v >= 1 else "must be 1 or more"),
    OptionSpec("width", (int, type(None)), None,
               "display width in pixels, 8..4096 (default None: automatic)",
               check=lambda v: None if v is None or 8 <= v <= 4096 else
               "must be from 8 to 4096"),
)
# tiny images (28x28 digits) are shown enlarged to at least this width
_MIN_AUTO_WIDTH = 112
_MAX_STORED_SIDE = 1024


def print_image(node: PrintImage, services: Services, run: Run) -> Images:
    options = read_options(node.options, PRINT_OPTIONS, "PRINT IMAGE")
    rows = run.rows(node.query)
    column = options["image_col"].lower()
    index = image_column(rows.columns, column, "PRINT IMAGE")
    found = places(services, node.query)
    shown = []
    for row in rows.rows[:options["limit"]]:
        value = row[index]
        caption = "  ".join([str(value)] + [
            f"{name}={format_value(v, vector=isinstance(v, bytes))}"
            for name, v in zip(rows.columns, row, strict=True) if name.lower() != column])
        shown.append(_image(found, value, caption, options["width"]))
    return Images(tuple(shown), len(rows.rows))


def _image(found: Places, value: object, caption: str, width: int | None) -> Image:
    PILImage = import_whole("PIL.Image")   # noqa: N806 - the module, named as PIL names it
    UnidentifiedImageError = PILImage.UnidentifiedImageError  # noqa: N806

    if value is None:
        return Image("NULL", caption, problem="the row has no image path")
    path = found.resolve(str(value))
    try:
        problem = not_a_file(path)
        if problem is not None:
            return Image(str(value), caption, problem=problem)
        with PILImage.open(path) as opened:
            # a phone photo decodes at 1/2..1/8 straight away: what is kept is at most 1,024
            opened.draft("RGB", (_MAX_STORED_SIDE, _MAX_STORED_SIDE))
            picture = upright(opened)   # as the camera was held
            picture = picture.convert("RGBA" if picture.mode in ("RGBA", "LA", "P") else "RGB")
    except FileNotFoundError:
        return Image(str(value), caption, problem="no such file" + (
            f" ({found.described()})" if len(found.folders) > 1 else ""))
    except PILImage.DecompressionBombError:
        return Image(str(value), caption, problem="it claims more pixels than any image this "
                                                  "kernel shows (a decompression bomb?)")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return Image(str(value), caption, problem=f"not a readable image ({e.__class__.__name__})")
    picture.thumbnail((_MAX_STORED_SIDE, _MAX_STORED_SIDE))
    shown_width = width or max(picture.width, min(_MIN_AUTO_WIDTH, picture.width * 4))
    shown_height = max(1, round(picture.height * shown_width / picture.width))
    if shown_width < picture.width or picture.width < shown_width and \
            max(shown_width, shown_height) <= _MAX_STORED_SIDE:
        # the PNG is the image as shown, so every front end and exporter shows it alike
        # (Markdown and PDF export ignore a display width): enlarged pixel for pixel, a digit
        # stays sharp; reduced smoothly. Past 1,024 pixels the front end enlarges it
        picture = picture.resize((shown_width, shown_height),
                                 PILImage.Resampling.NEAREST if shown_width > picture.width
                                 else PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return Image(str(value), caption, buffer.getvalue(), width=shown_width,
                 height=shown_height)
