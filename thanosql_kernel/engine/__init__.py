"""Runs statement nodes: one handler per node type, each given the node and a Context.

``HANDLERS`` says what runs each statement and ``OPTIONS`` which options it takes (BUILD
MODEL's depend on the base model: see ``build_options``); errors, completion and help read
the same declarations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import DataError
from ..options import OptionSpec
from ..results import Result
from ..syntax import (
    BuildModel, Convert, Copy, DeleteModel, GetDataset, ListDatasets, ListModels, ListTables,
    Magic, Node, PrintImage, SearchImage, Sql,
)
from .context import Context
from .convert import CONVERT_OPTIONS, convert
from .copy import COPY_OPTIONS, copy
from .misc import GET_OPTIONS, get_dataset, list_datasets, magic
from .models import BASE_MODELS, build_model, build_options, delete_model, list_models
from .printing import PRINT_OPTIONS, print_image
from .queries import list_tables, rows_of, run_sql
from .search import SEARCH_OPTIONS, search_image

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

#: the options each statement takes (none where a statement has no OPTIONS clause)
OPTIONS: dict[type[Node], tuple[OptionSpec, ...]] = {
    Copy: COPY_OPTIONS,
    GetDataset: GET_OPTIONS,
    BuildModel: build_options("simclr"),
    Convert: CONVERT_OPTIONS,
    SearchImage: SEARCH_OPTIONS,
    PrintImage: PRINT_OPTIONS,
}


def execute(node: Node, ctx: Context) -> Result:
    """Run one statement and return what it yields (rows, a message, images, or nothing)."""
    handler = HANDLERS.get(type(node))
    if handler is None:
        from ..errors import ThanoSQLError

        raise ThanoSQLError(f"{node.to_sql().split()[0]} is not supported yet by this kernel")
    try:
        return handler(node, ctx)
    except DataError as error:
        if type(error).__name__ == "DamagedIndex":   # its files broke while in use
            ctx.index_damaged()
        raise


__all__ = ["BASE_MODELS", "Context", "HANDLERS", "OPTIONS", "build_options", "execute",
           "rows_of"]
