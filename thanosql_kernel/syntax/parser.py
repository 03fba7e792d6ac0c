"""Builders: cell text to statement nodes, with positions for every syntax error."""

from __future__ import annotations

import bisect
import difflib
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ThanoSQLSyntaxError
from .nodes import Magic, Node, Options, Sql, Value
from .scan import Lines, Scan, scan
from .statements import (
    BY_HEAD,
    PHRASES,
    ROW_NODES,
    SQL_STATEMENT_WORDS,
    START,
    SUBQUERY_START,
    statement_for_phrase,
    token,
)

if TYPE_CHECKING:
    import pyparsing as pp

_QUERY_START = re.compile(r"\s*(SELECT|WITH|VALUES)\b", re.I)
_LINE_MAGIC = re.compile(r"[ \t]*%(?!%)(\w+)[ \t]*(.*)")
_CELL_MAGIC = re.compile(r"[ \t]*%%(\w+)[ \t]*(.*)")

_AS = re.compile(r"\bAS\b", re.I)
#: the most characters a ThanoSQL statement may have before its query (about 10,000 values)
_MAX_HEAD = 20_000

#: the prefix of the placeholder that stands for a ThanoSQL sub-query inside plain SQL
SUBQUERY_PREFIX = "__thanosql_subquery_"


@dataclass(frozen=True)
class _Cell:
    """The cell text with magic lines blanked out, and what the magics asked for."""

    text: str
    scan: Scan
    magics: tuple[tuple[int, Magic], ...]
    plain_ranges: tuple[tuple[int, int], ...]
    plain_cell: bool


