"""What both front ends share, the ThanoSQL kernel and the %thanosql magic: running a cell's
statements on one engine, its progress bars, its parameters and its one error.

A front end hands ``CellRunner`` a ``send(msg_type, content)`` that speaks Jupyter's iopub
vocabulary ("stream", "display_data", "update_display_data"; progress bars carry a
``display_id``) and a ``show(result, last)`` that presents each statement's result its own way
(the kernel: MIME bundles; the magic: DataFrames). Everything else is here, once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from decimal import Decimal
from types import FrameType
from typing import TYPE_CHECKING, Any

from .display import error_content, progress_bundle, progress_text
from .errors import DataError, NotFoundError, ThanoSQLError, excerpt
from .imports import import_whole
from .results import Progress, Result

if TYPE_CHECKING:
    from .engine import Services
    from .syntax import Node

#: what every cell runs on: the grammar, then the engine (SQLAlchemy, the statements' handlers)
_ENGINE = ("thanosql_kernel.syntax", "thanosql_kernel.engine")

#: how a front end sends one Jupyter message: (message type, content)
Send = Callable[[str, dict[str, Any]], None]
#: how a front end presents one statement's result; ``last`` says it is the cell's last
Show = Callable[[Result, bool], None]

_UPDATE_EVERY_S = 0.25
#: long work also writes its progress as a line this often, for front ends (the console)
#: that cannot update a display in place
_LINE_EVERY_S = 10.0


class Bars:
    """The progress displays of the running cell: updated in place a few times a second,
    written as a line now and then, and marked stopped or failed if the cell ends early."""

    def __init__(self, send: Send) -> None:
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


@dataclass(frozen=True)
class Failure:
    """A cell that stopped early: the error, and the Jupyter ``error`` content reporting it
    (``ename``, ``evalue``, ``traceback``: the kernel's words, no Python frames)."""

    error: BaseException
    content: dict[str, Any]


class StopButton:
    """The stop button (SIGINT) of a kernel that runs its cells in its main thread: a
    KeyboardInterrupt only while a cell's statements run, where ``CellRunner.run`` turns it
    into the cell's "stopped" answer.

    ipykernel's own handler raises wherever the signal lands in a request, and a stop that
    came as a BUILD ended (after the statements, before ipykernel sent the reply) lost the
    reply: the notebook waited for it forever. Here a press before the statements begin
    stops them as they begin, and one after they end has nothing left to stop. A press while
    a message is being sent (``held``) stops the statements once it is sent. Each press
    raises once: the cleanup that a stop starts (rolling back, killing workers) is not cut
    short by a second press."""

    def __init__(self) -> None:
        self._armed = False
        self._pressed = False
        self._holding = False

    def reset(self) -> None:
        """A new request: a press during the one before is forgotten."""
        self._armed = self._pressed = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT handler (``signal.signal(SIGINT, stops.handler)``)."""
        if self._armed and not self._holding:
            self._armed = False
            raise KeyboardInterrupt
        self._pressed = True

    @contextmanager
    def held(self) -> Iterator[None]:
        """A press during the block stops the statements when it ends. For sending messages,
        so that a KeyboardInterrupt never lands inside ipykernel's output machinery and no
        result or progress bar goes out in part. Only the main thread, which runs the
        statements and handles signals, holds; a message sent from another thread (the
        warm-up's notice) neither holds a press back nor raises one."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        outer, self._holding = self._holding, True
        try:
            yield
        finally:
            self._holding = outer
        if not outer and self._pressed and self._armed:
            self._armed = self._pressed = False
            raise KeyboardInterrupt

    @contextmanager
    def armed(self) -> Iterator[None]:
        """While the block runs, a press raises KeyboardInterrupt in it (at once, when one came
        before it began)."""
        if self._pressed:
            self._pressed = False
            raise KeyboardInterrupt
        self._armed = True
        try:
            yield
        finally:
            self._armed = False


class CellRunner:
    """One front end's engine: the services opened on first use (or by ``warm_up`` in the
    background), the progress bars of the running cell, and the run of a cell."""

    def __init__(self, send: Send, log: logging.Logger, *, keep_all_rows: bool = False) -> None:
        self._send = send
        self.log = log
        self.bars = Bars(send)
        #: results keep every row (the magic's DataFrames), not only the display limit's
        self._keep_all_rows = keep_all_rows
        self._services: Services | None = None
        self._lock = threading.Lock()

    @property
    def services(self) -> Services:
        with self._lock:
            if self._services is None:
                from .engine import Services
                from .settings import Settings

                self._services = Services.open(Settings.from_env(), self._notice)
            return self._services

    def warm_up(self, *modules: str) -> None:
        """Import the engine (and ``modules``, what the front end shows results with) and open
        the database in a thread: time (SQLAlchemy above all) that the user's typing hides."""
        threading.Thread(target=self._warm_up, args=modules, name="thanosql-warm-up",
                         daemon=True).start()

    def _warm_up(self, *modules: str) -> None:
        from .imports import import_whole, prefetch

        try:
            # in the import thread, one after another, as everything heavy is imported
            prefetch(*_ENGINE, *modules)
            import_whole(_ENGINE[-1])
            with self.services.store.begin():
                pass
        except Exception:  # noqa: BLE001 - the first statement reports it, with context
            self.log.debug("warm-up could not import or open the database", exc_info=True)

    def _notice(self, text: str) -> None:
        self._send("stream", {"name": "stdout", "text": text + "\n"})

    def run(self, code: str, show: Show, namespace: Mapping[str, Any] | None = None,
            stops: StopButton | None = None) -> Failure | None:
        """Parse the whole cell, read its parameters' values from ``namespace`` (None: a
        front end without variables), then run its statements in order, handing each result
        to ``show``. The first error (or a stop) ends the cell and is returned, never raised.
        ``stops``: the kernel's stop button, armed while the statements run (None: the front
        end's own SIGINT handling, IPython's for the magic).
        """
        statement = None
        stoppable: AbstractContextManager[None] = stops.armed() if stops else nullcontext()
        try:
            with stoppable:
                # whole, even when the stop button is pressed while the first cell waits
                for module in _ENGINE:
                    import_whole(module)
                from .engine import Run, execute
                from .syntax import parse

                nodes = parse(code)
                params = bind_parameters(nodes, namespace)
                services = self.services
                run = Run(params,
                          None if self._keep_all_rows else services.settings.display_limit,
                          self.bars.report)
                for i, node in enumerate(nodes):
                    statement = node.source
                    show(execute(node, services, run), i == len(nodes) - 1)
        except BaseException as error:  # noqa: BLE001 - every failure is one error message
            if isinstance(error, (SystemExit, GeneratorExit)):
                raise
            self.bars.end("stopped" if isinstance(error, KeyboardInterrupt) else "failed")
            if not isinstance(error, KeyboardInterrupt) and not hasattr(error, "ename"):
                self.log.exception("unexpected failure in %r", statement)
            return Failure(error, error_content(error, statement, code))
        return None

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None


# -- parameters ----------------------------------------------------------------------------

_SCALARS = (str, int, float, bool, bytes, Decimal, dt.date, dt.time, dt.timedelta, type(None))


def bind_parameters(nodes: list[Node], namespace: Mapping[str, Any] | None) -> dict[str, Any]:
    """The value of each ``:name`` parameter in the cell's SQL, read from ``namespace`` before
    anything runs. The values travel to the database as bound parameters, never as text."""
    from .syntax.params import parameters, sql_parts

    values: dict[str, Any] = {}
    for node in nodes:
        for part in sql_parts(node):
            for offset, name in parameters(part.text):
                if name in values:
                    continue
                try:
                    if namespace is None:
                        raise NotFoundError(
                            f"The statement uses the parameter :{name}, and this kernel has no "
                            "Python variables to take its value from",
                            hint="Write the value itself. (In a Python notebook, a %%thanosql "
                                 f"cell binds :{name} to the Python variable {name}.)")
                    if name not in namespace:
                        raise NotFoundError(
                            f"The statement uses the parameter :{name}, but there is no Python "
                            f"variable named {name}",
                            hint=f"Set it in a Python cell first ({name} = …); its value is "
                                 "bound to the statement, never pasted into it.")
                    values[name] = bindable(name, namespace[name])
                except ThanoSQLError as error:
                    error.at = part.cell_offset(offset)
                    raise
    return values


def bindable(name: str, value: Any) -> Any:
    """``value`` as the database driver takes it: a plain Python scalar, or a tuple of them
    (a list, a set, an array or a Series: one value per item, for ``IN :name``)."""
    # numpy's scalars and pandas' Timestamp subclass Python's types, which drivers may not
    # take as they are
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return bindable(name, value.item())
    if hasattr(value, "to_pydatetime") and not hasattr(value, "tolist"):
        return value.to_pydatetime()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, _SCALARS):
        return value
    if hasattr(value, "tolist") and not isinstance(value, type):   # arrays, Series, Index
        value = value.tolist()
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        if not items:
            raise DataError(f"The parameter :{name} is an empty {type(value).__name__}",
                            hint=f"IN :{name} needs at least one value: test for an empty "
                                 "list in Python before running the statement.")
        flat = tuple(bindable(name, v) for v in items)
        if any(isinstance(v, tuple) for v in flat):
            raise DataError(f"The parameter :{name} holds lists inside a list",
                            hint="A parameter is one value, or a flat list of values for IN.")
        return flat
    if hasattr(value, "__fspath__"):
        return str(value)
    raise DataError(
        f"The parameter :{name} is a {type(value).__name__} ({excerpt(value, 60)}), which a "
        "database cannot hold",
        hint="Bind a number, text, bytes, a date or time, None, or a flat list of those "
             "(for IN): e.g. convert it with str() or int() first.")
