"""Each user mistake ends in one clear message naming the file or key, a non-zero exit and no output."""

from __future__ import annotations

import json
import zipfile

import geopandas as gpd
import numpy as np
import pytest
import shapely
from rasterio.transform import from_origin

from tests.support import emd_for, flat_package, leftovers, mean_package, run_cli, write_dlpk, write_raster
from tests.support.onnx_models import mean_linear_model

X, Y = 500000.0, 4650000.0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("errors")
    rng = np.random.default_rng(3)
    raster = write_raster(folder / "scene.tif", rng.integers(0, 256, size=(3, 100, 100), dtype=np.uint8))
    houses = gpd.GeoDataFrame(
        {"name": ["a", "b"]},
        geometry=[shapely.box(X + 5, Y - 10, X + 8, Y - 7), shapely.box(X + 20, Y - 30, X + 24, Y - 26)],
        crs="EPSG:32633",
    )
    features = folder / "houses.gpkg"
    houses.to_file(features)
    model = mean_linear_model(folder / "model.onnx", np.eye(2, 3), np.zeros(2), 3, 16, 16)
    return folder, raster, features, houses, model


def classify(data, tmp_path, model, **overrides):
    folder, raster, features, _, _ = data
    args = {"--image": raster, "--model": model, "--features": features, "--out": tmp_path / "out.gpkg", **overrides}
    flat = [str(item) for pair in args.items() for item in pair if item is not None]
    return run_cli("classify", *flat)


def assert_fails(result, tmp_path, *fragments):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("geoclassify: error: ")
    for fragment in fragments:
        assert fragment in message, message
    assert not leftovers(tmp_path, "out"), "a partial output was left behind"


def package(tmp_path, data, name="m", folder="", extra=None, **emd):
    return write_dlpk(tmp_path / f"{name}.dlpk", emd_for(**emd), data[4], folder=folder, extra=extra)


