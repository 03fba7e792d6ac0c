"""Checking the OPTIONS of a statement against what it accepts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import OptionError
from ..syntax import Options

_TYPE_NAMES = {bool: "True or False", int: "a whole number", float: "a number",
               str: "a string in quotes", tuple: "a [list]", type(None): "None"}


@dataclass(frozen=True)
class OptionSpec:
    """One option a statement accepts: its types, default, and an optional check."""

    name: str
    types: tuple[type, ...]
    default: Any
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return bool in self.types
        if isinstance(value, int) and float in self.types:
            return True
        return isinstance(value, self.types)


def read_options(options: Options, specs: Sequence[OptionSpec], statement: str) -> dict[str, Any]:
    """The options with defaults filled in; any unknown name or bad value is an OptionError."""
    known = {s.name: s for s in specs}
    values = {s.name: s.default for s in specs}
    for name, value in options.items:
        spec = known.get(name)
        if spec is None:
            raise OptionError(f"{statement} has no option {name!r}",
                              hint="Valid options: " + ", ".join(
                                  f"{s.name} ({s.doc})" if s.doc else s.name for s in specs))
        if not spec.accepts(value):
            allowed = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in spec.types)
            raise OptionError(f"The option {name} of {statement} takes {allowed}, "
                              f"not {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise OptionError(f"The option {name} of {statement} must be one of "
                              f"{', '.join(repr(c) for c in spec.choices)}, not {value!r}")
        problem = spec.check(value) if spec.check is not None else None
        if problem:
            raise OptionError(f"The option {name} of {statement} {problem}, not {value!r}")
        values[name] = value
    return values
