"""The ``%thanosql`` and ``%%thanosql`` magics: ThanoSQL in any IPython notebook, on the same
engine as the kernel, with rows coming back as pandas DataFrames.

``%load_ext thanosql`` (the package ``thanosql``) loads them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import ChainMap
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, needs_local_scope

from .display import to_messages
from .errors import InternalError, ThanoSQLError
from .frontend import CellRunner, Failure
from .imports import import_whole
from .results import Images, Message, Result, Table

if TYPE_CHECKING:
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell

_log = logging.getLogger("thanosql")

#: ``name <<`` before the statements keeps the result in the variable ``name``
_KEEP = re.compile(r"\s*([A-Za-z_]\w*)\s*<<(.*)\Z", re.S)
#: the lines of the original notebooks about its server: ``API_TOKEN=…`` or a URL
_SERVER_LINE = re.compile(r"\s*(API_TOKEN\s*=|[A-Za-z][\w+.-]*://)", re.I)

USAGE = """\
%thanosql [name <<] statement        run one statement; rows come back as a DataFrame
%%thanosql [name <<]                 run the cell's statements; the last one's rows are the
                                     cell's result, or are kept in the variable name
:name in SQL binds the Python variable name as a parameter (a list binds one value per item,
for IN :name)."""


def table_frame(table: Table) -> pd.DataFrame:
    """The rows as a DataFrame; an embedding column holds one float32 numpy array per row."""
    # imported whole: a stop during the first import must not leave pandas half-built
    np = import_whole("numpy")
    pd = import_whole("pandas")

    columns = [list(values) for values in zip(*table.rows, strict=True)] if table.rows \
        else [[] for _ in table.columns]
    series = {}
    for j, name in enumerate(table.columns):
        values = columns[j]
        if name in table.vector_columns:
            # an empty value: a row CONVERT left out, its image unreadable (on_error='skip')
            vectors = [np.frombuffer(bytes(v), dtype="<f4").copy() if v is not None and len(v)
                       else None for v in values]
            series[j] = pd.Series(vectors, dtype=object)
        else:
            series[j] = pd.Series(values, dtype=object if not values else None)
    frame = pd.DataFrame(series)
    frame.columns = list(table.columns)
    return frame


def _send(kind: str, content: dict[str, Any]) -> None:
    """One of the runner's Jupyter messages, through IPython's own display machinery."""
    from IPython.display import display, update_display

    if kind == "stream":
        stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
        stream.write(content["text"])
        return
    display_id = content.get("transient", {}).get("display_id")
    if kind == "update_display_data":
        update_display(content["data"], raw=True, metadata=content["metadata"],
                       display_id=display_id)
    else:
        display(content["data"], raw=True, metadata=content["metadata"],
                display_id=display_id)


@magics_class
class ThanoSQLMagics(Magics):
    """``%thanosql`` / ``%%thanosql``: statements run by this package's engine."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        #: the shell these magics run in (``Magics.shell`` may be None, ours never is)
        self._user_ns = shell.user_ns
        self.runner = CellRunner(_send, _log, keep_all_rows=True)
        self.runner.warm_up("pandas")   # rows become DataFrames

    @needs_local_scope
    @line_cell_magic
    def thanosql(self, line: str, cell: str | None = None,
                 local_ns: dict[str, Any] | None = None) -> pd.DataFrame | None:
        """Run ThanoSQL statements (SQL with AI statements) on the local engine.

        Usage::

            %thanosql [name <<] statement
            %%thanosql [name <<]
            statements

        Rows come back as a pandas DataFrame: ``df = %thanosql SELECT …`` keeps them, and
        a cell's last statement shows them. ``:name`` in SQL binds the Python variable
        ``name`` as a parameter (a list binds one value per item, for ``IN :name``).
        """
        keep = _KEEP.match(line)
        if keep:
            line = keep.group(2)
        if cell is None:
            if not line.strip():
                raise UsageError(f"%thanosql needs a statement.\n{USAGE}")
            # the original's lines about its server get the kernel's one-line answer
            code = f"%thanosql {line.strip()}" if _SERVER_LINE.match(line) else line
        else:
            code = line + "\n" + cell   # as in the kernel, the first line may hold code
        last: list[Result] = []

        def show(result: Result, is_last: bool) -> None:
            if is_last:
                last.append(result)
            if isinstance(result, Table) and not is_last:
                from IPython.display import display

                display(table_frame(result))
            elif isinstance(result, Message):
                print(result.text)
            elif isinstance(result, Images):   # each image with its caption, as in the kernel
                for kind, content in to_messages(result, False, 0):
                    _send(kind, content)

        namespace = ChainMap(local_ns or {}, self._user_ns)
        failure = self.runner.run(code, show, namespace)
        if failure is not None:
            raise _reported(failure)
        value = table_frame(last[0]) if last and isinstance(last[0], Table) else None
        if keep:
            self._user_ns[keep.group(1)] = value
            return None
        return value


def _reported(failure: Failure) -> BaseException:
    """The error to raise so that IPython shows the kernel's words and no Python traceback
    (IPython asks an exception for ``_render_traceback_``); its ``ename`` is the kernel's."""
    error = failure.error
    if not isinstance(error, (KeyboardInterrupt, ThanoSQLError)):
        error = InternalError(failure.content["evalue"])
    lines = failure.content["traceback"]
    setattr(error, "_render_traceback_", lambda: lines)   # noqa: B010 - IPython's own hook
    # the engine's frames hold tensors and connections: IPython keeps the last error
    # (sys.last_value) and must not keep them alive with it
    error.__traceback__ = error.__cause__ = error.__context__ = None
    error.__suppress_context__ = True
    return error


def load_ipython_extension(shell: InteractiveShell) -> None:
    shell.register_magics(ThanoSQLMagics(shell))


def unload_ipython_extension(shell: InteractiveShell) -> None:
    magics = shell.magics_manager.registry.pop("ThanoSQLMagics", None)
    if magics is not None:
        magics.runner.close()
        for kind in ("line", "cell"):
            shell.magics_manager.magics[kind].pop("thanosql", None)
