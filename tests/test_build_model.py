"""BUILD MODEL, LIST MODEL and DELETE MODEL, on tiny images so training takes seconds."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thanosql_kernel.errors import (
    AlreadyExistsError,
    DataError,
    DiskFullError,
    NotFoundError,
    OptionError,
    ThanoSQLSyntaxError,
)
from thanosql_kernel.results import Message, Table

from .conftest import Engine, KernelSession
from .helpers import TINY, make_images, model_files


def build(engine: Engine, name: str = "m", extra: str = "", table: str = "imgs") -> Message:
    result = engine.one(f"BUILD MODEL {name} USING SimCLR {TINY.format(extra=extra)} "
                        f"AS SELECT * FROM {table}")
    assert isinstance(result, Message)
    return result


def card(engine: Engine, name: str = "m") -> dict:
    """The model card, as stored with the model in the database."""
    return json.loads((model_files(engine, name) / "card.json").read_text())


def pin_threads(engine: Engine) -> None:
    """Training is reproducible bit for bit at a fixed thread count; THANOSQL_THREADS=auto
    (the default) changes the count with the machine's load, and sums split across threads
    differ in the last bits."""
    engine.reopen(threads=1)


@pytest.fixture
def images(engine: Engine) -> Engine:
    make_images(engine.cwd / "imgs")
    engine.run("COPY imgs FROM 'imgs.csv'")
    return engine


def test_build_registers_a_model_with_a_card(images: Engine) -> None:
    result = build(images)
    assert result.text.startswith("Success: built m (SimCLR, 2 epochs over 16 images")
    listing = images.one("LIST MODEL")
    assert isinstance(listing, Table)
    assert listing.columns == ("name", "base_model", "trained_on", "status", "last_updated_utc")
    assert listing.rows[0][:4] == ("m", "SimCLR", "SELECT * FROM imgs", "ready")
    folder = model_files(images)
    card = json.loads((folder / "card.json").read_text())
    assert card == images.services.registry.get("m").card
    assert card["row_count"] == 16 and card["image_size"] == 12 and card["embedding_dim"] == 128
    assert len(card["loss_per_epoch"]) == 2 and card["options"]["max_epochs"] == 2
    assert card["trained_on"] == "SELECT * FROM imgs" and "torch" in card["library_versions"]
    import torch

    state = torch.load(folder / "weights.pt", weights_only=True)
    assert set(state) == {"encoder", "head"}


def test_progress_is_reported_per_step(images: Engine) -> None:
    build(images)
    steps = [p for p in images.progress if p.key.startswith("build-")]
    assert steps[-1].finished and steps[-1].done == steps[-1].total == 4
    assert any("loss" in p.detail for p in steps)
    assert [p.log_line.split()[1] for p in steps if p.log_line] == ["1/2", "2/2"]


def test_existing_model_needs_overwrite_and_is_kept(images: Engine) -> None:
    build(images)
    before = images.services.registry.get("m")
    with pytest.raises(AlreadyExistsError, match="overwrite=True"):
        images.run("BUILD MODEL m USING simclr AS SELECT * FROM imgs")
    assert images.services.registry.get("m") == before
    # overwritten by another build: the card must be the new one (not only a new timing)
    images.one("BUILD MODEL m USING SimCLR OPTIONS (max_epochs=1, batch_size=8, seed=1, "
               "overwrite=True) AS SELECT * FROM imgs LIMIT 8")
    new = card(images)
    assert new["row_count"] == 8 and new["options"]["max_epochs"] == 1
    # the old content is gone from the database and from the cache
    assert images.services.registry.get("m").digest != before.digest
    assert images.rows(f"SELECT COUNT(*) FROM thanosql_model_files "
                       f"WHERE digest = '{before.digest}'") == [(0,)]
    assert not (images.cwd / ".thanosql" / "cache" / "models" / str(before.digest)).exists()


def test_failed_build_leaves_the_old_model(images: Engine, monkeypatch) -> None:
    build(images)
    before = images.one("LIST MODEL").rows
    entry = images.services.registry.get("m")
    stored = images.rows("SELECT digest, file, seq FROM thanosql_model_files ORDER BY 1, 2, 3")
    import thanosql_kernel.models.train as train

    def broken_save(model, directory):
        (directory / "weights.pt").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train, "save_model", broken_save)
    with pytest.raises(DiskFullError, match="needed about"):
        build(images, extra=", overwrite=True")
    assert images.one("LIST MODEL").rows == before
    assert images.services.registry.get("m") == entry
    assert images.rows("SELECT digest, file, seq FROM thanosql_model_files "
                       "ORDER BY 1, 2, 3") == stored
    cache = images.cwd / ".thanosql" / "cache" / "models"
    assert sorted(p.name for p in cache.iterdir()) == [entry.digest]   # no half-written copy


@pytest.mark.parametrize("cell, error, words", [
    ("BUILD MODEL x USING simclr OPTIONS (max_epoch=1) AS SELECT * FROM imgs", OptionError,
     ["max_epoch", "Did you mean 'max_epochs'?", "Valid options", "image_col", "label_col",
      "overwrite", "stroke"]),
    ("BUILD MODEL x USING simclr OPTIONS (max_epochs='1') AS SELECT * FROM imgs", OptionError,
     ["max_epochs"]),
    ("BUILD MODEL x USING simclr OPTIONS (max_epochs=0) AS SELECT * FROM imgs", OptionError,
     ["max_epochs"]),
    ("BUILD MODEL x USING simclr OPTIONS (overwrite=1) AS SELECT * FROM imgs", OptionError,
     ["overwrite"]),
    ("BUILD MODEL x USING resnet AS SELECT * FROM imgs", NotFoundError, ["SimCLR"]),
    ("BUILD MODEL x USING simclr OPTIONS (image_col='path') AS SELECT * FROM imgs",
     NotFoundError, ["image_path, label"]),
    ("BUILD MODEL x USING simclr AS SELECT * FROM imgs WHERE label > 5", DataError, ["0 row"]),
    ("BUILD MODEL x USING simclr AS SELECT 'nowhere.png' AS image_path UNION ALL "
     "SELECT 'nowhere2.png'", NotFoundError, ["nowhere"]),
    ("BUILD MODEL x USING simclr AS SELECT 'imgs.csv' AS image_path UNION ALL "
     "SELECT 'imgs.csv'", DataError, ["imgs.csv"]),
    ("BUILD MODEL x USING simclr OPTIONS (device='tpu') AS SELECT * FROM imgs", OptionError,
     ["device"]),
    ("BUILD MODEL ../x USING simclr AS SELECT * FROM imgs", ThanoSQLSyntaxError, ["name"]),
])
def test_bad_builds_get_one_clean_error(images: Engine, cell: str, error: type,
                                        words: list[str]) -> None:
    with pytest.raises(error) as caught:
        images.run(cell)
    for word in words:
        assert word in str(caught.value)
    assert images.one("LIST MODEL").rows == ()


def test_delete_and_drop_model(images: Engine) -> None:
    build(images)
    assert images.one("SELECT name FROM (LIST MODEL) WHERE base_model = 'SimCLR'").rows == (
        ("m",),)
    digest = images.services.registry.get("m").digest
    assert images.one("DELETE MODEL m").text == "Success: deleted the model m"
    assert images.rows("SELECT COUNT(*) FROM thanosql_model_files") == [(0,)]
    assert not (images.cwd / ".thanosql" / "cache" / "models" / str(digest)).exists()
    with pytest.raises(NotFoundError, match="no model 'm'"):
        images.run("DROP MODEL m")
    assert images.one("DROP MODEL IF EXISTS m").text == "Success: there was no model m"


def test_seeded_builds_are_reproducible(images: Engine) -> None:
    pin_threads(images)
    build(images, "a")
    build(images, "b")
    import torch

    a = torch.load(model_files(images, "a") / "weights.pt", weights_only=True)["encoder"]
    b = torch.load(model_files(images, "b") / "weights.pt", weights_only=True)["encoder"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kernel_shows_progress_in_place_and_interrupt_keeps_the_old_model(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", count=64, size=16)
    kernel = KernelSession(tmp_path)
    try:
        assert kernel.execute("COPY imgs FROM 'imgs.csv'").status == "ok"
        reply = kernel.execute(f"BUILD MODEL m USING simclr {TINY.format(extra='')} "
                               "AS SELECT * FROM imgs", timeout=120)
        assert reply.status == "ok", reply.content
        shown = reply.of("display_data")
        ids = {m["transient"]["display_id"] for m in shown if "transient" in m}
        assert len(ids) == 1
        updates = reply.of("update_display_data")
        assert updates and all(u["transient"]["display_id"] in ids for u in updates)
        assert "100%" in updates[-1]["data"]["text/plain"]
        assert "<progress" in updates[-1]["data"]["text/html"]
        epochs = [s["text"] for s in reply.of("stream")]
        assert len(epochs) == 2 and epochs[0].startswith("epoch 1/2")
        assert reply.of("execute_result")[0]["data"]["text/plain"].startswith("Success: built m")
        before = kernel.execute("LIST MODEL").texts[-1]

        started = time.monotonic()
        reply = kernel.execute("BUILD MODEL m USING simclr OPTIONS (max_epochs=100000, "
                               "batch_size=8, embedding_dim=128, overwrite=True) "
                               "AS SELECT * FROM imgs", timeout=60, interrupt_after=3.0)
        stopped = time.monotonic() - started - 3.0
        assert reply.status == "error" and reply.content["ename"] == "KeyboardInterrupt"
        # about a second when the machine is quiet; other processes may slow it down here
        assert stopped < 3.0, f"training took {stopped:.1f}s to stop"
        assert kernel.execute("LIST MODEL").texts[-1] == before
        cache = tmp_path / ".thanosql" / "cache" / "models"
        assert len([p.name for p in cache.iterdir()]) == 1   # no half-written copy
    finally:
        kernel.close()


def test_augmentation_options_are_checked_and_recorded_in_the_card(images: Engine) -> None:
    build(images, extra=", stroke=0.5, rotation=0, shear=5")
    options = card(images)["options"]
    assert options["stroke"] == 0.5 and options["rotation"] == 0.0 and options["shear"] == 5.0
    with pytest.raises(OptionError, match="stroke must be a number >= 0.0 and <= 1.0"):
        images.run("BUILD MODEL m2 USING SimCLR OPTIONS (stroke=2) AS SELECT * FROM imgs")


def _photos(folder: Path, count: int, size: tuple[int, int]) -> Path:
    """Colour images of ``size`` (W, H), not square, with a bright patch somewhere."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image_path"]
    for i in range(count):
        pixels = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
        y, x = rng.integers(0, min(size) // 2, 2)
        pixels[y:y + size[1] // 3, x:x + size[0] // 3] = (250, 200, 40)
        Image.fromarray(pixels).save(folder / f"{i}.jpg")
        lines.append(f"{folder.name}/{i}.jpg")
    csv = folder.parent / f"{folder.name}.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


@pytest.mark.parametrize("size, side", [((40, 30), 30), ((320, 260), 224)])
def test_non_square_and_large_images_train_at_a_sensible_square(engine: Engine, size, side
                                                                 ) -> None:
    # without image_size: the first image's shorter side, at most 224; then search works
    _photos(engine.cwd / "photos", 6, size)
    engine.run("COPY photos FROM 'photos.csv'")
    engine.one("BUILD MODEL p USING SimCLR OPTIONS (max_epochs=1, batch_size=3, views=2) "
               "AS SELECT * FROM photos")
    found = card(engine, "p")
    assert found["image_size"] == side and found["channels"] == 3
    engine.run("CONVERT USING p AS SELECT * FROM photos")
    found = engine.one("SELECT image_path FROM (SEARCH IMAGE images='photos/2.jpg' USING p "
                       "AS SELECT * FROM photos) ORDER BY p_simclr_similarity1 DESC LIMIT 1")
    assert list(found.rows) == [("photos/2.jpg",)]


def test_images_too_big_for_memory_are_read_from_their_files(images: Engine,
                                                            monkeypatch) -> None:
    # the same training, each batch decoded from its files; only the channel statistics
    # are summed another way, so the weights agree to rounding
    import torch

    import thanosql_kernel.models.images as images_module

    pin_threads(images)
    build(images, name="held")
    monkeypatch.setattr(images_module, "available_memory", lambda: 3_000)
    build(images, name="streamed")
    cards = {m: card(images, m) for m in ("held", "streamed")}
    assert cards["held"]["images_held"] == "device"
    assert cards["streamed"]["images_held"] == "files"
    weights = {m: torch.load(model_files(images, m) / "weights.pt", weights_only=True)
               for m in ("held", "streamed")}
    for part in ("encoder", "head"):
        for key, value in weights["held"][part].items():
            torch.testing.assert_close(value, weights["streamed"][part][key], rtol=1e-3,
                                       atol=1e-4, msg=key)
    logs = [p.log_line for p in images.progress if p.log_line and "do not fit" in p.log_line]
    assert len(logs) == 1 and "16 images at 12x12" in logs[0] and "image_size" in logs[0]


def test_loading_more_images_than_memory_holds_is_refused_before_decoding(monkeypatch,
                                                                          tmp_path) -> None:
    import thanosql_kernel.models.images as images_module

    make_images(tmp_path / "imgs", count=4)
    monkeypatch.setattr(images_module, "available_memory", lambda: 1_000)

    def not_expected(*args):
        raise AssertionError("images were decoded although they cannot fit")

    monkeypatch.setattr(images_module, "_open", not_expected)
    paths = [str(tmp_path / "imgs" / f"{i}.png") for i in range(4)]
    with pytest.raises(DataError, match=r"SEARCH: 4 images of 12x12x1 need .* GiB") as err:
        images_module.load_images(paths, None, what="SEARCH")
    assert "fewer rows" in (err.value.hint or "")


def test_on_a_gpu_images_that_do_not_fit_stay_in_ram(monkeypatch) -> None:
    import torch

    import thanosql_kernel.models.train as train

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1_000, 80 * 2**30))
    images = torch.zeros((4, 1, 28, 28), dtype=torch.uint8)
    batches = train._Batches(images, torch.device("cuda"))   # nothing is copied yet
    assert batches.where == "host" and batches.source is images
    assert train._Batches(images, torch.device("cpu")).where == "device"


