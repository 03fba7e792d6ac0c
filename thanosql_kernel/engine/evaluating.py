"""EVALUATE USING: how well a model's embeddings find images of the same label, beside raw
pixels, measured the same way in the same run (``vectors.neighbours``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import DataError, NotFoundError, OptionError, did_you_mean, excerpt
from ..options import OptionSpec, read_options
from ..results import Progress, Table
from ..syntax import Evaluate
from .embedding_rows import check_made_by, stored_vectors
from .image_rows import image_column, image_paths, places, readable
from .naming import embedding_column
from .run import Run
from .services import Services

if TYPE_CHECKING:
    import numpy as np

STATEMENT = "EVALUATE"
#: the rows scored by default past which a random sample of them is (each against every row)
DEFAULT_QUERIES = 10_000
#: the raw pixels' float32 copy at most: past it the images are shrunk for that baseline
_RAW_BYTES = 1 << 30
COLUMNS = ("method", "k", "rows", "queries", "labels", "skipped", "precision_at_k",
           "knn_accuracy", "mrr_at_k", "chance_precision")

EVALUATE_OPTIONS = (
    OptionSpec("label_col", (str,), "label", "the column of labels (default 'label')"),
    OptionSpec("k", (int,), 4, "neighbours scored per row (default 4)",
               check=lambda v: None if v >= 1 else "must be 1 or more"),
    OptionSpec("image_col", (str,), "image_path",
               "the column of image paths (default 'image_path')"),
    OptionSpec("emb_col", (str, type(None)), None,
               "the model's embedding column, read where the rows have it (default "
               "<model>_simclr; rows without one are embedded from their image)"),
    OptionSpec("queries", (int, type(None)), DEFAULT_QUERIES,
               f"rows whose neighbours are scored, a random sample of them past that many, "
               f"each against every row (default {DEFAULT_QUERIES:,}; None: every row)",
               check=lambda v: None if v is None or v >= 1 else "must be 1 or more"),
)


def evaluate(node: Evaluate, services: Services, run: Run) -> Table:
    import numpy as np

    from ..models import cpu_share
    from ..vectors import chance_precision, nearest_others, scores

    options = read_options(node.options, EVALUATE_OPTIONS, STATEMENT)
    model, entry = services.loader.load(node.model)
    rows = run.rows(node.query)
    columns = [c.lower() for c in rows.columns]
    label_col = options["label_col"].lower()
    if label_col not in columns:
        raise NotFoundError(
            f"{STATEMENT}: the query has no label column {excerpt(options['label_col'])}",
            hint=f"{did_you_mean(label_col, rows.columns)}Its columns are "
                 f"{', '.join(rows.columns)}. Name the column of labels with OPTIONS "
                 "(label_col='…').")
    image_col = options["image_col"].lower()
    i_image = image_column(rows.columns, image_col, STATEMENT)
    i_label = columns.index(label_col)
    labelled = [i for i, r in enumerate(rows.rows) if r[i_label] is not None]
    no_label = len(rows.rows) - len(labelled)
    k = options["k"]
    _check_counts(rows.rows, labelled, i_label, k, no_label)
    column = _column(services, node, options, entry, columns)
    # the column's vectors, checked as SEARCH checks them, before any work
    stored = None if column is None else stored_vectors(
        STATEMENT, [rows.rows[i][column[0]] for i in labelled], column[1], model, node.model)

    started = time.monotonic()
    key, title = f"evaluate-{node.model}-{started}", f"EVALUATE USING {node.model}"
    run.report(Progress(key, title, 0, len(labelled), "images", 0.0,
                        detail="looking at the images"))
    found = places(services, node.query)
    # a row without an image path is one without an image: left out and counted
    pathed = [i for i in labelled if str(rows.rows[i][i_image] or "").strip()]
    values = [rows.rows[i][i_image] for i in pathed]
    paths = image_paths(found, values, image_col, STATEMENT)
    kept, unreadable = readable(services.settings, found, paths, values, "skip", STATEMENT)
    picked = [pathed[i] for i in kept]
    paths = [paths[i] for i in kept]
    skipped = len(rows.rows) - len(picked)
    _check_counts(rows.rows, picked, i_label, k, skipped)
    codes = _codes([rows.rows[i][i_label] for i in picked])

    with cpu_share(services.settings.threads).running():
        embeddings, pixels, shrunk = _vectors(model, labelled, picked, paths, stored, run,
                                              key, title, started)
        n = len(picked)
        rng = np.random.default_rng(0)
        wanted = options["queries"]
        queries = np.arange(n) if wanted is None or wanted >= n else \
            np.sort(rng.choice(n, wanted, replace=False))
        total, methods = 2 * len(queries), ((node.model, embeddings), ("raw_pixels", pixels))
        out = []
        for m, (method, vectors) in enumerate(methods):
            def done(count: int, m: int = m) -> None:
                run.report(Progress(key, title, m * len(queries) + count, total, "rows",
                                    time.monotonic() - started,
                                    detail=f"neighbours by {methods[m][0]}"))
            found_k = nearest_others(vectors, queries, k, done)
            result = scores(found_k, queries, codes)
            out.append((method, k, n, len(queries), int(codes.max()) + 1, skipped,
                        result.precision_at_k, result.knn_accuracy, result.mrr_at_k,
                        chance_precision(codes)))
    detail = f"{len(queries):,} of {n:,} rows scored" + (
        f"; raw pixels at {shrunk}" if shrunk else "")
    run.report(Progress(key, title, total, total, "rows", time.monotonic() - started,
                        detail=detail, finished=True))
    return Table(COLUMNS, tuple(out))


def _check_counts(rows: Any, usable: list[int], i_label: int, k: int, skipped: int) -> None:
    """The errors that come before any work: too few rows for k, fewer than two labels."""
    left = f" ({skipped:,} of {len(rows):,} left out: no label or an unreadable image)" \
        if skipped else ""
    if k >= len(usable):
        raise OptionError(f"{STATEMENT}: k={k} needs more than {k} rows with a label and an "
                          f"image; the query has {len(usable):,}{left}",
                          hint=f"Use k={max(1, len(usable) - 1)} or less, or a query with "
                               "more rows.")
    if len({rows[i][i_label] for i in usable}) < 2:
        raise DataError(f"{STATEMENT}: every row has the same label{left}: there is nothing "
                        "to tell apart", hint="Evaluate on rows of at least two labels.")


def _codes(labels: list[Any]) -> np.ndarray:
    """Labels of any type as integer codes (equal values, one code)."""
    import numpy as np

    seen: dict[Any, int] = {}
    return np.array([seen.setdefault(v, len(seen)) for v in labels], np.int64)


def _column(services: Services, node: Evaluate, options: dict[str, Any], entry: Any,
            columns: list[str]) -> tuple[int, str] | None:
    """The index and name of the model's own embedding column in the rows, where they have
    one that this model made as it is now; None: embed every image. A column named in OPTIONS must
    be the model's (else the error says whose it is)."""
    named = options["emb_col"]
    column = (named or embedding_column(node.model, entry.base_model)).lower()
    if column not in columns:
        if named is not None:
            raise NotFoundError(f"{STATEMENT}: the query has no column {excerpt(named)}",
                                hint="Leave emb_col out to embed the images with the model.")
        return None
    try:
        check_made_by(services, STATEMENT, node.model, node.query, column, entry.digest)
    except DataError:
        if named is not None:
            raise
        return None   # another model's, or this one's before a rebuild: embed them anew
    return columns.index(column), column


