"""A Pygments lexer for ThanoSQL: SQL, plus the words of the ThanoSQL statements.

Registered under the name "thanosql" (entry point ``pygments.lexers``), which the kernel's
``language_info`` names, so nbconvert's HTML and ``jupyter console`` highlight ThanoSQL.
"""

from __future__ import annotations

from pygments.lexer import inherit, words
from pygments.lexers.sql import SqlLexer
from pygments.token import Comment, Keyword

from .syntax.statements import PHRASES

#: every word of a statement phrase, and the words inside ThanoSQL statements
THANOSQL_WORDS = tuple(sorted({w for p in PHRASES for w in p.split()} |
                              {"OPTIONS", "USING", "SIMCLR", "IMAGES"}))


class ThanoSQLLexer(SqlLexer):
    """SQL with ThanoSQL's statements (COPY, BUILD MODEL, SEARCH IMAGE …) as keywords."""

    name = "ThanoSQL"
    aliases = ["thanosql"]
    filenames: list[str] = []
    mimetypes = ["text/x-thanosql"]

    tokens = {
        "root": [
            (r"(?<![^\n])[ \t]*%%?\w+[^\n]*", Comment.Preproc),   # %%thanosql, %load_ext
            (words(THANOSQL_WORDS, prefix=r"(?i)\b", suffix=r"\b"), Keyword),
            inherit,
        ],
    }
