"""Mosaics across CRSs against a GDAL warp, and the extent, cell-size and output-CRS environments, counted."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform_bounds
from rasterio.warp import transform as warp_transform

from tests.support import flat_package, run_classify, write_raster
from tests.support.reference import imagenet, reference_chips, softmax

X0, Y0 = 500000.0, 4650000.0
NAMES = np.array(["Intact", "Damaged"])


def pattern(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth scene, so a warped image and its source show the same thing."""
    return 120 + 60 * np.sin(x / 7.0) * np.cos(y / 9.0) + 40 * np.cos((x + y) / 5.0)


@pytest.fixture(scope="module")
def seam(tmp_path_factory):
    """Two rasters of one scene: A in UTM 33N at 1 m, B (east of A, overlapping 10 m) in ETRS89-LAEA at 0.8 m."""
    folder = tmp_path_factory.mktemp("seam")
    ta = from_origin(X0, Y0, 1.0, 1.0)
    cols, rows = np.meshgrid(np.arange(100) + 0.5, np.arange(80) + 0.5)
    xa, ya = ta * (cols, rows)
    a = np.stack([pattern(xa - X0, ya - Y0) + 10 * k for k in range(3)]).astype("float32")
    write_raster(folder / "a.tif", a, crs="EPSG:32633", transform=ta)
    xs, ys = warp_transform(
        "EPSG:32633", "EPSG:3035", [X0 + 90, X0 + 190, X0 + 90, X0 + 190], [Y0, Y0, Y0 - 80, Y0 - 80]
    )
    tb = from_origin(min(xs), max(ys), 0.8, 0.8)
    wb, hb = int((max(xs) - min(xs)) / 0.8), int((max(ys) - min(ys)) / 0.8)
    cb, rb = np.meshgrid(np.arange(wb) + 0.5, np.arange(hb) + 0.5)
    xb, yb = tb * (cb, rb)
    x33, y33 = warp_transform("EPSG:3035", "EPSG:32633", xb.ravel(), yb.ravel())
    base = pattern(np.array(x33) - X0, np.array(y33) - Y0).reshape(hb, wb)
    b = np.stack([base + 10 * k for k in range(3)]).astype("float32")
    write_raster(folder / "b.tif", b, crs="EPSG:3035", transform=tb)
    return folder


def warped_chip(paths, crs, transform, size, resampling=Resampling.nearest) -> np.ndarray:
    """The reference: GDAL's warp of each image onto the chip's grid (by default nearest, as geoclassify's
    --resampling), the first valid pixel winning."""
    chip = np.full((3, size, size), np.nan, dtype="float32")
    for path in paths:
        with rasterio.open(path) as src:
            bounds = transform_bounds(src.crs, crs, *src.bounds, densify_pts=21)
            # A fixed kernel scale (grid pixels per source pixel) makes GDAL's result independent of chunking.
            x_scale = (bounds[2] - bounds[0]) / transform.a / src.width
            y_scale = (bounds[3] - bounds[1]) / -transform.e / src.height
            out = np.full((3, size, size), np.nan, dtype="float32")
            reproject(
                src.read(),
                out,
                src_transform=src.transform,
                src_crs=src.crs,
                dst_transform=transform,
                dst_crs=crs,
                resampling=resampling,
                dst_nodata=np.nan,
                XSCALE=repr(x_scale),
                YSCALE=repr(y_scale),
            )
            if np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
                out = np.round(out)  # GDAL rounds when it warps into the source's integer type
        chip = np.where(np.isnan(chip), out, chip)
    return np.nan_to_num(chip, nan=0.0)


def test_a_feature_across_the_seam_gets_one_composited_chip(seam, tmp_path):
    package, weights, bias = flat_package(tmp_path, size=32)
    house = shapely.box(X0 + 94, Y0 - 50, X0 + 104, Y0 - 40)  # A ends at +100 m; B takes over
    gpd.GeoDataFrame({"id": [1]}, geometry=[house], crs="EPSG:32633").to_file(tmp_path / "house.gpkg")
    out = tmp_path / "out.gpkg"
    result = run_classify(seam / "a.tif", package, tmp_path / "house.gpkg", out, "--image", seam / "b.tif")
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    # The chip's grid: A's pixels (the mosaic takes the first image's grid), centred on the house.
    col_off = int(np.floor((X0 + 99 - X0) - 16 + 0.5))
    row_off = int(np.floor((Y0 - (Y0 - 45)) - 16 + 0.5))
    chip = warped_chip(
        [seam / "a.tif", seam / "b.tif"],
        rasterio.crs.CRS.from_epsg(32633),
        from_origin(X0 + col_off, Y0 - row_off, 1.0, 1.0),
        32,
    )
    assert (chip[:, :, 16:] != 0).all(), "the reference chip takes its right half from B"
    probs = softmax(imagenet(chip[None]).reshape(1, -1) @ weights.T + bias)
    assert got["ClassLabel"].iloc[0] == NAMES[probs.argmax()]
    assert got["Confidence"].iloc[0] == pytest.approx(probs.max(), abs=1e-4)
    assert got["Coverage"].iloc[0] == 1.0
    # Without B the right half of the chip is off the raster: a different chip, and half the coverage.
    alone = tmp_path / "alone.gpkg"
    assert run_classify(seam / "a.tif", package, tmp_path / "house.gpkg", alone).returncode == 0
    assert gpd.read_file(alone)["Coverage"].iloc[0] == pytest.approx(0.5, abs=0.07)


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    folder = tmp_path_factory.mktemp("field")
    rng = np.random.default_rng(11)
    raster = write_raster(folder / "field.tif", rng.integers(0, 255, (3, 400, 400), dtype=np.uint8))
    centres = rng.uniform(5, 195, size=(80, 2))
    houses = gpd.GeoDataFrame(
        {"id": range(80)},
        geometry=[shapely.box(X0 + x - 2, Y0 - y - 2, X0 + x + 2, Y0 - y + 2) for x, y in centres],
        crs="EPSG:32633",
    )
    houses.to_file(folder / "houses.gpkg")
    return folder, raster, houses


