"""Heavy imports (torch and the model code, torch's compiler, chromadb, pandas, the database
driver) in one thread of their own, which the stop button cannot tear in half.

A KeyboardInterrupt that lands while a module is being executed leaves Python's module state
half-built: torch's submodules stay imported without the package, C extensions keep the
docstrings they added, and every later import fails or crashes. So these imports run in a
worker thread; a statement that needs one waits for it in short slices, and the stop button
ends the wait, not the import, which finishes in the background for the next statement.

There is ONE such thread, taking one module at a time. Two threads importing at once meet in
Python's import machinery: one of them can be handed a module the other is still executing
(seen as ``cannot import name 'fit'`` after stops early in the first BUILD), and package
metadata read during an import (psycopg reads its own version so) can come back empty. A
statement's wait puts its module at the head of the queue; ``prefetch`` puts modules at its
tail, for time the user's typing hides.
"""

from __future__ import annotations

import _imp
import importlib
import logging
import sys
import threading
from collections import deque
from types import ModuleType

_cond = threading.Condition()
#: modules waiting for the worker, the next first
_queue: deque[str] = deque()
#: modules queued or being imported
_pending: set[str] = set()
_failed: dict[str, BaseException] = {}
#: modules the worker has imported whole
_done: set[str] = set()
_worker: threading.Thread | None = None
_log = logging.getLogger(__name__)


def import_whole(name: str) -> ModuleType:
    """The module ``name``, imported whole by the import thread (first in its queue)."""
    if threading.current_thread() is _worker:   # a module that the worker runs asks
        return importlib.import_module(name)
    with _cond:
        module = sys.modules.get(name)
        # while the worker runs, a module in sys.modules may be one it is still executing
        if module is not None and (name in _done or not _pending) and name not in _failed:
            return module
        _enqueue(name, first=True)
    while True:
        with _cond:   # the stop button raises KeyboardInterrupt here, between slices
            if name not in _pending:
                error = _failed.pop(name, None)
                break
            _cond.wait(0.05)
        _release_a_leaked_import_lock()
    if error is not None:
        raise error
    return sys.modules[name]


def _release_a_leaked_import_lock() -> None:
    """Release Python's global import lock if this waiting thread holds it.

    It is held only for instants inside importlib, never across a call into our code, so a
    thread that holds it while it waits here was left holding it: the worker's next import
    would wait for it for ever, and so would this statement. Seen pinned to one core, in
    about one fresh kernel in fifty (a first BUILD waiting for torch, or a CONVERT for
    chromadb): the main thread held it (level 1, taken from C, not through importlib's Python
    code) while the worker needed it. Who left it held is not yet known; releasing it lets
    the import finish."""
    released = 0
    while _imp.lock_held():
        try:
            _imp.release_lock()
        except RuntimeError:   # another thread holds it, for an instant: not ours
            break
        released += 1
    if released:
        _log.warning(
            "released Python's import lock, left held %d times by the waiting thread", released)


def prefetch(*names: str) -> None:
    """Import ``names`` in the background, after what is queued already; nothing waits."""
    with _cond:
        for name in names:
            if name not in _done and name not in _pending:
                _enqueue(name, first=False)


def _enqueue(name: str, *, first: bool) -> None:
    global _worker
    _failed.pop(name, None)
    if name in _pending:
        if first and name in _queue:
            _queue.remove(name)
            _queue.appendleft(name)
    else:
        _pending.add(name)
        _queue.appendleft(name) if first else _queue.append(name)
    if _worker is None:
        _worker = threading.Thread(target=_work, name="thanosql-imports", daemon=True)
        _worker.start()
    _cond.notify_all()


def _work() -> None:
    while True:
        with _cond:
            while not _queue:
                _cond.wait()
            name = _queue.popleft()
        error: BaseException | None = None
        try:
            importlib.import_module(name)
        except BaseException as e:  # noqa: BLE001 - handed to the statement that asked
            error = e
        with _cond:
            if error is not None:
                _failed[name] = error
            else:
                _done.add(name)
            _pending.discard(name)
            _cond.notify_all()
