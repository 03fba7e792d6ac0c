"""The registry of ThanoSQL statements: the one place each is declared.

A ``Statement`` says which words start it, its syntax line, what it does in one sentence,
which grammar element parses it and how its node is built from the parse. The parser's
dispatch, the test for "is this ThanoSQL or plain SQL", the statements allowed as
sub-queries, the keywords offered by completion and the syntax shown in errors and help are
all derived from ``STATEMENTS``. Pure: no pyparsing import here (the grammar loads lazily).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ThanoSQLSyntaxError
from .nodes import (
    BuildModel,
    Convert,
    Copy,
    DeleteModel,
    Evaluate,
    GetDataset,
    ListDatasets,
    ListModels,
    ListTables,
    Node,
    Options,
    PrintEmbedding,
    PrintImage,
    SearchImage,
)


class Builder(Protocol):
    """What a statement's build function may ask of the parser."""

    def options(self, result: Any, start: int) -> Options: ...

    def query(self, statement_start: int, located: tuple[int, str]) -> Node: ...

    def error(self, message: str, offset: int, hint: str | None = None
              ) -> ThanoSQLSyntaxError: ...


#: build(parser, parse result, statement start, {"source", "line"}) -> node
Build = Callable[[Builder, Any, int, dict[str, Any]], Node]


@dataclass(frozen=True)
class Statement:
    """One ThanoSQL statement.

    ``phrases`` are the words it starts with ("BUILD MODEL"; several for synonyms). When the
    first word also starts plain SQL (DELETE, DROP), ``shares_head`` says so and only the
    whole phrase marks the statement as ThanoSQL; otherwise the first word alone does, so a
    misspelt rest gets a ThanoSQL syntax error instead of going to the database.
    """

    node: type[Node]
    phrases: tuple[str, ...]
    syntax: str
    summary: str
    grammar: str
    build: Build
    rows: bool = False
    shares_head: bool = False
    #: the columns of the rows it yields, where they are always the same (LIST)
    columns: tuple[str, ...] = ()

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.split()[0] for p in self.phrases))


def token(result: Any, name: str, default: object) -> Any:
    """The single value a results name holds (pyparsing may wrap it in a list)."""
    value = result.get(name, default)
    if not isinstance(value, (str, tuple)) and hasattr(value, "as_list"):
        value = value[0] if len(value) else default
    return value


def _copy(b: Builder, result: Any, start: int, meta: dict[str, Any]) -> Node:
    return Copy(result["table"].lower(), result["path"], b.options(result, start), **meta)


def _list(b: Builder, result: Any, start: int, meta: dict[str, Any]) -> Node:
    if "tables" in result:
        return ListTables(**meta)
    if "models" in result:
        return ListModels(**meta)
    return ListDatasets(**meta)


def _get(b: Builder, result: Any, start: int, meta: dict[str, Any]) -> Node:
    return GetDataset(result["name"].lower(), b.options(result, start), **meta)


def _delete(b: Builder, result: Any, start: int, meta: dict[str, Any]) -> Node:
    return DeleteModel(result["name"].lower(), bool(result.get("if_exists")), **meta)


def _build(b: Builder, result: Any, start: int, meta: dict[str, Any]) -> Node:
    return BuildModel(result["name"].lower(), result["base"].lower(),
                      b.query(start, token(result, "query", None)), b.options(result, start),
                      **meta)


def _convert(b: Builder, result: Any, start: int, meta: dict[str, Any]) -> Node:
    return Convert(result["model"].lower(), b.query(start, token(result, "query", None)),
                   b.options(result, start), **meta)


def _search(b: Builder, result: Any, start: int, meta: dict[str, Any]) -> Node:
    images = token(result, "images", ())
    images = (images,) if isinstance(images, str) else tuple(images)
    if not all(isinstance(image, str) for image in images):
        raise b.error("images= takes a path in quotes or a list of them", start,
                      hint=f"The syntax is: {statement_for(SearchImage).syntax}")
    return SearchImage(result["model"].lower(), b.query(start, token(result, "query", None)),
                       images, b.options(result, start), **meta)


