"""CONVERT USING and SEARCH IMAGE: embeddings in a table column, a vector index in step."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import AlreadyExistsError, DataError, NotFoundError, OptionError
from ..results import Progress, Table
from ..storage.catalog import EmbeddingCatalog, EmbeddingColumn
from ..syntax import Convert, Node, SearchImage, Sql
from .context import Context
from .models import image_column, image_paths, load
from .options import OptionSpec, read_options
from .queries import rows_of

if TYPE_CHECKING:
    import numpy as np

    from ..vectors.index import VectorIndex

CONVERT_OPTIONS = (
    OptionSpec("table_name", (str, type(None)), None, "the table that receives the column"),
    OptionSpec("image_col", (str,), "image_path", "the column of image paths"),
    OptionSpec("result_col", (str, type(None)), None, "the embedding column (<model>_simclr)"),
    OptionSpec("batch_size", (int,), 256, "images embedded at once",
               check=lambda v: None if 1 <= v <= 65536 else "must be from 1 to 65536"),
)
SEARCH_OPTIONS = (
    OptionSpec("search_by", (str,), "image", "what search_input is", choices=("image",)),
    OptionSpec("search_input", (str, tuple, type(None)), None, "the query image path(s)"),
    OptionSpec("emb_col", (str, type(None)), None, "the embedding column (<model>_simclr)"),
    OptionSpec("image_col", (str,), "image_path", "the column of image paths"),
    OptionSpec("result_col", (str, type(None)), None, "the similarity column"),
    OptionSpec("top_k", (int, type(None)), 1000, "rows returned, best first (None: all)",
               check=lambda v: None if v is None or v >= 1 else "must be 1 or more"),
)
_SIMPLE_SELECT = re.compile(r"^\s*SELECT\s+\*\s+FROM\s+([A-Za-z_][A-Za-z0-9_]*)\s*$", re.I)
_QUERY_TABLE = re.compile(r"\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)\b", re.I)
# a nearest-neighbour answer may be short when rows changed since CONVERT; ask for a margin
_INDEX_MARGIN = 2


def vector_index(ctx: Context) -> VectorIndex:
    found = ctx.ports.get("vectors")
    if found is None:
        from ..vectors import ChromaIndex

        url = ctx.settings.chroma_url
        found = ChromaIndex.http(url) if url else ChromaIndex(ctx.settings.workspace / "chroma")
        ctx.ports["vectors"] = found
    return found  # type: ignore[return-value]


def embeddings(ctx: Context) -> EmbeddingCatalog:
    found = ctx.ports.get("embeddings")
    if found is None:
        found = ctx.ports["embeddings"] = EmbeddingCatalog(ctx.store)
    return found  # type: ignore[return-value]


def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _add_column(conn: sa.Connection, table: str, column: str) -> None:
    kind = sa.LargeBinary().compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE {_quote(conn, table)} ADD COLUMN {_quote(conn, column)} "
                         f"{kind}")


def _ensure_lookup_index(conn: sa.Connection, table: str, column: str,
                         embedding: str | None = None) -> None:
    """Indexes CONVERT relies on: rows by image path (CONVERT updates and SEARCH fetches by
    path), and, for an embedding column, the rows that have none (so SEARCH can tell in one
    index lookup whether rows came since CONVERT, instead of counting the table)."""
    reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
    sa.Index(f"thanosql_ix_{table}_{column}"[:63], reflected.c[column]) \
        .create(conn, checkfirst=True)
    if embedding is not None:
        missing = reflected.c[embedding].is_(None)
        sa.Index(f"thanosql_nx_{table}_{embedding}"[:63], reflected.c[column],
                 sqlite_where=missing, postgresql_where=missing).create(conn, checkfirst=True)


def convert(node: Convert, ctx: Context) -> Table:
    from ..models import embed, iter_image_batches
    from ..vectors import to_blob

    model, entry = load(ctx, node.model)
    options = read_options(node.options, CONVERT_OPTIONS, "CONVERT USING")
    table = (options["table_name"] or _query_table(node.query) or "").lower()
    if not table:
        raise OptionError("CONVERT USING: cannot tell which table receives the embeddings",
                          hint="Name it with OPTIONS (table_name='…').")
    image_col = options["image_col"].lower()
    column = (options["result_col"] or f"{node.model}_{entry.base_model.lower()}").lower()
    statement = f"CONVERT USING {node.model}"
    rows = rows_of(node.query, ctx)
    index = image_column(rows.columns, image_col, statement)
    raw = list(dict.fromkeys(r[index] for r in rows.rows))  # distinct paths, in order
    paths = image_paths(ctx, raw, image_col, statement)
    index_port = vector_index(ctx)
    catalog = embeddings(ctx)
    catalog.ensure()
    started = time.monotonic()
    key = f"convert-{node.model}-{started}"
    # a valid Chroma name whatever the table is called: it starts and ends with a letter or digit
    collection = f"thanosql__{table}__{column}__{uuid.uuid4().hex[:8]}"
    old: EmbeddingColumn | None = None
    try:
        with ctx.store.begin(write=True) as conn:
            columns = ctx.store.columns(conn, table)
            if image_col not in columns:
                raise NotFoundError(f"{statement}: the table {table!r} has no column "
                                    f"{image_col!r}", hint=f"Its columns: {', '.join(columns)}.")
            old = catalog.get(conn, table, column)
            if column in columns and old is None:
                raise AlreadyExistsError(
                    f"{statement}: the table {table!r} already has a column {column!r} that "
                    "CONVERT did not make", hint="Choose another with OPTIONS (result_col='…').")
            if column not in columns:
                _add_column(conn, table, column)
            _ensure_lookup_index(conn, table, image_col, column)
            target = sa.table(table, sa.column(column, sa.LargeBinary), sa.column(image_col))
            update = sa.update(target).where(target.c[image_col] == sa.bindparam("p")) \
                .values({column: sa.bindparam("v")})
            done = 0
            for batch in iter_image_batches(paths, options["batch_size"], model.image_size,
                                            model.channels):
                vectors = embed(model, batch, batch_size=options["batch_size"])
                conn.execute(update, [{"p": p, "v": to_blob(v)}
                                      for p, v in zip(raw[done:done + len(vectors)], vectors,
                                                      strict=True)])
                done += len(vectors)
                ctx.report(Progress(key, f"CONVERT USING {node.model}", done, len(paths),
                                    "images", time.monotonic() - started,
                                    detail=f"into {table}.{column}"))
            reindex(ctx, conn, EmbeddingColumn(table, column, node.model, image_col,
                                               model.embedding_dim, collection, 0))
    except BaseException:
        index_port.drop(collection)
        raise
    if old is not None:
        index_port.drop(old.collection)
    ctx.report(Progress(key, f"CONVERT USING {node.model}", len(paths), len(paths), "images",
                        time.monotonic() - started, detail=f"into {table}.{column}",
                        finished=True))
    result = rows_of(node.query, ctx)
    return Table(result.columns, result.rows, vector_columns=frozenset({column}))


def reindex(ctx: Context, conn: sa.Connection, entry: EmbeddingColumn) -> EmbeddingColumn:
    """Fill ``entry.collection`` from the column (the truth) and record it in the catalog.

    Rows are keyed by image path (the embedding is a function of the image); ``row_count``
    is the table's size when every row has an embedding, else -1, so SEARCH can tell
    whether the index still covers the table.
    """
    from dataclasses import replace

    ids, matrix, rows = _column_vectors(conn, entry)
    vector_index(ctx).replace(entry.collection, ids, matrix)
    total = ctx.store.count_rows(conn, entry.table_name)
    entry = replace(entry, row_count=total if rows == total else -1)
    embeddings(ctx).put(conn, entry)
    return entry


def _column_vectors(conn: sa.Connection, entry: EmbeddingColumn
                    ) -> tuple[list[str], np.ndarray, int]:
    """The column's vectors, one per distinct image path, and how many rows had one."""
    from ..vectors import blobs_to_matrix

    target = sa.table(entry.table_name, sa.column(entry.column_name, sa.LargeBinary),
                      sa.column(entry.image_col))
    found = conn.execute(sa.select(target.c[entry.image_col], target.c[entry.column_name])
                         .where(target.c[entry.column_name].is_not(None))).all()
    blob_of = {str(path): blob for path, blob in found}
    return list(blob_of), blobs_to_matrix(list(blob_of.values())), len(found)


