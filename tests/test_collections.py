"""Image collections: inputs, no feature layer, processing modes, on real NEON imagery and generated rasters."""

from __future__ import annotations

import json
import shutil
import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from rasterio.warp import transform_geom

from tests.support import SHARED_DATA, flat_package, run_classify, run_cli
from tests.support.reference import imagenet, softmax

NEON = SHARED_DATA / "neon-trees"
CROPS = sorted((NEON / "crops").glob("*.png"))
TILES = [NEON / "2018_SJER_3_252000_4107000_image_477.tif", NEON / "OSBS_029.tif"]
NAMES = np.array(["Intact", "Damaged"])
pytestmark = pytest.mark.skipif(not NEON.exists(), reason="../shared/data is not beside the repository")


def centre_chip(path, size: int) -> np.ndarray:
    """The CropSizeFixed 1 chip of a whole image: its centre, ``size`` pixels square (images here are larger)."""
    with rasterio.open(path) as src:
        row = int(np.floor(src.height / 2 - size / 2 + 0.5))
        col = int(np.floor(src.width / 2 - size / 2 + 0.5))
        return src.read([1, 2, 3], window=rasterio.windows.Window(col, row, size, size)).astype("float32")


def expected_labels(chips: np.ndarray, weights, bias):
    probs = softmax(imagenet(chips).reshape(len(chips), -1) @ weights.T + bias)
    return NAMES[probs.argmax(axis=1)], probs.max(axis=1)


def crowns(tile) -> gpd.GeoDataFrame:
    """Tree crowns from DeepForest's CSV boxes (pixel coordinates, y down) as polygons in the tile's CRS."""
    boxes = pd.read_csv(tile.with_suffix(".csv"))
    with rasterio.open(tile) as src:
        polygons = [
            shapely.Polygon(
                [
                    src.transform * (x, y)
                    for x, y in ((r.xmin, r.ymin), (r.xmax, r.ymin), (r.xmax, r.ymax), (r.xmin, r.ymax))
                ]
            )
            for r in boxes.itertuples()
        ]
        return gpd.GeoDataFrame({"tile": tile.name, "box": range(len(boxes))}, geometry=polygons, crs=src.crs)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".gpkg"])
def test_crops_without_georeference_make_a_table(tmp_path, suffix):
    package, weights, bias = flat_package(tmp_path, size=32)
    out = tmp_path / f"trees{suffix}"
    result = run_cli_images(NEON / "crops", package, out)
    assert result.returncode == 0, result.stderr
    table = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".gpkg": gpd.read_file}[suffix](out)
    assert "geometry" not in table.columns and "WKT" not in table.columns
    assert list(table["ImageID"]) == [str(NEON / "crops" / p.name) for p in CROPS]
    labels, conf = expected_labels(np.stack([centre_chip(p, 32) for p in CROPS]), weights, bias)
    assert list(table["ClassLabel"]) == list(labels)
    np.testing.assert_allclose(table["Confidence"], conf, atol=1e-5)
    assert "3 images read, 3 classified, 0 unreadable" in result.stderr


def test_parallel_factor_without_features_runs_the_images_on_workers(tmp_path):
    package, _, _ = flat_package(tmp_path, size=32)
    assert run_cli_images(NEON / "crops", package, tmp_path / "here.csv").returncode == 0
    result = run_cli_images(NEON / "crops", package, tmp_path / "trees.csv", "--parallel-factor", "2")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr and "3 images read, 3 classified" in result.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "trees.csv"), pd.read_csv(tmp_path / "here.csv"))


def run_cli_images(image, package, out, *extra):
    """``classify`` without a feature layer: each image is one object."""
    return run_cli("classify", "--image", image, "--model", package, "--out", out, *extra)


def test_georeferenced_tiles_make_footprints_and_unreadable_images_make_error_rows(tmp_path):
    folder = tmp_path / "tiles"
    folder.mkdir()
    for tile in TILES:
        shutil.copy(tile, folder / tile.name)
    (folder / "broken.tif").write_text("not an image")
    package, weights, bias = flat_package(tmp_path, size=32, CropSizeFixed=0)
    out = tmp_path / "footprints.gpkg"
    result = run_cli_images(folder, package, out, "--out-crs", "EPSG:4326")
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    assert list(got["ImageID"]) == [str(folder / n) for n in (TILES[0].name, TILES[1].name, "broken.tif")]
    assert got.crs.to_epsg() == 4326
    for i, tile in enumerate(TILES):
        with rasterio.open(tile) as src:
            outline = shapely.box(*src.bounds)
            want = shapely.geometry.shape(transform_geom(src.crs, "EPSG:4326", shapely.geometry.mapping(outline)))
        assert got.geometry.iloc[i].symmetric_difference(want).area < 1e-4 * want.area
        assert got["ClassLabel"].iloc[i] in NAMES
        with rasterio.open(tile) as src:  # NEON marks 255 as NoData: coverage is the valid share, sampled at 32 px
            valid = (src.read_masks().min(axis=0) > 0).mean()
        assert abs(got["Coverage"].iloc[i] - valid) < 0.05
    assert pd.isna(got["ClassLabel"].iloc[2]) and got.geometry.iloc[2] is None
    assert "broken.tif" in got["Error"].iloc[2] and "cannot be read" in got["Error"].iloc[2]
    assert "3 images read, 2 classified, 1 unreadable" in result.stderr


