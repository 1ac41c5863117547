"""Chips line up with an independent reference cutter, through the CLI, in every CRS and at the edges."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely import affinity

from tests.support import flat_package, run_classify, write_raster
from tests.support.reference import imagenet, reference_chips, softmax

ORIGIN_X, ORIGIN_Y, RES = 500000.0, 4650000.0, 0.5


def random_polygons(rng: np.random.Generator, count: int, width_px: int, height_px: int) -> list:
    polygons = []
    for _ in range(count):
        cx = ORIGIN_X + rng.uniform(10, width_px - 10) * RES
        cy = ORIGIN_Y - rng.uniform(10, height_px - 10) * RES
        w, h = rng.uniform(2, 7, size=2)
        box = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        polygons.append(affinity.rotate(box, rng.uniform(0, 90)))
    return polygons


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alignment")
    rng = np.random.default_rng(42)
    data = rng.integers(0, 256, size=(3, 300, 340), dtype=np.uint8)
    raster = write_raster(folder / "scene.tif", data)
    polygons = random_polygons(rng, 60, 340, 300)
    frame = gpd.GeoDataFrame(
        {"house_id": np.arange(1, 61), "note": [f"h{i}" for i in range(60)]}, geometry=polygons, crs="EPSG:32633"
    )
    features = folder / "houses.gpkg"
    frame.to_file(features)
    return folder, raster, features, frame


def expected(raster, geometries, weights, bias, blacken, shift=(0, 0)):
    chips = imagenet(reference_chips(raster, geometries, 16, [0, 1, 2], blacken, shift))
    probs = softmax(chips.reshape(len(chips), -1) @ weights.T + bias)
    return probs.argmax(axis=1), probs.max(axis=1)


@pytest.mark.parametrize("blacken", [0, 1])
def test_chips_match_reference_and_a_shift_would_not(scene, tmp_path, blacken):
    folder, raster, features, frame = scene
    package, weights, bias = flat_package(tmp_path, BlackenAroundFeature=blacken)
    out = tmp_path / "out.gpkg"
    result = run_classify(raster, package, features, out)
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    labels, conf = expected(raster, frame.geometry, weights, bias, blacken)
    names = np.array(["Intact", "Damaged"])
    assert list(got["ClassLabel"]) == list(names[labels])
    assert list(got["ClassValue"]) == list(np.array([1, 2])[labels])
    np.testing.assert_allclose(got["Confidence"], conf, atol=1e-5)
    # The comparison has teeth: chips cut two pixels to the right would disagree with the output.
    _, shifted = expected(raster, frame.geometry, weights, bias, blacken, shift=(0, 2))
    assert np.mean(np.abs(shifted - got["Confidence"]) > 1e-3) > 0.8
    # Attributes, order and geometry are the input's.
    assert list(got["house_id"]) == list(frame["house_id"])
    assert list(got["note"]) == list(frame["note"])
    assert got.geometry.geom_equals_exact(frame.geometry, tolerance=1e-6).all()
    np.testing.assert_allclose(got["Coverage"], 1.0)
    assert "60 features read, 60 classified" in result.stderr


def test_features_in_wgs84_over_a_utm_raster(scene, tmp_path):
    folder, raster, features, frame = scene
    package, weights, bias = flat_package(tmp_path, BlackenAroundFeature=1)
    wgs84 = tmp_path / "houses_wgs84.geojson"
    frame.to_crs("EPSG:4326").to_file(wgs84)
    out = tmp_path / "out.geojson"
    result = run_classify(raster, package, wgs84, out)
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    assert got.crs.to_epsg() == 4326
    labels, conf = expected(raster, frame.geometry, weights, bias, True)
    assert list(got["ClassLabel"]) == list(np.array(["Intact", "Damaged"])[labels])
    np.testing.assert_allclose(got["Confidence"], conf, atol=1e-5)
    original = gpd.read_file(wgs84)
    assert got.geometry.geom_equals_exact(original.geometry, tolerance=1e-12).all()


def test_edge_outside_and_empty_features_are_kept(scene, tmp_path):
    folder, raster, features, frame = scene
    package, weights, bias = flat_package(tmp_path)
    right_edge = ORIGIN_X + 340 * RES
    bottom = ORIGIN_Y - 300 * RES
    geometries = [
        shapely.box(right_edge - 2, ORIGIN_Y - 40, right_edge + 2, ORIGIN_Y - 36),  # straddles the right edge
        shapely.box(ORIGIN_X - 1.5, bottom + 1, ORIGIN_X + 1.5, bottom + 4),  # straddles the left edge near the bottom
        shapely.box(right_edge + 100, ORIGIN_Y - 40, right_edge + 104, ORIGIN_Y - 36),  # wholly outside
        shapely.Polygon(),  # empty
        None,  # no geometry at all
        frame.geometry.iloc[0],  # inside
    ]
    layer = gpd.GeoDataFrame({"fid_": range(6)}, geometry=geometries, crs="EPSG:32633")
    path = tmp_path / "edges.gpkg"
    layer.to_file(path)
    out = tmp_path / "out.gpkg"
    result = run_classify(raster, package, path, out)
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    assert list(got["fid_"]) == list(range(6))
    inside = [0, 1, 5]
    labels, conf = expected(raster, [geometries[i] for i in inside], weights, bias, False)
    assert list(got["ClassLabel"].iloc[inside]) == list(np.array(["Intact", "Damaged"])[labels])
    np.testing.assert_allclose(got["Confidence"].iloc[inside], conf, atol=1e-5)
    # Coverage is the share of the 16 x 16 window on the raster: check against the window arithmetic.
    col = (right_edge - ORIGIN_X) / RES
    assert 0.3 < got["Coverage"].iloc[0] < 0.7
    assert got["Coverage"].iloc[0] == pytest.approx((col - np.floor(col - 8 + 0.5)) / 16)
    assert 0.1 < got["Coverage"].iloc[1] < 0.5
    assert got["Coverage"].iloc[5] == 1.0
    for i in (2, 3, 4):
        assert got["ClassLabel"].isna().iloc[i] and got["Coverage"].iloc[i] == 0
    assert "6 features read, 3 classified, 1 outside the raster" in result.stderr
    assert "2 with empty geometry" in result.stderr
