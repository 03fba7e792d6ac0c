"""The Jupyter kernel: moves parsed statements to the engine and results onto the wire."""

from __future__ import annotations

import threading
import time
from typing import Any

from ipykernel.kernelbase import Kernel

from . import __version__
from .display import error_content, progress_bundle, progress_text, to_outputs
from .results import Progress

_UPDATE_EVERY_S = 0.25


class ThanoSQLKernel(Kernel):
    implementation = "thanosql_kernel"
    implementation_version = __version__
    language = "sql"
    language_version = "ThanoSQL 1"
    language_info = {"name": "sql", "mimetype": "text/x-sql", "file_extension": ".sql",
                     "codemirror_mode": "sql", "pygments_lexer": "sql"}
    banner = f"ThanoSQL {__version__}: SQL with AI statements, running locally"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._context: Any = None
        self._context_lock = threading.Lock()
        self._shown: dict[str, float] = {}
        # The engine's imports (SQLAlchemy above all) and the database connection cost
        # about 0.2 s; doing them while the kernel starts and the user types hides it.
        threading.Thread(target=self._warm_up, name="thanosql-warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        from .engine import execute  # noqa: F401

        try:
            with self.context.store.begin():
                pass
        except Exception:  # noqa: BLE001 - the first statement reports it, with context
            self.log.debug("warm-up could not open the database", exc_info=True)

    @property
    def context(self) -> Any:
        with self._context_lock:
            if self._context is None:
                from .engine import Context
                from .settings import Settings

                self._context = Context.open(Settings.from_env(), self._report)
            return self._context

    def do_execute(self, code: str, silent: bool, store_history: bool = True,
                   user_expressions: dict | None = None, allow_stdin: bool = False,
                   *, cell_id: str | None = None) -> dict[str, Any]:
        from .engine import execute
        from .syntax import parse

        statement = None
        try:
            nodes = parse(code)
            for i, node in enumerate(nodes):
                statement = node.source
                outputs = to_outputs(execute(node, self.context),
                                     self.context.settings.display_limit)
                if not silent:
                    self._send(outputs, last=i == len(nodes) - 1)
        except BaseException as error:  # noqa: BLE001 - every failure is one error message
            if isinstance(error, (SystemExit, GeneratorExit)):
                raise
            if not isinstance(error, KeyboardInterrupt) and not hasattr(error, "ename"):
                self.log.exception("unexpected failure in %r", statement)
            content = error_content(error, statement, code)
            if not silent:
                self.send_response(self.iopub_socket, "error", content)
            return {"status": "error", "execution_count": self.execution_count, **content}
        return {"status": "ok", "execution_count": self.execution_count,
                "payload": [], "user_expressions": {}}

    def _send(self, outputs: list[tuple[dict[str, Any], dict[str, Any]]], last: bool) -> None:
        for j, (data, metadata) in enumerate(outputs):
            if last and j == len(outputs) - 1 and "image/png" not in data:
                self.send_response(self.iopub_socket, "execute_result", {
                    "execution_count": self.execution_count, "data": data,
                    "metadata": metadata})
            else:
                self.send_response(self.iopub_socket, "display_data",
                                   {"data": data, "metadata": metadata})

    def _report(self, progress: Progress) -> None:
        """Show progress in place (display_id), at most a few updates a second."""
        now = time.monotonic()
        first = progress.key not in self._shown
        if progress.log_line:
            self.send_response(self.iopub_socket, "stream",
                               {"name": "stdout", "text": progress.log_line + "\n"})
        if not first and not progress.finished and now - self._shown[progress.key] < \
                _UPDATE_EVERY_S:
            return
        self._shown[progress.key] = now
        content = {"data": progress_bundle(progress), "metadata": {},
                   "transient": {"display_id": progress.key}}
        self.send_response(self.iopub_socket,
                           "display_data" if first else "update_display_data", content)
        if progress.finished:
            self._shown.pop(progress.key, None)
            self.log.debug("finished: %s", progress_text(progress))

    def do_complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        from .complete import complete

        matches, start, end = complete(code, cursor_pos, self.context)
        return {"status": "ok", "matches": matches, "cursor_start": start,
                "cursor_end": end, "metadata": {}}

    def do_is_complete(self, code: str) -> dict[str, Any]:
        from .syntax import is_complete

        status = is_complete(code)
        return {"status": status, "indent": ""} if status == "incomplete" else {"status": status}

    def do_shutdown(self, restart: bool) -> dict[str, Any]:
        if self._context is not None:
            self._context.close()
        return {"status": "ok", "restart": restart}
