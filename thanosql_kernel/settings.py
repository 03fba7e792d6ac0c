"""Where the kernel keeps its data, read once from the environment and the working directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DISPLAY_LIMIT = 20


@dataclass(frozen=True)
class Settings:
    """The workspace folder, the database URL and the display limit of one kernel."""

    cwd: Path
    workspace: Path
    database_url: str
    chroma_url: str | None
    display_limit: int
    #: up to this many rows SEARCH answers from the exact vectors in memory, beyond it from
    #: the vector index (HNSW)
    exact_search_max_rows: int = 2_000_000
    #: THANOSQL_THREADS: 'auto' (torch gets the cores other processes leave free) or a number
    threads: str = "auto"

    @classmethod
    def from_env(cls, cwd: Path | None = None, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        cwd = Path.cwd() if cwd is None else cwd
        workspace = Path(env.get("THANOSQL_WORKSPACE") or cwd / ".thanosql")
        if not workspace.is_absolute():
            workspace = cwd / workspace
        url = env.get("THANOSQL_DATABASE_URL") or f"sqlite:///{workspace / 'thanosql.db'}"
        limit = int(env.get("THANOSQL_DISPLAY_LIMIT") or DEFAULT_DISPLAY_LIMIT)
        exact = int(env.get("THANOSQL_EXACT_SEARCH_MAX_ROWS") or 2_000_000)
        return cls(cwd, workspace, url, env.get("THANOSQL_CHROMA_URL") or None, limit, exact,
                   env.get("THANOSQL_THREADS") or "auto")

    def resolve(self, path: str) -> Path:
        """A path from a statement or a table: relative ones are relative to the kernel's cwd."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.cwd / p
