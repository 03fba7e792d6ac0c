"""PRINT EMBEDDING's parts: the projection (PCA) against numpy's SVD, the colours and legend,
the spread of thumbnails, and the picture, without the engine."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from thanosql_kernel.engine.map_drawing import (
    GREY,
    PALETTE,
    Layout,
    colours,
    draw,
    spread_sample,
)
from thanosql_kernel.vectors import pca_2d


def svd_projection(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal coordinates and variance shares, by numpy's SVD."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    centred = unit - unit.mean(axis=0)
    _, s, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    return centred @ vt[:2].T, (s ** 2 / (s ** 2).sum())[:2]


@pytest.mark.parametrize(("n", "d"), [(2, 3), (50, 8), (3_000, 128)])
def test_pca_gives_the_first_two_principal_axes_as_svd_does(n: int, d: int) -> None:
    vectors = np.random.default_rng(n).standard_normal((n, d)).astype(np.float32)
    vectors[:, 0] *= 4   # one direction spreads most
    projection = pca_2d(vectors)
    expected, shares = svd_projection(vectors)
    # each axis is the SVD's up to its sign (chosen so its largest loading is positive)
    for axis in range(2):
        got, want = projection.points[:, axis], expected[:, axis]
        sign = 1.0 if np.dot(got, want) >= 0 else -1.0
        assert np.allclose(got, sign * want, atol=1e-4)
    assert projection.explained == pytest.approx(tuple(shares), abs=1e-6)
    assert projection.points.dtype == np.float32 and projection.points.shape == (n, 2)


def test_pca_is_the_same_picture_for_the_same_vectors_scaled_or_not() -> None:
    vectors = np.random.default_rng(1).standard_normal((200, 16)).astype(np.float32)
    scaled = vectors * np.random.default_rng(2).uniform(0.1, 10, (200, 1)).astype(np.float32)
    assert np.allclose(pca_2d(vectors).points, pca_2d(scaled).points, atol=1e-5)
    with pytest.raises(ValueError):
        pca_2d(vectors[:1])


def test_one_dimension_puts_every_point_on_a_line() -> None:
    projection = pca_2d(np.array([[1.0], [-1.0], [2.0]], np.float32))
    assert np.all(projection.points[:, 1] == 0) and projection.explained[1] == 0


def test_colours_one_per_value_most_common_first_and_null_grey() -> None:
    paint = colours(["cat", "dog", "dog", None, "cat", "dog"], 6)
    assert [e[0] for e in paint.entries] == ["dog", "cat", "NULL"]
    assert [e[2] for e in paint.entries] == [3, 2, 1]
    assert tuple(paint.rgb[1]) == PALETTE[0] and tuple(paint.rgb[0]) == PALETTE[1]
    assert tuple(paint.rgb[3]) == GREY
    digits = colours([3, 1, 2, 1], 4)   # numbers in their order
    assert [e[0] for e in digits.entries] == ["1", "2", "3"]


def test_many_strings_keep_the_commonest_and_many_numbers_get_a_scale() -> None:
    words = [f"w{i}" for i in range(30)] + ["w0"] * 5
    paint = colours(words, len(words))
    assert len(paint.entries) == len(PALETTE) and paint.entries[0][:3:2] == ("w0", 6)
    assert paint.entries[-1][0] == "11 other values" and paint.entries[-1][2] == 11
    values = [float(i) for i in range(100)] + [None]
    scale = colours(values, len(values))
    assert scale.scale == ("0", "99") and not scale.entries
    assert tuple(scale.rgb[-1]) == GREY and tuple(scale.rgb[0]) != tuple(scale.rgb[99])
    plain = colours(None, 3)
    assert not plain.entries and (plain.rgb == PALETTE[0]).all()


def test_thumbnails_are_spread_one_per_cell() -> None:
    layout = Layout.of(900, legend=True)
    rng = np.random.default_rng(0)
    points = rng.standard_normal((5_000, 2))
    xy = layout.place(points)
    assert xy[:, 0].min() >= layout.left and xy[:, 0].max() <= layout.right
    assert xy[:, 1].min() >= layout.top and xy[:, 1].max() <= layout.bottom
    picked = spread_sample(xy, 40, layout)
    assert len(picked) == 40 and len(set(picked.tolist())) == 40
    # spread: no two chosen points closer than a few pixels
    chosen = xy[picked].astype(float)
    gaps = np.linalg.norm(chosen[:, None] - chosen[None], axis=2) + np.eye(40) * 1e9
    assert gaps.min() > 10
    assert len(spread_sample(xy[:3], 40, layout)) == 3
    assert len(spread_sample(xy, 0, layout)) == 0


def test_the_picture_has_its_points_legend_and_thumbnails() -> None:
    rng = np.random.default_rng(0)
    labels = [i % 3 for i in range(300)]
    points = np.array([[(i % 3) * 5.0, 0.0] for i in range(300)]) + rng.normal(0, .3, (300, 2))
    paint = colours(labels, 300)
    opened: list[int] = []

    def open_image(row: int, side: int) -> Image.Image | None:
        opened.append(row)
        return None if row % 2 else Image.new("RGB", (side, side), (0, 0, 0))

    png, width, height, shown = draw(points, paint, 900, "t: 300 images", ("PC1", "PC2"),
                                     "label", 12, open_image)
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert picture.shape == (height, width, 3) and width == 900
    assert shown == sum(1 for row in opened if row % 2 == 0) and 0 < shown <= 12
    found = {tuple(c) for c in picture.reshape(-1, 3).tolist()}
    assert {PALETTE[0], PALETTE[1], PALETTE[2]} <= found
    # each label's points lie where its cluster was put: label 0 left of 1, 1 left of 2
    xs = [np.nonzero((picture == PALETTE[k]).all(axis=2))[1].mean() for k in range(3)]
    assert xs[0] < xs[1] < xs[2]


def test_points_all_in_one_place_get_one_thumbnail_and_a_picture() -> None:
    layout = Layout.of(900, legend=False)
    xy = layout.place(np.zeros((1_000, 2)))
    assert len(spread_sample(xy, 400, layout)) == 1
    png, *_ = draw(np.zeros((1_000, 2)), colours(None, 1_000), 400, "same", ("PC1", "PC2"),
                   None, 400, lambda row, side: Image.new("RGB", (side, side)))
    assert png.startswith(b"\x89PNG")


def test_thumbnails_never_cover_one_another() -> None:
    from thanosql_kernel.engine.map_drawing import thumbnail_side

    points = np.random.default_rng(3).standard_normal((200, 2))
    given: dict[int, tuple[int, int, int]] = {}

    def open_image(row: int, side: int) -> Image.Image:
        given[row] = (row % 250, 255 - row % 250, 77)   # a colour of its own
        return Image.new("RGB", (side, side), given[row])

    png, _, _, shown = draw(points, colours(None, 200), 900, "t", ("PC1", "PC2"), None, 40,
                            open_image)
    side = thumbnail_side(Layout.of(900, legend=False), 40)
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert shown == len(given) and shown >= 10
    for colour in given.values():   # each thumbnail whole: nothing drawn over it
        assert int((picture == colour).all(axis=2).sum()) == side * side
