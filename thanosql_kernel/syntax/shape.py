"""The bind step: what a query reads (tables, columns) and keeps (ORDER BY … LIMIT), read with
a real SQL parser (sqlglot) rather than regular expressions.

Only ThanoSQL statements that take a query call these, so a cell of plain SQL never imports
sqlglot. Every function answers None (or nothing) for a query it cannot read, and callers
then take the general path, never a wrong shortcut.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlglot import exp

#: the database's dialect name (SQLAlchemy's) -> sqlglot's
_DIALECTS = {"postgresql": "postgres", "sqlite": "sqlite"}


@dataclass(frozen=True)
class Shape:
    """What one SELECT reads and keeps, as far as the kernel needs to know.

    ``tables``: the tables it reads, in order, each once (no CTE names); ``star_only``: it
    is ``SELECT * FROM <one table>`` and nothing else; ``columns``: the names of its
    output columns when they can be read off the text (None with ``*``); ``star_where``:
    it is ``SELECT * FROM <one table> WHERE …`` and nothing else (the WHERE keeps some of
    the table's rows, each whole).
    """

    tables: tuple[str, ...]
    star_only: bool
    columns: tuple[str, ...] | None
    star_where: bool = False


def _parse(sql: str, dialect: str | None) -> exp.Expression | None:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    try:
        parsed = sqlglot.parse(sql, read=_DIALECTS.get(dialect or "", dialect or None))
    except (ParseError, TokenError, ValueError, RecursionError):   # 300 nested parentheses
        return None
    if len(parsed) != 1 or not isinstance(parsed[0], exp.Expression):
        return None
    return parsed[0]


def _arg(node: exp.Expression, *names: str) -> Any:
    """An argument of a node by its name, under the names sqlglot versions have used."""
    for name in names:
        if node.args.get(name) is not None:
            return node.args[name]
    return None


@functools.lru_cache(maxsize=256)   # a notebook runs the same query text again and again
def shape(sql: str, dialect: str | None = None) -> Shape | None:
    """The shape of a SELECT (or WITH … SELECT), or None when it is not one or not readable."""
    from sqlglot import exp

    tree = _parse(sql, dialect)
    if not isinstance(tree, (exp.Select, exp.Union)) and not (
            isinstance(tree, exp.Query) and tree.find(exp.Select) is not None):
        return None
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    tables = tuple(dict.fromkeys(
        t.name.lower() for t in tree.find_all(exp.Table)
        if t.name and t.name.lower() not in ctes))
    clauses = _star_clauses(tree)
    where = tree.args.get("where") if clauses == {"where"} else None
    return Shape(tables, clauses == set(), _output_columns(tree),
                 star_where=where is not None and where.find(exp.Subquery, exp.Select) is None)


def _star_clauses(tree: exp.Expression) -> set[str] | None:
    """The clauses of ``SELECT * FROM <one table> …`` past its FROM, or None for any other
    query."""
    from sqlglot import exp

    if not isinstance(tree, exp.Select) or len(tree.expressions) != 1 \
            or not isinstance(tree.expressions[0], exp.Star):
        return None
    source = _arg(tree, "from_", "from")
    if source is None or not isinstance(source.this, exp.Table) or source.this.args.get("alias"):
        return None
    if source.this.args.get("db") or source.this.args.get("catalog"):
        return None
    return {c for c in set(tree.args) - {"expressions", "from_", "from"} if tree.args.get(c)}


def _output_columns(tree: exp.Expression) -> tuple[str, ...] | None:
    from sqlglot import exp

    if not isinstance(tree, exp.Select):
        return None
    names = []
    for item in tree.expressions:
        if isinstance(item, exp.Star) or (isinstance(item, exp.Column)
                                          and isinstance(item.this, exp.Star)):
            return None
        names.append(item.alias_or_name.lower())
    return tuple(names)


@functools.lru_cache(maxsize=256)
def top_n(sql: str, source: str, dialect: str | None = None) -> tuple[str, int] | None:
    """(column, n) when ``sql`` is ``SELECT … FROM <source> [alias] ORDER BY column DESC
    LIMIT n`` and nothing else: then only the top n rows of ``source`` by that column can
    reach the result. ``column`` may be qualified by the alias or the source's name."""
    from sqlglot import exp

    tree = _parse(sql, dialect)
    if not isinstance(tree, exp.Select):
        return None
    origin = _arg(tree, "from_", "from")
    if origin is None or not isinstance(origin.this, exp.Table) \
            or origin.this.name.lower() != source.lower():
        return None
    alias = origin.this.alias.lower() if origin.this.alias else ""
    extra = set(tree.args) - {"expressions", "from_", "from", "order", "limit"}
    if any(tree.args.get(c) for c in extra):
        return None   # WHERE, GROUP BY, JOIN, DISTINCT, OFFSET … change which rows are kept
    order, limit = tree.args.get("order"), tree.args.get("limit")
    if order is None or limit is None or len(order.expressions) != 1:
        return None
    ordered = order.expressions[0]
    column = ordered.this
    if not ordered.args.get("desc") or not isinstance(column, exp.Column):
        return None
    if column.table and column.table.lower() not in (alias, source.lower()):
        return None
    count = limit.expression
    if not isinstance(count, exp.Literal) or count.is_string or not count.this.isdigit():
        return None
    return column.name.lower(), int(count.this)


def written_tables(sql: str, dialect: str | None = None) -> tuple[str, ...]:
    """The tables a statement creates, changes or drops (not those it only reads)."""
    from sqlglot import exp

    tree = _parse(sql, dialect)
    if tree is None:
        return ()
    # ALTER's class was AlterTable before sqlglot 25; TRUNCATE has one only in newer ones
    changing = tuple(getattr(exp, name) for name in ("Alter", "AlterTable", "TruncateTable")
                     if hasattr(exp, name))
    targets: list[exp.Expression] = []
    if isinstance(tree, (exp.Drop, exp.Create, exp.Insert, exp.Update, exp.Delete, *changing)):
        targets.append(tree.this)
        # DROP TABLE a, b and TRUNCATE a, b list theirs (the name of the argument has varied)
        for name in ("tables", "expressions"):
            targets += [e for e in tree.args.get(name) or () if isinstance(e, exp.Table)]
    names = []
    for target in targets:
        table = target if isinstance(target, exp.Table) else (
            target.find(exp.Table) if target is not None else None)
        if table is not None and table.name:
            names.append(table.name.lower())
    return tuple(names)


@dataclass(frozen=True)
class Changes:
    """How a statement changes tables: ``written`` those it creates, changes or drops,
    ``read`` the others it reads (no CTE names), ``renamed`` (old, new) for ALTER TABLE …
    RENAME TO."""

    written: tuple[str, ...]
    read: tuple[str, ...]
    renamed: tuple[str, str] | None = None


def table_changes(sql: str, dialect: str | None = None) -> Changes:
    """``written_tables`` with the tables read beside them, and a rename."""
    from sqlglot import exp

    written = written_tables(sql, dialect)
    tree = _parse(sql, dialect)
    if tree is None:
        return Changes(written, ())
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    # the action's class was RenameTable before sqlglot 26, AlterRename since
    renames = tuple(getattr(exp, name) for name in ("AlterRename", "RenameTable")
                    if hasattr(exp, name))
    renamed = None
    if renames and written:
        for action in tree.args.get("actions") or ():
            if isinstance(action, renames) and isinstance(action.this, exp.Table) \
                    and action.this.name:
                renamed = (written[0], action.this.name.lower())
    skip = ctes | set(written) | ({renamed[1]} if renamed else set())
    read = tuple(dict.fromkeys(t.name.lower() for t in tree.find_all(exp.Table)
                               if t.name and t.name.lower() not in skip))
    return Changes(written, read, renamed)
