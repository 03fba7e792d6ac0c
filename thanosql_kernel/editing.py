"""Help while typing: completion that knows where the cursor is, and inspect (Shift+Tab).

Both read the cell the way the parser does (the statement registry says which statement the
cursor is in) and the query the way a SQL parser does (sqlglot's tokenizer finds the tables
a query reads and its sub-queries), then answer from the database and the declarations: the
same option specs that check a statement's options, the same syntax lines errors show.
Completion and inspect never fail a keystroke: what cannot be read answers nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ThanoSQLError
from .syntax import BuildModel, Convert, GetDataset, SearchImage
from .syntax.scan import scan
from .syntax.statements import PHRASES, SQL_PHRASES, STATEMENTS, Statement

if TYPE_CHECKING:
    from .engine import Services
    from .options import OptionSpec

#: the words after which a table name comes: SQL's, and a statement's whose syntax says so
_TABLE_WORDS = {"FROM", "JOIN", "INTO", "UPDATE", "TABLE"} | {
    p.split()[-1] for s in STATEMENTS for p in s.phrases if s.syntax.startswith(f"{p} table")}
#: the words after which a column name comes, in a query
_COLUMN_WORDS = {"SELECT", "WHERE", "AND", "OR", "NOT", "BY", "ORDER BY", "GROUP BY",
                 "PARTITION BY", "ON", "HAVING", "DISTINCT",
                 "SET", "WHEN", "THEN", "ELSE", ",", "(", "=", "<", ">", "<=", ">=", "<>",
                 "!=", "+", "-", "*", "/"}
#: options whose value names a table or a column of the statement's query
_TABLE_OPTIONS = {"table_name"}
_COLUMN_OPTIONS = {"image_col", "label_col", "emb_col"}
#: options whose value is a path
_PATH_OPTIONS = {"search_input", "images", "image"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    start: int
    end: int   # exclusive

    @property
    def word(self) -> str:
        return self.text.upper() if self.kind != "STRING" else self.text


@dataclass
class Level:
    """The tokens of one statement or one parenthesised group, without its sub-groups
    (each sub-group stands as its "(" token, with its own Level in ``groups``)."""

    tokens: list[Token]
    open: Token | None = None
    parent: Level | None = None
    groups: dict[int, Level] = field(default_factory=dict)   # "(" start -> its level
    close: Token | None = None   # the ")" that ends it, if the text has one yet

    def statement(self) -> Statement | None:
        """The ThanoSQL statement this level is, by its first words."""
        words = [t.word for t in self.tokens[:3] if t.kind != "STRING"]
        # the whole phrase first (PRINT EMBEDDING is not PRINT IMAGE), then the first word
        # alone of a statement that owns it (a phrase still being typed)
        for whole in (True, False):
            for s in STATEMENTS:
                for phrase in s.phrases:
                    parts = phrase.split()
                    if words[:len(parts)] == parts if whole else \
                            not s.shares_head and words[:1] == parts[:1]:
                        return s
        return None

    def after(self, word: str) -> list[Token]:
        """The tokens after the first ``word`` of this level (AS: the query)."""
        for i, t in enumerate(self.tokens):
            if t.word == word and t.kind != "STRING":
                return self.tokens[i + 1:]
        return []


@dataclass
class Cursor:
    """Where the cursor is: the word it ends (or is in), the string it is in, its level."""

    code: str
    pos: int
    start: int            # where the word under the cursor starts
    end: int              # where it ends (inspect reads the whole word)
    string_at: int | None  # the opening quote of the string the cursor is in, if it is
    level: Level
    previous: list[Token]  # the level's tokens before the word, last one nearest

    @property
    def whole_word(self) -> str:
        return self.code[self.start:self.end]

    def option_group(self) -> tuple[Statement | None, Level] | None:
        """(statement, its level) when the cursor is inside that statement's OPTIONS (…)."""
        level = self.level
        if level.open is not None and level.parent is not None:
            before = [t for t in level.parent.tokens if t.end <= level.open.start]
            if before and before[-1].word == "OPTIONS":
                return level.parent.statement(), level.parent
        return None


def _tokens(text: str, offset: int) -> list[Token]:
    """sqlglot's tokens of ``text`` (comments already blanked), with cell offsets."""
    from sqlglot.errors import TokenError
    from sqlglot.tokens import Tokenizer

    try:
        found = Tokenizer().tokenize(text)
    except TokenError:
        return []
    return [Token(t.token_type.name, t.text, offset + t.start, offset + t.end + 1)
            for t in found]


