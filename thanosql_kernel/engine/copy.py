"""COPY: a file or a folder of images into a table, all or nothing."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import (
    AlreadyExistsError,
    DataError,
    DiskFullError,
    NotFoundError,
    OptionError,
    excerpt,
)
from ..imports import import_whole
from ..options import OptionSpec, read_options
from ..paths import DIRECTORY, not_a_file
from ..results import Message
from ..syntax import Copy
from .run import Run
from .services import Services

if TYPE_CHECKING:
    import pandas as pd

COPY_OPTIONS = (
    OptionSpec("overwrite", (bool,), False, "True replaces an existing table (default False)"),
    OptionSpec("if_exists", (str,), None,
               "'fail', 'replace' or 'append' (default: 'fail' unless overwrite=True)",
               choices=("fail", "replace", "append")),
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FILE_READERS = (".csv", ".parquet", ".json", ".jsonl", ".xlsx")


def copy(node: Copy, services: Services, _: Run) -> Message:
    options = read_options(node.options, COPY_OPTIONS, "COPY")
    mode = _mode(options)
    store = services.store
    store.check_user_table(node.table, "COPY")
    path = services.settings.resolve(node.path)
    frame = read_table_file(path, node.path)
    services.folders.ensure()
    try:
        _write(services, node, frame, mode)
    except DiskFullError as full:   # the rows take about their memory's size, twice (WAL)
        raise full.needing(2 * int(frame.memory_usage(deep=True).sum())) from None
    verb = {"append": "appended to", "replace": "copied into"}.get(mode, "copied into")
    rows = len(frame)
    return Message(f"Success: {rows:,} row{'s' if rows != 1 else ''} {verb} {node.table}")


def _write(services: Services, node: Copy, frame: pd.DataFrame, mode: str) -> None:
    store = services.store
    with store.begin(write=True) as conn:
        exists = store.has_table(conn, node.table)
        if exists and mode == "fail":
            raise AlreadyExistsError(
                f"The table {excerpt(node.table)} already exists",
                hint=f"To replace it: COPY {node.table} OPTIONS (overwrite=True) FROM … ; "
                     f"to add rows to it: COPY {node.table} OPTIONS (if_exists='append') "
                     "FROM …")
        if exists and mode == "replace":
            store.drop_table(conn, node.table)
        if exists and mode == "append":
            columns = store.columns(conn, node.table)
            extra = [c for c in frame.columns if c not in columns]
            if extra:
                raise DataError(
                    f"{excerpt(node.path)} has columns that the table {excerpt(node.table)} "
                    f"does not: {', '.join(extra)}",
                    hint=f"The table's columns are {', '.join(columns)}. Rename the file's "
                         "columns, or COPY it into a new table.")
        store.insert_frame(conn, node.table, frame)
        # relative image paths in the rows are relative to this kernel's folder: any kernel
        # reads them there (appended rows may be relative to another folder: both are kept)
        services.folders.record(conn, node.table, [str(services.settings.cwd)],
                                replace=mode != "append")


def _mode(options: dict[str, object]) -> str:
    overwrite, if_exists = options["overwrite"], options["if_exists"]
    if overwrite and if_exists not in (None, "replace"):
        raise OptionError(f"overwrite=True and if_exists={if_exists!r} contradict each other",
                          hint="Give one of them.")
    return "replace" if overwrite else str(if_exists or "fail")


def read_table_file(path: Path, shown: str) -> pd.DataFrame:
    """A file (csv, parquet, json, xlsx) or a folder of images as a frame, columns lower-cased."""
    pd = import_whole("pandas")
    try:
        problem = not_a_file(path)
    except FileNotFoundError:
        raise NotFoundError(f"No file or folder {excerpt(shown)} (looked for "
                            f"{excerpt(str(path))})",
                            hint="Relative paths are relative to the notebook's folder.") \
            from None
    if problem == DIRECTORY:
        frame = _image_folder(path, shown)
    elif problem is not None:
        raise DataError(f"COPY cannot read {excerpt(shown)}: it is {problem}")
    else:
        suffix = path.suffix.lower()
        try:
            if suffix == ".csv":
                frame = pd.read_csv(io.StringIO(_utf8_text(path, shown)))
            elif suffix == ".parquet":
                frame = pd.read_parquet(path)
            elif suffix in (".json", ".jsonl"):
                frame = pd.read_json(io.StringIO(_utf8_text(path, shown)), orient="records",
                                     lines=suffix == ".jsonl")
            elif suffix == ".xlsx":
                frame = pd.read_excel(path)
            else:
                raise DataError(f"COPY cannot read {excerpt(shown)}: unknown file type {suffix!r}",
                                hint="COPY reads " + ", ".join(FILE_READERS) +
                                     " files, or a folder of images.")
        except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError, OSError,
                zipfile.BadZipFile) as e:   # an .xlsx is a zip file
            raise DataError(f"COPY could not read {excerpt(shown)}: {str(e).strip()}",
                            hint="Check that the file is well-formed " + suffix[1:] + ".") \
                from None
    return _normalise_columns(frame, shown)


def _utf8_text(path: Path, shown: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            f"{excerpt(shown)} is not UTF-8: byte 0x{data[e.start]:02x} on line {line}, "
            f"column {column} cannot be decoded",
            hint="Save the file as UTF-8 (for example: iconv -f cp949 -t utf-8 in.csv > "
                 "out.csv) and COPY it again.") from None


def _image_folder(folder: Path, shown: str) -> pd.DataFrame:
    pd = import_whole("pandas")

    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                relative = Path(dirpath, name).relative_to(folder).as_posix()
                found.append(((Path(shown) / relative).as_posix(), name))
    if not found:
        raise DataError(f"The folder {excerpt(shown)} holds no image files",
                        hint="COPY of a folder takes files ending in " +
                             ", ".join(IMAGE_EXTENSIONS) + ".")
    return pd.DataFrame(found, columns=["image_path", "filename"])


def _normalise_columns(frame: pd.DataFrame, shown: str) -> pd.DataFrame:
    names = [str(c).strip().lower() for c in frame.columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{excerpt(shown)} has columns that differ only in case or spaces: "
                        f"{', '.join(duplicates)}", hint="Rename them so each is unique.")
    if not names:
        raise DataError(f"{excerpt(shown)} has no columns")
    frame.columns = names
    return frame
