"""Statement options declared as data, and the one reader that checks them against it.

Every statement's options, SimCLR's included, are ``OptionSpec`` tuples, so errors, docs,
completion and inspect all read the same declarations. Pure: no I/O, no heavy imports.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import OptionError, did_you_mean, excerpt

_TYPE_NAMES = {bool: "True or False", int: "a whole number", float: "a number",
               str: "a string in quotes", tuple: "a [list]", type(None): "None"}


@dataclass(frozen=True)
class OptionSpec:
    """One option a statement accepts.

    ``doc`` is one line: what it does, what it takes and its default. ``check`` returns what
    is wrong with a value of an accepted type ("must be from 1 to 10"), or None. ``allowed``
    says in words what the option takes, for errors about the type and the check alike.
    ``convert`` turns an accepted value into the one the statement uses (a number into a
    [min, max] pair, a name into lower case).
    """

    name: str
    types: tuple[type, ...]
    default: Any
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    allowed: str | None = None
    convert: Callable[[Any], Any] | None = None

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return bool in self.types
        if isinstance(value, int) and float in self.types:
            return True
        return isinstance(value, self.types)

    def allowed_text(self) -> str:
        if self.allowed is not None:
            return self.allowed
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in self.types)


def _pairs(options: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(options, Mapping):
        return options.items()
    return getattr(options, "items", options)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def name_problem(value: str) -> str | None:
    """What is wrong with ``value`` as the name of a column or table the kernel makes."""
    if _NAME.fullmatch(value):
        return None
    return "must be a name of at most 63 letters, digits and _, starting with a letter or _"


def read_options(options: Any, specs: Sequence[OptionSpec], statement: str) -> dict[str, Any]:
    """Every option of ``specs`` with its value: given, else the default.

    ``options`` is a statement's ``Options``, a mapping or (name, value) pairs; names are
    case-insensitive and lists count as tuples. An unknown name or a bad value is an
    OptionError that names the statement, the option, the value and what is allowed.
    """
    known = {s.name: s for s in specs}
    values = {s.name: s.default for s in specs}
    for raw_name, raw_value in _pairs(options):
        name = str(raw_name).lower()
        value = tuple(raw_value) if isinstance(raw_value, list) else raw_value
        spec = known.get(name)
        if spec is None:
            raise unknown_option(name[:80], specs, statement)
        problem = None
        if not spec.accepts(value):
            problem = f"must be {spec.allowed_text()}"
        elif spec.choices is not None and value not in spec.choices:
            problem = f"must be {spec.allowed_text()}"
        elif spec.check is not None:
            problem = spec.check(value)
            if problem and spec.allowed is not None:
                problem = f"must be {spec.allowed}"
        if problem:
            raise OptionError(f"{statement}: {name} {problem}, not {excerpt(raw_value)}",
                              hint=f"{name}: {spec.doc}" if spec.doc else None)
        values[name] = spec.convert(value) if spec.convert is not None else value
    return values


def unknown_option(name: str, specs: Sequence[OptionSpec], statement: str) -> OptionError:
    """The error for an option ``statement`` does not have, with the closest valid name."""
    names = [s.name for s in specs]
    # lines of whole names: a front end that wraps long lines may cut a word in two
    listed = textwrap.fill(f"Valid options: {', '.join(names)}.", width=88,
                           break_long_words=False, break_on_hyphens=False)
    return OptionError(f"{statement} has no option {name!r}",
                       hint=f"{did_you_mean(name, names).rstrip()}\n{listed}".lstrip("\n"))


def documented(specs: Sequence[OptionSpec]) -> dict[str, str]:
    """Option name -> its one line of docs, in declared order (for the README and help)."""
    return {s.name: s.doc for s in specs}
