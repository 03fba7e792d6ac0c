"""Wall time of the whole tutorial notebook, kernel start included, as nbconvert runs it.

Executes notebooks/image_search.ipynb with nbclient (what `jupyter nbconvert --execute` uses)
in a fresh temporary folder, --repeat times, and prints the total and the slowest cells.

    python bench/notebook.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "image_search.ipynb"


def cell_seconds(cell: nbformat.NotebookNode) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return 0.0
    parse = dt.datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for key in ("THANOSQL_DATABASE_URL", "THANOSQL_CHROMA_URL", "THANOSQL_WORKSPACE"):
        os.environ.pop(key, None)
    totals = []
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            nb = nbformat.read(NOTEBOOK, as_version=4)
            started = time.perf_counter()
            NotebookClient(nb, kernel_name="thanosql", timeout=600, record_timing=True,
                           resources={"metadata": {"path": tmp}}).execute()
            total = time.perf_counter() - started
        totals.append(total)
        cells = sorted(((cell_seconds(c), c.source.replace("%%thanosql\n", "").split("\n")[0])
                        for c in nb.cells if c.cell_type == "code"), reverse=True)
        slowest = ", ".join(f"{src[:28]!r} {s:.2f}s" for s, src in cells[:3])
        print(f"run {run + 1}: {total:.2f} s (kernel start included); slowest cells: {slowest}")
    print(f"median of {args.repeat}: {statistics.median(totals):.2f} s  (goal: <= 20 s on 2 CPU "
          f"cores)")


if __name__ == "__main__":
    main()