def _levels(tokens: list[Token]) -> Level:
    top = Level([])
    current = top
    for t in tokens:
        if t.kind == "L_PAREN":
            current.tokens.append(t)
            child = Level([], open=t, parent=current)
            current.groups[t.start] = child
            current = child
        elif t.kind == "R_PAREN" and current.parent is not None:
            current.close = t
            current = current.parent
            current.tokens.append(t)
        else:
            current.tokens.append(t)
    return top


def locate(code: str, pos: int) -> Cursor:
    """The cursor's word, string and level in ``code``."""
    pos = max(0, min(pos, len(code)))
    found = scan(code)
    masked = found.masked
    start_of = max([i + 1 for i in found.semicolons if i < pos], default=0)
    end_of = min([i for i in found.semicolons if i >= pos], default=len(code))
    # the lexer's own pass over the text up to the cursor says whether a string is open there
    left_open = scan(code[start_of:pos]).unterminated
    string_at = start_of + left_open[1] if left_open and left_open[0] in ("'", '"') else None
    if string_at is not None:
        word_start = max(string_at + 1, masked.rfind("/", string_at + 1, pos) + 1)
        word_end = pos
        # the statement as if the string ended here: tokens before it, and a stand-in string
        text = masked[start_of:string_at] + "''"
    else:
        word_start = pos
        while word_start > start_of and (masked[word_start - 1].isalnum()
                                         or masked[word_start - 1] == "_"):
            word_start -= 1
        word_end = pos
        while word_end < end_of and (masked[word_end].isalnum() or masked[word_end] == "_"):
            word_end += 1
        text = masked[start_of:end_of]
    tokens = _tokens(text, start_of) or _tokens(masked[start_of:word_start], start_of)
    top = _levels(tokens)
    level = _innermost(top, word_start)
    previous = [t for t in level.tokens if t.end <= word_start]
    return Cursor(code, pos, word_start, word_end, string_at, level, previous)


def _innermost(level: Level, pos: int) -> Level:
    """The deepest parenthesised level that ``pos`` lies in."""
    for t in level.tokens:
        if t.kind == "L_PAREN" and t.start < pos:
            child = level.groups[t.start]
            if child.close is None or pos <= child.close.start:
                return _innermost(child, pos)
    return level


# -- what the database holds ---------------------------------------------------------------

class _Names:
    """The database's tables, columns and models, read once per request."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._tables: list[str] | None = None
        self._columns: dict[str, list[str]] = {}
        self._models: dict[str, Any] | None = None

    def tables(self) -> list[str]:
        if self._tables is None:
            with self.services.store.begin() as tx:
                self._tables = self.services.store.table_names(tx)
        return self._tables

    def columns(self, table: str) -> list[str]:
        if table not in self._columns:
            if table.lower() not in self.tables():
                return []
            with self.services.store.begin() as tx:
                self._columns[table] = self.services.store.columns(tx, table.lower())
        return self._columns[table]

    def models(self) -> dict[str, Any]:
        if self._models is None:
            self._models = {e.name: e for e in self.services.registry.entries()}
        return self._models


def _query_columns(tokens: list[Token], level: Level, names: _Names) -> list[str]:
    """The columns a query can name: of the tables it reads, and of its sub-queries' rows
    (a SEARCH sub-query adds its similarity columns)."""
    found: list[str] = []
    for i, t in enumerate(tokens):
        if t.word not in ("FROM", "JOIN") and not (t.kind == "COMMA" and _in_from(tokens, i)):
            continue
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if following is None:
            continue
        if following.kind == "L_PAREN":
            found += _level_columns(level.groups.get(following.start), names)
        elif following.kind == "VAR":
            found += names.columns(following.text)
    return list(dict.fromkeys(found))


def _in_from(tokens: list[Token], index: int) -> bool:
    """Whether the comma at ``index`` separates the items of a FROM clause."""
    for t in reversed(tokens[:index]):
        if t.word == "FROM":
            return True
        if t.word in ("SELECT", "WHERE", "GROUP", "ORDER", "ON", "JOIN", "HAVING", "LIMIT"):
            return False
    return False


def _level_columns(level: Level | None, names: _Names) -> list[str]:
    """The columns of the rows a parenthesised level yields."""
    if level is None:
        return []
    statement = level.statement()
    if statement is None:
        if level.tokens and level.tokens[0].word in ("SELECT", "WITH"):
            listed = _select_list(level.tokens)
            return listed if listed else _query_columns(level.tokens, level, names)
        return []
    if statement.columns:
        return list(statement.columns)
    query = level.after("AS")
    columns = _query_columns(query, level, names)
    if query and query[0].kind == "L_PAREN":
        columns += _level_columns(level.groups.get(query[0].start), names)
    from .engine.naming import embedding_column, similarity_columns

    model = _after_word(level.tokens, "USING")
    base = _base_of(model, names)
    options = _option_values(level)
    if statement.node is SearchImage:
        columns += similarity_columns(model, base, max(1, _image_count(level)),
                                      second="search_input" in options,
                                      result_col=options.get("result_col"))
    elif statement.node is Convert:
        columns.append((options.get("result_col") or embedding_column(model, base)).lower())
    return list(dict.fromkeys(columns))


def _select_list(tokens: list[Token]) -> list[str]:
    """The names a SELECT's list gives its columns, unless it has a *."""
    names: list[str] = []
    current: list[Token] = []
    for t in tokens[1:]:
        if t.word == "FROM":
            break
        if t.kind == "COMMA":
            names.append(current[-1].text if current else "")
            current = []
        elif t.kind == "STAR":
            return []
        else:
            current.append(t)
    if current:
        names.append(current[-1].text)
    return [n.lower() for n in names if n]


