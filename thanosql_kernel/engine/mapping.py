"""PRINT EMBEDDING: a map of a query's embeddings on a plane (PCA), each point coloured by a
column, with thumbnails of a spread-out sample of the images, as one PNG."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import DataError, NotFoundError, did_you_mean, excerpt
from ..imports import import_whole
from ..options import OptionSpec, read_options
from ..pictures import upright
from ..results import Image, Images
from ..syntax import PrintEmbedding
from .embedding_rows import check_made_by, row_embeddings
from .image_rows import Places, places, query_tables
from .naming import embedding_column
from .run import Run
from .services import Services

if TYPE_CHECKING:
    from PIL import Image as PILImage

STATEMENT = "PRINT EMBEDDING"

MAP_OPTIONS = (
    OptionSpec("emb_col", (str, type(None)), None,
               "the embedding column (default <model>_simclr; rows without one are embedded "
               "from their image)"),
    OptionSpec("image_col", (str,), "image_path",
               "the column of image paths, for thumbnails (default 'image_path')"),
    OptionSpec("color_col", (str, type(None)), None,
               "the column that colours the points, with a legend (default None: one colour)"),
    OptionSpec("thumbnails", (int,), 40,
               "images shown at their points, spread over the map, 0 to 400 (default 40)",
               check=lambda v: None if 0 <= v <= 400 else "must be from 0 to 400"),
    OptionSpec("width", (int,), 900, "the picture's width in pixels, 400..4096 (default 900)",
               check=lambda v: None if 400 <= v <= 4096 else "must be from 400 to 4096"),
)


def print_embedding(node: PrintEmbedding, services: Services, run: Run) -> Images:
    from ..vectors import pca_2d
    from .map_drawing import colours, draw

    options = read_options(node.options, MAP_OPTIONS, STATEMENT)
    model, entry = services.loader.load(node.model)
    emb_col = (options["emb_col"] or embedding_column(node.model, entry.base_model)).lower()
    image_col = options["image_col"].lower()
    rows = run.rows(node.query)
    columns = [c.lower() for c in rows.columns]
    color_col = options["color_col"]
    if color_col is not None and color_col.lower() not in columns:
        raise NotFoundError(
            f"{STATEMENT}: the query has no column {excerpt(color_col)} to colour by",
            hint=f"{did_you_mean(color_col, rows.columns)}Its columns are "
                 f"{', '.join(rows.columns)}.")
    if len(rows.rows) < 2:
        raise DataError(f"{STATEMENT}: the query returned {len(rows.rows)} row(s); a map "
                        "needs at least 2", hint="Widen the query (its WHERE or LIMIT).")
    if emb_col in columns:   # the rows bring vectors: they must be this model's
        check_made_by(services, STATEMENT, node.model, node.query, emb_col, entry.digest)
    matrix, unreadable = row_embeddings(services, STATEMENT, model, node.model, node.query,
                                        rows, emb_col, image_col)
    kept = sorted(set(range(len(rows.rows))) - set(unreadable))
    if len(kept) < 2:
        raise DataError(f"{STATEMENT}: {len(kept)} of the {len(rows.rows):,} rows have an "
                        "embedding (the others' images were unreadable); a map needs at least 2")
    if unreadable:
        matrix = matrix[kept]
    projection = pca_2d(matrix)
    picked = [rows.rows[i] for i in kept]
    by = None if color_col is None else [r[columns.index(color_col.lower())] for r in picked]
    paint = colours(by, len(picked))
    source = _source(node)
    first, second = (f"{share:.0%}" for share in projection.explained)
    title = f"{source}: {len(picked):,} images by {emb_col}"
    found = places(services, node.query)
    paths = [r[columns.index(image_col)] for r in picked] if image_col in columns else None
    thumbs = options["thumbnails"] if paths is not None else 0
    png, width, height, shown = draw(
        projection.points, paint, options["width"], title,
        (f"PC1 ({first} of the spread)", f"PC2 ({second})"),
        None if color_col is None else color_col.lower(), thumbs,
        lambda row, side: _thumbnail(found, paths[row] if paths else None, side))
    left_out = f", {len(unreadable):,} rows left out (unreadable image)" if unreadable else ""
    coloured = f", coloured by {color_col.lower()}" if color_col is not None else ""
    caption = (f"{STATEMENT}: {len(picked):,} rows of {source}.{emb_col} on their first two "
               f"principal axes (PCA; {first} and {second} of the spread){coloured}, "
               f"{shown} thumbnail{'s' * (shown != 1)}{left_out}")
    return Images((Image(f"map of {source}.{emb_col}", caption, png, width=width,
                         height=height),), 1)


def _source(node: PrintEmbedding) -> str:
    """The table the map is of, in words: the one table the query reads, or 'the query'."""
    tables = query_tables(node.query)
    return tables[0] if len(tables) == 1 else "the query"


def _thumbnail(found: Places, value: Any, side: int) -> PILImage.Image | None:
    """A row's image fitted in a ``side`` square (small ones enlarged pixel for pixel), or
    None when it cannot be read."""
    PILImage = import_whole("PIL.Image")   # noqa: N806 - the module, named as PIL names it

    if value is None:
        return None
    try:
        with PILImage.open(found.resolve(str(value))) as opened:
            opened.draft("RGB", (side, side))
            picture = upright(opened).convert("RGB")
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError):
        return None
    scale = side / max(picture.width, picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, PILImage.Resampling.NEAREST if scale > 1
                          else PILImage.Resampling.LANCZOS)
