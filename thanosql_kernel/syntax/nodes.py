"""Immutable statement nodes: what a cell means, with no I/O attached."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

#: an option or literal value: str, int, float, bool, None, or a tuple of those (a list)
Value = Union[str, int, float, bool, None, tuple]


def render_value(value: Value) -> str:
    """The literal as ThanoSQL source text (strings single-quoted, lists in brackets)."""
    if isinstance(value, tuple):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def render_query(query: "Node") -> str:
    """A query as it stands after AS or in FROM: ThanoSQL statements go in parentheses."""
    return query.to_sql() if isinstance(query, Sql) else "(" + query.to_sql() + ")"


@dataclass(frozen=True)
class Options:
    """The ``OPTIONS (name=value, ...)`` of a statement, in the order written."""

    items: tuple[tuple[str, Value], ...] = ()

    def as_dict(self) -> dict[str, Value]:
        return dict(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def to_sql(self) -> str:
        if not self.items:
            return ""
        return " OPTIONS (" + ", ".join(f"{k}={render_value(v)}" for k, v in self.items) + ")"


@dataclass(frozen=True)
class Node:
    """Base of every statement; ``source`` and ``line`` locate it in the cell."""

    source: str = field(default="", compare=False, repr=False, kw_only=True)
    line: int = field(default=1, compare=False, repr=False, kw_only=True)
    #: the offset in the cell where the statement (for Sql: its text) starts
    start: int = field(default=0, compare=False, repr=False, kw_only=True)

    def to_sql(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


@dataclass(frozen=True)
class Sql(Node):
    """Plain SQL sent to the database; ThanoSQL sub-queries in it are named placeholders."""

    text: str
    subqueries: tuple[tuple[str, Node], ...] = ()
    #: (offset in ``text``, offset in the cell) where each piece of ``text`` starts: a
    #: placeholder maps to its sub-query's opening parenthesis
    anchors: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)

    def cell_offset(self, offset: int) -> int:
        """The offset in the cell of ``text[offset]`` (of its placeholder's "(" in one)."""
        text_at, cell_at = 0, self.start
        for text_start, cell_start in self.anchors:
            if text_start > offset:
                break
            text_at, cell_at = text_start, cell_start
        names = {name for name, _ in self.subqueries}
        inside = next((n for n in names if self.text.startswith(n, text_at)), None)
        return cell_at if inside is not None else cell_at + offset - text_at

    def to_sql(self) -> str:
        text = self.text
        for name, sub in self.subqueries:
            text = text.replace(name, render_query(sub), 1)
        return text


@dataclass(frozen=True)
class Magic(Node):
    """A compatibility line from the original notebooks (``%load_ext``, ``%thanosql …``)."""

    name: str
    argument: str = ""

    @property
    def asks_for_server(self) -> bool:
        """True for ``%thanosql API_TOKEN=…`` / ``%thanosql <url>``: lines about a server."""
        return self.name == "thanosql"

    def to_sql(self) -> str:
        return f"%{self.name} {self.argument}".rstrip()


@dataclass(frozen=True)
class Copy(Node):
    """``COPY table [OPTIONS (...)] FROM 'path'``."""

    table: str
    path: str
    options: Options = Options()

    def to_sql(self) -> str:
        return f"COPY {self.table}{self.options.to_sql()} FROM {render_value(self.path)}"


@dataclass(frozen=True)
class ListTables(Node):
    """``LIST TABLE``."""

    def to_sql(self) -> str:
        return "LIST TABLE"


@dataclass(frozen=True)
class ListModels(Node):
    """``LIST MODEL``."""

    def to_sql(self) -> str:
        return "LIST MODEL"


@dataclass(frozen=True)
class ListDatasets(Node):
    """``LIST THANOSQL DATASET``."""

    def to_sql(self) -> str:
        return "LIST THANOSQL DATASET"


@dataclass(frozen=True)
class GetDataset(Node):
    """``GET THANOSQL DATASET name [OPTIONS (...)]``."""

    name: str
    options: Options = Options()

    def to_sql(self) -> str:
        return f"GET THANOSQL DATASET {self.name}{self.options.to_sql()}"


@dataclass(frozen=True)
class BuildModel(Node):
    """``BUILD MODEL name USING base [OPTIONS (...)] AS query``."""

    name: str
    base: str
    query: Node
    options: Options = Options()

    def to_sql(self) -> str:
        return (f"BUILD MODEL {self.name} USING {self.base}{self.options.to_sql()} "
                f"AS {render_query(self.query)}")


@dataclass(frozen=True)
class Convert(Node):
    """``CONVERT USING model [OPTIONS (...)] AS query``."""

    model: str
    query: Node
    options: Options = Options()

    def to_sql(self) -> str:
        return f"CONVERT USING {self.model}{self.options.to_sql()} AS {render_query(self.query)}"


@dataclass(frozen=True)
class SearchImage(Node):
    """``SEARCH IMAGE [images=...] USING model [OPTIONS (...)] AS query`` (both generations)."""

    model: str
    query: Node
    images: tuple[str, ...] = ()
    options: Options = Options()

    def to_sql(self) -> str:
        images = ""
        if self.images:
            images = " images=" + (render_value(self.images[0]) if len(self.images) == 1
                                   else render_value(self.images))
        return (f"SEARCH IMAGE{images} USING {self.model}{self.options.to_sql()} "
                f"AS {render_query(self.query)}")


@dataclass(frozen=True)
class PrintImage(Node):
    """``PRINT IMAGE [OPTIONS (...)] AS query``."""

    query: Node
    options: Options = Options()

    def to_sql(self) -> str:
        return f"PRINT IMAGE{self.options.to_sql()} AS {render_query(self.query)}"


@dataclass(frozen=True)
class PrintEmbedding(Node):
    """``PRINT EMBEDDING USING model [OPTIONS (...)] AS query``: a map of the rows' embeddings."""

    model: str
    query: Node
    options: Options = Options()

    def to_sql(self) -> str:
        return (f"PRINT EMBEDDING USING {self.model}{self.options.to_sql()} "
                f"AS {render_query(self.query)}")


@dataclass(frozen=True)
class Evaluate(Node):
    """``EVALUATE USING model [OPTIONS (...)] AS query``: the model's search quality."""

    model: str
    query: Node
    options: Options = Options()

    def to_sql(self) -> str:
        return f"EVALUATE USING {self.model}{self.options.to_sql()} AS {render_query(self.query)}"


@dataclass(frozen=True)
class DeleteModel(Node):
    """``DELETE MODEL name`` / ``DROP MODEL [IF EXISTS] name``."""

    name: str
    if_exists: bool = False

    def to_sql(self) -> str:
        return f"DROP MODEL {'IF EXISTS ' if self.if_exists else ''}{self.name}"


ALL_NODES = (Sql, Magic, Copy, ListTables, ListModels, ListDatasets, GetDataset, BuildModel,
             Convert, SearchImage, PrintImage, PrintEmbedding, Evaluate, DeleteModel)