def _vectors(model: Any, labelled: list[int], picked: list[int], paths: list[str],
             stored: tuple[np.ndarray, list[int], list[int]] | None, run: Run, key: str,
             title: str, started: float) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The model's embeddings (from the column's vectors, ``stored`` for the ``labelled``
    rows, where the row has one, else from the image)
    and the raw pixels as the model sees them (its size and colour mode, flattened; shrunk
    to fit ``_RAW_BYTES`` as float32), decoding each image once; and the size the pixels
    were shrunk to, if they were."""
    import numpy as np
    import torch

    from ..models import embed, iter_image_batches

    n, size, channels = len(picked), model.image_size, model.channels
    side = size
    while n * side * side * channels * 4 > _RAW_BYTES and side > 8:
        side = int(side * 0.9)
    shrunk = f"{side}x{side}" if side != size else None
    pixels = np.empty((n, side * side * channels), np.uint8)
    if stored is None:
        embeddings = np.zeros((n, model.embedding_dim), np.float32)
        todo = list(range(n))
    else:
        matrix, empty, marked = stored
        at = {row: j for j, row in enumerate(labelled)}
        embeddings = matrix[[at[row] for row in picked]]
        # NULL (added since CONVERT), or marked (CONVERT could not read the image, which
        # reads now): embedded from the image
        missing = set(empty) | set(marked)
        todo = [i for i, row in enumerate(picked) if at[row] in missing]
    need = set(todo)
    done = 0
    for batch in iter_image_batches(paths, 256, size, channels):
        span = range(done, done + len(batch))
        small = batch if side == size else torch.nn.functional.interpolate(
            batch.float(), size=(side, side), mode="area").round().clamp(0, 255).byte()
        pixels[done:done + len(batch)] = small.reshape(len(batch), -1).numpy()
        wanted = [j - done for j in span if j in need]
        if wanted:
            embeddings[[done + j for j in wanted]] = embed(model, batch[wanted])
        done += len(batch)
        run.report(Progress(key, title, done, n, "images", time.monotonic() - started,
                            detail="reading the images"))
    if not np.isfinite(embeddings).all():
        raise DataError(f"{STATEMENT}: the embeddings hold values that are not numbers (NaN)",
                        hint="Run CONVERT USING again to embed the rows anew.")
    return embeddings, pixels, shrunk
