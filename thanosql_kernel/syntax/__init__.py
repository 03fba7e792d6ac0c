"""Text to statements: the pure front of the kernel (no I/O, no database, no torch)."""

from .nodes import (  # noqa: F401
    ALL_NODES,
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
    Options,
    PrintEmbedding,
    PrintImage,
    SearchImage,
    Sql,
    Value,
)
from .parser import SUBQUERY_PREFIX, is_complete, parse  # noqa: F401
