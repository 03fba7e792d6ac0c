"""Named parameters in SQL text (``:name``): where they stand, outside strings and comments."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .nodes import Node, Sql

# What is skipped whole: quoted strings and names ('…', "…", `…`, with doubled quotes inside),
# dollar-quoted strings ($tag$…$tag$) and comments. A parameter is a colon and a name that
# follows no word character, colon or backslash: so `x::int` (a cast), `a[1:n]` (a slice)
# and `'12:30'` are not parameters.
_TOKENS = re.compile(
    r"""(?P<skip>'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`[^`]*`?|--[^\n]*|/\*[\s\S]*?(?:\*/|\Z)"""
    r"""|(?<![\w$])\$(?P<tag>[A-Za-z_]\w*)?\$[\s\S]*?(?:\$(?P=tag)\$|\Z))"""
    r"""|(?<![\w:\\]):(?P<name>[A-Za-z_]\w*)""")


def parameters(sql: str) -> tuple[tuple[int, str], ...]:
    """``(offset, name)`` of each ``:name`` parameter in ``sql``, in order."""
    return tuple((m.start(), m.group("name")) for m in _TOKENS.finditer(sql)
                 if m.group("name") is not None)


def sql_parts(node: Node) -> Iterator[Sql]:
    """Every piece of SQL a statement runs: itself if it is SQL, the query of a ThanoSQL
    statement, and the ThanoSQL sub-queries inside SQL, at any depth."""
    if isinstance(node, Sql):
        yield node
        for _, sub in node.subqueries:
            yield from sql_parts(sub)
        return
    query = getattr(node, "query", None)
    if isinstance(query, Node):
        yield from sql_parts(query)