def _query_table(query: Node) -> str | None:
    if isinstance(query, Sql) and not query.subqueries:
        found = _QUERY_TABLE.findall(query.text)
        if len(found) == 1:
            return found[0]
    return None


def search_image(node: SearchImage, ctx: Context, hint: tuple[str, int] | None = None) -> Table:
    """Every row with its cosine similarity to each query image (or the top_k, sorted).

    ``hint`` (similarity column, n) comes from an outer ``ORDER BY column DESC LIMIT n``:
    then only rows that can be in that top n are returned.
    """
    import numpy as np

    from ..models import embed, load_images

    model, entry = load(ctx, node.model)
    base = entry.base_model.lower()
    options = read_options(node.options, SEARCH_OPTIONS, "SEARCH IMAGE")
    given = options["search_input"]
    if node.images and given is not None:
        raise OptionError("SEARCH IMAGE: give the query image either as images=… or as "
                          "OPTIONS (search_input=…), not both")
    second = given is not None
    queries = list(node.images) if node.images else (
        [given] if isinstance(given, str) else list(given or []))
    if not queries or not all(isinstance(q, str) for q in queries):
        raise OptionError("SEARCH IMAGE needs a query image",
                          hint="Write SEARCH IMAGE images='path.jpg' USING model AS …, or "
                               "OPTIONS (search_by='image', search_input='path.jpg').")
    emb_col = (options["emb_col"] or f"{node.model}_{base}").lower()
    image_col = options["image_col"].lower()
    if second:
        names = [(options["result_col"] or "search_result").lower()]
        if len(queries) > 1:
            names = [f"{names[0]}{i + 1}" for i in range(len(queries))]
    else:
        names = [f"{node.model}_{base}_similarity{i + 1}" for i in range(len(queries))]
    query_paths = [str(ctx.settings.resolve(q)) for q in queries]
    for shown, path in zip(queries, query_paths, strict=True):
        if not os.path.isfile(path):
            raise NotFoundError(f"SEARCH IMAGE: the query image {shown!r} does not exist "
                                f"(looked for {path})",
                                hint="Relative paths are relative to the notebook's folder.")
    q = embed(model, load_images(query_paths, model.image_size, model.channels,
                                 what="SEARCH IMAGE"))
    limit = options["top_k"] if second else None
    if hint is not None and hint[0] == names[0]:
        limit = hint[1] if limit is None else min(limit, hint[1])
    if limit is not None and len(queries) == 1:
        fast = _search_with_index(ctx, node, emb_col, image_col, names, q[0], limit)
        if fast is not None:
            return fast
    rows = rows_of(node.query, ctx)
    columns = [c.lower() for c in rows.columns]
    matrix = _row_embeddings(ctx, model, rows, columns, emb_col, image_col, node.model)
    sims = (matrix @ q.T).astype(np.float64) if len(rows.rows) else np.zeros((0, len(q)))
    order: Sequence[int] = range(len(rows.rows))
    if second or limit is not None:
        first = sims[:, 0]
        if limit is not None and limit < len(first):
            top = np.argpartition(-first, limit - 1)[:limit]
            order = top[np.argsort(-first[top], kind="stable")]
        else:
            order = np.argsort(-first, kind="stable")
        if not second:  # first generation keeps the query's order among the kept rows
            order = sorted(order)
    out = tuple(tuple(rows.rows[i]) + tuple(float(s) for s in sims[i]) for i in order)
    vectors = frozenset({emb_col}) if emb_col in columns else frozenset()
    return Table(tuple(rows.columns) + tuple(names), out, vector_columns=vectors)


