"""Batched SimCLR augmentation: per-image randomness, switches, determinism, value ranges."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from thanosql_kernel.models.config import SimCLRConfig, parse_simclr_options
from thanosql_kernel.models.transforms import BatchAugment

OFF = dict(crop_scale=(1.0, 1.0), rotation=0.0, shear=0.0, flip=False, vertical_flip=False,
           stroke=0.0, color_jitter=0.0, saturation=0.0, hue=0.0, grayscale=0.0, blur=0.0,
           noise=0.0, erase=0.0)


def _images(b: int, c: int, s: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, s, s), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def _aug(channels: int, **changes: object) -> BatchAugment:
    cfg = dataclasses.replace(SimCLRConfig(), **changes)
    return BatchAugment(cfg, torch.full((channels,), 0.25), torch.full((channels,), 0.5))


def test_everything_off_returns_the_normalised_input() -> None:
    x = _images(4, 3, 12)
    views = _aug(3, **OFF)(x, torch.Generator().manual_seed(0))
    expected = (x.float() / 255 - 0.25) / 0.5
    torch.testing.assert_close(views, expected)


def test_switches_are_parsed_from_user_options() -> None:
    cfg = parse_simclr_options({"crop_scale": [1, 1], "rotation": 0, "color_jitter": 0})
    assert not BatchAugment(cfg, torch.zeros(1), torch.ones(1)).geometric


@pytest.mark.parametrize("option", [
    {"crop_scale": (0.3, 0.6)}, {"rotation": 30.0}, {"shear": 20.0}, {"flip": True},
    {"vertical_flip": True}, {"stroke": 0.5}, {"color_jitter": 0.8}, {"saturation": 0.8},
    {"hue": 0.3},
    {"grayscale": 0.5}, {"blur": 1.0, "blur_sigma": (1.0, 2.0)}, {"noise": 0.2},
    {"erase": 1.0},
])
def test_two_identical_images_get_different_views(option: dict[str, object]) -> None:
    x = _images(1, 3, 16).repeat(8, 1, 1, 1)
    views = _aug(3, **{**OFF, **option})(x, torch.Generator().manual_seed(1))
    assert views.shape == (8, 3, 16, 16)
    off = _aug(3, **OFF)(x[:1], torch.Generator().manual_seed(1))
    changed = [not torch.allclose(v, off[0], atol=1e-4) for v in views]
    distinct = [not torch.allclose(views[i], views[i + 1], atol=1e-4) for i in range(7)]
    # each switch alone changes the image, and does so differently for copies of one image
    assert sum(changed) >= 3, option
    assert sum(distinct) >= 3, option


def test_default_views_are_independent_per_image() -> None:
    x = _images(1, 1, 28).repeat(2, 1, 1, 1)
    v = _aug(1)(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(v[0], v[1])


def test_same_generator_seed_same_views() -> None:
    x = _images(6, 1, 20)
    a = _aug(1, blur=0.5, noise=0.1, erase=0.5)
    v1 = a(x, torch.Generator().manual_seed(3))
    v2 = a(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(v1, v2, rtol=0, atol=0)


def test_grey_images_ignore_colour_only_options() -> None:
    x = _images(4, 1, 10)
    v = _aug(1, **{**OFF, "saturation": 1.0, "hue": 0.5, "grayscale": 1.0})(
        x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(v, (x.float() / 255 - 0.25) / 0.5)


def test_grayscale_makes_channels_equal() -> None:
    x = _images(4, 3, 10)
    v = _aug(3, **{**OFF, "grayscale": 1.0})(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(v[:, 0], v[:, 1])
    torch.testing.assert_close(v[:, 1], v[:, 2])


def test_flip_mirrors_exactly() -> None:
    x = _images(64, 1, 8)
    v = _aug(1, **{**OFF, "flip": True})(x, torch.Generator().manual_seed(0))
    ref = (x.float() / 255 - 0.25) / 0.5
    flipped = [torch.allclose(v[i], ref[i].flip(-1), atol=1e-4) for i in range(64)]
    same = [torch.allclose(v[i], ref[i], atol=1e-4) for i in range(64)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 10 < sum(flipped) < 54


def test_stroke_thickens_and_thins_lines_per_image() -> None:
    # one white vertical stroke, 2 px wide, copied 64 times
    x = torch.zeros((64, 1, 12, 12), dtype=torch.uint8)
    x[:, :, 2:10, 5:7] = 255
    v = _aug(1, **{**OFF, "stroke": 1.0})(x, torch.Generator().manual_seed(0))
    ink = (v * 0.5 + 0.25).sum(dim=(1, 2, 3))   # back to 0..1, summed per view
    base = float(x[0].float().sum() / 255)      # 16 px of ink
    thicker, thinner = int((ink > base + 1).sum()), int((ink < base - 1).sum())
    # each copy draws its own width: some thicker (up to the 3x3 dilation, 40 px), some
    # thinner (toward the erosion, which wipes a 2 px line out)
    assert thicker >= 10 and thinner >= 10
    assert float(ink.max()) <= 40 + 1e-3 and float(ink.min()) >= -1e-3
    assert len({round(float(i), 3) for i in ink}) > 32


def test_stroke_off_is_skipped_entirely(monkeypatch) -> None:
    # stroke=0 (off, and the first epoch of the default) must leave training bit for bit as it
    # was without the option: the step is not run, so it draws nothing from the generator
    def not_expected(self, x, gen):
        raise AssertionError("the stroke step ran with stroke=0")

    x = _images(8, 1, 16)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with monkeypatch.context() as m:
        m.setattr(BatchAugment, "_stroke", not_expected)
        _aug(1)(x, g1)
    _aug(1, stroke=0.5)(x, g2)   # on: one more draw per image
    assert not torch.equal(g1.get_state(), g2.get_state())
