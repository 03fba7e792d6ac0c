"""Runs statement nodes: one handler per node type, each given the node, the services and the
cell's run.

The two entry points are here and only here: ``execute`` runs a statement and returns its
result (the display limit applied), ``rows`` returns every row of a statement that yields
rows, for use as another statement's query. ``HANDLERS`` and ``ROW_HANDLERS`` say what runs
each node; ``STATEMENT_OPTIONS`` which options it takes (BUILD MODEL's depend on the base
model: see ``build_options``). Handler modules never import each other: a handler reads its
query through ``run.rows``, which these entry points bind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import DamagedIndex, DiskFullError, ThanoSQLError
from ..options import OptionSpec
from ..results import Result, Table
from ..syntax import (
    BuildModel,
    Convert,
    Copy,
    DeleteModel,
    Evaluate,
    GetDataset,
    ListDatasets,
    ListModels,
    ListTables,
    Magic,
    Node,
    PrintEmbedding,
    PrintImage,
    SearchImage,
    Sql,
)
from .build import BASE_MODELS, build_model, build_options, delete_model, list_models
from .compat import magic
from .convert import CONVERT_OPTIONS, convert
from .copy import COPY_OPTIONS, copy
from .datasets import GET_OPTIONS, get_dataset, list_datasets
from .evaluating import EVALUATE_OPTIONS, evaluate
from .mapping import MAP_OPTIONS, print_embedding
from .printing import PRINT_OPTIONS, print_image
from .run import Run, TopN
from .search import SEARCH_OPTIONS, search_image
from .services import Services
from .sql import list_tables, read_sql, run_sql

#: a statement's handler: (node, services, run) -> its result
Handler = Callable[[Any, Services, Run], Result]
#: a row statement's handler: (node, services, run, top-n hint) -> every row it yields
RowHandler = Callable[[Any, Services, Run, "TopN | None"], Table]

HANDLERS: dict[type[Node], Handler] = {
    Sql: run_sql,
    Magic: magic,
    Copy: copy,
    ListTables: list_tables,
    GetDataset: get_dataset,
    ListDatasets: list_datasets,
    BuildModel: build_model,
    ListModels: list_models,
    DeleteModel: delete_model,
    Convert: convert,
    SearchImage: search_image,
    PrintImage: print_image,
    PrintEmbedding: print_embedding,
    Evaluate: evaluate,
}


def _whole(handler: Callable[[Any, Services, Run], Table]) -> RowHandler:
    """A row handler for a statement whose rows do not depend on a top-n hint."""
    return lambda node, services, run, _: handler(node, services, run)


#: the statements that yield rows, as another statement's query or a SELECT's sub-query;
#: SEARCH takes the hint of an outer ``ORDER BY … DESC LIMIT n``
ROW_HANDLERS: dict[type[Node], RowHandler] = {
    Sql: read_sql,
    SearchImage: search_image,
    ListTables: _whole(list_tables),
    ListModels: _whole(list_models),
    ListDatasets: _whole(list_datasets),
    Convert: _whole(convert),
    Evaluate: _whole(evaluate),
}

#: the options each statement takes (none where a statement has no OPTIONS clause)
STATEMENT_OPTIONS: dict[type[Node], tuple[OptionSpec, ...]] = {
    Copy: COPY_OPTIONS,
    GetDataset: GET_OPTIONS,
    BuildModel: build_options("simclr"),
    Convert: CONVERT_OPTIONS,
    SearchImage: SEARCH_OPTIONS,
    PrintImage: PRINT_OPTIONS,
    PrintEmbedding: MAP_OPTIONS,
    Evaluate: EVALUATE_OPTIONS,
}


def execute(node: Node, services: Services, run: Run | None = None) -> Result:
    """Run one statement and return what it yields (rows, a message, images, or nothing); a
    table keeps at most ``run.row_limit`` rows and counts them all."""
    run = _bound(services, run or Run())
    handler = HANDLERS.get(type(node))
    if handler is None:
        raise ThanoSQLError(f"{node.to_sql().split()[0]} is not supported yet by this kernel")
    try:
        result = handler(node, services, run)
    except DamagedIndex:   # its files broke while in use: the next use rebuilds it
        services.catalog.damaged()
        raise
    except DiskFullError:   # the index is whole, its client maybe not: open it afresh
        services.catalog.reset()
        raise
    if isinstance(result, Table) and run.row_limit is not None \
            and len(result.rows) > run.row_limit:
        result = replace(result, rows=result.rows[:run.row_limit], total=result.row_count)
    return result


def rows(query: Node, services: Services, run: Run | None = None,
         hint: TopN | None = None) -> Table:
    """Every row ``query`` yields: a SELECT, or a row statement such as SEARCH or LIST."""
    run = _bound(services, run or Run())
    handler = ROW_HANDLERS.get(type(query))
    if handler is None:
        raise ThanoSQLError(f"{query.to_sql().split()[0]} returns no rows to use as a query",
                            hint="Use a SELECT, SEARCH IMAGE, CONVERT or LIST statement here.")
    return handler(query, services, run, hint)


def _bound(services: Services, run: Run) -> Run:
    """``run`` with its sub-queries read by ``rows`` on ``services`` (and the same run)."""
    if run.subquery is not None:
        return run

    def subquery(query: Node, hint: TopN | None) -> Table:
        return rows(query, services, bound, hint)

    bound = replace(run, subquery=subquery)
    return bound


__all__ = ["BASE_MODELS", "HANDLERS", "ROW_HANDLERS", "STATEMENT_OPTIONS", "Run", "Services",
           "TopN", "build_options", "execute", "rows"]
