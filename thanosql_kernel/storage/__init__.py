"""SQL storage behind SQLAlchemy: a SQLite file by default, any database URL by configuration."""

from .sql import INTERNAL_PREFIX, SqlStore, writes  # noqa: F401