def test_corrupt_and_non_zip_packages(data, tmp_path):
    good = package(tmp_path, data).read_bytes()
    corrupt = tmp_path / "corrupt.dlpk"
    corrupt.write_bytes(good[: len(good) // 2])
    assert_fails(classify(data, tmp_path, corrupt), tmp_path, "corrupt.dlpk", "not a readable .dlpk")
    text = tmp_path / "text.dlpk"
    text.write_text("this is not a zip")
    assert_fails(classify(data, tmp_path, text), tmp_path, "text.dlpk", "zip archive")


def test_two_emd_files(data, tmp_path):
    two = package(tmp_path, data, extra={"other.emd": json.dumps(emd_for())})
    assert_fails(classify(data, tmp_path, two), tmp_path, "2 .emd files", "m.emd", "other.emd", "exactly one")


def test_missing_model_file(data, tmp_path):
    missing = write_dlpk(tmp_path / "nomodel.dlpk", emd_for(model_file=".\\weights.onnx"), None)
    assert_fails(classify(data, tmp_path, missing), tmp_path, "ModelFile", "weights.onnx", "not found")


def test_wrong_model_type(data, tmp_path):
    wrong = package(tmp_path, data, ModelType="ObjectDetection")
    assert_fails(classify(data, tmp_path, wrong), tmp_path, "ModelType", "ObjectDetection", "ObjectClassification")


def test_extract_bands_beyond_the_raster(data, tmp_path):
    model = mean_linear_model(tmp_path / "model.onnx", np.eye(2, 3), np.zeros(2), 3, 16, 16)
    emd = emd_for(ExtractBands=[0, 1, 5])
    pkg = write_dlpk(tmp_path / "bands.dlpk", emd, model)
    assert_fails(classify(data, tmp_path, pkg), tmp_path, "scene.tif", "3 band(s)", "band index 5", "ExtractBands")


def test_input_size_and_class_count_disagree_with_emd(data, tmp_path):
    size = package(tmp_path, data, name="size", ImageWidth=32, ImageHeight=32)
    assert_fails(classify(data, tmp_path, size), tmp_path, "ImageHeight is 32", "16x16")
    three = [*emd_for()["Classes"], {"Value": 3, "Name": "Destroyed"}]
    classes = package(tmp_path, data, name="classes", Classes=three)
    assert_fails(classify(data, tmp_path, classes), tmp_path, "outputs 2 classes", "lists 3 Classes")
    bands = package(tmp_path, data, name="bands", ExtractBands=[0, 1])
    assert_fails(classify(data, tmp_path, bands), tmp_path, "ExtractBands selects 2 bands but the model takes 3")


def test_unsupported_frameworks_are_named(data, tmp_path):
    cntk = package(tmp_path, data, name="cntk", Framework="CNTK", model_file="model.onnx")
    assert_fails(
        classify(data, tmp_path, cntk),
        tmp_path,
        "Framework 'CNTK'",
        "runs: ONNX, PyTorch (TorchScript)",
        "Export the model to ONNX",
    )


def test_unreadable_or_missing_inputs(data, tmp_path):
    folder, raster, features, _, _ = data
    pkg = package(tmp_path, data)
    bad_raster = tmp_path / "broken.tif"
    bad_raster.write_text("not an image")
    assert_fails(classify(data, tmp_path, pkg, **{"--image": bad_raster}), tmp_path, "broken.tif", "cannot be read")
    assert_fails(classify(data, tmp_path, pkg, **{"--image": tmp_path / "nope.tif"}), tmp_path, "nope.tif", "not found")
    bad_layer = tmp_path / "broken.gpkg"
    bad_layer.write_text("not a geopackage")
    assert_fails(classify(data, tmp_path, pkg, **{"--features": bad_layer}), tmp_path, "broken.gpkg", "cannot be")
    assert_fails(classify(data, tmp_path, tmp_path / "nomodel.dlpk"), tmp_path, "nomodel.dlpk", "not found")


def test_missing_crs_on_one_side(data, tmp_path):
    folder, raster, features, houses, _ = data
    pkg = package(tmp_path, data)
    bare = write_raster(
        tmp_path / "bare.tif", np.zeros((3, 100, 100), np.uint8), crs=None, transform=from_origin(X, Y, 0.5, 0.5)
    )
    assert_fails(classify(data, tmp_path, pkg, **{"--image": bare}), tmp_path, "bare.tif", "no coordinate system")
    no_crs = tmp_path / "nocrs.shp"
    houses.set_crs(None, allow_override=True).to_file(no_crs)
    assert_fails(classify(data, tmp_path, pkg, **{"--features": no_crs}), tmp_path, "nocrs.shp", "no coordinate system")
    # GeoJSON without a CRS is WGS 84 by definition; UTM numbers in it are caught, not reprojected to infinity.
    utm_numbers = tmp_path / "utm_numbers.geojson"
    houses.set_crs(None, allow_override=True).to_file(utm_numbers)
    assert_fails(
        classify(data, tmp_path, pkg, **{"--features": utm_numbers}),
        tmp_path,
        "utm_numbers.geojson",
        "are not degrees",
        "Check the layer's CRS",
    )
    # Both without a CRS: the coordinates are taken as they are.
    result = classify(data, tmp_path, pkg, **{"--image": bare, "--features": no_crs})
    assert result.returncode == 0, result.stderr
    assert "2 classified" in result.stderr


def test_features_that_miss_the_raster_warn_and_keep_every_feature(data, tmp_path):
    folder, raster, features, houses, _ = data
    far = houses.copy()
    far.geometry = far.geometry.translate(10000, 0)
    path = tmp_path / "far.gpkg"
    far.to_file(path)
    result = classify(data, tmp_path, package(tmp_path, data), **{"--features": path})
    assert result.returncode == 0, result.stderr
    assert "warning: no feature of" in result.stderr and "overlaps raster" in result.stderr
    got = gpd.read_file(tmp_path / "out.gpkg")
    assert len(got) == 2 and got["ClassLabel"].isna().all() and (got["Coverage"] == 0).all()


def test_model_arguments(data, tmp_path):
    pkg = package(tmp_path, data)
    for bad, fragment in (
        ("colour=red", "unknown model argument 'colour'"),
        ("batch_size=0", "batch_size='0'"),
        ("test_time_augmentation=maybe", "true or false"),
        ("batch_size", "NAME=VALUE"),
    ):
        result = classify(data, tmp_path, pkg, **{"--argument": bad})
        expected = (
            [fragment]
            if bad == "batch_size"
            else [fragment, "batch_size (int, default 16)", "test_time_augmentation (bool"]
        )
        assert_fails(result, tmp_path, *expected)
    ok = classify(data, tmp_path, pkg, **{"--argument": "batch_size=1"})
    assert ok.returncode == 0, ok.stderr


def test_label_field_clash_and_existing_output(data, tmp_path):
    folder, raster, features, houses, _ = data
    pkg = package(tmp_path, data)
    assert_fails(
        classify(data, tmp_path, pkg, **{"--label-field": "NAME"}),
        tmp_path,
        "already has a field 'name'",
        "--label-field",
    )
    out = tmp_path / "out.gpkg"
    out.write_bytes(b"precious")
    result = classify(data, tmp_path, pkg)
    assert result.returncode == 1 and "exists; pass --overwrite" in result.stderr
    assert out.read_bytes() == b"precious"
    result = classify(data, tmp_path, pkg, **{"--overwrite": None})
    assert result.returncode == 0, result.stderr
    assert len(gpd.read_file(out)) == 2
    renamed = tmp_path / "renamed.gpkg"
    result = classify(data, tmp_path, pkg, **{"--label-field": "Condition", "--out": renamed})
    assert result.returncode == 0
    assert {"Condition", "ClassValue", "Confidence", "Coverage"} <= set(gpd.read_file(renamed).columns)


def test_zip_slip_and_symlinks_are_refused(data, tmp_path):
    slip = tmp_path / "slip.dlpk"
    with zipfile.ZipFile(slip, "w") as archive:
        archive.writestr("m.emd", json.dumps(emd_for()))
        archive.write(data[4], "model.onnx")
        archive.writestr("../../evil.txt", "gotcha")
    assert_fails(classify(data, tmp_path, slip), tmp_path, "slip.dlpk", "outside the package")
    assert not (tmp_path.parent / "evil.txt").exists()
    link = tmp_path / "link.dlpk"
    with zipfile.ZipFile(link, "w") as archive:
        archive.writestr("m.emd", json.dumps(emd_for()))
        info = zipfile.ZipInfo("model.onnx")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "/etc/passwd")
    assert_fails(classify(data, tmp_path, link), tmp_path, "link.dlpk", "symbolic link")


def test_mean_model_sanity(data, tmp_path):
    """The mean model's labels follow the brighter band: a check that errors tests use a working setup."""
    pkg = mean_package(tmp_path, [[1, 0, 0], [0, 1, 0]], [0, 0])
    assert classify(data, tmp_path, pkg).returncode == 0
    assert flat_package  # imported for parity with other modules


def test_warnings_for_cell_size_and_unchosen_layers(data, tmp_path):
    folder, raster, features, houses, _ = data
    cell = {"x": 1.0, "y": 1.0, "spatialReference": {"wkid": 32633}}
    pkg = package(tmp_path, data, MinCellSize=cell, MaxCellSize={**cell, "x": 2.0, "y": 2.0})
    two = tmp_path / "two.gpkg"
    houses.to_file(two, layer="first")
    houses.iloc[:1].to_file(two, layer="second")
    result = classify(data, tmp_path, pkg, **{"--features": two})
    assert result.returncode == 0, result.stderr
    assert "0.5 x 0.5 cells, finer than the model was trained on (MinCellSize 1 x 1)" in result.stderr
    assert "has 2 layers (first, second); reading 'first'" in result.stderr
    assert len(gpd.read_file(tmp_path / "out.gpkg")) == 2
    other_crs = package(tmp_path, data, name="other", MinCellSize={**cell, "spatialReference": {"wkid": 4326}})
    quiet = classify(data, tmp_path, other_crs, **{"--out": tmp_path / "out2.gpkg"})
    assert "cells, finer" not in quiet.stderr


def test_shapefile_label_field_length(data, tmp_path):
    result = classify(
        data, tmp_path, package(tmp_path, data), **{"--out": tmp_path / "out.shp", "--label-field": "DamageClassLabel"}
    )
    assert_fails(result, tmp_path, "longer than the 10 characters")