def _after_word(tokens: list[Token], word: str) -> str:
    for i, t in enumerate(tokens[:-1]):
        if t.word == word:
            return tokens[i + 1].text.lower()
    return ""


def _base_of(model: str, names: _Names) -> str:
    entry = names.models().get(model)
    return entry.base_model if entry is not None else "SimCLR"


def _option_values(level: Level) -> dict[str, str]:
    """The literal values written in a level's OPTIONS (…), by option name."""
    for i, t in enumerate(level.tokens[:-1]):
        if t.word == "OPTIONS" and level.tokens[i + 1].kind == "L_PAREN":
            inner = level.groups[level.tokens[i + 1].start].tokens
            return {a.text.lower(): c.text
                    for a, b, c in zip(inner, inner[1:], inner[2:], strict=False)
                    if b.kind == "EQ"}
    return {}


def _image_count(level: Level) -> int:
    for i, t in enumerate(level.tokens[:-2]):
        if t.word in ("IMAGES", "IMAGE") and level.tokens[i + 1].kind == "EQ":
            value = level.tokens[i + 2]
            if value.kind == "STRING":
                return 1
            if value.kind == "L_BRACKET":
                return sum(1 for u in level.tokens[i + 3:] if u.kind == "STRING"
                           and u.start < _bracket_end(level.tokens, i + 2))
    return 1


def _bracket_end(tokens: list[Token], index: int) -> int:
    return next((t.start for t in tokens[index:] if t.kind == "R_BRACKET"), 10**9)


# -- completion ----------------------------------------------------------------------------

def complete(code: str, cursor_pos: int, services: Services) -> dict[str, Any]:
    """A complete_reply's matches, cursor_start, cursor_end and metadata (each match's kind
    in ``_jupyter_types_experimental``, which JupyterLab shows beside it)."""
    try:
        where = locate(code, cursor_pos)
        found = list(_candidates(where, _Names(services)))
    except ThanoSQLError:
        found = []   # a database that cannot be read offers nothing, and fails nothing
        where = None
    start = where.start if where is not None else cursor_pos
    prefix = code[start:cursor_pos]
    lower = prefix.lower()
    seen: set[str] = set()
    matches: list[tuple[str, str]] = []
    for text, kind in found:
        shown = text.lower() if kind == "keyword" and prefix.islower() and prefix else text
        if shown.lower().startswith(lower) and shown not in seen:
            seen.add(shown)
            matches.append((shown, kind))
    return {"matches": [m for m, _ in matches], "cursor_start": start,
            "cursor_end": cursor_pos,
            "metadata": {"_jupyter_types_experimental": [
                {"start": start, "end": cursor_pos, "text": m, "type": kind}
                for m, kind in matches]}}


