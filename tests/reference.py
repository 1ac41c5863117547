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


def reference_chips(raster_path, geometries, size: int, bands: list[int], blacken: bool,
                    shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Fixed-size chips (n, bands, size, size) centred on each envelope, in the raster's own CRS."""
    chips = []
    with rasterio.open(raster_path) as src:
        for geom in geometries:
            minx, miny, maxx, maxy = geom.bounds
            col, row = ~src.transform @ ((minx + maxx) / 2, (miny + maxy) / 2)
            window = Window(math.floor(col - size / 2 + 0.5) + shift[1], math.floor(row - size / 2 + 0.5) + shift[0],
                            size, size)
            data = src.read([b + 1 for b in bands], window=window, boundless=True, masked=True, fill_value=0)
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
