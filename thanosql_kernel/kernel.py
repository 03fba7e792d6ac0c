"""The Jupyter kernel: moves parsed statements to the engine and results onto the wire."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from ipykernel.kernelbase import Kernel

from . import __version__
from .display import error_content, progress_bundle, progress_text, to_outputs
from .results import Images, Progress

_UPDATE_EVERY_S = 0.25
#: long work also writes its progress as a line this often, for front ends (the console)
#: that cannot update a display in place
_LINE_EVERY_S = 10.0


class _Bars:
    """The progress displays of the running cell: updated in place a few times a second,
    written as a line now and then, and marked stopped or failed if the cell ends early."""

    def __init__(self, send: Any) -> None:
        self._send = send
        #: key -> (the last progress reported, when it was reported)
        self._latest: dict[str, tuple[Progress, float]] = {}
        self._shown: dict[str, float] = {}
        self._lined: dict[str, float] = {}

    def report(self, progress: Progress) -> None:
        now = time.monotonic()
        key = progress.key
        first = key not in self._shown
        if first:
            self._lined[key] = now
        self._latest[key] = (progress, now)
        if progress.log_line:
            self._line(key, progress.log_line, now)
        elif not progress.finished and now - self._lined[key] >= _LINE_EVERY_S:
            self._line(key, progress_text(progress), now)
        if not first and not progress.finished and now - self._shown[key] < _UPDATE_EVERY_S:
            return
        self._shown[key] = now
        self._display(progress, first)
        if progress.finished:
            for state in (self._latest, self._shown, self._lined):
                state.pop(key, None)

    def end(self, how: str) -> None:
        """Mark every display still running as ``how`` ("stopped", "failed"), in place and
        as a line."""
        now = time.monotonic()
        for key, (progress, at) in list(self._latest.items()):
            ended = replace(progress, elapsed=progress.elapsed + now - at, ended=how,
                            log_line=None)
            self._display(ended, key not in self._shown)
            self._line(key, progress_text(ended), now)
        self._latest.clear()
        self._shown.clear()
        self._lined.clear()

    def _line(self, key: str, text: str, now: float) -> None:
        self._lined[key] = now
        self._send("stream", {"name": "stdout", "text": text + "\n"})

    def _display(self, progress: Progress, first: bool) -> None:
        self._send("display_data" if first else "update_display_data",
                   {"data": progress_bundle(progress), "metadata": {},
                    "transient": {"display_id": progress.key}})


class ThanoSQLKernel(Kernel):
    implementation = "thanosql_kernel"
    implementation_version = __version__
    language = "thanosql"
    language_version = "ThanoSQL 1"
    # JupyterLab looks the editor language up by name ("thanosql", which the extension in
    # this package registers) and falls back to the MIME type, so SQL highlighting remains
    # without it; nbconvert and the console highlight with the Pygments lexer "thanosql"
    language_info = {"name": "thanosql", "mimetype": "text/x-thanosql",
                     "file_extension": ".sql", "pygments_lexer": "thanosql",
                     "codemirror_mode": {"name": "thanosql", "mime": "text/x-sql"}}
    banner = f"ThanoSQL {__version__}: SQL with AI statements, running locally"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._context: Any = None
        self._context_lock = threading.Lock()
        self._bars = _Bars(lambda kind, content: self.send_response(self.iopub_socket, kind,
                                                                    content))
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

                self._context = Context.open(Settings.from_env(), self._bars.report,
                                             self._notice)
            return self._context

    def _notice(self, text: str) -> None:
        self.send_response(self.iopub_socket, "stream", {"name": "stdout", "text": text + "\n"})

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
                result = execute(node, self.context)
                if not silent:   # the cell's last table or message is its result
                    self._send(to_outputs(result, self.context.settings.display_limit),
                               i == len(nodes) - 1 and not isinstance(result, Images))
        except BaseException as error:  # noqa: BLE001 - every failure is one error message
            if isinstance(error, (SystemExit, GeneratorExit)):
                raise
            self._bars.end("stopped" if isinstance(error, KeyboardInterrupt) else "failed")
            if not isinstance(error, KeyboardInterrupt) and not hasattr(error, "ename"):
                self.log.exception("unexpected failure in %r", statement)
            content = error_content(error, statement, code)
            if not silent:
                self.send_response(self.iopub_socket, "error", content)
            return {"status": "error", "execution_count": self.execution_count, **content}
        return {"status": "ok", "execution_count": self.execution_count,
                "payload": [], "user_expressions": {}}

    def _send(self, outputs: list[tuple[dict[str, Any], dict[str, Any]]],
              as_result: bool) -> None:
        for j, (data, metadata) in enumerate(outputs):
            if as_result and j == len(outputs) - 1:
                self.send_response(self.iopub_socket, "execute_result", {
                    "execution_count": self.execution_count, "data": data,
                    "metadata": metadata})
            else:
                self.send_response(self.iopub_socket, "display_data",
                                   {"data": data, "metadata": metadata})

    def do_complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        from .editing import complete

        return {"status": "ok", **complete(code, cursor_pos, self.context)}

    def do_inspect(self, code: str, cursor_pos: int, detail_level: int = 0,
                   omit_sections: Any = ()) -> dict[str, Any]:
        from .editing import inspect

        data = inspect(code, cursor_pos, self.context)
        return {"status": "ok", "found": bool(data), "data": data, "metadata": {}}

    def do_is_complete(self, code: str) -> dict[str, Any]:
        from .syntax import is_complete

        status = is_complete(code)
        return {"status": status, "indent": ""} if status == "incomplete" else {"status": status}

    def do_shutdown(self, restart: bool) -> dict[str, Any]:
        if self._context is not None:
            self._context.close()
        return {"status": "ok", "restart": restart}
