"""What changes from one cell to the next: the per-cell value a front end builds and every
handler receives beside the services."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..results import Progress, Table
from ..syntax import Node

#: (similarity column, n) from an outer ``ORDER BY column DESC LIMIT n``: a row statement
#: may then return only the rows that can be in that top n
TopN = tuple[str, int]
#: the rows of a query: a SELECT, or a statement that yields rows (SEARCH, LIST, CONVERT)
RowsOf = Callable[[Node, "TopN | None"], Table]


def _ignore(_: Progress) -> None:
    """The progress sink of a run nobody watches (tests, scripts)."""


@dataclass(frozen=True)
class Run:
    """The statements of one cell: their bound ``:name`` parameters, how many rows a result
    keeps, where progress goes, and how a handler reads the rows of its query.

    ``row_limit`` is the display limit, applied once, by the engine, to a statement's
    result (None keeps every row: the Python magic's DataFrames). ``subquery`` is set by the
    engine's entry points, so a handler reads its query with ``run.rows(query)`` without
    importing the dispatcher.
    """

    params: Mapping[str, Any] = field(default_factory=dict)
    row_limit: int | None = None
    report: Callable[[Progress], None] = _ignore
    subquery: RowsOf | None = field(default=None, repr=False)

    def rows(self, query: Node, hint: TopN | None = None) -> Table:
        """Every row ``query`` yields (only those that can be in the top n, given ``hint``)."""
        if self.subquery is None:
            raise RuntimeError("a handler ran outside engine.execute, which binds its "
                               "sub-queries")
        return self.subquery(query, hint)
