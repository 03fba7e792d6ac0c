"""fit / embed / save / load on tiny images: progress, reproducibility, round trip, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from thanosql_kernel.errors import DataError, NotFoundError, OptionError
from thanosql_kernel.models import train as train_mod
from thanosql_kernel.models.config import parse_simclr_options
from thanosql_kernel.models.train import (
    TrainedModel,
    TrainProgress,
    embed,
    fit,
    load_model,
    save_model,
)


def _digits(n: int = 24, size: int = 12, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Blobby synthetic images: a bright rectangle at a random place on a dark field."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 40, (n, channels, size, size), dtype=torch.uint8, generator=g)
    for i in range(n):
        r, c = torch.randint(0, size - 4, (2,), generator=g).tolist()
        x[i, :, r:r + 4, c:c + 3] = 230
    return x


def _cfg(**extra: object):
    return parse_simclr_options({"max_epochs": 2, "batch_size": 8, "embedding_dim": 128,
                                 "projection_dim": 8, "device": "cpu", **extra})


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return fit(_digits(), _cfg())


def test_fit_reports_progress_every_step() -> None:
    seen: list[TrainProgress] = []
    model = fit(_digits(20), _cfg(batch_size=8), seen.append)
    assert len(seen) == 2 * 3   # ceil(20 / 8) = 3 steps per epoch, 2 epochs
    assert [(p.epoch, p.step) for p in seen] == [(e, s) for e in (1, 2) for s in (1, 2, 3)]
    assert all(p.epochs == 2 and p.steps_per_epoch == 3 for p in seen)
    assert all(np.isfinite(p.loss) and p.loss > 0 for p in seen)
    assert all(p.images_per_second > 0 for p in seen)
    assert seen[-1].seconds_left == 0.0 and seen[0].seconds_left > 0
    assert seen[-1].seconds_elapsed <= model.seconds
    assert len(model.loss_per_epoch) == 2


def test_model_fields(trained: TrainedModel) -> None:
    assert (trained.image_size, trained.channels, trained.embedding_dim) == (12, 1, 128)
    assert not trained.encoder.training and not trained.head.training
    card = trained.card_fields()
    json.dumps(card)
    assert card["base_model"] == "SimCLR" and card["embedding_dim"] == 128
    assert card["options"]["max_epochs"] == 2 and len(card["loss_per_epoch"]) == 2
    assert "torch" in card["library_versions"]


def test_embeddings_are_unit_vectors(trained: TrainedModel) -> None:
    e = embed(trained, _digits(5, seed=3), batch_size=2)
    assert e.shape == (5, 128) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)


def test_embed_rejects_wrong_shape(trained: TrainedModel) -> None:
    with pytest.raises(DataError):
        embed(trained, _digits(2, size=10))


def test_seed_makes_cpu_training_reproducible() -> None:
    x = _digits(16)
    a = fit(x, _cfg(seed=5))
    b = fit(x, _cfg(seed=5))
    c = fit(x, _cfg(seed=6))
    pairs = zip(a.encoder.state_dict().items(), b.encoder.state_dict().values(), strict=True)
    for (name, p), q in pairs:
        assert torch.equal(p, q), name
    assert a.loss_per_epoch == b.loss_per_epoch
    assert any(not torch.equal(p, q) for p, q in zip(a.encoder.state_dict().values(),
                                                     c.encoder.state_dict().values(), strict=True))


def test_fit_leaves_global_state_alone() -> None:
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(_digits(10), _cfg(max_epochs=1))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_save_load_round_trip(tmp_path: Path, trained: TrainedModel) -> None:
    save_model(trained, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = _digits(6, seed=9)
    np.testing.assert_array_equal(embed(loaded, x), embed(trained, x))
    assert loaded.loss_per_epoch == trained.loss_per_epoch
    assert loaded.config == trained.config
    assert loaded.card_fields()["architecture"] == trained.card_fields()["architecture"]


def test_load_uses_weights_only(tmp_path: Path, trained: TrainedModel,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    save_model(trained, tmp_path)
    calls: list[dict[str, object]] = []
    real = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod.torch, "load", spy)
    load_model(tmp_path)
    assert calls and all(c.get("weights_only") is True for c in calls)


class _Arbitrary:
    """A class a pickle could smuggle in; weights_only loading must refuse it."""


def test_load_refuses_pickled_objects(tmp_path: Path, trained: TrainedModel) -> None:
    save_model(trained, tmp_path)
    torch.save({"encoder": _Arbitrary(), "head": {}}, tmp_path / "weights.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_model(tmp_path)


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_model(tmp_path / "nothing")


def test_fit_input_errors() -> None:
    with pytest.raises(DataError):
        fit(_digits(1), _cfg())
    with pytest.raises(DataError):
        fit(_digits(4).float(), _cfg())
    with pytest.raises(DataError):
        fit(_digits(4), _cfg(image_size=16))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error path")
def test_cuda_requested_without_cuda() -> None:
    with pytest.raises(OptionError):
        fit(_digits(4), _cfg(device="cuda"))


def test_interrupt_propagates_from_progress() -> None:
    calls = []

    def stop(p: TrainProgress) -> None:
        calls.append(p)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_digits(16), _cfg(max_epochs=50), stop)
    assert len(calls) == 1


def test_batch_size_is_capped_and_colour_works() -> None:
    seen: list[TrainProgress] = []
    model = fit(_digits(6, size=20, channels=3), _cfg(batch_size=256, max_epochs=1), seen.append)
    assert len(seen) == 1 and model.channels == 3
    assert embed(model, _digits(3, size=20, channels=3)).shape == (3, 128)


def test_more_views_and_embedding_is_the_head_output() -> None:
    model = fit(_digits(12), _cfg(views=3, embedding_dim=32, batch_size=4, max_epochs=1))
    assert model.embedding_dim == 32
    e = embed(model, _digits(3, seed=9))
    assert e.shape == (3, 32)
    with torch.inference_mode():
        h = model.head(model.encoder(_digits(3, seed=9).contiguous(
            memory_format=torch.channels_last)))
    np.testing.assert_allclose(e, torch.nn.functional.normalize(h, dim=1).numpy(), atol=1e-5)


def test_a_model_saved_in_the_old_format_asks_for_a_rebuild(trained: TrainedModel,
                                                             tmp_path: Path) -> None:
    save_model(trained, tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["format"] = 1
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="BUILD MODEL|format"):
        load_model(tmp_path)


def test_large_images_are_embedded_a_few_at_a_time_with_the_same_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from thanosql_kernel.models.train import cpu_step

    # a step's activations stay in the caches: 8 photos at 224 px, all of 256 tiny digits
    assert cpu_step(224) == 8 and cpu_step(28) >= 256 and cpu_step(4096) == 1
    model = fit(_digits(12, size=64), _cfg(max_epochs=1, batch_size=4))
    steps: list[int] = []
    forward = model.encoder.forward
    monkeypatch.setattr(model.encoder, "forward", lambda x: steps.append(len(x)) or forward(x))
    images = _digits(30, size=64, seed=3)
    together = embed(model, images)   # 256 asked, cpu_step(64) = 98 a step on a CPU
    assert steps == [30]
    monkeypatch.setattr(train_mod, "_CPU_STEP_PIXELS", 7 * 64 * 64)
    steps.clear()
    apart = embed(model, images)
    assert steps == [7, 7, 7, 7, 2]
    # eval mode: no image's embedding depends on the others in its step
    assert np.allclose(together, apart, atol=1e-5)


def _photos(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth colour fields with noise: n distinct photo-like RGB images."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size),
                                           mode="bilinear") * 255
    noise = torch.randint(-20, 20, base.shape, generator=g)
    return (base + noise).clamp(0, 255).to(torch.uint8)


def test_bf16_is_chosen_where_a_resnets_embeddings_stay_close_to_float32(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # as on a CPU with native bf16 (elsewhere torch emulates it: slower, the same numbers)
    monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda: True)
    model = fit(_photos(24, 32), _cfg(backbone="resnet18", max_epochs=1, views=2))
    assert model.precision == "bf16" and model.bf16_cosine is not None
    assert model.bf16_cosine >= train_mod.BF16_MIN_COSINE
    assert model.card_fields()["precision"] == "bf16"
    forwards: list[torch.dtype] = []
    hook = model.head.register_forward_hook(lambda m, i, o: forwards.append(o.dtype))
    images = _photos(40, 32, seed=1)   # not the images BUILD measured on
    rounded = embed(model, images)
    model.precision = "fp32"
    exact = embed(model, images)
    hook.remove()
    assert forwards == [torch.bfloat16, torch.float32]   # each ran as it said
    assert rounded.dtype == np.float32
    assert np.allclose(np.linalg.norm(rounded, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(exact.astype(np.float64) * rounded, axis=1)
    assert cosine.min() >= 0.999, cosine.min()
    # SEARCH's top 10 for every image as the query: what bf16 returns is the float32 top 10,
    # but for neighbours whose float32 similarities lie closer than bf16's error
    tolerance = 2 * (1 - cosine.min()) ** 0.5 + 1e-6
    truth, found = exact @ exact.T, rounded @ rounded.T
    for q in range(len(images)):
        top = np.sort(truth[q])[::-1][:10]
        picked = np.argsort(-found[q], kind="stable")[:10]
        assert truth[q, picked].min() >= top[-1] - tolerance
        assert np.allclose(np.sort(truth[q, picked])[::-1], top, atol=tolerance)
    # saved and loaded, the choice stays; a model saved before it existed is float32
    model.precision = "bf16"
    save_model(model, tmp_path / "m")
    assert load_model(tmp_path / "m").precision == "bf16"
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    del meta["precision"], meta["bf16_cosine"]
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    assert load_model(tmp_path / "m").precision == "fp32"


def test_bf16_is_refused_where_it_would_move_the_embeddings_or_is_not_wanted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda: True)
    sample = _photos(8, 32)
    model = fit(sample, _cfg(backbone="resnet18", max_epochs=1, views=2))
    # a stricter limit than any bf16 embedding meets: measured, and refused
    monkeypatch.setattr(train_mod, "BF16_MIN_COSINE", 1.5)
    train_mod.choose_precision(model, sample)
    assert model.precision == "fp32" and model.bf16_cosine is not None
    assert 0.99 < model.bf16_cosine <= 1.0 + 1e-6
    # a limit this barely trained model meets (its cosine with 8 images and one epoch sits
    # near 0.999 and moves with the thread count: 0.9966 on one, 0.9992 on two)
    monkeypatch.setattr(train_mod, "BF16_MIN_COSINE", 0.99)
    monkeypatch.setenv("THANOSQL_BF16", "0")   # the user's switch: not even measured
    train_mod.choose_precision(model, sample)
    assert (model.precision, model.bf16_cosine) == ("fp32", None)
    monkeypatch.delenv("THANOSQL_BF16")
    train_mod.choose_precision(model, sample)
    assert model.precision == "bf16"
    # chosen, but off at embedding time: float32, as on a CPU without native bf16
    monkeypatch.setenv("THANOSQL_BF16", "0")
    forwards: list[torch.dtype] = []
    hook = model.head.register_forward_hook(lambda m, i, o: forwards.append(o.dtype))
    embed(model, sample)
    hook.remove()
    assert model.precision == "bf16" and forwards == [torch.float32]
    # the tutorial's small network: float32 (bf16 is no faster for it)
    monkeypatch.delenv("THANOSQL_BF16")
    small = fit(_digits(), _cfg(max_epochs=1))
    assert (small.precision, small.bf16_cosine) == ("fp32", None)


def test_the_automatic_stroke_thickens_grey_images_from_the_second_epoch_only() -> None:
    """stroke=None (the default): grey images get stroke 0.5 from the second epoch on, so a
    one-epoch run is the stroke-free run bit for bit (the tutorial's one-epoch cell is
    unchanged) and colour images never draw it; an explicit stroke applies from the first."""
    from thanosql_kernel.models.config import AUTO_STROKE, stroke_schedule

    def losses(x: torch.Tensor, **options: object) -> list[float]:
        return fit(x, _cfg(seed=3, **options)).loss_per_epoch

    assert _cfg().stroke is None
    assert stroke_schedule(_cfg(), 1) == (AUTO_STROKE, 2)
    assert stroke_schedule(_cfg(), 3) == (0.0, 2)
    assert stroke_schedule(_cfg(stroke=0.3), 3) == (0.3, 1)
    grey, colour = _digits(16), _digits(16, channels=3)
    assert losses(grey, max_epochs=1) == losses(grey, max_epochs=1, stroke=0.0)
    auto, off, on = losses(grey), losses(grey, stroke=0.0), losses(grey, stroke=AUTO_STROKE)
    assert auto[0] == off[0] and auto[1] != off[1]   # the stroke ran in the second epoch
    assert on[0] != off[0]                           # an explicit one from the first
    assert losses(colour) == losses(colour, stroke=0.0)
    with pytest.raises(OptionError):
        _cfg(stroke=1.5)
