"""Tab completion: keywords, option names, tables, columns and models that match a prefix."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Context

KEYWORDS = (
    "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "LIMIT", "INSERT INTO", "VALUES",
    "UPDATE", "DELETE FROM", "CREATE TABLE", "DROP TABLE", "ALTER TABLE", "WITH", "JOIN",
    "LEFT JOIN", "DESC", "ASC", "DISTINCT", "COUNT", "AND", "OR", "NOT", "NULL", "LIKE", "AS",
    "COPY", "OPTIONS", "BUILD MODEL", "USING", "SimCLR", "CONVERT USING", "SEARCH IMAGE",
    "PRINT IMAGE", "LIST TABLE", "LIST MODEL", "LIST THANOSQL DATASET",
    "GET THANOSQL DATASET", "DELETE MODEL", "DROP MODEL", "mnist_data",
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def option_names() -> list[str]:
    from .engine.copy import COPY_OPTIONS
    from .engine.models import COMMON_OPTIONS
    from .engine.printing import PRINT_OPTIONS
    from .engine.search import CONVERT_OPTIONS, SEARCH_OPTIONS
    from .models.options import SIMCLR_OPTION_DOCS

    groups = (COPY_OPTIONS, COMMON_OPTIONS, PRINT_OPTIONS, CONVERT_OPTIONS, SEARCH_OPTIONS)
    names = {s.name for group in groups for s in group}
    return sorted(names | set(SIMCLR_OPTION_DOCS))


def names_in_database(ctx: Context) -> list[str]:
    """Tables, their columns and models (nothing when the database cannot be read)."""
    from .engine.models import catalog
    from .errors import ThanoSQLError

    found: set[str] = set()
    try:
        with ctx.store.begin() as conn:
            for table in ctx.store.table_names(conn):
                found.add(table)
                found.update(ctx.store.columns(conn, table))
        found.update(e.name for e in catalog(ctx).entries())
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
    keywords = [k for k in KEYWORDS if k.lower().startswith(lower)]
    if prefix.islower():
        keywords = [k.lower() if k != "SimCLR" else k for k in keywords]
    return sorted(set(matches)) + [k for k in keywords if k not in matches], start, cursor