def _candidates(where: Cursor, names: _Names) -> Iterator[tuple[str, str]]:
    options = where.option_group()
    before = where.previous[-1] if where.previous else None
    if where.string_at is not None:
        yield from _string_candidates(where, names, options)
        return
    if options is not None:
        yield from _option_candidates(where, options, names)
        return
    statement = where.level.statement()
    word = before.word if before is not None else ""
    if word == "USING":
        if statement is not None and statement.node is BuildModel:
            from .engine import BASE_MODELS

            yield from ((name, "base model") for name, _ in BASE_MODELS.values())
        else:
            yield from ((name, "model") for name in names.models())
        return
    if word == "DATASET" and statement is not None and statement.node is GetDataset:
        from .datasets import DATASETS

        yield from ((name, "dataset") for name in DATASETS)
        return
    typed = [t.word for t in where.previous]
    if typed[-2:] in (["DROP", "MODEL"], ["DELETE", "MODEL"]) or \
            typed[-3:] == ["MODEL", "IF", "EXISTS"]:
        yield from ((name, "model") for name in names.models())
        return
    if word in _TABLE_WORDS or typed[-3:] == ["TABLE", "IF", "EXISTS"]:
        yield from ((name, "table") for name in names.tables())
        return
    query = where.level.after("AS") if statement is not None else where.level.tokens
    in_query = statement is None or any(t.start < where.start for t in query)
    if in_query and word in _COLUMN_WORDS | {"SELECT"} and (where.previous or where.level.open):
        tokens = query if statement is not None else where.level.tokens
        columns = _query_columns(tokens, where.level, names)
        if not columns:   # its tables are not typed yet (or unknown): every table's columns
            columns = [c for table in names.tables() for c in names.columns(table)]
        yield from ((name, "column") for name in columns)
    for phrase in PHRASES:   # the rest of a statement's words: PRINT IM -> IMAGE
        parts = phrase.split()
        if len(typed) < len(parts) and parts[:len(typed)] == typed:
            yield " ".join(parts[len(typed):]), "keyword"
    yield from ((word, "keyword") for word in _keywords())
    yield from ((name, "table") for name in names.tables())
    yield from ((name, "model") for name in names.models())


def _keywords() -> tuple[str, ...]:
    """SQL's words, every phrase that starts a ThanoSQL statement, and the words inside."""
    from .engine import BASE_MODELS

    return (*SQL_PHRASES, *PHRASES, "OPTIONS", "USING",
            *(name for name, _ in BASE_MODELS.values()))


def _specs(statement: Statement | None, level: Level, names: _Names) -> tuple[OptionSpec, ...]:
    """The options of the statement at ``level`` (BUILD's depend on its base model)."""
    from .engine import BASE_MODELS, STATEMENT_OPTIONS, build_options

    if statement is None:
        return ()
    if statement.node is BuildModel:
        base = _after_word(level.tokens, "USING")
        return build_options(base if base in BASE_MODELS else "simclr")
    return STATEMENT_OPTIONS.get(statement.node, ())


def _option_candidates(where: Cursor, options: tuple[Statement | None, Level],
                       names: _Names) -> Iterator[tuple[str, str]]:
    statement, owner = options
    specs = {s.name: s for s in _specs(statement, owner, names)}
    before = where.previous[-1] if where.previous else None
    if before is not None and before.kind == "EQ" and len(where.previous) >= 2:
        spec = specs.get(where.previous[-2].text.lower())
        if spec is not None:
            yield from ((value, "value") for value in _values(spec))
        return
    yield from ((name, "option") for name in specs)


def _values(spec: OptionSpec) -> list[str]:
    """The literal values an option takes, where there is a fixed set of them."""
    from .syntax.nodes import render_value as render

    values: list[Any] = []
    if spec.choices is not None:
        values += list(spec.choices)
    if bool in spec.types:
        values += [True, False]
    if spec.name == "device":
        values += ["auto", "cpu", "cuda"]
    if type(None) in spec.types:
        values.append(None)
    return [render(v) for v in values]


def _string_candidates(where: Cursor, names: _Names,
                       options: tuple[Statement | None, Level] | None
                       ) -> Iterator[tuple[str, str]]:
    option = ""
    if len(where.previous) >= 2 and where.previous[-1].kind == "EQ":
        option = where.previous[-2].text.lower()
    if option in _TABLE_OPTIONS:
        yield from ((name, "table") for name in names.tables())
        return
    if option in _COLUMN_OPTIONS and options is not None:
        owner = options[1]
        yield from ((c, "column") for c in _query_columns(owner.after("AS"), owner, names))
        return
    if option and option not in _PATH_OPTIONS:
        return
    yield from _files(where, names.services.settings.cwd)


def _files(where: Cursor, cwd: Path) -> Iterator[tuple[str, str]]:
    """The entries of the folder typed so far, relative to the kernel's folder: folders with
    a trailing "/" (so the next Tab goes on into them)."""
    assert where.string_at is not None
    folder = Path(where.code[where.string_at + 1:where.start]).expanduser()
    base = folder if folder.is_absolute() else cwd / folder
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        is_dir = entry.is_dir()
        yield entry.name + ("/" if is_dir else ""), "folder" if is_dir else "file"


