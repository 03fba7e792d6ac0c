"""Plain SQL, ThanoSQL sub-queries inside it, and LIST TABLE."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from ..errors import ThanoSQLError
from ..results import Message, Table
from ..syntax import SUBQUERY_PREFIX, ListTables, Node, SearchImage, Sql
from .context import Context

# SELECT … FROM (sub-query) [AS] [alias] ORDER BY column DESC LIMIT n, and nothing else: then
# only the sub-query's top n rows by that column can reach the result, so it may stop there
_TOP_N = re.compile(
    rf"^\s*SELECT\s+.+?\s+FROM\s+(?P<name>{SUBQUERY_PREFIX}\d+)"
    r"(?:\s+(?:AS\s+)?(?P<alias>[A-Za-z_]\w*))?\s+ORDER\s+BY\s+(?P<column>[A-Za-z_][\w.]*)"
    r"\s+DESC\s+LIMIT\s+(?P<n>\d+)\s*$", re.I | re.S)


def run_sql(node: Sql, ctx: Context) -> Table | Message:
    from ..storage import writes

    with ctx.store.begin(write=writes(node.text)) as conn, subquery_tables(node, ctx, conn):
        result = ctx.store.run(conn, node.text, ctx.settings.display_limit)
        if isinstance(result, Table) and _has_bytes(result):
            result = mark_vectors(result, ctx, conn)
        return result


def _has_bytes(table: Table) -> bool:
    return any(isinstance(v, (bytes, memoryview)) for row in table.rows for v in row)


def mark_vectors(table: Table, ctx: Context, conn: sa.Connection) -> Table:
    """Mark the columns named like an embedding column CONVERT made, to show them compactly."""
    from dataclasses import replace

    from .search import embeddings

    known = {e.column_name for e in embeddings(ctx).all(conn)}
    return replace(table, vector_columns=frozenset(c for c in table.columns if c in known))


def top_n_hint(node: Sql, name: str) -> tuple[str, int] | None:
    """(column, n) when ``node`` only keeps the top n rows of sub-query ``name`` by column."""
    match = _TOP_N.match(node.text)
    if match is None or match.group("name") != name:
        return None
    column = match.group("column").lower()
    alias = (match.group("alias") or "").lower()
    if "." in column:
        prefix, column = column.split(".", 1)
        if prefix not in (alias, name):
            return None
    return column, int(match.group("n"))


def rows_of(query: Node, ctx: Context, hint: tuple[str, int] | None = None) -> Table:
    """Every row a query yields: a SELECT, or a row statement such as SEARCH or LIST."""
    if isinstance(query, Sql):
        with ctx.store.begin() as conn, subquery_tables(query, ctx, conn):
            return ctx.store.read(conn, query.text)
    if isinstance(query, SearchImage):
        from .search import search_image

        return search_image(query, ctx, hint)
    from . import execute  # the dispatcher imports this module

    result = execute(query, ctx)
    if not isinstance(result, Table):
        raise ThanoSQLError(f"{query.to_sql().split()[0]} returned no rows to use as a query")
    return result


@contextmanager
def subquery_tables(node: Sql, ctx: Context, conn: sa.Connection) -> Iterator[None]:
    """Each ThanoSQL sub-query of ``node`` as a temporary table named by its placeholder."""
    for name, sub in node.subqueries:
        rows = rows_of(sub, ctx, top_n_hint(node, name))
        ctx.store.create_rows_table(conn, name, rows.columns, rows.rows, temporary=True)
    yield
    # on an exception the transaction rolls back, and the temporary tables with it;
    # PostgreSQL drops them at commit on its own (ON COMMIT DROP)
    if conn.dialect.name != "postgresql":
        for name, _ in node.subqueries:
            ctx.store.drop_table(conn, name)


def list_tables(_: ListTables, ctx: Context) -> Table:
    with ctx.store.begin() as conn:
        rows = []
        for name in ctx.store.table_names(conn):
            columns = ctx.store.columns(conn, name)
            rows.append((name, ", ".join(columns), ctx.store.count_rows(conn, name)))
    return Table(("table_name", "columns", "row_count"), tuple(rows))