def test_extent_keeps_exactly_the_features_that_meet_it(field, tmp_path):
    folder, raster, houses = field
    package, _, _ = flat_package(tmp_path)
    box = (X0 + 50, Y0 - 150, X0 + 120, Y0 - 60)
    expected = set(houses.loc[houses.intersects(shapely.box(*box)), "id"])
    assert 5 < len(expected) < 70
    out = tmp_path / "extent.gpkg"
    result = run_classify(raster, package, folder / "houses.gpkg", out, "--extent", *map(str, box))
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    assert set(got["id"]) == expected and list(got["id"]) == sorted(expected)
    assert (
        f"80 features read, {80 - len(expected)} outside the extent left out, {len(expected)} classified"
        in result.stderr
    )
    # The same rectangle given in WGS 84 (its lon/lat envelope is a little larger, so a superset, never fewer).
    lonlat = transform_bounds("EPSG:32633", "EPSG:4326", *box)
    out4326 = tmp_path / "extent4326.gpkg"
    result = run_classify(
        raster, package, folder / "houses.gpkg", out4326, "--extent", *map(str, lonlat), "--extent-crs", "EPSG:4326"
    )
    assert result.returncode == 0, result.stderr
    wider = shapely.geometry.shape(
        rasterio.warp.transform_geom("EPSG:4326", "EPSG:32633", shapely.geometry.mapping(shapely.box(*lonlat)))
    )
    assert set(gpd.read_file(out4326)["id"]) == set(houses.loc[houses.intersects(wider), "id"]) >= expected


def test_cell_size_cuts_chips_at_that_resolution(field, tmp_path):
    folder, raster, houses = field
    package, weights, bias = flat_package(tmp_path, MinCellSize={"x": 0.5, "y": 0.5}, MaxCellSize={"x": 0.5, "y": 0.5})
    out = tmp_path / "coarse.gpkg"
    result = run_classify(raster, package, folder / "houses.gpkg", out, "--cell-size", "1.0")
    assert result.returncode == 0, result.stderr
    assert "1 x 1 cells, coarser than the model was trained on (MaxCellSize 0.5 x 0.5)" in result.stderr
    got = gpd.read_file(out)
    # Reference: GDAL warps the 0.5 m raster onto each 16 x 16 chip of 1 m cells (16 m of ground, not 8 m).
    confidences = []
    for house in houses.geometry[:20]:
        minx, miny, maxx, maxy = house.bounds
        col = int(np.floor(((minx + maxx) / 2 - X0) / 1.0 - 8 + 0.5))
        row = int(np.floor((Y0 - (miny + maxy) / 2) / 1.0 - 8 + 0.5))
        chip = warped_chip([raster], rasterio.crs.CRS.from_epsg(32633), from_origin(X0 + col, Y0 - row, 1.0, 1.0), 16)
        confidences.append(softmax(imagenet(chip[None]).reshape(1, -1) @ weights.T + bias).max())
    np.testing.assert_allclose(got["Confidence"][:20], confidences, atol=2e-3)  # uint8 rounding in the warp
    native = tmp_path / "native.gpkg"
    assert run_classify(raster, package, folder / "houses.gpkg", native).returncode == 0
    at_native = gpd.read_file(native)["Confidence"][:20].to_numpy()
    np.testing.assert_allclose(
        at_native,
        softmax(
            imagenet(reference_chips(raster, houses.geometry[:20], 16, [0, 1, 2], False)).reshape(20, -1) @ weights.T
            + bias
        ).max(axis=1),
        atol=1e-5,
    )
    assert np.mean(np.abs(at_native - got["Confidence"][:20].to_numpy()) > 1e-3) > 0.8


def test_out_crs_and_bad_settings(field, tmp_path):
    folder, raster, houses = field
    package, _, _ = flat_package(tmp_path)
    out = tmp_path / "wgs84.geojson"
    result = run_classify(raster, package, folder / "houses.gpkg", out, "--out-crs", "EPSG:4326")
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    assert got.crs.to_epsg() == 4326
    assert got.geometry.geom_equals_exact(houses.to_crs("EPSG:4326").geometry, tolerance=1e-9).all()
    for args, message in (
        (["--extent", "5", "5", "1", "1"], "XMIN must be below XMAX"),
        (["--cell-size", "-2"], "must be a positive number"),
        (["--out-crs", "EPSG:99999999"], "--out-crs 'EPSG:99999999' is not a coordinate system"),
        (["--processing-mode", "sideways"], "processing mode 'sideways' is not one of"),
    ):
        bad = run_classify(raster, package, folder / "houses.gpkg", tmp_path / "bad.gpkg", *args)
        assert bad.returncode == 1 and message in bad.stderr, (args, bad.stderr)
        assert not (tmp_path / "bad.gpkg").exists()
