"""An independent chip cutter for checking geoclassify: rasterio windows, boundless reads and geometry masks.

It shares no code with geoclassify, so agreement between the two means the chips line up.
"""

from __future__ import annotations

import math

import numpy as np
import rasterio
from rasterio.features import geometry_mask
from rasterio.windows import Window

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406]) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225]) * 255


def reference_chips(
    raster_path, geometries, size: int, bands: list[int], blacken: bool, shift: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """Fixed-size chips (n, bands, size, size) centred on each envelope, in the raster's own CRS."""
    chips = []
    with rasterio.open(raster_path) as src:
        for geom in geometries:
            minx, miny, maxx, maxy = geom.bounds
            col, row = ~src.transform @ ((minx + maxx) / 2, (miny + maxy) / 2)
            window = Window(
                math.floor(col - size / 2 + 0.5) + shift[1], math.floor(row - size / 2 + 0.5) + shift[0], size, size
            )
            data = src.read([b + 1 for b in bands], window=window, boundless=True, masked=True)
            chip = np.ma.filled(data.astype("float32"), 0)
            if blacken:
                outside = geometry_mask([geom], out_shape=(size, size), transform=src.window_transform(window))
                chip[:, outside] = 0
            chips.append(chip)
    return np.stack(chips)


def imagenet(chips: np.ndarray) -> np.ndarray:
    return ((chips - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]).astype("float32")


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def resize_reference(chip: np.ndarray, size: int) -> np.ndarray:
    """Separable linear interpolation with np.interp, sampling at output pixel centres (edges clamped)."""
    bands, h, w = chip.shape
    ys = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    xs = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    rows = np.stack([[np.interp(xs, np.arange(w), chip[b, r]) for r in range(h)] for b in range(bands)])
    return np.stack(
        [[np.interp(ys, np.arange(h), rows[b, :, c]) for c in range(size)] for b in range(bands)]
    ).transpose(0, 2, 1)


def reference_envelope_chips(raster_path, geometries, size: int, bands: list[int], blacken: bool) -> np.ndarray:
    """CropSizeFixed 0 chips: the whole-pixel envelope window resized to ``size``; blackened on the chip grid."""
    chips = []
    with rasterio.open(raster_path) as src:
        for geom in geometries:
            minx, miny, maxx, maxy = geom.bounds
            c0, r0 = ~src.transform @ (minx, maxy)
            c1, r1 = ~src.transform @ (maxx, miny)
            col, row = math.floor(c0), math.floor(r0)
            width = max(math.ceil(c1) - col, 1)
            height = max(math.ceil(r1) - row, 1)
            window = Window(col, row, width, height)
            data = src.read([b + 1 for b in bands], window=window, boundless=True, masked=True)
            chip = resize_reference(np.ma.filled(data.astype("float32"), 0), size)
            if blacken:
                chip_transform = src.window_transform(window) * rasterio.Affine.scale(width / size, height / size)
                outside = geometry_mask([geom], out_shape=(size, size), transform=chip_transform)
                chip[:, outside] = 0
            chips.append(chip.astype("float32"))
    return np.stack(chips)