@pytest.mark.parametrize("from_files", [False, True])
def test_a_set_that_starts_grey_but_has_colour_trains_in_colour(engine: Engine, monkeypatch,
                                                                from_files: bool) -> None:
    import thanosql_kernel.models.images as images_module

    make_images(engine.cwd / "imgs", count=6)   # grey PNGs
    _photos(engine.cwd / "photos", 2, (12, 12))   # colour JPEGs, listed after the grey ones
    rows = ["image_path"] + [f"imgs/{i}.png" for i in range(6)] + ["photos/0.jpg",
                                                                   "photos/1.jpg"]
    (engine.cwd / "mixed.csv").write_text("\n".join(rows) + "\n")
    engine.run("COPY mixed FROM 'mixed.csv'")
    if from_files:
        monkeypatch.setattr(images_module, "available_memory", lambda: 3_000)
    engine.one("BUILD MODEL mixed USING SimCLR OPTIONS (max_epochs=1, batch_size=4, views=2) "
               "AS SELECT * FROM mixed")
    found = card(engine, "mixed")
    assert found["channels"] == 3
    assert found["images_held"] == ("files" if from_files else "device")


def test_a_missing_file_fails_before_training_starts(images: Engine, monkeypatch) -> None:
    import thanosql_kernel.models.images as images_module

    images.run("INSERT INTO imgs (image_path, label) VALUES ('imgs/gone.png', 0)")
    monkeypatch.setattr(images_module, "available_memory", lambda: 3_000)  # the files path
    with pytest.raises(NotFoundError, match="gone.png"):
        build(images)
    assert not [p for p in images.progress if p.key.startswith("build-") and p.done > 0]
    assert images.one("LIST MODEL").rows == ()
