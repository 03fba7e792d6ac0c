"""Shared fixtures: a temporary workspace for the engine, and a real kernel over the protocol."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from thanosql_kernel.engine import Run, Services, execute
from thanosql_kernel.results import Progress, Result
from thanosql_kernel.settings import Settings
from thanosql_kernel.syntax import parse


@dataclass
class Engine:
    """The engine on a temporary folder, run the way the kernel runs it (every row of a
    result kept unless ``row_limit`` says otherwise, as the Python magic keeps them)."""

    services: Services
    cwd: Path
    progress: list[Progress] = field(default_factory=list)

    def run(self, cell: str, params: dict[str, Any] | None = None,
            row_limit: int | None = None) -> list[Result]:
        run = Run(params or {}, row_limit, self.progress.append)
        return [execute(node, self.services, run) for node in parse(cell)]

    def one(self, cell: str) -> Result:
        results = self.run(cell)
        assert len(results) == 1
        return results[0]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self.services.store.begin() as conn:
            return list(self.services.store.read(conn, sql).rows)

    def reopen(self, **settings: Any) -> None:
        """The same workspace in new services, as a kernel started again sees it (with
        ``settings`` changed)."""
        changed = replace(self.services.settings, **settings)
        self.services.close()
        self.services = Services.open(changed, self.services.notify)


@contextmanager
def server_env() -> Iterator[dict[str, str]]:
    """The THANOSQL_* settings for one test: a fresh database of its own on a server run.

    With THANOSQL_DATABASE_URL set (make test's server pass), each test gets a new
    PostgreSQL database, dropped afterwards; otherwise the embedded SQLite default is used.
    """
    env = {k: v for k, v in os.environ.items()
           if k in ("THANOSQL_DATABASE_URL", "THANOSQL_CHROMA_URL")}
    base = env.get("THANOSQL_DATABASE_URL")
    if not base:
        yield env
        return
    import sqlalchemy as sa

    url = sa.make_url(base)
    name = f"thanosql_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield {**env, "THANOSQL_DATABASE_URL":
               url.set(database=name).render_as_string(hide_password=False)}
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with server_env() as env:
        settings = Settings.from_env(cwd=tmp_path, env=env)
        opened = Engine(Services.open(settings), tmp_path)
        yield opened
        opened.services.close()


@dataclass
class Reply:
    """What one execute request produced: the reply and the iopub messages, in order."""

    status: str
    content: dict[str, Any]
    messages: list[dict[str, Any]]

    def of(self, msg_type: str) -> list[dict[str, Any]]:
        return [m["content"] for m in self.messages if m["msg_type"] == msg_type]

    @property
    def texts(self) -> list[str]:
        return [m["content"]["data"]["text/plain"] for m in self.messages
                if m["msg_type"] in ("execute_result", "display_data")]


class KernelSession:
    """A real ThanoSQL kernel (or another: ``kernel_name="python3"``) started from the
    installed kernelspec, in a temporary folder."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None,
                 kernel_name: str = "thanosql") -> None:
        from jupyter_client.manager import start_new_kernel

        self.cwd = cwd
        self._server = server_env()
        kernel_env = {**os.environ, "THANOSQL_WORKSPACE": str(cwd / ".thanosql"),
                      **self._server.__enter__(), **(env or {})}
        #: the kernel's database: its own PostgreSQL database on a server run, else SQLite
        self.database_url = (kernel_env.get("THANOSQL_DATABASE_URL")
                             or f"sqlite:///{cwd / '.thanosql' / 'thanosql.db'}")
        self.km, self.kc = start_new_kernel(kernel_name=kernel_name, cwd=str(cwd),
                                            env=kernel_env, startup_timeout=60)

    def execute(self, code: str, timeout: float = 60, interrupt_after: float | None = None,
                interrupt_on: Callable[[dict[str, Any]], bool] | None = None) -> Reply:
        """Run ``code``; press stop ``interrupt_after`` seconds in, or once an output message
        satisfies ``interrupt_on`` (so a test stops work it has seen start, however fast or
        slow the machine)."""
        msg_id = self.kc.execute(code)
        seen: list[dict[str, Any]] = []
        if interrupt_after is not None:
            time.sleep(interrupt_after)
            self.km.interrupt_kernel()
        elif interrupt_on is not None:
            while True:
                msg = self.kc.get_iopub_msg(timeout=timeout)
                if msg["parent_header"].get("msg_id") != msg_id or \
                        msg["msg_type"] in ("status", "execute_input"):
                    continue
                seen.append(msg)
                if interrupt_on(msg):
                    break
            self.km.interrupt_kernel()
        return self.collect(msg_id, timeout, seen)

    def collect(self, msg_id: str, timeout: float = 60,
                seen: list[dict[str, Any]] | None = None) -> Reply:
        """The reply to the request ``msg_id`` (sent with ``kc.execute``), and its output."""
        reply = self.kc.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_type") == "kernel_info_request":
            # a slow start makes wait_for_ready ask twice; the second answer comes late
            reply = self.kc.get_shell_msg(timeout=timeout)
        assert reply["parent_header"]["msg_id"] == msg_id
        messages = list(seen or [])
        while True:  # every iopub message of this request, up to its idle status
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            if msg["msg_type"] != "status" and msg["msg_type"] != "execute_input":
                messages.append(msg)
        if reply["content"]["status"] == "error":
            time.sleep(0.1)  # ipykernel aborts requests that race in right after an error
        return Reply(reply["content"]["status"], reply["content"], messages)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
        self._server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    session = KernelSession(tmp_path_factory.mktemp("kernel"))
    yield session
    session.close()
