"""The image column of a query's rows, and its paths: what every statement that reads images
checks the same way."""

from __future__ import annotations

import csv
import datetime as dt
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DataError, NotFoundError, did_you_mean, excerpt
from ..options import OptionSpec
from ..paths import image_problem
from ..settings import Settings
from ..syntax import Node, Sql

if TYPE_CHECKING:
    from .services import Services

#: CONVERT's and BUILD's option for rows whose image cannot be read
ON_ERROR = OptionSpec(
    "on_error", (str,), "error",
    "'error' (the default) stops before any work and names the rows whose image cannot be "
    "read; 'skip' goes on without them", choices=("error", "skip"))
#: how many unreadable images an error names (all of them go to a file)
_NAMED = 5


def image_column(columns: tuple[str, ...], wanted: str, statement: str) -> int:
    """The index of the image column, or a NotFoundError that lists the columns there are."""
    lowered = [c.lower() for c in columns]
    if wanted.lower() not in lowered:
        raise NotFoundError(
            f"{statement}: the query has no column {excerpt(wanted)}",
            hint=f"{did_you_mean(wanted, columns)}Its columns are {', '.join(columns)}. Name "
                 f"the column that holds image paths with OPTIONS (image_col='…').")
    return lowered.index(wanted.lower())


@dataclass(frozen=True)
class Places:
    """Where a query's relative image paths are read from, in order: the folders its tables
    were loaded from (``TableFolders``, recorded at COPY), then the kernel's own folder."""

    #: the folders to look in, each once, the kernel's last
    folders: tuple[str, ...]
    #: the kernel's folder
    own: str

    def resolve(self, path: str) -> str:
        """The file a path names: an absolute one as it is, a relative one under the first
        folder that has it (under the first folder when none does)."""
        if path.startswith("~"):
            path = os.path.expanduser(path)
        if os.path.isabs(path):
            return path
        first = os.path.join(self.folders[0], path)
        if len(self.folders) > 1 and not os.path.lexists(first):
            for folder in self.folders[1:]:
                there = os.path.join(folder, path)
                if os.path.lexists(there):
                    return there
        return first

    def described(self) -> str:
        """Where relative paths were looked for, in words."""
        own = f"this notebook's folder ({self.own})"
        loaded = [f for f in self.folders if f != self.own]
        if not loaded:
            return f"relative paths are read from {own}"
        return (f"relative paths were looked for in the folder{'s' * (len(loaded) > 1)} the "
                f"table was loaded from ({' and '.join(loaded)}), then in {own}")


def places(services: Services, query: Node, own_first: bool = False) -> Places:
    """Where the rows of ``query`` have their images: its tables' folders, then the kernel's
    (``own_first``: the kernel's first, for paths a user typed)."""
    own = str(services.settings.cwd)
    tables = query_tables(query)
    loaded: tuple[str, ...] = ()
    if tables:
        with services.store.begin() as conn:
            loaded = services.folders.of(conn, tables)
    order = (own, *loaded) if own_first else (*loaded, own)
    return Places(tuple(dict.fromkeys(order)), own)


def query_tables(query: Node) -> tuple[str, ...]:
    """The tables a statement's query reads, its ThanoSQL sub-queries' included."""
    from ..syntax.shape import table_changes

    found: list[str] = []
    if isinstance(query, Sql):
        names = {name.lower() for name, _ in query.subqueries}
        found += [t for t in table_changes(query.text).read if t not in names]
        for _, sub in query.subqueries:
            found += query_tables(sub)
    inner = getattr(query, "query", None)
    if isinstance(inner, Node):
        found += query_tables(inner)
    return tuple(dict.fromkeys(found))


def image_paths(places: Places, values: list[Any], column: str,
                statement: str) -> list[str]:
    """The rows' image paths, resolved where ``places`` says; NULLs are an error."""
    paths: list[str] = []
    for i, value in enumerate(values):
        text = value if isinstance(value, str) else "" if value is None else str(value)
        if not text.strip():
            raise DataError(f"{statement}: row {i + 1} has no image path in {excerpt(column)}",
                            hint="Filter such rows out in the query (WHERE "
                                 f"{column} IS NOT NULL).")
        paths.append(places.resolve(text))
    return paths


def readable(settings: Settings, places: Places, paths: list[str], values: list[Any],
             on_error: str, statement: str) -> tuple[list[int], int]:
    """Look at every image before any work (a few µs a file: the first bytes and the end).

    ``values`` are the rows' paths as the table holds them (``paths`` resolved), which the
    error and the listing show. Returns the indices of the readable ones and how many were
    left out. With ``on_error='error'`` any unreadable image is an error that says how many
    there are, names the first few with why, and lists them all in a file of the workspace;
    with ``'skip'`` only a set where none can be read is.
    """
    problems: list[tuple[str, str]] = []
    kept: list[int] = []
    for i, path in enumerate(paths):
        problem = image_problem(path)
        if problem is None:
            kept.append(i)
        else:
            problems.append((str(values[i]), problem))
    if problems and (on_error == "error" or not kept):
        _report(settings, places, statement, problems, len(paths), on_error)
    return kept, len(problems)


def _report(settings: Settings, places: Places, statement: str,
            problems: list[tuple[str, str]], total: int, on_error: str) -> None:
    listing = _write_listing(settings, statement, problems)
    missing = sum(1 for _, why in problems if why == "missing")
    named = "; ".join(f"{excerpt(path)} ({why})"
                      for path, why in problems[:_NAMED])
    more = f"; and {len(problems) - _NAMED:,} more" if len(problems) > _NAMED else ""
    counts = (f"{missing:,} missing" if missing == len(problems)
              else f"{missing:,} missing, {len(problems) - missing:,} not readable as images"
              if missing else "not readable as images")
    where = f" All of them are listed in {listing}." if listing else ""
    looked = f"; {places.described()}" if missing else ""
    message = (f"{statement}: {len(problems):,} of {total:,} images cannot be read "
               f"({counts}): {named}{more}{looked}")
    skip = ("" if on_error == "skip" else
            " or add OPTIONS (on_error='skip') to go on without them")
    hint = (f"Fix those files or leave their rows out of the query (WHERE …),{skip}.{where}"
            if len(problems) < total else
            f"Check the paths.{where}" if missing else f"Check the files.{where}")
    error = NotFoundError if missing == len(problems) else DataError
    raise error(message, hint=hint)


def _write_listing(settings: Settings, statement: str, problems: list[tuple[str, str]]
                   ) -> str | None:
    """Every unreadable image and why, as a CSV in the workspace's problems/ folder (its path;
    None when it cannot be written, a full disk say: the error names the first few anyway)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    words = "".join(c if c.isascii() and c.isalnum() else " " for c in statement.lower())
    name = "-".join(words.split())
    path = settings.workspace / "problems" / f"{name}-{stamp}.csv"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["image_path", "problem"])
            writer.writerows(problems)
    except OSError:
        return None
    return str(path)