def _print(b: Builder, result: Any, start: int, meta: dict[str, Any]) -> Node:
    query = b.query(start, token(result, "query", None))
    if "embedding" in result:
        return PrintEmbedding(result["model"].lower(), query, b.options(result, start), **meta)
    return PrintImage(query, b.options(result, start), **meta)


def _evaluate(b: Builder, result: Any, start: int, meta: dict[str, Any]) -> Node:
    return Evaluate(result["model"].lower(), b.query(start, token(result, "query", None)),
                    b.options(result, start), **meta)


STATEMENTS: tuple[Statement, ...] = (
    Statement(Copy, ("COPY",),
              "COPY table [OPTIONS (overwrite=True | if_exists='replace')] FROM 'path'",
              "Loads a CSV, Parquet, JSON or Excel file, or a folder of images, into a table.",
              "COPY", _copy),
    Statement(ListTables, ("LIST TABLE",), "LIST TABLE",
              "Lists the tables with their columns and row counts.", "LIST_STATEMENT", _list,
              rows=True, columns=("table_name", "columns", "row_count")),
    Statement(ListModels, ("LIST MODEL",), "LIST MODEL",
              "Lists the models: name, base model, training query, status, last update.",
              "LIST_STATEMENT", _list, rows=True,
              columns=("name", "base_model", "trained_on", "status", "last_updated_utc")),
    Statement(ListDatasets, ("LIST THANOSQL DATASET",), "LIST THANOSQL DATASET",
              "Lists the data sets GET THANOSQL DATASET can write.", "LIST_STATEMENT", _list,
              rows=True, columns=("name", "data_type", "description")),
    Statement(GetDataset, ("GET THANOSQL DATASET",),
              "GET THANOSQL DATASET name [OPTIONS (overwrite=True)]",
              "Writes a tutorial data set (images and CSV files) next to the notebook.",
              "GET_DATASET", _get),
    Statement(BuildModel, ("BUILD MODEL",),
              "BUILD MODEL name USING SimCLR [OPTIONS (...)] AS query",
              "Trains a self-supervised image model on the images the query names.",
              "BUILD_MODEL", _build),
    Statement(Convert, ("CONVERT USING",),
              "CONVERT USING model [OPTIONS (table_name=..., ...)] AS query",
              "Stores each row's image embedding in a column and keeps the vector index in "
              "step.", "CONVERT", _convert, rows=True),
    Statement(SearchImage, ("SEARCH IMAGE",),
              "SEARCH IMAGE images='path' USING model [OPTIONS (...)] AS query",
              "Adds each row's cosine similarity to the query image(s).", "SEARCH_IMAGE",
              _search, rows=True),
    Statement(PrintImage, ("PRINT IMAGE",),
              "PRINT IMAGE [OPTIONS (image_col=..., limit=..., width=...)] AS query",
              "Shows the image of each row with its path and values as a caption.",
              "PRINT_STATEMENT", _print),
    Statement(PrintEmbedding, ("PRINT EMBEDDING",),
              "PRINT EMBEDDING USING model [OPTIONS (color_col=..., thumbnails=..., ...)] "
              "AS query",
              "Draws a 2-D map (PCA) of the rows' embeddings, coloured by a column, with "
              "thumbnails of some images.", "PRINT_STATEMENT", _print),
    Statement(Evaluate, ("EVALUATE",),
              "EVALUATE USING model [OPTIONS (label_col='label', k=4, ...)] AS query",
              "Scores how well the model's embeddings find images of the same label "
              "(precision@k, k-NN accuracy, MRR), beside raw pixels.", "EVALUATE", _evaluate,
              rows=True, columns=("method", "k", "rows", "queries", "labels", "skipped",
                                  "precision_at_k", "knn_accuracy", "mrr_at_k",
                                  "chance_precision")),
    Statement(DeleteModel, ("DELETE MODEL", "DROP MODEL"),
              "DELETE MODEL name | DROP MODEL [IF EXISTS] name",
              "Removes a model: its catalog row and its files.", "DELETE_MODEL", _delete,
              shares_head=True),
)

