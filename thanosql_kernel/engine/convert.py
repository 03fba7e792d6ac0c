"""CONVERT USING: each row's image embedding into a table column, the vector index in step."""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import replace

from ..errors import AlreadyExistsError, NotFoundError, OptionError, ThanoSQLError, excerpt
from ..options import OptionSpec, name_problem, read_options
from ..results import Progress, Table
from ..storage import EmbeddingColumn, Transaction
from ..syntax import Convert, Node, Sql
from .context import Context
from .models import load
from .queries import image_column, image_paths, rows_of

CONVERT_OPTIONS = (
    OptionSpec("table_name", (str, type(None)), None,
               "the table that receives the column (default: the table the query reads)"),
    OptionSpec("image_col", (str,), "image_path",
               "the column of image paths (default 'image_path')"),
    OptionSpec("result_col", (str, type(None)), None,
               "the embedding column, a name of letters, digits and _ (default <model>_simclr)",
               check=lambda v: None if v is None else name_problem(v)),
    OptionSpec("batch_size", (int,), 256, "images embedded at once (default 256)",
               check=lambda v: None if 1 <= v <= 65536 else "must be from 1 to 65536"),
)


def convert(node: Convert, ctx: Context) -> Table:
    from ..models import embed, iter_image_batches
    from ..models.threads import cpu_share
    from ..vectors import collection_name, to_blob

    options = read_options(node.options, CONVERT_OPTIONS, "CONVERT USING")
    model, entry = load(ctx, node.model)
    table = (options["table_name"] or _query_table(node.query, ctx)).lower()
    ctx.store.check_user_table(table, f"CONVERT USING {node.model}")
    image_col = options["image_col"].lower()
    column = (options["result_col"] or f"{node.model}_{entry.base_model.lower()}").lower()
    statement = f"CONVERT USING {node.model}"
    rows = rows_of(node.query, ctx)
    index = image_column(rows.columns, image_col, statement)
    raw = list(dict.fromkeys(r[index] for r in rows.rows))  # distinct paths, in order
    paths = image_paths(ctx, raw, image_col, statement)
    vectors = ctx.vectors
    ctx.embeddings.ensure()
    started = time.monotonic()
    key, title = f"convert-{node.model}-{started}", f"CONVERT USING {node.model}"
    collection = collection_name(table, column)
    try:
        # the small network embeds about as fast as the next batch decodes, so those threads
        # get a core of their own: on 2 cores 1 torch thread beat 2 by 1.1-1.3x, quiet and
        # busy (bench/busy_cpu.py); a torchvision network's embedding is nearly all the work
        reserve = 1 if model.spec.kind == "small" else 0
        with cpu_share(ctx.settings.threads, reserve=reserve).running() as cpu, \
                ctx.store.begin(write=True) as tx:
            old = _prepare(ctx, tx, table, column, image_col, statement)
            done = 0
            for batch in iter_image_batches(paths, options["batch_size"], model.image_size,
                                            model.channels):
                embedded = embed(model, batch, batch_size=options["batch_size"])
                ctx.embeddings.write(tx, table, column, image_col, [
                    (p, to_blob(v)) for p, v in zip(raw[done:done + len(embedded)], embedded,
                                                    strict=True)])
                done += len(embedded)
                cpu.tick()
                ctx.report(Progress(key, title, done, len(paths), "images",
                                    time.monotonic() - started, detail=f"into {table}.{column}"))
            reindex(ctx, tx, EmbeddingColumn(table, column, node.model, image_col,
                                             model.embedding_dim, collection, 0, entry.digest))
    except BaseException:
        with suppress(ThanoSQLError):   # the statement's own error is the one to report
            vectors.drop(collection)
        raise
    if old is not None:
        vectors.drop(old.collection)
    ctx.report(Progress(key, title, len(paths), len(paths), "images", time.monotonic() - started,
                        detail=f"into {table}.{column}", finished=True))
    result = rows_of(node.query, ctx)
    return Table(result.columns, result.rows, vector_columns=frozenset({column}))


def _prepare(ctx: Context, tx: Transaction, table: str, column: str, image_col: str,
             statement: str) -> EmbeddingColumn | None:
    """Check the table can take the column, add it (and its indexes); the entry it replaces."""
    columns = ctx.store.columns(tx, table)
    if image_col not in columns:
        raise NotFoundError(f"{statement}: the table {excerpt(table)} has no column "
                            f"{excerpt(image_col)}", hint=f"Its columns: {', '.join(columns)}.")
    old = ctx.embeddings.get(tx, table, column)
    if column in columns and old is None:
        raise AlreadyExistsError(
            f"{statement}: the table {excerpt(table)} already has a column {excerpt(column)} "
            "that CONVERT did not make", hint="Choose another with OPTIONS (result_col='…').")
    ctx.embeddings.prepare(tx, table, column, image_col)
    return old


def reindex(ctx: Context, tx: Transaction, entry: EmbeddingColumn) -> EmbeddingColumn:
    """Fill ``entry.collection`` from the column (the truth) and record it in the catalog.

    Rows are keyed by image path (the embedding is a function of the image); ``row_count``
    is the table's size when every row has an embedding, else -1, so SEARCH can tell
    whether the index still covers the table.
    """
    from ..vectors import blobs_to_matrix

    ids, blobs, rows = ctx.embeddings.vectors(tx, entry)
    ctx.vectors.replace(entry.collection, ids, blobs_to_matrix(blobs, entry.dim))
    total = ctx.store.count_rows(tx, entry.table_name)
    entry = replace(entry, row_count=total if rows == total else -1)
    ctx.embeddings.put(tx, entry)
    return entry


def _query_table(query: Node, ctx: Context) -> str:
    """The one table a CONVERT query reads: the table that receives the embeddings."""
    found = ctx.store.shape(query.text) if isinstance(query, Sql) \
        and not query.subqueries else None
    if found is not None and len(found.tables) == 1:
        return found.tables[0]
    reads = (f"the query reads {', '.join(found.tables)}" if found is not None and found.tables
             else "the query reads no one table")
    raise OptionError(f"CONVERT USING: cannot tell which table receives the embeddings "
                      f"({reads})", hint="Name it with OPTIONS (table_name='…').")
