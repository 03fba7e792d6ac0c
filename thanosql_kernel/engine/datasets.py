"""GET THANOSQL DATASET and LIST THANOSQL DATASET: the tutorial data sets."""

from __future__ import annotations

import time
from pathlib import Path

from ..imports import import_whole
from ..options import OptionSpec, read_options
from ..results import Message, Progress, Table
from ..syntax import GetDataset, ListDatasets
from ..syntax.statements import statement_for
from .run import Run
from .services import Services

GET_OPTIONS = (OptionSpec("overwrite", (bool,), False,
                          "True replaces data already there (default False)"),)


def get_dataset(node: GetDataset, services: Services, run: Run) -> Message:
    from ..datasets import get_dataset as find

    options = read_options(node.options, GET_OPTIONS, "GET THANOSQL DATASET")
    dataset = find(node.name)
    for module in ("numpy", "PIL.Image"):   # what writing images needs, imported whole
        import_whole(module)
    started = time.monotonic()
    key = f"get-{node.name}-{started}"

    def progress(done: int, total: int) -> None:
        run.report(Progress(key, f"GET {node.name}", done, total, "files",
                            time.monotonic() - started, finished=done >= total))

    cwd = services.settings.cwd
    written = dataset.write(cwd, overwrite=options["overwrite"], progress=progress)
    folder = _shown_path(written.folder, cwd)
    csvs = ", ".join(f"{path.name} ({rows:,} rows)" for path, rows in written.csvs)
    return Message(f"Success: wrote {written.files:,} files to {folder}/: {csvs}")


def _shown_path(path: Path, cwd: Path) -> str:
    try:
        return path.relative_to(cwd).as_posix()
    except ValueError:
        return str(path)


def list_datasets(_: ListDatasets, __: Services, ___: Run) -> Table:
    from ..datasets import DATASETS

    return Table(statement_for(ListDatasets).columns,
                 tuple((d.name, d.data_type, d.description) for d in DATASETS.values()))
