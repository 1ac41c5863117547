"""Every vector format in and out; points, lines and multi-part features; CropSizeFixed 0 envelopes."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from tests.support import flat_package, leftovers, run_classify, write_raster
from tests.support.reference import imagenet, reference_chips, reference_envelope_chips, softmax

ORIGIN_X, ORIGIN_Y, RES = 500000.0, 4650000.0, 0.5
NAMES = np.array(["Intact", "Damaged"])


@pytest.fixture(scope="module")
def raster(tmp_path_factory):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, size=(3, 200, 200), dtype=np.uint8)
    return write_raster(tmp_path_factory.mktemp("formats") / "scene.tif", data)


def mixed_polygons() -> gpd.GeoDataFrame:
    square = shapely.box(ORIGIN_X + 10, ORIGIN_Y - 20, ORIGIN_X + 14, ORIGIN_Y - 16)
    multi = shapely.MultiPolygon(
        [
            shapely.box(ORIGIN_X + 40, ORIGIN_Y - 50, ORIGIN_X + 42, ORIGIN_Y - 48),
            shapely.box(ORIGIN_X + 44, ORIGIN_Y - 46, ORIGIN_X + 45, ORIGIN_Y - 45),
        ]
    )
    triangle = shapely.Polygon(
        [(ORIGIN_X + 60, ORIGIN_Y - 80), (ORIGIN_X + 66, ORIGIN_Y - 80), (ORIGIN_X + 62, ORIGIN_Y - 74)]
    )
    return gpd.GeoDataFrame(
        {"name": ["square", "multi", "triangle"], "floors": [1, 2, 3]},
        geometry=[square, multi, triangle],
        crs="EPSG:32633",
    )


def expected(raster, geometries, weights, bias, blacken, fixed=True):
    cut = (
        reference_chips(raster, geometries, 16, [0, 1, 2], blacken)
        if fixed
        else reference_envelope_chips(raster, geometries, 16, [0, 1, 2], blacken)
    )
    probs = softmax(imagenet(cut).reshape(len(cut), -1) @ weights.T + bias)
    return NAMES[probs.argmax(axis=1)], probs.max(axis=1)


def read_any(path):
    if str(path).endswith(".parquet"):
        return gpd.read_parquet(path)
    return gpd.read_file(path)


@pytest.mark.parametrize("in_ext", [".gpkg", ".shp", ".geojson", ".fgb", ".parquet"])
@pytest.mark.parametrize("out_ext", [".gpkg", ".shp", ".geojson", ".fgb", ".parquet"])
def test_every_format_in_and_out(raster, tmp_path, in_ext, out_ext):
    package, weights, bias = flat_package(tmp_path, BlackenAroundFeature=1)
    frame = mixed_polygons()
    source = tmp_path / f"houses{in_ext}"
    frame.to_parquet(source) if in_ext == ".parquet" else frame.to_file(source)
    out = tmp_path / f"result{out_ext}"
    result = run_classify(raster, package, source, out, "-q")
    assert result.returncode == 0, result.stderr
    got = read_any(out).set_index("name").loc[["square", "multi", "triangle"]]  # FlatGeobuf may reorder
    labels, conf = expected(raster, frame.geometry, weights, bias, True)
    assert list(got["ClassLabel"]) == list(labels)
    np.testing.assert_allclose(got["Confidence"], conf, atol=1e-5)
    assert list(got["floors"]) == [1, 2, 3]
    assert got.crs.to_epsg() == 32633
    assert got.geometry.iloc[1].geom_type == "MultiPolygon"
    if out_ext != ".shp":  # shapefiles have no single/multi distinction; other formats keep the input's types
        given = read_any(source).set_index("name").loc[["square", "multi", "triangle"]]
        assert list(got.geom_type) == list(given.geom_type)
    assert not [p for p in leftovers(tmp_path, "result") if "partial" in p]


def test_points_lines_and_crop_size_fixed_0(raster, tmp_path):
    package, weights, bias = flat_package(tmp_path, CropSizeFixed=0, BlackenAroundFeature=1)
    point = shapely.Point(ORIGIN_X + 30.3, ORIGIN_Y - 30.7)
    line = shapely.LineString([(ORIGIN_X + 50.2, ORIGIN_Y - 60.1), (ORIGIN_X + 53.9, ORIGIN_Y - 57.2)])
    flat_line = shapely.LineString([(ORIGIN_X + 70.2, ORIGIN_Y - 60.0), (ORIGIN_X + 73.9, ORIGIN_Y - 60.0)])
    small = shapely.box(ORIGIN_X + 20.1, ORIGIN_Y - 80.2, ORIGIN_X + 23.3, ORIGIN_Y - 78.0)
    large = shapely.box(ORIGIN_X + 20.0, ORIGIN_Y - 60.0, ORIGIN_X + 35.0, ORIGIN_Y - 50.0)  # 30 x 20 px > 16
    frame = gpd.GeoDataFrame(
        {"kind": ["point", "line", "flat_line", "small", "large"]},
        geometry=[point, line, flat_line, small, large],
        crs="EPSG:32633",
    )
    source = tmp_path / "mixed.gpkg"
    for kind in ("point", "line", "flat_line", "small", "large"):
        part = frame[frame["kind"] == kind]
        part.to_file(source, layer=kind)
    outputs = {}
    for kind in ("point", "line", "flat_line", "small", "large"):
        out = tmp_path / f"{kind}.gpkg"
        result = run_classify(raster, package, source, out, "--features-layer", kind)
        assert result.returncode == 0, result.stderr
        outputs[kind] = gpd.read_file(out)
        if kind in ("point", "line", "flat_line"):
            assert "BlackenAroundFeature has no meaning for points and lines" in result.stderr
            assert result.stderr.count("warning:") == 1
    # Points take the fixed window (no area to crop); polygons larger than the chip too; the rest the envelope.
    for kind, fixed, blacken in (
        ("point", True, False),
        ("large", True, True),
        ("line", False, False),
        ("flat_line", False, False),
        ("small", False, True),
    ):
        geometry = frame.loc[frame["kind"] == kind, "geometry"]
        labels, conf = expected(raster, geometry, weights, bias, blacken, fixed=fixed)
        assert list(outputs[kind]["ClassLabel"]) == list(labels), kind
        np.testing.assert_allclose(outputs[kind]["Confidence"], conf, atol=1e-5, err_msg=kind)


def test_layer_choice_and_missing_layer(raster, tmp_path):
    package, _, _ = flat_package(tmp_path)
    source = tmp_path / "two_layers.gpkg"
    mixed_polygons().to_file(source, layer="buildings")
    mixed_polygons().iloc[:1].to_file(source, layer="sheds")
    out = tmp_path / "out.gpkg"
    result = run_classify(raster, package, source, out, "--features-layer", "sheds", "--out-layer", "classified")
    assert result.returncode == 0, result.stderr
    assert pyogrio.list_layers(out)[:, 0].tolist() == ["classified"]
    assert len(gpd.read_file(out)) == 1
    missing = run_classify(raster, package, source, tmp_path / "x.gpkg", "--features-layer", "garages")
    assert missing.returncode == 1
    assert "has no layer 'garages'" in missing.stderr and "buildings, sheds" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert not (tmp_path / "x.gpkg").exists()
