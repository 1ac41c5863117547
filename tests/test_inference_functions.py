"""Esri Python inference functions, written in Esri's style in tests/inference_functions, run through the CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from conftest import emd_for, leftovers, run_classify, run_cli, write_raster
from reference import reference_chips

FUNCTIONS = Path(__file__).parent / "inference_functions"
X, Y = 500000.0, 4650000.0
CLASSES = [{"Value": 1, "Name": "Bright"}, {"Value": 2, "Name": "Dark"}, {"Value": 3, "Name": "Glowing"}]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Houses on a raster whose band 0 is bright in the east half and dark in the west."""
    folder = tmp_path_factory.mktemp("functions")
    rng = np.random.default_rng(4)
    data = rng.integers(0, 60, (3, 200, 200)).astype(np.uint8)
    data[0, :, 100:] += 150
    raster = write_raster(folder / "scene.tif", data)
    boxes = [shapely.box(X + x, Y - y - 3, X + x + 3, Y - y) for x, y in rng.uniform(8, 88, size=(30, 2))]
    gpd.GeoDataFrame({"id": range(30)}, geometry=boxes, crs="EPSG:32633").to_file(folder / "houses.gpkg")
    return folder, raster, folder / "houses.gpkg", boxes


def function_package(path: Path, function: str, extra: tuple[str, ...] = (), **emd) -> Path:
    """A .dlpk with the EMD, the function and its helper modules, as Esri users ship them."""
    definition = emd_for(model_file=None, Framework="PyTorch", InferenceFunction=function, Classes=CLASSES, **emd)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.emd", json.dumps(definition))
        for name in (function, *extra):
            archive.write(FUNCTIONS / name, name)
    return path


def mean_band0(raster, boxes, size, valid_only=True) -> np.ndarray:
    chips = reference_chips(raster, boxes, size, [0, 2], blacken=False)
    return chips[:, 0].reshape(len(boxes), -1).mean(axis=1)


def test_wrapper_form_with_arguments_and_configuration(scene, tmp_path):
    folder, raster, houses, boxes = scene
    package = function_package(tmp_path / "bright.dlpk", "BrightRoofs.py")
    out = tmp_path / "out.gpkg"
    result = run_classify(raster, package, houses, out, "--trust-code")
    assert result.returncode == 0, result.stderr
    means = mean_band0(raster, boxes, 24)  # getConfiguration asked for 24 x 24 chips of bands (0, 2)
    expected = np.where(means > 0.5 * 255, "Bright", "Dark")
    got = gpd.read_file(out)
    assert list(got["ClassLabel"]) == list(expected) and len(set(expected)) == 2
    assert set(got["ClassValue"]) == {1, 2}
    lowered = tmp_path / "low.gpkg"
    result = run_classify(
        raster,
        package,
        houses,
        lowered,
        "--trust-code",
        "--argument",
        "threshold=0.1",
        "--argument",
        "bright_label=Glowing",
    )
    assert result.returncode == 0, result.stderr
    assert list(gpd.read_file(lowered)["ClassLabel"]) == list(np.where(means > 0.1 * 255, "Glowing", "Dark"))
    info = json.loads(run_cli("inspect", package, "--trust-code", "--json").stdout)
    arguments = {a["name"]: a for a in info["arguments"]}
    assert arguments["threshold"]["type"] == "float" and arguments["threshold"]["default"] == 0.5
    assert arguments["bright_label"]["type"] == "str" and arguments["bright_label"]["default"] == "Bright"
    assert "rasters" not in arguments and "device" not in arguments
    assert info["chip_size"] == {"height": 24, "width": 24} and info["extract_bands"] == [0, 2]
    assert info["runtime"]["form"] == "wrapper" and info["inference_function"] == "BrightRoofs.py"
    bad = run_classify(raster, package, houses, tmp_path / "bad.gpkg", "--trust-code", "--argument", "colour=red")
    assert bad.returncode == 1 and "threshold (float, default 0.5)" in bad.stderr


