"""Cutting a tile's chips at once (one gather, one scanline fill for blackening) gives exactly the chips that
cutting them one at a time with shapely's point-in-polygon test gives: pixels, their type, validity, coverage."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from geoclassify.core.chips import ChipSpec, centres_inside, centres_inside_many, cut_chip
from geoclassify.runners.cutting import Region, cut_region

SPEC = ChipSpec(32, 32, fixed=True, blacken=True)


def _shape(rng: np.random.Generator, cx: float, cy: float) -> shapely.Geometry:
    """A random polygon near (cx, cy): a rotated rectangle, a star, one with a hole, or a multipolygon."""
    kind = rng.integers(0, 4)
    if kind == 0:
        w, h, a = rng.uniform(2, 25), rng.uniform(2, 25), rng.uniform(0, np.pi)
        box = shapely.box(-w / 2, -h / 2, w / 2, h / 2)
        return shapely.affinity.translate(shapely.affinity.rotate(box, a, use_radians=True), cx, cy)
    if kind == 1:
        n = int(rng.integers(5, 14))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(2, 14, n)
        return shapely.Polygon(np.column_stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)]))
    if kind == 2:
        outer = shapely.Point(cx, cy).buffer(rng.uniform(6, 15), quad_segs=int(rng.integers(2, 8)))
        hole = shapely.Point(cx + rng.uniform(-2, 2), cy + rng.uniform(-2, 2)).buffer(rng.uniform(1, 5))
        return outer.difference(hole)
    offsets = rng.uniform(-9, 9, (3, 2))
    parts = [shapely.Point(cx + dx, cy + dy).buffer(rng.uniform(1.5, 5), quad_segs=3) for dx, dy in offsets]
    return shapely.union_all(parts)


@pytest.mark.parametrize(("seed", "dtype"), [(s, d) for s in range(6) for d in ("float32", "uint8")])
def test_cut_region_equals_one_chip_at_a_time(seed: int, dtype: str) -> None:
    rng = np.random.default_rng(seed)
    size = 300
    pixels = rng.uniform(-5 if dtype == "float32" else 0, 250, (3, size, size)).astype(dtype)
    valid = rng.uniform(size=(size, size)) > 0.1
    pixels[:, ~valid] = 0
    region = Region(-40, 17, pixels, valid)
    count = 150  # dense enough that some polygons overlap others: those are blackened apart
    centres = rng.uniform(20, size - 20, (count, 2)) + np.array([region.col_off, region.row_off])
    polygons: list[shapely.Geometry | None] = [_shape(rng, cx, cy) for cx, cy in centres]
    polygons[3] = None  # a point or line: kept whole
    polygons[5] = shapely.Polygon([(60, -10), (80, 10), (80, -10), (60, 10)])  # invalid (a bow tie)
    windows = np.zeros((count, 4), dtype=np.int64)
    windows[:, 0] = np.floor(centres[:, 1] - SPEC.height / 2 + 0.5)
    windows[:, 1] = np.floor(centres[:, 0] - SPEC.width / 2 + 0.5)
    windows[:, 2:] = SPEC.height
    windows[::7, 2:] = (20, 27)  # some windows resized (CropSizeFixed 0)
    windows[:, 0] = np.clip(windows[:, 0], region.row_off, region.row_off + size - windows[:, 2])
    windows[:, 1] = np.clip(windows[:, 1], region.col_off, region.col_off + size - windows[:, 3])
    tree = shapely.STRtree(polygons)
    assert (tree.query(polygons, predicate="intersects")[0].size - (count - 1)) > 0  # some do overlap
    cut = 0
    for positions, stack in cut_region(region, windows, SPEC, polygons):
        for k, i in enumerate(positions):
            one = cut_chip(region.reader, windows[i], SPEC, polygons[i])
            np.testing.assert_array_equal(stack.pixels[k], one.pixels, err_msg=f"chip {i}")
            if (windows[i, 2], windows[i, 3]) == (SPEC.height, SPEC.width):  # not resampled: kept as read
                assert stack.pixels.dtype == one.pixels.dtype == pixels.dtype
            np.testing.assert_array_equal(stack.valid[k], one.valid)
            assert stack.coverage[k] == one.coverage
            cut += 1
    assert cut == count


def test_blackening_uses_pixel_centres_like_shapely_on_many_polygons() -> None:
    """Ten thousand random polygons in regions of their own: GDAL's burn equals shapely's contains at centres."""
    rng = np.random.default_rng(99)
    size = 48
    region = Region(0, 0, np.ones((1, size, size), dtype=np.float32), np.ones((size, size), dtype=bool))
    windows = np.array([[8, 8, SPEC.height, SPEC.width]])
    differing = 0
    for _ in range(10_000):
        polygon = _shape(rng, 24 + rng.uniform(-1, 1), 24 + rng.uniform(-1, 1))
        ((_, stack),) = cut_region(region, windows, SPEC, [polygon])
        one = cut_chip(region.reader, windows[0], SPEC, polygon)
        differing += int(not np.array_equal(stack.pixels[0], one.pixels))
    assert differing == 0


def test_polygons_through_pixel_centres_are_outside_on_their_boundary() -> None:
    """Edges and vertices exactly on pixel centres: those centres are outside, as shapely says."""
    region = Region(0, 0, np.ones((1, 48, 48), dtype=np.float32), np.ones((48, 48), dtype=bool))
    windows = np.array([[8, 8, SPEC.height, SPEC.width]] * 3)
    polygons = [
        shapely.box(12.5, 14.5, 30.5, 33.5),
        shapely.Polygon([(20.5, 10.5), (36.5, 24.5), (20.5, 38.5), (10.5, 24.5)]),
        shapely.box(12.5, 14.5, 30.5, 33.5).difference(shapely.box(18.5, 20.5, 22.5, 25.5)),
    ]
    ((positions, stack),) = cut_region(region, windows, SPEC, polygons)
    for k, i in enumerate(positions):
        one = cut_chip(region.reader, windows[i], SPEC, polygons[i])
        np.testing.assert_array_equal(stack.pixels[k], one.pixels)
        assert 0 < stack.pixels[k].sum() < SPEC.height * SPEC.width


@pytest.mark.parametrize("size", [24, 160])  # the span table's width and past it
def test_the_span_fill_equals_shapely_for_narrow_and_wide_chips(size: int) -> None:
    rng = np.random.default_rng(size)
    count = 60
    centres = rng.uniform(size * 0.3, size * 0.7, (count, 2))
    polygons = np.array([_shape(rng, cx, cy) for cx, cy in centres], dtype=object)
    polygons = polygons[shapely.is_valid(polygons)]
    offsets = rng.integers(-3, 3, (len(polygons), 2)).astype(np.float64)
    inside = centres_inside_many(polygons, offsets[:, 0], offsets[:, 1], size, size)
    for k, polygon in enumerate(polygons):
        one = centres_inside(polygon, offsets[k, 0], offsets[k, 1], 1.0, 1.0, size, size)
        np.testing.assert_array_equal(inside[k], one, err_msg=f"polygon {k}")
        assert one.any()
