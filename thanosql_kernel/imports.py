"""Heavy imports (torch and the model code, chromadb, pandas) that the stop button cannot tear
in half.

A KeyboardInterrupt that lands while a module is being executed leaves Python's module state
half-built: torch's submodules stay imported without the package, C extensions keep the
docstrings they added, and every later import fails or crashes. So these imports run in a
thread of their own; the statement waits for it in short slices, and the stop button ends the
wait, not the import, which finishes in the background for the next statement.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType

_lock = threading.Lock()
#: module name -> the thread importing it (gone once the import has ended)
_importing: dict[str, threading.Thread] = {}
_failed: dict[str, BaseException] = {}


def import_whole(name: str) -> ModuleType:
    """The module ``name``, imported in a thread that an interrupt cannot stop."""
    with _lock:
        thread = _importing.get(name)
        if thread is None:
            module = sys.modules.get(name)
            if module is not None:
                return module
            thread = threading.Thread(target=_import, args=(name,), name=f"import {name}",
                                      daemon=True)
            _importing[name] = thread
            thread.start()
    while thread.is_alive():
        thread.join(0.05)   # the stop button raises KeyboardInterrupt here, between slices
    with _lock:
        _importing.pop(name, None)
        error = _failed.pop(name, None)
    if error is not None:
        raise error
    return sys.modules[name]


def _import(name: str) -> None:
    try:
        importlib.import_module(name)
    except BaseException as error:  # noqa: BLE001 - handed to the statement that asked
        _failed[name] = error