def test_child_form_imports_its_helper_module(scene, tmp_path):
    folder, raster, houses, boxes = scene
    package = function_package(tmp_path / "child.dlpk", "RoofChild.py", ("_roof_helpers.py",))
    out = tmp_path / "child.gpkg"
    result = run_classify(raster, package, houses, out, "--trust-code", "--argument", "cutoff=120")
    assert result.returncode == 0, result.stderr
    chips = reference_chips(raster, boxes, 16, [0, 1, 2], blacken=True)
    band0 = chips[:, 0]
    means = np.array([c[c > 0].mean() if (c > 0).any() else 0 for c in band0])
    assert list(gpd.read_file(out)["ClassLabel"]) == list(np.where(means > 120, "Bright", "Dark"))
    info = json.loads(run_cli("inspect", package, "--trust-code", "--json").stdout)
    assert {a["name"] for a in info["arguments"]} == {"batch_size", "cutoff"}  # batch_size: the EMD has none
    assert info["runtime"]["form"] == "child"


def test_an_error_inside_the_function_reports_its_traceback_and_features(scene, tmp_path):
    folder, raster, houses, boxes = scene
    data = np.zeros((3, 200, 200), np.uint8) + 40
    data[0, 60, 60] = 255
    hot = write_raster(tmp_path / "hot.tif", data)
    house = shapely.box(X + 29, Y - 31, X + 31, Y - 29)  # its chip holds the 255 pixel at (60, 60)
    gpd.GeoDataFrame(
        {"id": [0, 1]}, geometry=[shapely.box(X + 70, Y - 71, X + 71, Y - 70), house], crs="EPSG:32633"
    ).to_file(tmp_path / "two.gpkg")
    package = function_package(tmp_path / "explodes.dlpk", "Explodes.py")
    out = tmp_path / "out.gpkg"
    result = run_classify(hot, package, tmp_path / "two.gpkg", out, "--trust-code")
    assert result.returncode == 1
    assert "Explodes.py" in result.stderr and "raise ValueError" in result.stderr
    assert "ValueError: cannot handle a pixel of 255" in result.stderr
    assert "feature 1" in result.stderr and "returned nothing" not in result.stderr
    assert "geoclassify/" not in result.stderr  # the function's frames, not geoclassify's
    assert not out.exists() and not leftovers(tmp_path, "out")


def test_untrusted_code_does_not_run(scene, tmp_path, monkeypatch):
    folder, raster, houses, boxes = scene
    cache = tmp_path / "cache"
    monkeypatch.setenv("GEOCLASSIFY_CACHE_DIR", str(cache))  # the package is extracted here, and only here
    package = function_package(tmp_path / "explodes.dlpk", "Explodes.py")
    result = run_classify(raster, package, houses, tmp_path / "out.gpkg")
    assert result.returncode == 1 and "Explodes.py" in result.stderr and "--trust-code" in result.stderr
    shown = run_cli("inspect", package)
    assert shown.returncode == 1 and "--trust-code" in shown.stderr
    assert list(cache.rglob("Explodes.py"))  # extracted...
    assert not list(cache.rglob("*.imported"))  # ...but never imported
    trusted = run_cli("inspect", package, "--trust-code")
    assert trusted.returncode == 0 and list(cache.rglob("*.imported"))  # the marker works


def test_bundled_function_form_and_unknown_labels(scene, tmp_path):
    folder, raster, houses, boxes = scene
    bundled = tmp_path / "bundled.dlpk"
    emd = emd_for(
        model_file="model.pth",
        Framework="arcgis.learn.models._inferencing",
        InferenceFunction="[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISObjectClassifier.py",
    )
    with zipfile.ZipFile(bundled, "w") as archive:
        archive.writestr("model.emd", json.dumps(emd))
    result = run_cli("inspect", bundled, "--trust-code")
    assert result.returncode == 1 and "inside an ArcGIS Pro install" in result.stderr and "ONNX" in result.stderr
    two = [{"Value": 1, "Name": "Bright"}, {"Value": 2, "Name": "Dim"}]
    package = function_package(tmp_path / "labels.dlpk", "BrightRoofs.py")
    with zipfile.ZipFile(package) as archive:
        emd = json.loads(archive.read("model.emd"))
    emd["Classes"] = two
    odd = tmp_path / "odd.dlpk"
    with zipfile.ZipFile(odd, "w") as archive:
        archive.writestr("model.emd", json.dumps(emd))
        archive.write(FUNCTIONS / "BrightRoofs.py", "BrightRoofs.py")
    result = run_classify(raster, odd, houses, tmp_path / "out.gpkg", "--trust-code")
    assert result.returncode == 1 and "label 'Dark'" in result.stderr and "Bright, Dim" in result.stderr