def _row_embeddings(ctx: Context, model: Any, rows: Table, columns: list[str], emb_col: str,
                    image_col: str, model_name: str) -> np.ndarray:
    """Each row's embedding: from its embedding column, or computed from its image."""
    import numpy as np

    from ..models import embed, iter_image_batches
    from ..vectors import from_blob

    n = len(rows.rows)
    matrix = np.zeros((n, model.embedding_dim), dtype=np.float32)
    todo = list(range(n))
    if emb_col in columns:
        e = columns.index(emb_col)
        todo = []
        for i, row in enumerate(rows.rows):
            value = row[e]
            if value is None:
                todo.append(i)
                continue
            vector = from_blob(value)
            if vector.shape != (model.embedding_dim,):
                raise DataError(f"SEARCH IMAGE: {emb_col!r} holds {vector.shape[0]}-d vectors "
                                f"but {model_name!r} makes {model.embedding_dim}-d ones",
                                hint="Run CONVERT USING with this model again, or name the "
                                     "right column with OPTIONS (emb_col='…').")
            matrix[i] = vector
    if todo:
        if image_col not in columns:
            raise NotFoundError(
                f"SEARCH IMAGE: the rows have neither an embedding column {emb_col!r} nor an "
                f"image column {image_col!r}", hint=f"Their columns: {', '.join(rows.columns)}. "
                "Name them with OPTIONS (emb_col='…') or OPTIONS (image_col='…').")
        i_img = columns.index(image_col)
        paths = image_paths(ctx, [rows.rows[i][i_img] for i in todo], image_col, "SEARCH IMAGE")
        # in batches, like CONVERT: memory stays small however many rows lack a vector
        done = 0
        for batch in iter_image_batches(paths, 256, model.image_size, model.channels):
            matrix[todo[done:done + len(batch)]] = embed(model, batch)
            done += len(batch)
    return matrix


