"""Image decoding: shapes, modes, resizing, batches, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from thanosql_kernel.errors import DataError, NotFoundError
from thanosql_kernel.models.images import iter_image_batches, load_images


def _save(path: Path, size: tuple[int, int], mode: str = "L", value: int = 0) -> str:
    arr = np.full((size[1], size[0]) + (() if mode == "L" else (3,)), value, np.uint8)
    arr[..., 0, 0] = 255 - value
    Image.fromarray(arr, mode).save(path)
    return str(path)


def test_grey_files_give_one_channel_uint8(tmp_path: Path) -> None:
    paths = [_save(tmp_path / f"{i}.png", (6, 5), value=i) for i in range(3)]
    x = load_images(paths, None)
    assert x.dtype == torch.uint8 and x.shape == (3, 1, 5, 6)
    assert x[2, 0, 1, 1] == 2 and x[2, 0, 0, 0] == 253


def test_jpeg_decodes_close_to_source(tmp_path: Path) -> None:
    arr = np.tile(np.linspace(0, 255, 28, dtype=np.uint8), (28, 1))
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    x = load_images([str(tmp_path / "a.jpg")], None)
    assert x.shape == (1, 1, 28, 28)
    assert (x[0, 0].int() - torch.from_numpy(arr).int()).abs().max() < 12


def test_resize_and_channels(tmp_path: Path) -> None:
    paths = [_save(tmp_path / "a.png", (20, 10)), _save(tmp_path / "b.png", (8, 8))]
    assert load_images(paths, 16).shape == (2, 1, 16, 16)
    # differing sizes follow the first image when no size is given
    assert load_images(paths, None).shape == (2, 1, 10, 20)
    assert load_images(paths, 12, channels=3).shape == (2, 3, 12, 12)


def test_mixed_modes_become_rgb(tmp_path: Path) -> None:
    paths = [_save(tmp_path / "g.png", (8, 8), "L", 10),
             _save(tmp_path / "c.png", (8, 8), "RGB", 20)]
    x = load_images(paths, None)
    assert x.shape == (2, 3, 8, 8)
    assert torch.equal(x[0, 0], x[0, 1])


def test_many_files_keep_their_order(tmp_path: Path) -> None:
    paths = [_save(tmp_path / f"{i}.png", (4, 4), value=i) for i in range(100)]
    x = load_images(paths, None)
    assert x[:, 0, 2, 2].tolist() == list(range(100))
    batches = list(iter_image_batches(paths, 32, None))
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    assert torch.equal(torch.cat(batches), x)


def test_batches_keep_one_shape(tmp_path: Path) -> None:
    paths = [_save(tmp_path / "g.png", (8, 8), "L"), _save(tmp_path / "c.png", (9, 9), "RGB")]
    shapes = {tuple(b.shape[1:]) for b in iter_image_batches(paths, 1, None)}
    assert shapes == {(1, 8, 8)}
    assert {tuple(b.shape[1:]) for b in iter_image_batches(paths, 1, 5, 3)} == {(3, 5, 5)}


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    good = _save(tmp_path / "a.png", (4, 4))
    missing = str(tmp_path / "nope.jpg")
    with pytest.raises(NotFoundError, match="nope.jpg"):
        load_images([good] * 20 + [missing], None)
    with pytest.raises(NotFoundError, match="nope.jpg"):
        list(iter_image_batches([good, missing], 1, None))


def test_non_image_file_is_a_data_error(tmp_path: Path) -> None:
    good = _save(tmp_path / "a.png", (4, 4))
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(DataError, match="notes.jpg"):
        load_images([good, str(bad)], None)
    with pytest.raises(DataError, match="notes.jpg"):
        load_images([str(bad)], None)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(Path(good).read_bytes()[:30])
    with pytest.raises(DataError, match="cut.png"):
        load_images([good, str(truncated)], None)


def test_empty_list() -> None:
    assert load_images([], 8).shape == (0, 1, 8, 8)
    assert list(iter_image_batches([], 4, 8)) == []
