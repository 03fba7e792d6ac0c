"""SEARCH IMAGE: each row's cosine similarity to query images, from the converted column's
vectors when they cover the table, else row by row."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import DataError, NotFoundError, OptionError, excerpt
from ..options import OptionSpec, read_options
from ..paths import not_a_file
from ..results import Table
from ..storage import EmbeddingColumn, Transaction
from ..syntax import SearchImage, Sql
from .context import Context
from .models import load
from .queries import image_paths, rows_of

if TYPE_CHECKING:
    import numpy as np

SEARCH_OPTIONS = (
    OptionSpec("search_by", (str,), "image", "what search_input is (default 'image')",
               choices=("image",)),
    OptionSpec("search_input", (str, tuple, type(None)), None,
               "the query image path(s) (default None: use images=)"),
    OptionSpec("emb_col", (str, type(None)), None,
               "the embedding column (default <model>_simclr)"),
    OptionSpec("image_col", (str,), "image_path",
               "the column of image paths (default 'image_path')"),
    OptionSpec("result_col", (str, type(None)), None,
               "the similarity column (default 'search_result' with search_input)"),
    OptionSpec("top_k", (int, type(None)), 1000,
               "rows returned, best first (default 1000; None: all)",
               check=lambda v: None if v is None or v >= 1 else "must be 1 or more"),
)
# a nearest-neighbour answer may be short when rows changed since CONVERT; ask for a margin
_INDEX_MARGIN = 2


def search_image(node: SearchImage, ctx: Context, hint: tuple[str, int] | None = None) -> Table:
    """Every row with its cosine similarity to each query image (or the top_k, sorted).

    ``hint`` (similarity column, n) comes from an outer ``ORDER BY column DESC LIMIT n``:
    then only rows that can be in that top n are returned.
    """
    import numpy as np

    model, entry = load(ctx, node.model)
    base = entry.base_model.lower()
    options = read_options(node.options, SEARCH_OPTIONS, "SEARCH IMAGE")
    second, queries, names = _query_images(node, options, base)
    emb_col = (options["emb_col"] or f"{node.model}_{base}").lower()
    image_col = options["image_col"].lower()
    q = _embed_queries(ctx, node, model, queries)
    limit = options["top_k"] if second else None
    if hint is not None and hint[0] == names[0]:
        limit = hint[1] if limit is None else min(limit, hint[1])
    if limit is not None and len(queries) == 1:
        fast = _search_with_index(ctx, node, emb_col, image_col, names, q[0], limit,
                                  entry.digest)
        if fast is not None:
            return fast
    rows = rows_of(node.query, ctx)
    columns = [c.lower() for c in rows.columns]
    if emb_col in columns:   # the rows bring vectors: they must be this model's
        _check_made_by(ctx, node, emb_col, entry.digest)
    matrix = _row_embeddings(ctx, model, rows, columns, emb_col, image_col, node.model)
    sims = (matrix @ q.T).astype(np.float64) if len(rows.rows) else np.zeros((0, len(q)))
    order = _ranked(sims[:, 0], limit) if second or limit is not None else range(len(rows.rows))
    if not second:  # the first generation keeps the query's order among the rows it keeps
        order = sorted(order)
    out = tuple(tuple(rows.rows[i]) + tuple(float(s) for s in sims[i]) for i in order)
    vectors = frozenset({emb_col}) if emb_col in columns else frozenset()
    return Table(tuple(rows.columns) + tuple(names), out, vector_columns=vectors)


def _embed_queries(ctx: Context, node: SearchImage, model: Any, queries: list[str]
                   ) -> np.ndarray:
    """The query images' embeddings (Q, D); each must be a readable file, each embedding a
    vector of numbers."""
    import numpy as np

    from ..models import embed, load_images
    from ..models.threads import cpu_share

    paths = [str(ctx.settings.resolve(q)) for q in queries]
    for shown, path in zip(queries, paths, strict=True):
        if not os.path.lexists(path) and "\0" not in path:
            raise NotFoundError(f"SEARCH IMAGE: the query image {excerpt(shown)} does not "
                                f"exist (looked for {excerpt(path)})",
                                hint="Relative paths are relative to the notebook's folder.")
        problem = not_a_file(path)
        if problem is not None:
            raise DataError(f"SEARCH IMAGE: the query image {excerpt(shown)} is {problem}")
    # a few images through the small network: threads only add the cost of meeting (1 thread
    # beat 2 by 1.6x quiet and busy, bench/busy_cpu.py); a torchvision network shares them
    light = model.spec.kind == "small" and len(paths) <= 16
    with cpu_share(ctx.settings.threads, light=light).running():
        embedded = embed(model, load_images(paths, model.image_size, model.channels,
                                            what="SEARCH IMAGE"))
    if not np.isfinite(embedded).all():
        raise DataError(f"SEARCH IMAGE: the model {node.model!r} makes embeddings that are not "
                        "numbers (NaN): its weights are damaged",
                        hint=f"Build it again: BUILD MODEL {node.model} … OPTIONS "
                             "(overwrite=True).")
    return embedded


def _check_made_by(ctx: Context, node: SearchImage, emb_col: str, digest: str | None) -> None:
    """Refuse to compare the query with vectors another model (or this model before it was
    rebuilt) made: the similarities would be meaningless, and nothing would say so."""
    query = node.query
    shape = ctx.store.shape(query.text) if isinstance(query, Sql) and not query.subqueries \
        else None
    with ctx.store.begin() as tx:
        made = [e for e in ctx.embeddings.all(tx) if e.column_name == emb_col
                and (shape is None or e.table_name in shape.tables)]
    for entry in made:
        _refuse_others(entry, node, digest)


def _refuse_others(entry: EmbeddingColumn, node: SearchImage, digest: str | None) -> None:
    where = f"{entry.table_name}.{entry.column_name}"
    again = f"CONVERT USING {node.model} AS SELECT * FROM {entry.table_name}"
    if entry.model != node.model:
        raise DataError(f"SEARCH IMAGE: {where} holds the embeddings of the model "
                        f"{entry.model!r}, not of {node.model!r}",
                        hint=f"Search it USING {entry.model}, run {again} into another column "
                             "(OPTIONS (result_col='…')), or name the column of "
                             f"{node.model}'s embeddings with OPTIONS (emb_col='…').")
    if entry.model_digest is not None and digest is not None and entry.model_digest != digest:
        raise DataError(f"SEARCH IMAGE: {where} holds the embeddings of {node.model!r} as it "
                        "was before it was built again",
                        hint=f"Run {again} to embed the rows with the model as it is now.")


def _query_images(node: SearchImage, options: dict[str, Any], base: str
                  ) -> tuple[bool, list[str], list[str]]:
    """(second generation?, the query image paths, their similarity columns' names)."""
    given = options["search_input"]
    if node.images and given is not None:
        raise OptionError("SEARCH IMAGE: give the query image either as images=… or as "
                          "OPTIONS (search_input=…), not both")
    queries = list(node.images) if node.images else (
        [given] if isinstance(given, str) else list(given or []))
    if not queries or not all(isinstance(q, str) for q in queries):
        raise OptionError("SEARCH IMAGE needs a query image",
                          hint="Write SEARCH IMAGE images='path.jpg' USING model AS …, or "
                               "OPTIONS (search_by='image', search_input='path.jpg').")
    if given is None:
        return False, queries, [f"{node.model}_{base}_similarity{i + 1}"
                                for i in range(len(queries))]
    name = (options["result_col"] or "search_result").lower()
    return True, queries, [name] if len(queries) == 1 else [f"{name}{i + 1}" for i in
                                                            range(len(queries))]


def _ranked(similarity: np.ndarray, limit: int | None) -> Sequence[int]:
    """Row indices by similarity, best first (ties in row order), at most ``limit``."""
    import numpy as np

    if limit is not None and limit < len(similarity):
        top = np.argpartition(-similarity, limit - 1)[:limit]
        return top[np.argsort(-similarity[top], kind="stable")]
    return np.argsort(-similarity, kind="stable")


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
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise DataError(f"SEARCH IMAGE: the column {excerpt(emb_col)} holds no embeddings "
                                f"(it holds values such as {excerpt(value)})",
                                hint="Name the column CONVERT made with OPTIONS "
                                     "(emb_col='…'), or leave emb_col out.")
            vector = from_blob(value)
            if vector.shape != (model.embedding_dim,):
                raise DataError(f"SEARCH IMAGE: {excerpt(emb_col)} holds {vector.shape[0]}-d "
                                f"vectors but {model_name!r} makes {model.embedding_dim}-d ones",
                                hint="Run CONVERT USING with this model again, or name the "
                                     "right column with OPTIONS (emb_col='…').")
            matrix[i] = vector
    if not np.isfinite(matrix).all():
        raise DataError(f"SEARCH IMAGE: {excerpt(emb_col)} holds embeddings that are not numbers "
                        "(NaN)", hint="Run CONVERT USING again to embed the rows anew.")
    if todo:
        if image_col not in columns:
            raise NotFoundError(
                f"SEARCH IMAGE: the rows have neither an embedding column {excerpt(emb_col)} "
                f"nor an image column {excerpt(image_col)}",
                hint=f"Their columns: {', '.join(rows.columns)}. Name them with OPTIONS "
                     "(emb_col='…') or OPTIONS (image_col='…').")
        i_img = columns.index(image_col)
        paths = image_paths(ctx, [rows.rows[i][i_img] for i in todo], image_col, "SEARCH IMAGE")
        # in batches, like CONVERT: memory stays small however many rows lack a vector
        done = 0
        for batch in iter_image_batches(paths, 256, model.image_size, model.channels):
            matrix[todo[done:done + len(batch)]] = embed(model, batch)
            done += len(batch)
    return matrix


def _search_with_index(ctx: Context, node: SearchImage, emb_col: str, image_col: str,
                       names: list[str], vector: np.ndarray, k: int,
                       digest: str | None) -> Table | None:
    """The top k from the converted column's vectors, when they still cover the table.

    Exact cosine search over the column's vectors, held in memory per collection, answers
    up to ``exact_search_max_rows`` rows (a matrix-vector product is cheaper than HNSW and
    exact there); beyond that the vector index answers. None means: use the row-by-row path.
    """
    query = node.query
    if not isinstance(query, Sql) or query.subqueries:
        return None
    found = ctx.store.shape(query.text)
    if found is None or not found.star_only:
        return None
    table = found.tables[0]
    with ctx.store.begin() as tx:
        entry = ctx.embeddings.get(tx, table, emb_col)
        if entry is not None:
            _refuse_others(entry, node, digest)
        if entry is None or entry.image_col != image_col:
            return None
        if not ctx.embeddings.covers(tx, entry):
            return None  # some rows have no embedding: the row-by-row path embeds them
        if entry.row_count <= ctx.settings.exact_search_max_rows:
            hits = _exact_hits(ctx, tx, entry, vector, k)
        else:
            hits = ctx.vectors.query(entry.collection, vector, k * _INDEX_MARGIN)
        similarity = dict(hits)
        fetched = ctx.embeddings.rows_at(tx, table, image_col, list(similarity))
    if emb_col not in fetched.columns:
        return None
    i_img = [c.lower() for c in fetched.columns].index(image_col)
    if len({str(row[i_img]) for row in fetched.rows}) != len(similarity):
        return None  # rows went since CONVERT: the row-by-row path sees the table as it is
    ranked = sorted(fetched.rows, key=lambda row: -similarity[str(row[i_img])])[:k]
    out = tuple(tuple(row) + (float(similarity[str(row[i_img])]),) for row in ranked)
    return Table(fetched.columns + tuple(names), out, vector_columns=frozenset({emb_col}))


def _exact_hits(ctx: Context, tx: Transaction, entry: EmbeddingColumn, vector: np.ndarray,
                k: int) -> list[tuple[str, float]]:
    """Exact top k over the column's vectors, loaded once per collection (CONVERT makes a new
    collection name each time, so a stale matrix is never used)."""
    from ..vectors import blobs_to_matrix, exact_top_k, normalize

    if entry.collection not in ctx.matrices:
        ids, blobs, _ = ctx.embeddings.vectors(tx, entry)
        ctx.matrices.clear()  # one converted column at a time is kept in memory
        ctx.matrices[entry.collection] = (ids, normalize(blobs_to_matrix(blobs, entry.dim)))
    ids, matrix = ctx.matrices[entry.collection]
    top, sims = exact_top_k(matrix, vector, k, normalized=True)
    return [(ids[i], float(s)) for i, s in zip(top, sims, strict=True)]
