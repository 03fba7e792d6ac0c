"""The compact copy of a converted column, kept in a file beside the database, so that the
first SEARCH after a restart reads a quarter of the column's bytes instead of every row.

The column stays the truth: the file is a cache of what ``CompactVectors.from_chunks`` made
from it, named for the database, the table, the column and the collection (CONVERT makes a
new collection each time, so a file from an earlier CONVERT is never read for a later one),
and it is read only when its row count and dimension are the catalog's. A file that cannot
be read whole is ignored and made again. Writing goes to a temporary file renamed into
place, so no reader ever sees half a file, and a write that fails (a full disk) leaves
nothing behind.

Layout: a magic line, a JSON line (rows, dimension, code width, path width), then the raw
arrays: errors (float32), scales (bfloat16 bits as int16), paths (fixed-width bytes), codes
(int8, row-major).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import numpy as np

from .compact import CompactVectors

_MAGIC = b"THANOSQL-COMPACT-1\n"
#: bytes read at a time, so the progress bar moves and no second copy is ever held
_PIECE = 64 << 20


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class StoredCopies:
    """The files of compact copies in ``folder``: one per (database, table, column) at a time."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self._url = database_url

    def file(self, table: str, column: str, collection: str) -> Path:
        return self.folder / (f"{_digest(self._url, table, column)}."
                              f"{_digest(self._url, collection)}.compact")

    def load(self, table: str, column: str, collection: str, rows: int, dim: int,
             loading: Callable[[int, int, bool], None] | None = None
             ) -> tuple[np.ndarray, CompactVectors] | None:
        """(paths, copy) from the collection's file, or None where there is no such file or
        it does not hold ``rows`` rows of ``dim`` values, whole."""
        import torch

        path = self.file(table, column, collection)
        try:
            with open(path, "rb") as f:
                if f.readline() != _MAGIC:
                    return None
                head = json.loads(f.readline())
                if (head.get("rows"), head.get("dim")) != (rows, dim):
                    return None
                width, path_width = int(head["width"]), int(head["path_width"])
                if width < dim or path_width < 1:
                    return None
                errors = np.empty(rows, dtype=np.float32)
                scales = torch.empty(rows, dtype=torch.int16)
                paths = np.empty(rows, dtype=f"S{path_width}")
                codes = torch.empty((rows, width), dtype=torch.int8)
                arrays = (errors, scales.numpy(), paths, codes.numpy())
                total = sum(a.nbytes for a in arrays)
                done = 0
                for array in arrays:
                    view = array.reshape(-1).view(np.uint8).data
                    for start in range(0, len(view), _PIECE):
                        piece = view[start:start + _PIECE]
                        if f.readinto(piece) != len(piece):
                            return None   # cut short
                        done += len(piece)
                        if loading is not None and total:
                            loading(rows * done // total, rows, False)
                if f.read(1):
                    return None   # more than the header says: not a file this code wrote
        except (OSError, ValueError, KeyError, TypeError, MemoryError):
            return None
        compact = CompactVectors(codes, scales.view(torch.bfloat16), errors, dim)
        return paths, compact

    def save(self, table: str, column: str, collection: str, paths: np.ndarray,
             compact: CompactVectors, *, replacing: bool = True) -> bool:
        """Write the copy to its file and, ``replacing``, remove the files of the column's
        other collections (not while CONVERT's transaction may still roll back to one of
        them); False (and nothing left behind) where it cannot be written."""
        import torch

        path = self.file(table, column, collection)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        scales = compact.scales.view(torch.int16)
        head = {"rows": compact.count, "dim": compact.dim,
                "width": int(compact.codes.shape[1]),
                "path_width": max(int(paths.dtype.itemsize), 1)}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as f:
                f.write(_MAGIC)
                f.write(json.dumps(head).encode() + b"\n")
                for array in (np.ascontiguousarray(compact.errors, dtype=np.float32),
                              scales.contiguous().numpy(),
                              np.ascontiguousarray(paths, dtype=f"S{head['path_width']}"),
                              compact.codes.contiguous().numpy()):
                    f.write(array.reshape(-1).view(np.uint8).data)
            os.replace(temporary, path)
        except OSError:
            with suppress(OSError):
                temporary.unlink()
            return False
        prefix = path.name.split(".")[0]
        for other in self.folder.glob(f"{prefix}.*.compact") if replacing else ():
            if other != path:
                with suppress(OSError):
                    other.unlink()
        return True

    def drop(self, collection: str) -> None:
        """Remove the collection's file, if there is one."""
        for path in self.folder.glob(f"*.{_digest(self._url, collection)}.compact"):
            with suppress(OSError):
                path.unlink()