_BY_NODE = {s.node: s for s in STATEMENTS}


def statement_for(node: type[Node]) -> Statement:
    return _BY_NODE[node]


def _by_head() -> dict[str, tuple[str, Build, str]]:
    """First word -> (grammar element, build, syntax shown when it does not parse)."""
    found: dict[str, tuple[str, Build, list[str]]] = {}
    for s in STATEMENTS:
        for head in s.heads:
            grammar, build, syntaxes = found.setdefault(head, (s.grammar, s.build, []))
            assert (grammar, build) == (s.grammar, s.build), f"{head} parses two ways"
            if s.syntax not in syntaxes:
                syntaxes.append(s.syntax)
    return {h: (g, b, " | ".join(syn)) for h, (g, b, syn) in found.items()}


#: the first word of a statement -> how to parse it and build its node
BY_HEAD = _by_head()


def _start_pattern() -> re.Pattern[str]:
    owned = dict.fromkeys(h for s in STATEMENTS if not s.shares_head for h in s.heads)
    shared = []
    for s in STATEMENTS:
        for phrase in s.phrases if s.shares_head else ():
            head, *rest = phrase.split()
            following = r"\s+".join(rest)
            shared.append(rf"{head}(?=\s+{following}S?\b)")
    return re.compile(rf"\s*(?:({'|'.join(owned)})\b|({'|'.join(shared)}))", re.I)


#: where a statement starts ThanoSQL: group 1 or 2 is its first word
START = _start_pattern()
#: where a parenthesised sub-query is a ThanoSQL statement that yields rows
SUBQUERY_START = re.compile(
    r"\s*(" + "|".join(dict.fromkeys(h for s in STATEMENTS if s.rows for h in s.heads)) + r")\b",
    re.I)
#: the statements that yield rows and may stand, in parentheses, where a query is expected
ROW_NODES: tuple[type[Node], ...] = tuple(s.node for s in STATEMENTS if s.rows)
#: every phrase that starts a statement, for completion and docs
PHRASES: tuple[str, ...] = tuple(p for s in STATEMENTS for p in s.phrases)


def statement_for_phrase(phrase: str) -> Statement:
    return next(s for s in STATEMENTS if phrase in s.phrases)


#: SQL's own words and phrases: what completion offers besides ThanoSQL's, and the words a
#: misspelt word in a database's syntax error may have meant
SQL_PHRASES = (
    "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "LIMIT", "INSERT INTO", "VALUES",
    "UPDATE", "DELETE FROM", "CREATE TABLE", "DROP TABLE", "ALTER TABLE", "WITH", "JOIN",
    "LEFT JOIN", "DESC", "ASC", "DISTINCT", "COUNT", "AND", "OR", "NOT", "NULL", "LIKE", "AS",
    "HAVING", "OFFSET", "SET", "INNER JOIN", "RIGHT JOIN", "OUTER", "ON", "UNION", "CASE",
    "WHEN", "THEN", "ELSE", "END", "BETWEEN", "EXISTS", "CREATE INDEX", "PRIMARY KEY",
)

#: the words plain SQL statements start with (SQLite's and PostgreSQL's): a statement that
#: starts with one of them is never taken for a misspelt ThanoSQL statement
SQL_STATEMENT_WORDS = frozenset("""
    ABORT ALTER ANALYZE ATTACH BEGIN CALL CHECKPOINT CLOSE CLUSTER COMMENT COMMIT COPY CREATE
    DEALLOCATE DECLARE DELETE DETACH DISCARD DO DROP END EXECUTE EXPLAIN FETCH GRANT IMPORT
    INSERT LISTEN LOAD LOCK MERGE MOVE NOTIFY PRAGMA PREPARE REASSIGN REFRESH REINDEX RELEASE
    REPLACE RESET REVOKE ROLLBACK SAVEPOINT SECURITY SELECT SET SHOW START TABLE TRUNCATE
    UNLISTEN UPDATE VACUUM VALUES WITH
""".split())