class _Builder:
    """Turns one cell into nodes; holds the text so every error can point into it."""

    def __init__(self, cell: _Cell) -> None:
        self.cell = cell
        self.text = cell.text
        self.masked = cell.scan.masked
        self.lines = Lines(cell.text)
        #: the opening parentheses, in order (a statement looks only at its own, by bisect)
        self.opens = sorted(cell.scan.pairs)
        self._counter = 0

    # -- errors ------------------------------------------------------------------------
    def error(self, message: str, offset: int, hint: str | None = None) -> ThanoSQLSyntaxError:
        return ThanoSQLSyntaxError(message, cell=self.text, at=offset, hint=hint)

    def _found(self, offset: int) -> str:
        m = re.compile(r"\S+").match(self.masked, offset)
        if offset >= len(self.masked) or m is None:
            return "the end of the statement"
        word = m.group(0)
        return repr(word if len(word) <= 30 else word[:30] + "…")

    # -- statements --------------------------------------------------------------------
    def statement(self, start: int, end: int) -> Node:
        """The node for the statement at ``text[start:end]`` (already known to be non-blank)."""
        head = START.match(self.masked, start, end)
        plain = self.cell.plain_cell or any(a <= start + 1 and start < b or start <= a < end
                                            for a, b in self.cell.plain_ranges)
        if plain:
            return self.sql(start, end)
        if head is None:
            self.check_not_misspelt(start, end)
            return self.sql(start, end)
        return self.thanosql(start, end, (head.group(1) or head.group(2)).upper())

    def check_not_misspelt(self, start: int, end: int) -> None:
        """A statement that starts like no SQL statement but nearly like a ThanoSQL one
        (SERACH IMAGE, CONVRT USING) is a misspelling, not SQL for the database."""
        words = list(re.finditer(r"[A-Za-z_]+", self.masked[start:end]))[:3]
        if not words or words[0].group(0).upper() in SQL_STATEMENT_WORDS:
            return
        typed = " ".join(w.group(0).upper() for w in words)
        for phrase in PHRASES:
            length = len(phrase.split())
            if len(words) < length:
                continue
            said = " ".join(typed.split()[:length])
            if difflib.SequenceMatcher(None, said, phrase).ratio() >= 0.75:
                raise self.error(
                    f"Unknown statement {said!r}", start + words[0].start(),
                    hint=f"Did you mean {phrase}? The syntax is: "
                         f"{statement_for_phrase(phrase).syntax}")

    def thanosql(self, start: int, end: int, word: str) -> Node:
        while self.masked[start].isspace():
            start += 1
        # pyparsing and the grammar load on the first ThanoSQL statement: plain SQL needs neither
        import pyparsing as pp

        from . import grammar

        grammar_name, build, syntax = BY_HEAD[word]
        element = getattr(grammar, grammar_name)
        self.check_head_length(start, end, word, syntax)
        try:
            result = element.parse_string(self.masked[start:end], parse_all=True)
        except RecursionError:
            raise self.error("Values are nested too deeply to read", start,
                             hint=f"Option values are text, numbers, True/False, None or flat "
                                  f"[lists]. The syntax is: {syntax}") from None
        except pp.ParseBaseException as e:
            offset = start + e.loc
            msg = e.msg if e.msg.startswith("Expected") else f"Expected {e.msg}"
            msg = msg.replace("end of text", "the end of the statement")
            raise self.error(f"{msg}, found {self._found(offset)}", offset,
                             hint=f"The syntax is: {syntax}") from None
        meta = {"source": self.text[start:end].strip(), "line": self.lines.line(start),
                "start": start}
        return build(self, result, start, meta)

    def check_head_length(self, start: int, end: int, word: str, syntax: str) -> None:
        """Refuse a statement whose part before its query (options, image lists) is longer
        than any real one: the grammar would take seconds a value to read it."""
        query = _AS.search(self.masked, start, end)
        head = (query.start() if query else end) - start
        if head > _MAX_HEAD:
            raise self.error(
                f"This {word} statement is {head:,} characters long before its query; "
                f"ThanoSQL reads at most {_MAX_HEAD:,} there", start,
                hint=f"The syntax is: {syntax}. Long lists of values belong in a table.")

    def options(self, result: pp.ParseResults, start: int) -> Options:
        items: list[tuple[str, Value]] = []
        for group in ("options", "options_after"):
            for name, value in token(result, group, ()):
                key = name.lower()
                if any(key == k for k, _ in items):
                    raise self.error(f"The option {key!r} is given twice", start,
                                     hint="Give each option once.")
                items.append((key, value))
        return Options(tuple(items))

    def query(self, statement_start: int, located: tuple[int, str]) -> Node:
        """The query after AS: a SELECT, or a row-yielding ThanoSQL statement in parentheses."""
        loc, text = located
        return self.query_at(statement_start + loc, statement_start + loc + len(text))

    def query_at(self, start: int, end: int) -> Node:
        while start < end and self.masked[start].isspace():
            start += 1
        while end > start and self.masked[end - 1].isspace():
            end -= 1
        if start < end and self.masked[start] == "(" \
                and self.cell.scan.pairs.get(start) == end - 1:
            return self.query_at(start + 1, end - 1)
        head = START.match(self.masked, start, end)
        if head is not None:
            node = self.thanosql(start, end, (head.group(1) or head.group(2)).upper())
            if not isinstance(node, ROW_NODES):
                raise self.error(
                    f"{(head.group(1) or head.group(2)).upper()} does not return rows, so it "
                    "cannot be used as a query", start,
                    hint="A query is a SELECT, or SEARCH / LIST / CONVERT in parentheses.")
            return node
        if not _QUERY_START.match(self.masked, start, end):
            raise self.error(f"Expected a query (SELECT …), found {self._found(start)}", start,
                             hint="A query is a SELECT, or SEARCH / LIST / CONVERT in "
                                  "parentheses.")
        return self.sql(start, end)

    def sql(self, start: int, end: int) -> Sql:
        """Plain SQL; each ``(SEARCH …)`` / ``(LIST …)`` inside becomes a named placeholder."""
        while start < end and self.masked[start].isspace():
            start += 1
        while end > start and self.masked[end - 1].isspace():
            end -= 1
        pieces: list[str] = []
        anchors: list[tuple[int, int]] = [(0, start)]
        subqueries: list[tuple[str, Node]] = []
        cursor = start
        for open_at in self.opens[bisect.bisect_left(self.opens, start):]:
            if open_at >= end:
                break
            close_at = self.cell.scan.pairs[open_at]
            if open_at < cursor or close_at >= end or open_at < start:
                continue
            if not SUBQUERY_START.match(self.masked, open_at + 1, close_at):
                continue
            if self.cell.plain_cell:
                continue
            self._counter += 1
            name = f"{SUBQUERY_PREFIX}{self._counter}"
            subqueries.append((name, self.query_at(open_at + 1, close_at)))
            pieces.append(self.masked[cursor:open_at])
            anchors.append((sum(map(len, pieces)), open_at))
            pieces.append(name)
            anchors.append((sum(map(len, pieces)), close_at + 1))
            cursor = close_at + 1
        pieces.append(self.masked[cursor:end])
        return Sql("".join(pieces), tuple(subqueries), tuple(anchors),
                   source=self.text[start:end], line=self.lines.line(start), start=start)


