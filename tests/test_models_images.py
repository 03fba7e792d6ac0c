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
    # the first batch small, so work starts while the next decodes; then batch_size each
    assert [len(b) for b in batches] == [16, 32, 32, 20]
    assert torch.equal(torch.cat(batches), x)
    assert [len(b) for b in iter_image_batches(paths, 50, None)] == [16, 32, 50, 2]
    assert [len(b) for b in iter_image_batches(paths, 8, None)] == [8] * 12 + [4]


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


def _turned(path: Path, pixels: np.ndarray, orientation: int, fmt: str) -> str:
    """``pixels`` saved as they leave a camera: as stored, with an EXIF Orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, format=fmt, exif=exif.tobytes(),
                                 **({"quality": 95} if fmt == "JPEG" else {}))
    return str(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_a_photo_is_read_upright_as_its_exif_orientation_says(tmp_path: Path, fmt: str) -> None:
    from PIL import ImageOps

    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)   # 20 wide, 12 high
    for orientation in range(1, 9):
        path = _turned(tmp_path / f"{orientation}.{fmt.lower()}", stored, orientation, fmt)
        with Image.open(path) as opened:   # Pillow's own answer, from the same file
            viewed = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        if orientation in (5, 6, 7, 8):
            assert viewed.shape[:2] == (20, 12), (orientation, viewed.shape)
        x = load_images([path], None)
        assert x.shape == (1, 3, *viewed.shape[:2]), (fmt, orientation, x.shape)
        assert torch.equal(x[0].permute(1, 2, 0), torch.from_numpy(viewed.copy())), \
            (fmt, orientation)
        # a square size resizes the upright image, not the stored one
        [batch] = iter_image_batches([path], 4, 10)
        upright = np.asarray(Image.fromarray(viewed).resize((10, 10),
                                                            Image.Resampling.BILINEAR))
        assert np.abs(batch[0].permute(1, 2, 0).numpy().astype(int) - upright).max() <= 1


def test_a_big_turned_jpeg_decodes_drafted_and_upright(tmp_path: Path) -> None:
    """A 4000x3000 phone photo held upright: drafted at 1/8 by the JPEG decoder, then turned;
    the result matches the full decode turned and resized, closely (draft's own scaling)."""
    from PIL import ImageOps

    base = np.zeros((3000, 4000, 3), np.uint8)
    base[:, :2000, 0] = 220   # the stored image's left half red, its top third green
    base[:1000, :, 1] = 200
    path = _turned(tmp_path / "phone.jpg", base, 6, "JPEG")   # 6: view turned 90 clockwise
    [batch] = iter_image_batches([path], 4, 224)
    with Image.open(path) as opened:
        expected = np.asarray(ImageOps.exif_transpose(opened).convert("RGB")
                              .resize((224, 224), Image.Resampling.BILINEAR)).astype(int)
    got = batch[0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - expected).mean() < 3
    # turned clockwise: the stored left half (red) is now the top, its top (green) the right
    assert got[:100, :, 0].mean() > 200 and got[124:, :, 0].mean() < 20
    assert got[:, 160:, 1].mean() > 180 and got[:, :40, 1].mean() < 20


def test_an_orientation_said_only_in_xmp_turns_a_jpeg_too(tmp_path: Path) -> None:
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
           b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
           b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    Image.fromarray(np.zeros((8, 24), np.uint8)).save(tmp_path / "x.jpg", xmp=xmp)
    assert load_images([str(tmp_path / "x.jpg")], None).shape == (1, 1, 24, 8)


def test_reading_the_viewed_size_decodes_nothing(tmp_path: Path) -> None:
    """The size BUILD plans with is read from headers (every file of a table is probed):
    Pillow's getexif would decode a whole PNG to look for EXIF after its pixels."""
    from thanosql_kernel.pictures import upright_size

    plain = _save(tmp_path / "plain.png", (30, 10), "RGB")
    turned = _turned(tmp_path / "turned.png", np.zeros((10, 30, 3), np.uint8), 6, "PNG")
    for path, viewed in ((plain, (30, 10)), (turned, (10, 30))):
        with Image.open(path) as opened:
            assert upright_size(opened) == viewed
            assert opened.tile, "the pixels were decoded"


def _paced(monkeypatch: pytest.MonkeyPatch, serial_s: float, pooled_s: float) -> list[str]:
    """Decoding that takes ``serial_s`` an image on the calling thread and ``pooled_s`` on
    the decoding pool's threads (a sleep: the GIL is free, as in Pillow's decoder); returns
    the names of the threads it ran on."""
    import threading
    import time

    from thanosql_kernel.models import images

    real, seen = images._open, []

    def paced(path: str, size: tuple[int, int] | None, mode: str | None) -> np.ndarray:
        name = threading.current_thread().name
        seen.append(name)
        time.sleep(pooled_s if name.startswith("thanosql-decode") else serial_s)
        return real(path, size, mode)

    monkeypatch.setattr(images, "_open", paced)
    return seen


@pytest.mark.parametrize("pool_wins", [True, False])
def test_decoding_goes_on_the_way_it_measured_faster(tmp_path: Path, pool_wins: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from thanosql_kernel.models import images

    paths = [_save(tmp_path / f"{i}.png", (4, 4), value=i) for i in range(120)]
    expected = load_images(paths, None)
    # photos: as slow on a pool thread as on one, so the pool's threads win together;
    # small images: the pool's threads wait on each other (here, 10x slower each)
    seen = _paced(monkeypatch, 0.004, 0.004) if pool_wins else _paced(monkeypatch, 0.0005,
                                                                       0.005)
    x = load_images(paths, None)
    assert torch.equal(x, expected)   # the same images in the same order either way
    after_trial = seen[3 * images._TRIAL:]   # load_images's second call: the choice
    on_pool = [n.startswith("thanosql-decode") for n in after_trial]
    assert len(after_trial) == 120 - 3 * images._TRIAL
    assert all(on_pool) if pool_wins else not any(on_pool)
    assert seen[0] == seen[1] and not seen[0].startswith("thanosql-decode")  # serial first
    assert any(n.startswith("thanosql-decode") for n in seen)   # the pool was tried
    seen.clear()
    batches = list(iter_image_batches(paths, 32, None))
    assert torch.equal(torch.cat(batches), expected)
    on_pool = [n.startswith("thanosql-decode") for n in seen[16 + 32:]]
    assert all(on_pool) if pool_wins else not any(on_pool)
