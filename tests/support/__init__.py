"""What the tests share: rasters, model packages, scenes and a CLI runner, all made fresh in each test's folder."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin

from .onnx_models import flat_linear_model, mean_linear_model

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TWO_CLASSES = [
    {"Value": 1, "Name": "Intact", "Color": [0, 200, 0]},
    {"Value": 2, "Name": "Damaged", "Color": [200, 0, 0]},
]




def write_raster(
    path: Path,
    data: np.ndarray,
    crs: str | None = "EPSG:32633",
    transform=None,
    nodata=None,
    tiled: bool = True,
    **profile,
) -> Path:
    bands, height, width = data.shape
    transform = transform or from_origin(500000.0, 4650000.0, 0.5, 0.5)
    options = {"tiled": True, "blockxsize": 256, "blockysize": 256} if tiled and height >= 256 and width >= 256 else {}
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=bands,
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        **options,
        **profile,
    ) as dst:
        dst.write(data)
    return path


def emd_for(model_file: str = "model.onnx", **overrides) -> dict:
    emd = {
        "Framework": "ONNX",
        "ModelConfiguration": "FeatureClassifier",
        "ModelType": "ObjectClassification",
        "ModelFile": model_file,
        "ImageWidth": 16,
        "ImageHeight": 16,
        "ExtractBands": [0, 1, 2],
        "CropSizeFixed": 1,
        "BlackenAroundFeature": 0,
        "Classes": TWO_CLASSES,
    }
    emd.update(overrides)
    return {k: v for k, v in emd.items() if v is not None}


def write_dlpk(
    path: Path, emd: dict, model: Path | None, folder: str = "", extra: dict[str, bytes] | None = None
) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        prefix = f"{folder}/" if folder else ""
        archive.writestr(prefix + path.stem + ".emd", json.dumps(emd))
        if model is not None:
            archive.write(model, prefix + model.name)
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return path


def flat_package(
    folder: Path, channels: int = 3, size: int = 16, seed: int = 0, **emd_overrides
) -> tuple[Path, np.ndarray, np.ndarray]:
    """A .dlpk whose model scores the flattened chip with random weights (sensitive to every pixel)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(2, channels * size * size)).astype("float32") / (channels * size * size) ** 0.5
    bias = np.zeros(2, dtype="float32")
    model = flat_linear_model(folder / "model.onnx", weights, bias, channels, size, size)
    emd = emd_for(ImageWidth=size, ImageHeight=size, ExtractBands=list(range(channels)), **emd_overrides)
    return write_dlpk(folder / "flat.dlpk", emd, model), weights, bias


def mean_package(
    folder: Path, weights, bias, channels: int = 3, size: int = 16, name: str = "mean", **emd_overrides
) -> Path:
    model = mean_linear_model(folder / f"{name}.onnx", np.asarray(weights), np.asarray(bias), channels, size, size)
    emd = emd_for(model_file=f"{name}.onnx", ImageWidth=size, ImageHeight=size, **emd_overrides)
    return write_dlpk(folder / f"{name}.dlpk", emd, model)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed command as a user would, in a fresh process."""
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run(
        [sys.executable, "-m", "geoclassify", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def classify_argv(image, model, features, out, *extra) -> list[str]:
    """The command line of ``geoclassify classify`` with the four main options, plus any others."""
    options = ["--image", image, "--model", model, "--features", features, "--out", out, *extra]
    return [sys.executable, "-m", "geoclassify", "classify", *map(str, options)]


def run_classify(image, model, features, out, *extra: str) -> subprocess.CompletedProcess:
    """``geoclassify classify`` with the four main options, plus any others."""
    return run_cli("classify", "--image", image, "--model", model, "--features", features, "--out", out, *extra)


def leftovers(folder: Path, name: str) -> list[str]:
    """Files that look like a partial output of ``name`` in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(name) or p.name.startswith("." + name))


def random_houses(
    folder: Path, seed: int, pixels: int, count: int, low: float, high: float, name: str = "scene.tif"
) -> tuple[Path, Path]:
    """``count`` 4 m houses at random offsets in [low, high) metres from the corner of a ``pixels``-square random
    3-band raster of 0.5 m pixels: (raster, houses.gpkg with an ``id`` field)."""
    x0, y0 = 500000.0, 4650000.0
    rng = np.random.default_rng(seed)
    raster = write_raster(folder / name, rng.integers(0, 255, (3, pixels, pixels), dtype=np.uint8))
    xs, ys = rng.uniform(low, high, count), rng.uniform(low, high, count)
    houses = gpd.GeoDataFrame(
        {"id": np.arange(count)},
        geometry=[shapely.box(x0 + x, y0 - y - 4, x0 + x + 4, y0 - y) for x, y in zip(xs, ys, strict=True)],
        crs="EPSG:32633",
    )
    houses.to_file(folder / "houses.gpkg")
    return raster, folder / "houses.gpkg"


MARKED = 17  # the feature whose chip carries the marker pixel


def marked_scene(folder: Path) -> tuple[Path, Path]:
    """40 houses on a raster of values up to 200, with one 255 pixel at the top-left corner of feature 17's
    16-px chip: models that fail on bright corners fail on that feature's batch alone."""
    x0, y0 = 500000.0, 4650000.0
    rng = np.random.default_rng(8)
    data = rng.integers(0, 200, (3, 200, 200), dtype=np.uint8)
    boxes = [shapely.box(x0 + x, y0 - y - 3, x0 + x + 3, y0 - y) for x, y in rng.uniform(10, 85, size=(40, 2))]
    minx, miny, maxx, maxy = boxes[MARKED].bounds
    col = math.floor(((minx + maxx) / 2 - x0) / 0.5 - 8 + 0.5)
    row = math.floor((y0 - (miny + maxy) / 2) / 0.5 - 8 + 0.5)
    data[0, row, col] = 255
    raster = write_raster(folder / "marked.tif", data)
    gpd.GeoDataFrame({"id": range(40)}, geometry=boxes, crs="EPSG:32633").to_file(folder / "houses.gpkg")
    return raster, folder / "houses.gpkg"
