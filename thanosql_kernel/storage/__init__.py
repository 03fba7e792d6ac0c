"""SQL storage behind SQLAlchemy: a SQLite file by default, any database URL by configuration.

Three services own all the SQL the kernel writes itself: ``SqlStore`` (user statements and
tables), ``ModelRegistry`` (models and their files) and ``EmbeddingColumns`` (the columns
CONVERT makes). A ``Transaction`` is what ``SqlStore.begin`` yields; the engine only passes
it on.
"""

from sqlalchemy import Connection as Transaction

from .embeddings import EmbeddingColumn, EmbeddingColumns
from .registry import ModelEntry, ModelRegistry
from .sql import INTERNAL_PREFIX, SqlStore, reshapes, writes

__all__ = ["INTERNAL_PREFIX", "EmbeddingColumn", "EmbeddingColumns", "ModelEntry",
           "ModelRegistry", "SqlStore", "Transaction", "reshapes", "writes"]
