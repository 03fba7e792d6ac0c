"""Where the kernel keeps its data and how it works, read once from the environment.

Each ``THANOSQL_*`` variable is declared once (``VARIABLES``: its default and what it takes)
and checked as an option is: a value it does not take is an OptionError that names the
variable, what it takes and its default, before any statement runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import OptionError, excerpt

DEFAULT_DISPLAY_LIMIT = 20
#: exact SEARCH keeps D + 6 bytes a row in memory (the compact copy) and its path: 10M rows
#: of 128-d vectors are 1.6 GB and scan in about 0.13 s on 2 cores (bench/search.py)
DEFAULT_EXACT_SEARCH_MAX_ROWS = 10_000_000
#: with a Ray cluster, a column of more rows is searched by shards of at most this many rows,
#: each in an actor on the cluster (``cluster.shards``): as many as one process holds
DEFAULT_SEARCH_SHARD_ROWS = DEFAULT_EXACT_SEARCH_MAX_ROWS


@dataclass(frozen=True)
class Variable:
    """One environment variable: its default (as a user would write it) and what it takes."""

    name: str
    default: str
    takes: str
    #: the value from the text; raises ValueError for text the variable does not take
    read: Callable[[str], Any]


def _whole(least: int) -> Callable[[str], int]:
    def read(text: str) -> int:
        value = int(text.strip())   # ValueError for "abc", "1.5", ""
        if value < least:
            raise ValueError(text)
        return value
    return read


def _threads(text: str) -> int | None:
    """None for 'auto', else a whole number from 1."""
    return None if text.strip().lower() == "auto" else _whole(1)(text)


def _ray_address(text: str) -> str:
    """A Ray head's host:port, or ray://host:port for Ray Client."""
    text = text.strip()
    parts = urlsplit(text if "://" in text else f"tcp://{text}")
    if parts.scheme not in ("tcp", "ray") or not parts.hostname or not parts.port:
        raise ValueError(text)
    return text


def _server_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(text)
    return text.strip()


VARIABLES = {v.name: v for v in (
    Variable("THANOSQL_DISPLAY_LIMIT", str(DEFAULT_DISPLAY_LIMIT),
             "a whole number of rows from 1", _whole(1)),
    Variable("THANOSQL_EXACT_SEARCH_MAX_ROWS", str(DEFAULT_EXACT_SEARCH_MAX_ROWS),
             "a whole number of rows from 0", _whole(0)),
    Variable("THANOSQL_SEARCH_SHARD_ROWS", str(DEFAULT_SEARCH_SHARD_ROWS),
             "a whole number of rows from 1", _whole(1)),
    Variable("THANOSQL_THREADS", "auto", "'auto' or a whole number of threads from 1",
             _threads),
    Variable("THANOSQL_CHROMA_URL", "unset: the embedded index in the workspace",
             "a Chroma server's http://host:port or https://host:port", _server_url),
    Variable("THANOSQL_RAY_ADDRESS", "unset: everything runs in the kernel",
             "a Ray cluster's head as host:port, or ray://host:port (Ray Client)", _ray_address),
)}


def _value(env: Mapping[str, str], name: str) -> Any:
    """The variable's value read from ``env``, or None when it is unset or empty."""
    text = env.get(name)
    if not text:
        return None
    variable = VARIABLES[name]
    try:
        return variable.read(text)
    except ValueError:
        raise OptionError(f"{name}={excerpt(text)} is not a value it takes: it takes "
                          f"{variable.takes}",
                          hint=f"Its default is {variable.default}. Set it to a value it takes "
                               "(or unset it) and restart the kernel.") from None


@dataclass(frozen=True)
class Settings:
    """The workspace folder, the database and vector index, and how results and work are
    sized, for one kernel."""

    cwd: Path
    workspace: Path
    database_url: str
    chroma_url: str | None
    display_limit: int = DEFAULT_DISPLAY_LIMIT
    #: up to this many rows SEARCH answers from the exact vectors in memory, beyond it from
    #: the vector index (HNSW)
    exact_search_max_rows: int = DEFAULT_EXACT_SEARCH_MAX_ROWS
    #: THANOSQL_THREADS: None for 'auto' (torch gets the cores other processes leave free),
    #: or a fixed count
    threads: int | None = None
    #: THANOSQL_RAY_ADDRESS: the Ray cluster CONVERT and BUILD run on, or None (in the kernel)
    ray_address: str | None = None
    #: THANOSQL_SEARCH_SHARD_ROWS: with a cluster, columns of more rows are searched by shards
    #: of at most this many rows on it
    search_shard_rows: int = DEFAULT_SEARCH_SHARD_ROWS

    @classmethod
    def from_env(cls, cwd: Path | None = None, env: Mapping[str, str] | None = None
                 ) -> Settings:
        env = os.environ if env is None else env
        cwd = Path.cwd() if cwd is None else cwd
        workspace = Path(env.get("THANOSQL_WORKSPACE") or cwd / ".thanosql")
        if not workspace.is_absolute():
            workspace = cwd / workspace
        url = env.get("THANOSQL_DATABASE_URL") or f"sqlite:///{workspace / 'thanosql.db'}"
        limit = _value(env, "THANOSQL_DISPLAY_LIMIT")
        exact = _value(env, "THANOSQL_EXACT_SEARCH_MAX_ROWS")
        shard = _value(env, "THANOSQL_SEARCH_SHARD_ROWS")
        return cls(cwd, workspace, url, _value(env, "THANOSQL_CHROMA_URL"),
                   DEFAULT_DISPLAY_LIMIT if limit is None else limit,
                   DEFAULT_EXACT_SEARCH_MAX_ROWS if exact is None else exact,
                   _value(env, "THANOSQL_THREADS"), _value(env, "THANOSQL_RAY_ADDRESS"),
                   DEFAULT_SEARCH_SHARD_ROWS if shard is None else shard)

    def resolve(self, path: str) -> Path:
        """A path from a statement or a table: relative ones are relative to the kernel's cwd."""
        return Path(self.resolved(path))

    def resolved(self, path: str) -> str:
        """``resolve``'s answer as text, with os.path: for many paths at once (pathlib took
        1.2 s of the 1.9 s that CONVERT needed to answer over 200,000 rows)."""
        if path.startswith("~"):
            path = os.path.expanduser(path)
        return path if os.path.isabs(path) else os.path.join(self.cwd, path)
