"""Plain SQL, ThanoSQL sub-queries inside it, and LIST TABLE."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from ..errors import ThanoSQLError
from ..results import Message, Table
from ..syntax import ListTables, Node, Sql
from .context import Context


def run_sql(node: Sql, ctx: Context) -> Table | Message:
    with ctx.store.begin() as conn, subquery_tables(node, ctx, conn):
        return ctx.store.run(conn, node.text, ctx.settings.display_limit)


def rows_of(query: Node, ctx: Context) -> Table:
    """Every row a query yields: a SELECT, or a row statement such as SEARCH or LIST."""
    if isinstance(query, Sql):
        with ctx.store.begin() as conn, subquery_tables(query, ctx, conn):
            return ctx.store.read(conn, query.text)
    from . import execute  # the dispatcher imports this module

    result = execute(query, ctx)
    if not isinstance(result, Table):
        raise ThanoSQLError(f"{query.to_sql().split()[0]} returned no rows to use as a query")
    return result


@contextmanager
def subquery_tables(node: Sql, ctx: Context, conn: sa.Connection) -> Iterator[None]:
    """Each ThanoSQL sub-query of ``node`` as a temporary table named by its placeholder."""
    for name, sub in node.subqueries:
        rows = rows_of(sub, ctx)
        ctx.store.create_rows_table(conn, name, rows.columns, rows.rows, temporary=True)
    yield
    # on an exception the transaction rolls back, and the temporary tables with it
    for name, _ in node.subqueries:
        ctx.store.drop_table(conn, name)


def list_tables(_: ListTables, ctx: Context) -> Table:
    with ctx.store.begin() as conn:
        rows = []
        for name in ctx.store.table_names(conn):
            columns = ctx.store.columns(conn, name)
            rows.append((name, ", ".join(columns), ctx.store.count_rows(conn, name)))
    return Table(("table_name", "columns", "row_count"), tuple(rows))
