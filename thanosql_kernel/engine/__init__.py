"""Runs statement nodes: one handler per node type, each given the node and a Context."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..results import Result
from ..syntax import (
    BuildModel, Convert, Copy, DeleteModel, GetDataset, ListDatasets, ListModels, ListTables,
    Magic, Node, PrintImage, SearchImage, Sql,
)
from .context import Context
from .copy import copy
from .misc import get_dataset, list_datasets, magic
from .models import build_model, delete_model, list_models
from .printing import print_image
from .search import convert, search_image
from .queries import list_tables, rows_of, run_sql

HANDLERS: dict[type[Node], Callable[[Any, Context], Result]] = {
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
}


def execute(node: Node, ctx: Context) -> Result:
    """Run one statement and return what it yields (rows, a message, images, or nothing)."""
    handler = HANDLERS.get(type(node))
    if handler is None:
        from ..errors import ThanoSQLError

        raise ThanoSQLError(f"{node.to_sql().split()[0]} is not supported yet by this kernel")
    return handler(node, ctx)


__all__ = ["Context", "HANDLERS", "execute", "rows_of"]
