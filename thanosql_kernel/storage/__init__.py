"""SQL storage behind SQLAlchemy: a SQLite file by default, any database URL by configuration.

Four services own all the SQL the kernel writes itself: ``SqlStore`` (user statements and
tables), ``ModelRegistry`` (models and their files), ``EmbeddingColumns`` (the columns
CONVERT makes) and ``TableFolders`` (the folders each table's relative image paths are
relative to). A ``Transaction`` is what ``SqlStore.begin`` yields; the engine only passes
it on.
"""

from sqlalchemy import Connection as Transaction

from .embeddings import EmbeddingColumn, EmbeddingColumns
from .folders import TableFolders
from .registry import ModelEntry, ModelRegistry
from .sql import INTERNAL_PREFIX, SqlStore, reshapes, writes

__all__ = ["INTERNAL_PREFIX", "EmbeddingColumn", "EmbeddingColumns", "ModelEntry",
           "ModelRegistry", "SqlStore", "TableFolders", "Transaction", "reshapes", "writes"]
