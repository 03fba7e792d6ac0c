"""What a data set's writer reports while it writes, and what it leaves on disk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: ``progress(done, total)``, called as files are written
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class DatasetWritten:
    """What a writer left on disk: its folder, how many files, and each CSV with its row count."""

    folder: Path
    files: int
    csvs: tuple[tuple[Path, int], ...]
