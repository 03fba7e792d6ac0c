"""Plain SQL, ThanoSQL sub-queries inside it, LIST TABLE, and reading a query's rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from ..errors import DatabaseError, DataError, NotFoundError, ThanoSQLError, did_you_mean, excerpt
from ..results import Message, Table
from ..storage import Transaction, writes
from ..syntax import ListTables, Node, SearchImage, Sql
from ..syntax.statements import statement_for
from .context import Context


@contextmanager
def located(node: Sql) -> Iterator[None]:
    """Point a database error at its place in the cell, where the database says where."""
    try:
        yield
    except DatabaseError as error:
        if error.offset is not None and error.at is None:
            error.at = node.cell_offset(error.offset)
        raise


def run_sql(node: Sql, ctx: Context) -> Table | Message:
    with located(node), ctx.store.begin(write=writes(node.text)) as tx, \
            subquery_tables(node, ctx, tx):
        limit = None if ctx.keep_all_rows else ctx.settings.display_limit
        result = ctx.store.run(tx, node.text, limit, ctx.params)
        if isinstance(result, Table) and _has_bytes(result):
            # show the columns named like an embedding column CONVERT made compactly
            known = ctx.embeddings.names(tx)
            result = replace(result, vector_columns=frozenset(
                c for c in result.columns if c in known))
        return result


def _has_bytes(table: Table) -> bool:
    return any(isinstance(v, (bytes, memoryview)) for row in table.rows for v in row)


def rows_of(query: Node, ctx: Context, hint: tuple[str, int] | None = None) -> Table:
    """Every row a query yields: a SELECT, or a row statement such as SEARCH or LIST."""
    if isinstance(query, Sql):
        with located(query), ctx.store.begin() as tx, subquery_tables(query, ctx, tx):
            return ctx.store.read(tx, query.text, ctx.params)
    if isinstance(query, SearchImage):
        from .search import search_image

        return search_image(query, ctx, hint)
    from . import execute  # the dispatcher imports this module

    result = execute(query, ctx)
    if not isinstance(result, Table):
        raise ThanoSQLError(f"{query.to_sql().split()[0]} returned no rows to use as a query")
    return result


@contextmanager
def subquery_tables(node: Sql, ctx: Context, tx: Transaction) -> Iterator[None]:
    """Each ThanoSQL sub-query of ``node`` as a temporary table named by its placeholder.

    When the outer query only keeps a sub-query's top n rows by one column (``ORDER BY …
    DESC LIMIT n``), the sub-query is told so and may stop there.
    """
    for name, sub in node.subqueries:
        rows = rows_of(sub, ctx, ctx.store.top_n(node.text, name))
        ctx.store.create_rows_table(tx, name, rows.columns, rows.rows, temporary=True)
    yield
    # on an exception the transaction rolls back, and the temporary tables with it
    for name, _ in node.subqueries:
        ctx.store.drop_temporary(tx, name)


def list_tables(_: ListTables, ctx: Context) -> Table:
    with ctx.store.begin() as tx:
        rows = []
        for name in ctx.store.table_names(tx):
            columns = ctx.store.columns(tx, name)
            rows.append((name, ", ".join(columns), ctx.store.count_rows(tx, name)))
    return Table(statement_for(ListTables).columns, tuple(rows))


def image_column(columns: tuple[str, ...], wanted: str, statement: str) -> int:
    """The index of the image column, or a NotFoundError that lists the columns there are."""
    lowered = [c.lower() for c in columns]
    if wanted.lower() not in lowered:
        raise NotFoundError(
            f"{statement}: the query has no column {excerpt(wanted)}",
            hint=f"{did_you_mean(wanted, columns)}Its columns are {', '.join(columns)}. Name "
                 f"the column that holds image paths with OPTIONS (image_col='…').")
    return lowered.index(wanted.lower())


def image_paths(ctx: Context, values: list[Any], column: str, statement: str) -> list[str]:
    """The rows' image paths, resolved against the kernel's folder; NULLs are an error."""
    paths: list[str] = []
    for i, value in enumerate(values):
        if value is None or not str(value).strip():
            raise DataError(f"{statement}: row {i + 1} has no image path in {excerpt(column)}",
                            hint="Filter such rows out in the query (WHERE "
                                 f"{column} IS NOT NULL).")
        paths.append(str(ctx.settings.resolve(str(value))))
    return paths