# -- inspect -------------------------------------------------------------------------------

def inspect(code: str, cursor_pos: int, services: Services) -> dict[str, str]:
    """text/plain and text/markdown about the name under the cursor, or {} for none."""
    try:
        where = locate(code, cursor_pos)
        found = _inspect(where, _Names(services))
    except ThanoSQLError:
        return {}
    if found is None:
        return {}
    title, lines = found
    markdown = f"**{title}**\n\n" + "\n".join(lines)
    plain = title + "\n" + "\n".join(line.replace("`", "").replace("**", "")
                                      for line in lines)
    return {"text/markdown": markdown, "text/plain": plain}


def _inspect(where: Cursor, names: _Names) -> tuple[str, list[str]] | None:
    word = where.whole_word
    if not word:
        return None
    options = where.option_group()
    if options is not None:
        spec = {s.name: s for s in _specs(options[0], options[1], names)}.get(word.lower())
        if spec is not None:
            return _option_help(spec, options[0])
    lower = word.lower()
    if lower in names.models():
        return _model_help(names.models()[lower])
    if lower in names.tables():
        return _table_help(lower, names.services)
    from .datasets import DATASETS

    if lower in DATASETS:
        info = DATASETS[lower]
        return f"data set {info.name}", [f"{info.description}", "",
                                         f"Write it with `GET THANOSQL DATASET {info.name}`."]
    statement = where.level.statement()
    upper = word.upper()
    words = {w for s in STATEMENTS for p in s.phrases for w in p.split()} | {
        "OPTIONS", "USING", "AS"}
    if upper in words:
        if statement is None or upper not in {w for p in statement.phrases
                                              for w in p.split()} | {"OPTIONS", "USING", "AS"}:
            statement = next((s for s in STATEMENTS for p in s.phrases if upper in p.split()),
                             statement)
        if statement is not None:
            return _statement_help(statement)
    return None


def _statement_help(statement: Statement) -> tuple[str, list[str]]:
    lines = [statement.summary, "", f"`{statement.syntax}`"]
    from .engine import STATEMENT_OPTIONS

    specs = STATEMENT_OPTIONS.get(statement.node, ())
    if specs:
        lines += ["", "Options: " + ", ".join(f"`{s.name}`" for s in specs)]
    return statement.phrases[0], lines


def _option_help(spec: OptionSpec, statement: Statement | None) -> tuple[str, list[str]]:
    from .syntax.nodes import render_value as render

    owner = statement.phrases[0] if statement is not None else "the statement"
    lines = [spec.doc, "", f"Takes {spec.allowed_text()}; default `{render(spec.default)}`."]
    return f"option {spec.name} of {owner}", lines


def _model_help(entry: Any) -> tuple[str, list[str]]:
    card = entry.card
    losses = ", ".join(f"{x:.4f}" for x in card.get("loss_per_epoch", []))
    options = card.get("options", {})
    updated = (f"{entry.last_updated_utc:%Y-%m-%d %H:%M} UTC" if entry.last_updated_utc
               else "at a time the catalog cannot read")
    lines = [f"- status: {entry.status}, last updated {updated}",
             f"- base model: {entry.base_model}",
             f"- trained on: `{entry.trained_on}` ({entry.row_count:,} rows)",
             f"- image size: {card.get('image_size')} x {card.get('image_size')}, "
             f"{card.get('channels', '?')} channel(s); embedding length: "
             f"{card.get('embedding_dim')}",
             f"- loss per epoch: {losses or '?'}",
             f"- time taken: {card.get('seconds_total', '?')} s",
             "- options: " + ", ".join(f"{k}={v!r}" for k, v in options.items())]
    return f"model {entry.name}", lines


def _table_help(table: str, services: Services) -> tuple[str, list[str]]:
    store = services.store
    with store.begin() as tx:
        columns = store.describe(tx, table)
        rows = store.count_rows(tx, table)
        embeddings = {e.column_name: e for e in services.catalog.entries(tx)
                      if e.table_name == table}
    lines = [f"{rows:,} rows", ""]
    for name, kind in columns:
        made = embeddings.get(name)
        note = f" (embeddings of model {made.model}, length {made.dim})" if made else ""
        lines.append(f"- `{name}` {kind}{note}")
    return f"table {table}", lines
