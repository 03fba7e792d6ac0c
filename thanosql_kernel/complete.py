"""Tab completion: keywords, option names, tables, columns and models that match a prefix."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Context

#: the standard SQL words offered; ThanoSQL's own come from the statement registry
SQL_KEYWORDS = (
    "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "LIMIT", "INSERT INTO", "VALUES",
    "UPDATE", "DELETE FROM", "CREATE TABLE", "DROP TABLE", "ALTER TABLE", "WITH", "JOIN",
    "LEFT JOIN", "DESC", "ASC", "DISTINCT", "COUNT", "AND", "OR", "NOT", "NULL", "LIKE", "AS",
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def keywords() -> tuple[str, ...]:
    """SQL's words, every phrase that starts a ThanoSQL statement, and the names that
    follow USING in BUILD and GET THANOSQL DATASET."""
    from .datasets import DATASETS
    from .engine import BASE_MODELS
    from .syntax.statements import PHRASES

    return (*SQL_KEYWORDS, *PHRASES, "OPTIONS", "USING",
            *(name for name, _ in BASE_MODELS.values()), *DATASETS)


def option_names() -> list[str]:
    from .engine import OPTIONS

    return sorted({s.name for specs in OPTIONS.values() for s in specs})


def names_in_database(ctx: Context) -> list[str]:
    """Tables, their columns and models (nothing when the database cannot be read)."""
    from .errors import ThanoSQLError

    found: set[str] = set()
    try:
        with ctx.store.begin() as conn:
            for table in ctx.store.table_names(conn):
                found.add(table)
                found.update(ctx.store.columns(conn, table))
        found.update(e.name for e in ctx.models.entries())
    except ThanoSQLError:
        pass  # completion must never fail a keystroke
    return sorted(found)


def complete(code: str, cursor: int, ctx: Context) -> tuple[list[str], int, int]:
    """(matches, start, end) for the word that ends at ``cursor``."""
    match = _WORD.search(code[:cursor])
    prefix = match.group(0) if match else ""
    start = cursor - len(prefix)
    if not prefix:
        return [], cursor, cursor
    lower = prefix.lower()
    matches = [w for w in names_in_database(ctx) + option_names() if w.lower().startswith(lower)]
    words = [k for k in keywords() if k.lower().startswith(lower)]
    if prefix.islower():
        words = [k if k == "SimCLR" or k.islower() else k.lower() for k in words]
    return sorted(set(matches)) + [k for k in words if k not in matches], start, cursor
