"""The import thread (thanosql_kernel.imports) against a waiting thread left holding Python's
global import lock."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import _imp
from thanosql_kernel.imports import import_whole
_imp.acquire_lock()   # left held by the thread that will wait, as seen in a first BUILD
module = import_whole("colorsys")   # the worker needs the lock to import it
print(module.__name__, _imp.lock_held())
"""


def test_a_statement_waiting_while_it_holds_the_import_lock_still_gets_its_module() -> None:
    """Before the mend this deadlocked: the waiting thread held the lock that the import
    thread needed, and the timeout below ended it."""
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["colorsys", "False"], (done.stdout, done.stderr)
    assert "released Python's import lock" in done.stderr
