"""The pyparsing elements of ThanoSQL statements (no I/O, no node building)."""

from __future__ import annotations

import pyparsing as pp

pp.ParserElement.enable_packrat()


def keyword(word: str) -> pp.ParserElement:
    """A case-insensitive keyword that names itself in error messages."""
    return pp.CaselessKeyword(word).set_name(word.upper())


def _number(tokens: pp.ParseResults) -> int | float:
    text = tokens[0]
    return float(text) if any(c in text for c in ".eE") else int(text)


# the keywords that follow a name are never taken for one, so a missing name is reported
NAME = pp.Regex(r"(?i)(?!(?:OPTIONS|FROM|USING|AS)\b)[A-Za-z_][A-Za-z0-9_]*").set_name("a name")
STRING = (
    pp.QuotedString("'", esc_quote="''", multiline=True)
    | pp.QuotedString('"', esc_quote='""', multiline=True)
).set_name("a quoted string")
NUMBER = (
    pp.Regex(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?").set_name("a number")
    .set_parse_action(_number)
)
CONSTANT = (
    keyword("True").set_parse_action(lambda: True)
    | keyword("False").set_parse_action(lambda: False)
    # a parse action that returns None keeps the tokens, so None goes in a list
    | keyword("None").set_parse_action(lambda: [None])
    | keyword("NULL").set_parse_action(lambda: [None])
)

VALUE = pp.Forward()
VALUE.set_name("a value ('text', number, True/False, None or [list])")
LIST = pp.Group(
    pp.Suppress("[") + pp.Optional(pp.DelimitedList(VALUE, allow_trailing_delim=True))
    + pp.Suppress("]"),
    aslist=True,
).set_name("a [list]").set_parse_action(lambda t: tuple(t[0]))
VALUE <<= (STRING | NUMBER | CONSTANT | LIST).set_name(
    "a value ('text', number, True/False, None or [list])"
)

OPTION = pp.Group(NAME - pp.Suppress("=") - VALUE).set_name("name=value").set_parse_action(
    lambda t: [(t[0][0], t[0][1])]
)
OPTIONS = (
    pp.Suppress(keyword("OPTIONS")) - pp.Suppress("(")
    - pp.Group(pp.Optional(pp.DelimitedList(OPTION, allow_trailing_delim=True)))
    - pp.Suppress(")")
).set_name("OPTIONS (name=value, ...)").set_parse_action(lambda t: [tuple(t[0])])

#: the query after AS: the rest of the statement, parsed by the statement builder
REST = pp.Regex(r"\S[\s\S]*").set_name("a query").set_parse_action(
    lambda s, loc, t: [(loc, t[0])]
)

COPY = (
    keyword("COPY") - NAME("table") - pp.Optional(OPTIONS("options"))
    - keyword("FROM") - STRING("path") + pp.Optional(OPTIONS("options_after"))
)
LIST_STATEMENT = keyword("LIST") - (
    pp.Regex(r"(?i)TABLES?\b").set_name("TABLE")("tables")
    | pp.Regex(r"(?i)MODELS?\b").set_name("MODEL")("models")
    | (keyword("THANOSQL") + pp.Regex(r"(?i)DATASETS?\b").set_name("DATASET"))("datasets")
).set_name("TABLE, MODEL or THANOSQL DATASET")
GET_DATASET = (
    keyword("GET") - keyword("THANOSQL") - keyword("DATASET") - NAME("name")
    + pp.Optional(OPTIONS("options"))
)
BUILD_MODEL = (
    keyword("BUILD") - keyword("MODEL") - NAME("name") - keyword("USING") - NAME("base")
    - pp.Optional(OPTIONS("options")) - keyword("AS") - REST("query")
)
CONVERT = (
    keyword("CONVERT") - keyword("USING") - NAME("model") - pp.Optional(OPTIONS("options"))
    - keyword("AS") - REST("query")
)
IMAGES = (keyword("images") | keyword("image")) - pp.Suppress("=") - (STRING | LIST)("images")
SEARCH_IMAGE = (
    keyword("SEARCH") - keyword("IMAGE") - pp.Optional(IMAGES) - keyword("USING") - NAME("model")
    - pp.Optional(OPTIONS("options")) - keyword("AS") - REST("query")
)
PRINT_STATEMENT = keyword("PRINT") - (
    (keyword("IMAGE") - pp.Optional(OPTIONS("options")) - keyword("AS") - REST("query"))
    | (keyword("EMBEDDING")("embedding") - keyword("USING") - NAME("model")
       - pp.Optional(OPTIONS("options")) - keyword("AS") - REST("query"))
).set_name("IMAGE or EMBEDDING")
EVALUATE = (
    keyword("EVALUATE") - keyword("USING") - NAME("model") - pp.Optional(OPTIONS("options"))
    - keyword("AS") - REST("query")
)
DELETE_MODEL = (
    (keyword("DELETE") | keyword("DROP")) - keyword("MODEL")
    - pp.Optional(keyword("IF") - keyword("EXISTS"))("if_exists") - NAME("name")
)

#: every statement's element; the registry (statements.py) names which parses what
for _element in (COPY, LIST_STATEMENT, GET_DATASET, BUILD_MODEL, CONVERT, SEARCH_IMAGE,
                 PRINT_STATEMENT, EVALUATE, DELETE_MODEL):
    _element.parse_with_tabs()
