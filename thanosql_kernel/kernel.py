"""The Jupyter kernel: moves parsed statements to the engine and results onto the wire."""

from __future__ import annotations

import signal
from typing import Any

from ipykernel.kernelbase import Kernel

from . import __version__
from .display import to_messages
from .frontend import CellRunner, StopButton
from .results import Images, Result


class ThanoSQLKernel(Kernel):
    """The handlers below are synchronous where ipykernel declares coroutines (it awaits a
    handler's answer only when that is awaitable): a statement then runs in the frame that the
    stop button's KeyboardInterrupt lands in. Hence their ``type: ignore[override]``."""

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
        self.stops = StopButton()
        self.runner = CellRunner(self._send, self.log)
        self.runner.warm_up()

    def _send(self, kind: str, content: dict[str, Any]) -> None:
        with self.stops.held():   # a stop waits until the message is out (StopButton)
            self.send_response(self.iopub_socket, kind, content)

    def pre_handler_hook(self) -> None:
        """Around every request ipykernel installs Python's own SIGINT handler, which raises
        wherever the signal lands (its reply too); ours raises only inside a cell's
        statements (``StopButton``). ipykernel's ``post_handler_hook`` puts back the handler
        saved here."""
        self.stops.reset()
        self.saved_sigint_handler = signal.signal(signal.SIGINT, self.stops.handler)

    def do_execute(  # type: ignore[override]  # synchronous, see the class docstring
            self, code: str, silent: bool, store_history: bool = True,
            user_expressions: dict[str, Any] | None = None, allow_stdin: bool = False,
            *, cell_meta: dict[str, Any] | None = None, cell_id: str | None = None
    ) -> dict[str, Any]:
        def show(result: Result, last: bool) -> None:
            if not silent:   # the cell's last table or message is its result
                for kind, content in to_messages(result, last and not isinstance(
                        result, Images), self.execution_count):
                    self._send(kind, content)

        failure = self.runner.run(code, show, stops=self.stops)
        if failure is not None:
            if not silent:
                self._send("error", failure.content)
            return {"status": "error", "execution_count": self.execution_count,
                    **failure.content}
        return {"status": "ok", "execution_count": self.execution_count,
                "payload": [], "user_expressions": {}}

    def do_complete(self, code: str,  # type: ignore[override]  # synchronous, as do_execute
                    cursor_pos: int) -> dict[str, Any]:
        from .editing import complete

        return {"status": "ok", **complete(code, cursor_pos, self.runner.services)}

    def do_inspect(self, code: str,  # type: ignore[override]  # synchronous, as do_execute
                   cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
                   ) -> dict[str, Any]:
        from .editing import inspect

        data = inspect(code, cursor_pos, self.runner.services)
        return {"status": "ok", "found": bool(data), "data": data, "metadata": {}}

    def do_is_complete(self,  # type: ignore[override]  # synchronous, as do_execute
                       code: str) -> dict[str, Any]:
        from .syntax import is_complete

        status = is_complete(code)
        return {"status": status, "indent": ""} if status == "incomplete" else {"status": status}

    def do_shutdown(self,  # type: ignore[override]  # synchronous, as do_execute
                    restart: bool) -> dict[str, Any]:
        self.runner.close()
        return {"status": "ok", "restart": restart}