def test_a_mix_of_georeferenced_and_plain_images(tmp_path):
    package, _, _ = flat_package(tmp_path, size=32)
    out = tmp_path / "mixed.gpkg"
    result = run_cli_images(NEON, package, out, "--recursive")
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    assert len(got) == 5 and got.geometry.isna().sum() == 3
    assert got.crs.to_epsg() == 32611  # the first georeferenced image's CRS
    assert "3 of 5 images have no georeference" in result.stderr


def test_image_inputs_list_glob_stac_and_repeated(tmp_path):
    package, _, _ = flat_package(tmp_path, size=32)
    archive = tmp_path / "crops.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(CROPS[1], "inside/tree.png")
    vsi = f"/vsizip/{archive}/inside/tree.png"  # a GDAL URI, passed to GDAL as it is
    listing = tmp_path / "images.txt"
    listing.write_text(f"# crops\n{CROPS[0]}\n\n{vsi}\n{CROPS[2]}\n")
    stac = tmp_path / "items.json"
    items = [
        {
            "type": "Feature",
            "id": p.stem,
            "assets": {"visual": {"href": str(p), "type": "image/png"}, "thumb": {"href": str(p), "type": "image/png"}},
        }
        for p in CROPS[:2]
    ]
    stac.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    cases = {
        "list": ([listing], [str(CROPS[0]), vsi, str(CROPS[2])]),
        "glob": ([str(NEON / "crops" / "*TSCA*.png")], [str(CROPS[2])]),
        "stac": ([stac, "--asset", "visual"], [str(CROPS[0]), str(CROPS[1])]),
        "repeated": ([CROPS[1], "--image", CROPS[0]], [str(CROPS[1]), str(CROPS[0])]),
    }
    for name, (args, ids) in cases.items():
        out = tmp_path / f"{name}.csv"
        result = run_cli_images(*args[:1], package, out, *args[1:])
        assert result.returncode == 0, (name, result.stderr)
        assert list(pd.read_csv(out)["ImageID"]) == ids, name
    ambiguous = run_cli_images(stac, package, tmp_path / "x.csv")
    assert ambiguous.returncode == 1 and "choose one with --asset KEY" in ambiguous.stderr
    nothing = run_cli_images(str(tmp_path / "*.nothing"), package, tmp_path / "y.csv")
    assert nothing.returncode == 1 and "matches no image file" in nothing.stderr


def test_crowns_in_items_and_mosaic_mode(tmp_path):
    package, weights, bias = flat_package(tmp_path, size=16, BlackenAroundFeature=1)
    both = pd.concat([crowns(TILES[0]).to_crs("EPSG:4326"), crowns(TILES[1]).to_crs("EPSG:4326")])
    lost = gpd.GeoDataFrame(
        {"tile": ["none"], "box": [-1]}, geometry=[shapely.box(0, 0, 0.001, 0.001)], crs="EPSG:4326"
    )
    features = tmp_path / "crowns.gpkg"
    gpd.GeoDataFrame(pd.concat([both, lost], ignore_index=True), crs="EPSG:4326").to_file(features)
    singles = {}
    for tile in TILES:
        out = tmp_path / f"{tile.stem}.gpkg"
        result = run_classify(tile, package, features, out)
        assert result.returncode == 0, result.stderr
        singles[tile.name] = gpd.read_file(out)
    items_out = tmp_path / "items.gpkg"
    result = run_classify(TILES[0], package, features, items_out, "--image", TILES[1], "--processing-mode", "items")
    assert result.returncode == 0, result.stderr
    items = gpd.read_file(items_out)
    n = len(both)
    assert len(items) == n + 1  # each crown lies on one tile; the lost feature keeps one empty row
    assert f"{n + 1} features read, {n} classified" in result.stderr
    for tile in TILES:
        on_tile = items[items["ItemID"] == str(tile)]
        single = singles[tile.name].set_index(["tile", "box"]).loc[on_tile.set_index(["tile", "box"]).index]
        assert (on_tile["tile"] == tile.name).all()
        assert list(on_tile["ClassLabel"]) == list(single["ClassLabel"])
        np.testing.assert_allclose(on_tile["Confidence"], single["Confidence"], atol=1e-6)
    assert items["ItemID"].isna().sum() == 1 and pd.isna(items["ClassLabel"].iloc[-1])
    mosaic_out = tmp_path / "mosaic.gpkg"
    result = run_classify(TILES[0], package, features, mosaic_out, "--image", TILES[1])
    assert result.returncode == 0, result.stderr
    mosaic = gpd.read_file(mosaic_out)
    assert len(mosaic) == n + 1 and "ItemID" not in mosaic.columns
    assert mosaic["ClassLabel"].notna().sum() == n
    # The first tile is the mosaic's grid, so its crowns are cut exactly as from the tile alone.
    first = mosaic["tile"] == TILES[0].name
    np.testing.assert_allclose(
        mosaic.loc[first, "Confidence"], singles[TILES[0].name].loc[first, "Confidence"], atol=1e-6
    )


def test_extent_picks_the_images_it_meets(tmp_path):
    package, _, _ = flat_package(tmp_path, size=32)
    with rasterio.open(TILES[0]) as src:
        left, bottom, right, top = src.bounds
    inside = [str(left + 5), str(bottom + 5), str(left + 10), str(bottom + 10)]
    out = tmp_path / "one.gpkg"
    result = run_cli_images(NEON, package, out, "--extent", *inside)
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    assert list(got["ImageID"]) == [str(NEON / TILES[0].name)]
    assert "2 images read, 1 outside the extent left out, 1 classified" in result.stderr
