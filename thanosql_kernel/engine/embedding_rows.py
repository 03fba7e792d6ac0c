"""The embeddings of a query's rows, for the statements that compare them (SEARCH IMAGE,
PRINT EMBEDDING): each row's vector from a converted column, or computed from its image,
and the check that a converted column is this model's own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import DataError, NotFoundError, excerpt
from ..results import Table
from ..storage import EmbeddingColumn
from ..syntax import Node, Sql
from .image_rows import image_paths, places
from .services import Services

if TYPE_CHECKING:
    import numpy as np


def check_made_by(services: Services, statement: str, model: str, query: Node, emb_col: str,
                  digest: str | None) -> None:
    """Refuse to compare the query with vectors another model (or this model before it was
    rebuilt) made: the similarities would be meaningless, and nothing would say so."""
    shape = services.store.shape(query.text) \
        if isinstance(query, Sql) and not query.subqueries else None
    with services.store.begin() as tx:
        made = [e for e in services.catalog.entries(tx) if e.column_name == emb_col
                and (shape is None or e.table_name in shape.tables)]
    for entry in made:
        refuse_others(entry, statement, model, digest)


def refuse_others(entry: EmbeddingColumn, statement: str, model: str,
                  digest: str | None) -> None:
    """Refuse a converted column that another model, or this one before it was rebuilt,
    made."""
    where = f"{entry.table_name}.{entry.column_name}"
    again = f"CONVERT USING {model} AS SELECT * FROM {entry.table_name}"
    if entry.model != model:
        raise DataError(f"{statement}: {where} holds the embeddings of the model "
                        f"{entry.model!r}, not of {model!r}",
                        hint=f"Write USING {entry.model}, run {again} into another column "
                             "(OPTIONS (result_col='…')), or name the column of "
                             f"{model}'s embeddings with OPTIONS (emb_col='…').")
    if entry.model_digest is not None and digest is not None and entry.model_digest != digest:
        raise DataError(f"{statement}: {where} holds the embeddings of {model!r} as it "
                        "was before it was built again",
                        hint=f"Run {again} to embed the rows with the model as it is now.")


def stored_vectors(statement: str, values: list[Any], emb_col: str, model: Any,
                   model_name: str) -> tuple[np.ndarray, list[int], list[int]]:
    """The vectors an embedding column holds (``values``, one a row): a matrix (rows, D),
    the rows with none (NULL: added since CONVERT) and those CONVERT marked unreadable (an
    empty value); a column that holds something else, vectors of another length or not
    numbers is an error that says so."""
    import numpy as np

    from ..vectors import from_blob

    matrix = np.zeros((len(values), model.embedding_dim), dtype=np.float32)
    todo: list[int] = []
    unreadable: list[int] = []
    for i, value in enumerate(values):
        if value is None:
            todo.append(i)
            continue
        if isinstance(value, (bytes, bytearray, memoryview)) and not len(value):
            unreadable.append(i)
            continue
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise DataError(f"{statement}: the column {excerpt(emb_col)} holds no embeddings "
                            f"(it holds values such as {excerpt(value)})",
                            hint="Name the column CONVERT made with OPTIONS "
                                 "(emb_col='…'), or leave emb_col out.")
        vector = from_blob(value)
        if vector.shape != (model.embedding_dim,):
            raise DataError(f"{statement}: {excerpt(emb_col)} holds {vector.shape[0]}-d "
                            f"vectors but {model_name!r} makes {model.embedding_dim}-d ones",
                            hint="Run CONVERT USING with this model again, or name the "
                                 "right column with OPTIONS (emb_col='…').")
        matrix[i] = vector
    if not np.isfinite(matrix).all():
        raise DataError(f"{statement}: {excerpt(emb_col)} holds embeddings that are not numbers "
                        "(NaN)", hint="Run CONVERT USING again to embed the rows anew.")
    return matrix, todo, unreadable


def row_embeddings(services: Services, statement: str, model: Any, model_name: str,
                   query: Node, rows: Table, emb_col: str, image_col: str
                   ) -> tuple[np.ndarray, list[int]]:
    """Each row's embedding: from its embedding column, or computed from its image; and the
    rows that have none, their image unreadable (CONVERT OPTIONS (on_error='skip'))."""
    import numpy as np

    from ..models import embed, iter_image_batches

    columns = [c.lower() for c in rows.columns]
    if emb_col in columns:
        e = columns.index(emb_col)
        matrix, todo, unreadable = stored_vectors(statement, [row[e] for row in rows.rows],
                                                  emb_col, model, model_name)
    else:
        n = len(rows.rows)
        matrix = np.zeros((n, model.embedding_dim), dtype=np.float32)
        todo, unreadable = list(range(n)), []
    if todo:
        if image_col not in columns:
            raise NotFoundError(
                f"{statement}: the rows have neither an embedding column {excerpt(emb_col)} "
                f"nor an image column {excerpt(image_col)}",
                hint=f"Their columns: {', '.join(rows.columns)}. Name them with OPTIONS "
                     "(emb_col='…') or OPTIONS (image_col='…').")
        i_img = columns.index(image_col)
        paths = image_paths(places(services, query), [rows.rows[i][i_img] for i in todo],
                            image_col, statement)
        # in batches, like CONVERT: memory stays small however many rows lack a vector
        done = 0
        for batch in iter_image_batches(paths, 256, model.image_size, model.channels):
            matrix[todo[done:done + len(batch)]] = embed(model, batch)
            done += len(batch)
    return matrix, unreadable
