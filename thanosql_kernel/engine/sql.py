"""Plain SQL, the ThanoSQL sub-queries inside it, and LIST TABLE."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace

from ..errors import DatabaseError
from ..results import Message, Table
from ..storage import Transaction, writes
from ..syntax import ListTables, Sql
from ..syntax.statements import statement_for
from .image_rows import query_tables
from .run import Run, TopN
from .services import Services


@contextmanager
def located(node: Sql) -> Iterator[None]:
    """Point a database error at its place in the cell, where the database says where."""
    try:
        yield
    except DatabaseError as error:
        if error.offset is not None and error.at is None:
            error.at = node.cell_offset(error.offset)
        raise


def run_sql(node: Sql, services: Services, run: Run) -> Table | Message:
    store, catalog = services.store, services.catalog
    gone: list[str] = []   # the collections of embedding columns the statement dropped
    write = writes(node.text)
    moves = write and services.folders.moved_by(node.text)
    if moves:
        services.folders.ensure()
    with located(node), store.begin(write=write) as tx, \
            subquery_tables(node, services, run, tx), \
            (catalog.following(tx, node.text, gone) if write else nullcontext()):
        result = store.run(tx, node.text, run.row_limit, run.params)
        if moves:   # where a table's images are follows it (renamed, made from others, dropped)
            services.folders.follow(tx, replace(store.changes(node.text),
                                                read=query_tables(node)))
        if isinstance(result, Table) and _has_bytes(result):
            # show the columns named like an embedding column CONVERT made compactly
            known = catalog.names(tx)
            result = replace(result, vector_columns=frozenset(
                c for c in result.columns if c in known))
    for collection in gone:
        catalog.drop_collection(collection)
    return result


def read_sql(node: Sql, services: Services, run: Run, _: TopN | None = None) -> Table:
    """Every row of a SELECT used as a statement's query."""
    with located(node), services.store.begin() as tx, \
            subquery_tables(node, services, run, tx):
        return services.store.read(tx, node.text, run.params)


def _has_bytes(table: Table) -> bool:
    return any(isinstance(v, (bytes, memoryview)) for row in table.rows for v in row)


@contextmanager
def subquery_tables(node: Sql, services: Services, run: Run, tx: Transaction
                    ) -> Iterator[None]:
    """Each ThanoSQL sub-query of ``node`` as a temporary table named by its placeholder.

    When the outer query only keeps a sub-query's top n rows by one column (``ORDER BY …
    DESC LIMIT n``), the sub-query is told so and may stop there.
    """
    store = services.store
    for name, sub in node.subqueries:
        rows = run.rows(sub, store.top_n(node.text, name))
        store.create_rows_table(tx, name, rows.columns, rows.rows, temporary=True)
    yield
    # on an exception the transaction rolls back, and the temporary tables with it
    for name, _ in node.subqueries:
        store.drop_temporary(tx, name)


def list_tables(_: ListTables, services: Services, __: Run) -> Table:
    store = services.store
    with store.begin() as tx:
        rows = []
        for name in store.table_names(tx):
            columns = store.columns(tx, name)
            rows.append((name, ", ".join(columns), store.count_rows(tx, name)))
    return Table(statement_for(ListTables).columns, tuple(rows))
