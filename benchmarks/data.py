"""Seeded synthetic data for the benchmarks: big tiled rasters, many features, small and large CNNs in ONNX.

Everything is generated (and cached under ``benchmarks/.data``) so a benchmark is one command on a fresh clone.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import onnx
import rasterio
import shapely
from onnx import TensorProto, helper, numpy_helper
from rasterio.transform import from_origin
from rasterio.windows import Window

CACHE = Path(__file__).parent / ".data"
ORIGIN = (500000.0, 4650000.0)
RES = 0.5


def raster(size: int, name: str | None = None, seed: int = 0) -> Path:
    """A ``size`` x ``size`` RGB uint8 tiled, DEFLATE-compressed GeoTIFF of a smooth scene with texture."""
    path = CACHE / (name or f"scene_{size}.tif")
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(*ORIGIN, RES, RES),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "predictor": 2,
        "BIGTIFF": "IF_SAFER",
    }
    noise = rng.integers(0, 24, size=(3, 1024, 1024), dtype=np.uint8)
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        step = 2048
        for row in range(0, size, step):
            for col in range(0, size, step):
                h, w = min(step, size - row), min(step, size - col)
                yy, xx = np.mgrid[row : row + h, col : col + w].astype(np.float32)
                base = 120 + 60 * np.sin(xx / 97.0) * np.cos(yy / 131.0)
                block = np.stack([base + 20 * k for k in range(3)])
                block += noise[:, (yy % 1024).astype(int), (xx % 1024).astype(int)]
                dst.write(np.clip(block, 0, 255).astype(np.uint8), window=Window(col, row, w, h))
    tmp.rename(path)
    return path


def polygons(count: int, extent_px: int, seed: int = 1, name: str | None = None) -> Path:
    """``count`` rotated rectangles (houses, 4-14 m) spread over the raster, as a GeoPackage."""
    path = CACHE / (name or f"houses_{count}_{extent_px}.gpkg")
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    cx = ORIGIN[0] + rng.uniform(20, extent_px - 20, count) * RES
    cy = ORIGIN[1] - rng.uniform(20, extent_px - 20, count) * RES
    w, h = rng.uniform(4, 14, count), rng.uniform(4, 14, count)
    angle = rng.uniform(0, np.pi, count)
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])
    dx = corners[None, :, 0] * w[:, None]
    dy = corners[None, :, 1] * h[:, None]
    xs = cx[:, None] + dx * np.cos(angle)[:, None] - dy * np.sin(angle)[:, None]
    ys = cy[:, None] + dx * np.sin(angle)[:, None] + dy * np.cos(angle)[:, None]
    rings = shapely.polygons(np.stack([xs, ys], axis=2))
    frame = gpd.GeoDataFrame(
        {"house_id": np.arange(count), "zone": rng.integers(0, 50, count)}, geometry=rings, crs="EPSG:32633"
    )
    frame.to_file(path, engine="pyogrio")
    return path


def points(count: int, extent_px: int, seed: int = 2) -> Path:
    path = CACHE / f"points_{count}_{extent_px}.gpkg"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    x = ORIGIN[0] + rng.uniform(40, extent_px - 40, count) * RES
    y = ORIGIN[1] - rng.uniform(40, extent_px - 40, count) * RES
    frame = gpd.GeoDataFrame({"tree_id": np.arange(count)}, geometry=shapely.points(x, y), crs="EPSG:32633")
    frame.to_file(path, engine="pyogrio")
    return path


#: The small CNN of the dense, limit, scale, collections, server and viewer benchmarks: 64-px chips, three stages
#: (6.5 MFLOP a chip). One definition, as :func:`cnn` caches a model by its name alone.
TINY_CHIP = 64
TINY_WIDTHS = [8, 16, 32]


def tiny_cnn() -> Path:
    """The small CNN as ONNX."""
    return cnn("tiny64", TINY_CHIP, TINY_WIDTHS)


def tiny_dlpk() -> Path:
    """The small CNN as a package."""
    return dlpk(tiny_cnn(), TINY_CHIP)


def cnn(name: str, size: int, widths: list[int], seed: int = 3) -> Path:
    """A plain CNN (3x3 conv + ReLU, 2x2 max-pool per stage, global average pool, linear to 2 classes) in ONNX."""
    path = CACHE / f"{name}.onnx"
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    nodes, inits, current, channels = [], [], "input", 3
    for i, width in enumerate(widths):
        weight = rng.normal(0, (2.0 / (channels * 9)) ** 0.5, (width, channels, 3, 3)).astype(np.float32)
        inits += [
            numpy_helper.from_array(weight, f"w{i}"),
            numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("Conv", [current, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
            helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]),
        ]
        current, channels = f"p{i}", width
    fc = rng.normal(0, 0.1, (2, channels)).astype(np.float32)
    inits += [numpy_helper.from_array(fc, "fc"), numpy_helper.from_array(np.zeros(2, np.float32), "fcb")]
    nodes += [
        helper.make_node("GlobalAveragePool", [current], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def dlpk(model: Path, size: int, blacken: int = 1, **keys: object) -> Path:
    """The model packaged beside it with an EMD for two classes; ``keys`` add to the EMD or replace its keys."""
    path = model.with_suffix(".dlpk")
    if path.exists():
        return path
    emd = {
        "Framework": "ONNX",
        "ModelType": "ObjectClassification",
        "ModelFile": model.name,
        "ImageWidth": size,
        "ImageHeight": size,
        "ExtractBands": [0, 1, 2],
        "CropSizeFixed": 1,
        "BlackenAroundFeature": blacken,
        "ModelOutput": "logits",
        "Classes": [{"Value": 1, "Name": "Intact"}, {"Value": 2, "Name": "Damaged"}],
        **keys,
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(model.stem + ".emd", json.dumps(emd))
        archive.write(model, model.name)
    return path


def flops(widths: list[int], size: int) -> float:
    """Multiply-adds x 2 of :func:`cnn` for one chip."""
    total, channels, side = 0.0, 3, size
    for width in widths:
        total += 2 * side * side * width * channels * 9
        channels, side = width, side // 2
    return total
