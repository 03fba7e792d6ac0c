"""The lexical pass over a cell: strings, comments, `;` and parentheses, with positions."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class Scan:
    """What the lexical pass found in a text.

    ``masked`` is the text with every comment replaced by spaces (newlines kept), so offsets
    into it are offsets into the original text and keyword matching never sees a comment.
    """

    masked: str
    semicolons: tuple[int, ...]
    #: (what, offset) of a string or comment left open at the end, else None
    unterminated: tuple[str, int] | None
    #: offsets of '(' not closed by the end of the text
    open_parens: tuple[int, ...]
    #: offset of the first ')' that closes nothing, else None
    stray_close: int | None
    #: matching pairs (open offset -> close offset) of the parentheses
    pairs: dict[int, int]


def scan(text: str) -> Scan:
    """Walk ``text`` once, the way a SQL lexer does, and report its structure."""
    chars = list(text)
    semicolons: list[int] = []
    stack: list[int] = []
    pairs: dict[int, int] = {}
    stray: int | None = None
    unterminated: tuple[str, int] | None = None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            for j in range(i, end):
                chars[j] = " "
            i = end
        elif c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                unterminated = ("/*", i)
                end = n
            else:
                end += 2
            for j in range(i, end):
                if chars[j] != "\n":
                    chars[j] = " "
            i = end
        elif c in "'\"":
            j = i + 1
            while True:
                j = text.find(c, j)
                if j < 0:
                    break
                if text.startswith(c + c, j):  # a doubled quote is an escaped quote
                    j += 2
                    continue
                break
            if j < 0:
                unterminated = (c, i)
                i = n
            else:
                i = j + 1
        elif c == "$" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = _DOLLAR_TAG.match(text, i)
            if m is None:
                i += 1
                continue
            end = text.find(m.group(0), m.end())
            if end < 0:
                unterminated = (m.group(0), i)
                i = n
            else:
                i = end + len(m.group(0))
        else:
            if c == ";":
                semicolons.append(i)
            elif c == "(":
                stack.append(i)
            elif c == ")":
                if stack:
                    pairs[stack.pop()] = i
                elif stray is None:
                    stray = i
            i += 1
    return Scan("".join(chars), tuple(semicolons), unterminated, tuple(stack), stray, pairs)


class Lines:
    """Where each line of a text starts, so that many offsets are placed in log time each
    (counting newlines from the start, which a cell of thousands of statements cannot
    afford)."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)
