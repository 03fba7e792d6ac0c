"""CONVERT USING: each row's image embedding into a table column, the vector index in step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..errors import AlreadyExistsError, DiskFullError, NotFoundError, OptionError, excerpt
from ..options import OptionSpec, name_problem, read_options
from ..results import Progress, Table
from ..storage import EmbeddingColumn, SqlStore, Transaction
from ..syntax import Convert, Node, Sql
from .catalog import EmbeddingCatalog
from .image_rows import ON_ERROR, image_column, image_paths, places, readable
from .naming import embedding_column, embedding_column_problem
from .run import Run
from .services import Services

CONVERT_OPTIONS = (
    OptionSpec("table_name", (str, type(None)), None,
               "the table that receives the column (default: the table the query reads)"),
    OptionSpec("image_col", (str,), "image_path",
               "the column of image paths (default 'image_path')"),
    OptionSpec("result_col", (str, type(None)), None,
               "the embedding column, a name of letters, digits and _ (default <model>_simclr)",
               check=lambda v: None if v is None
               else name_problem(v) or embedding_column_problem(v)),
    OptionSpec("batch_size", (int,), 256, "images embedded at once (default 256)",
               check=lambda v: None if 1 <= v <= 65536 else "must be from 1 to 65536"),
    ON_ERROR,
)


def convert(node: Convert, services: Services, run: Run) -> Table:
    from ..models import cpu_share
    from ..vectors import UNREADABLE, collection_name, to_blob

    options = read_options(node.options, CONVERT_OPTIONS, "CONVERT USING")
    if services.cluster.configured:   # a cluster that cannot be reached fails before any work
        services.cluster.check()
    model, entry = services.loader.load(node.model)
    store, catalog = services.store, services.catalog
    table = (options["table_name"] or _query_table(node.query, store)).lower()
    store.check_user_table(table, f"CONVERT USING {node.model}")
    image_col = options["image_col"].lower()
    column = (options["result_col"] or embedding_column(node.model, entry.base_model)).lower()
    statement = f"CONVERT USING {node.model}"
    rows = run.rows(node.query)
    index = image_column(rows.columns, image_col, statement)
    raw = list(dict.fromkeys(r[index] for r in rows.rows))  # distinct paths, in order
    found = places(services, node.query)
    paths = image_paths(found, raw, image_col, statement)
    kept, skipped = readable(services.settings, found, paths, raw, options["on_error"],
                             statement)
    unreadable = [raw[i] for i in sorted(set(range(len(raw))) - set(kept))] if skipped else []
    if skipped:
        raw, paths = [raw[i] for i in kept], [paths[i] for i in kept]
    started = time.monotonic()
    key, title = f"convert-{node.model}-{started}", f"CONVERT USING {node.model}"
    collection = collection_name(table, column)
    try:
        catalog.index   # noqa: B018 - an index that cannot be opened fails before any work
        catalog.ensure()
        # the small network embeds about as fast as the next batch decodes, so those threads
        # get a core of their own: on 2 cores 1 torch thread beat 2 by 1.1-1.3x, quiet and
        # busy (bench/busy_cpu.py); a torchvision network's embedding is nearly all the work
        reserve = 1 if model.spec.kind == "small" else 0
        with cpu_share(services.settings.threads, reserve=reserve).running() as cpu, \
                store.begin(write=True) as tx:
            old = _prepare(store, catalog, tx, table, column, image_col, statement)
            done = 0
            where = f"into {table}.{column}"
            if services.cluster.configured:
                workers, batches = services.cluster.embed(services.registry.files(entry),
                                                          paths, options["batch_size"])
                where += f" on {workers} worker{'s' * (workers != 1)} of the Ray cluster at " \
                         f"{services.cluster.address}"
            else:
                batches = _local_batches(model, paths, options["batch_size"], cpu)
            for start, embedded in batches:
                catalog.write(tx, table, column, image_col, [
                    (p, to_blob(v)) for p, v in zip(raw[start:start + len(embedded)], embedded,
                                                    strict=True)])
                done += len(embedded)
                run.report(Progress(key, title, done, len(paths), "images",
                                    time.monotonic() - started, detail=where))
            if unreadable:   # marked, so SEARCH leaves them out instead of embedding them
                catalog.write(tx, table, column, image_col, [(p, UNREADABLE) for p in unreadable])
            catalog.publish(tx, EmbeddingColumn(table, column, node.model, image_col,
                                                model.embedding_dim, collection, 0, entry.digest))
    except BaseException as error:
        catalog.drop_collection(collection)   # the statement's own error is the one to report
        if isinstance(error, DiskFullError):
            # each vector goes to the column, the write-ahead log and the index: about 3x
            raise error.needing(3 * len(raw) * (4 * model.embedding_dim + 64)) from None
        raise
    if old is not None:
        catalog.drop_collection(old.collection)
    left_out = f"; {skipped:,} left out, the image unreadable" if skipped else ""
    run.report(Progress(key, title, len(paths), len(paths), "images", time.monotonic() - started,
                        detail=f"{where}{left_out}", finished=True,
                        # a line too, for front ends that show no update (jupyter console)
                        log_line=f"{title}: {len(paths):,} images {where}{left_out}"
                        if skipped else None))
    result = run.rows(node.query)
    return Table(result.columns, result.rows, vector_columns=frozenset({column}))


def _local_batches(model: Any, paths: list[str], batch_size: int, cpu: Any
                   ) -> Iterator[tuple[int, Any]]:
    """(the index of the first path, the embeddings) of each batch, embedded in the kernel."""
    from ..models import embed, iter_image_batches

    done = 0
    for batch in iter_image_batches(paths, batch_size, model.image_size, model.channels):
        embedded = embed(model, batch, batch_size=batch_size)
        yield done, embedded
        done += len(embedded)
        cpu.tick()


def _prepare(store: SqlStore, catalog: EmbeddingCatalog, tx: Transaction, table: str,
             column: str, image_col: str, statement: str) -> EmbeddingColumn | None:
    """Check the table can take the column, add it (and its indexes); the entry it replaces."""
    columns = store.columns(tx, table)
    if image_col not in columns:
        raise NotFoundError(f"{statement}: the table {excerpt(table)} has no column "
                            f"{excerpt(image_col)}", hint=f"Its columns: {', '.join(columns)}.")
    old = catalog.entry(tx, table, column)
    if column in columns and old is None:
        raise AlreadyExistsError(
            f"{statement}: the table {excerpt(table)} already has a column {excerpt(column)} "
            "that CONVERT did not make", hint="Choose another with OPTIONS (result_col='…').")
    catalog.prepare(tx, table, column, image_col)
    return old


def _query_table(query: Node, store: SqlStore) -> str:
    """The one table a CONVERT query reads: the table that receives the embeddings."""
    found = store.shape(query.text) if isinstance(query, Sql) \
        and not query.subqueries else None
    if found is not None and len(found.tables) == 1:
        return found.tables[0]
    reads = (f"the query reads {', '.join(found.tables)}" if found is not None and found.tables
             else "the query reads no one table")
    raise OptionError(f"CONVERT USING: cannot tell which table receives the embeddings "
                      f"({reads})", hint="Name it with OPTIONS (table_name='…').")