def _read_magics(text: str) -> _Cell:
    """Blank out the compatibility lines of the original notebooks, keeping every offset."""
    lines = text.split("\n")
    magics: list[tuple[int, Magic]] = []
    plain_ranges: list[tuple[int, int]] = []
    plain_cell = False
    offset = 0
    first_code_line = True
    out: list[str] = []
    for raw in lines:
        cell_magic = _CELL_MAGIC.match(raw)
        line_magic = _LINE_MAGIC.match(raw)
        if cell_magic and first_code_line:
            name = cell_magic.group(1).lower()
            if name not in ("thanosql", "psql", "sql"):
                raise _syntax(text, offset, f"Unknown cell magic %%{name}",
                              "Only %%thanosql and %%psql are understood (both are optional).")
            plain_cell = name in ("psql", "sql")
            rest = cell_magic.group(2)
            out.append(" " * (len(raw) - len(rest)) + rest)
        elif line_magic:
            name, arg = line_magic.group(1).lower(), line_magic.group(2).strip()
            if name == "psql":
                start = offset + raw.index("%")
                plain_ranges.append((start, offset + len(raw)))
                out.append(" " * (raw.index("%") + len("%psql")) + raw[raw.index("%") + 5:])
            else:
                if (name == "load_ext" and arg.lower() in ("thanosql", "thanosql_magic")) \
                        or name == "thanosql":
                    magics.append((offset, Magic(name, arg, source=raw.strip(),
                                                 line=text.count("\n", 0, offset) + 1)))
                else:
                    raise _syntax(text, offset + raw.index("%"), f"Unknown magic %{name}",
                                  "This kernel runs ThanoSQL and SQL only; the lines "
                                  "'%load_ext thanosql' and '%thanosql …' are accepted for "
                                  "old notebooks.")
                out.append(" " * len(raw))
        else:
            out.append(raw)
        if raw.strip():
            first_code_line = False
        offset += len(raw) + 1
    blanked = "\n".join(out)
    return _Cell(blanked, scan(blanked), tuple(magics), tuple(plain_ranges), plain_cell)


def _syntax(text: str, offset: int, message: str, hint: str | None) -> ThanoSQLSyntaxError:
    return ThanoSQLSyntaxError(message, cell=text, at=offset, hint=hint)


def parse(text: str) -> list[Node]:
    """Every statement of a cell, in order; raises ThanoSQLSyntaxError before any can run."""
    return list(_parsed(text))


@functools.lru_cache(maxsize=256)   # a notebook runs the same cell text again and again
def _parsed(text: str) -> tuple[Node, ...]:
    """``parse``'s answer, kept: the nodes are frozen, and a cell that does not parse raises
    each time (an exception is never kept)."""
    cell = _read_magics(text)
    found = cell.scan
    if found.unterminated is not None:
        what, at = found.unterminated
        name = {"'": "string", '"': "quoted name or string", "/*": "comment"}.get(what,
                                                                                 "string")
        closer = {"/*": "*/"}.get(what, what)
        raise _syntax(text, at, f"Unterminated {name}: {what} is never closed",
                      f"Close it with {closer}; nothing in this cell was run.")
    builder = _Builder(cell)
    located: list[tuple[int, Node]] = list(cell.magics)
    start = 0
    for end in (*found.semicolons, len(cell.text)):
        if found.masked[start:end].strip():
            located.append((start, builder.statement(start, end)))
        start = end + 1
    _check_parens(text, found, cell)
    located.sort(key=lambda pair: pair[0])
    return tuple(node for _, node in located)


def _check_parens(text: str, found: Scan, cell: _Cell) -> None:
    if found.open_parens:
        raise _syntax(text, found.open_parens[0], "This parenthesis is never closed",
                      "Add the missing ')'; nothing in this cell was run.")
    if found.stray_close is not None:
        raise _syntax(text, found.stray_close, "This ')' closes no parenthesis",
                      "Remove it or add the matching '('; nothing in this cell was run.")


def is_complete(text: str) -> str:
    """``'complete'``, ``'incomplete'`` or ``'invalid'``, for consoles deciding on Enter.

    Incomplete while a string, comment or parenthesis is open. Otherwise, as in psql, a
    statement is complete when it ends with ``;`` or the input ends with a blank line, so a
    console user can type a query over several lines; a cell of only magics is complete.
    """
    try:
        cell = _read_magics(text)
    except ThanoSQLSyntaxError:
        return "invalid"
    found = cell.scan
    if found.unterminated is not None or found.open_parens:
        return "incomplete"
    if found.stray_close is not None:
        return "invalid"
    code = found.masked.rstrip(" \t")
    if not code.strip() or code.rstrip().endswith(";") or code.endswith("\n"):
        return "complete"
    return "incomplete"