def _search_with_index(ctx: Context, node: SearchImage, emb_col: str, image_col: str,
                       names: list[str], vector: np.ndarray, k: int) -> Table | None:
    """The top k from the converted column's vectors, when they still cover the table.

    Exact cosine search over the column's vectors, held in memory per collection, answers
    up to ``exact_search_max_rows`` rows (a matrix-vector product is cheaper than HNSW and
    exact there); beyond that the vector index answers. None means: use the row-by-row path.
    """
    query = node.query
    if not isinstance(query, Sql) or query.subqueries:
        return None
    match = _SIMPLE_SELECT.match(query.text)
    if match is None:
        return None
    table = match.group(1).lower()
    with ctx.store.begin() as conn:
        entry = embeddings(ctx).get(conn, table, emb_col)
        if entry is None or entry.model != node.model or entry.image_col != image_col:
            return None
        target = sa.table(table, sa.column(image_col), sa.column(emb_col))
        try:
            unconverted = conn.execute(sa.select(target.c[image_col])
                                       .where(target.c[emb_col].is_(None)).limit(1)).first()
        except sa.exc.DBAPIError:
            return None  # the table was made again without the column: go row by row
        if entry.row_count < 0 or unconverted is not None:
            return None  # some rows have no embedding: the row-by-row path embeds them
        if entry.row_count <= ctx.settings.exact_search_max_rows:
            hits = _exact_hits(ctx, conn, entry, vector, k)
        else:
            hits = vector_index(ctx).query(entry.collection, vector, k * _INDEX_MARGIN)
        similarity = dict(hits)
        fetched = conn.execute(sa.select(sa.text("*")).select_from(target)
                               .where(target.c[image_col].in_(list(similarity)))).all()
    columns = tuple(fetched[0]._fields) if fetched else ()
    if emb_col not in columns:
        return None
    i_img = [c.lower() for c in columns].index(image_col)
    if len({str(row[i_img]) for row in fetched}) != len(similarity):
        return None  # rows went since CONVERT: the row-by-row path sees the table as it is
    ranked = sorted(fetched, key=lambda row: -similarity[str(row[i_img])])[:k]
    out = tuple(tuple(row) + (float(similarity[str(row[i_img])]),) for row in ranked)
    return Table(columns + tuple(names), out, vector_columns=frozenset({emb_col}))


def _exact_hits(ctx: Context, conn: sa.Connection, entry: EmbeddingColumn, vector: np.ndarray,
                k: int) -> list[tuple[str, float]]:
    """Exact top k over the column's vectors, loaded once per collection (CONVERT makes a new
    collection name each time, so a stale matrix is never used)."""
    from ..vectors import exact_top_k, normalize

    cache: dict[str, tuple[list[str], Any]] = ctx.ports.setdefault("matrices", {})  # type: ignore
    if entry.collection not in cache:
        ids, matrix, _ = _column_vectors(conn, entry)
        cache.clear()  # one converted column at a time is kept in memory
        cache[entry.collection] = (ids, normalize(matrix))
    ids, matrix = cache[entry.collection]
    top, sims = exact_top_k(matrix, vector, k, normalized=True)
    return [(ids[i], float(s)) for i, s in zip(top, sims, strict=True)]
