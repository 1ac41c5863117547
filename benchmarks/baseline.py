"""The plain per-feature loop geoclassify is measured against: what a careful script does without block reuse.

Open the raster once, read a boundless window per feature, mask it with rasterio, normalise, and classify in
batches with ONNX Runtime.
"""

from __future__ import annotations

import math
import time

import numpy as np
import onnxruntime as ort
import rasterio
from rasterio.features import geometry_mask
from rasterio.windows import Window

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None] * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None] * 255


def plain_loop(raster, geometries, model_path, size: int, batch_size: int = 64, blacken: bool = True) -> float:
    """Features per second of the plain loop over ``geometries`` (in the raster's CRS)."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    started = time.perf_counter()
    batch = []
    with rasterio.open(raster) as src:
        for geom in geometries:
            minx, miny, maxx, maxy = geom.bounds
            col, row = ~src.transform * ((minx + maxx) / 2, (miny + maxy) / 2)
            window = Window(math.floor(col - size / 2 + 0.5), math.floor(row - size / 2 + 0.5), size, size)
            chip = src.read(window=window, boundless=True, fill_value=0).astype(np.float32)
            if blacken:
                outside = geometry_mask([geom], out_shape=(size, size), transform=src.window_transform(window))
                chip[:, outside] = 0
            batch.append((chip - MEAN) / STD)
            if len(batch) == batch_size:
                session.run(None, {"input": np.stack(batch)})
                batch = []
        if batch:
            session.run(None, {"input": np.stack(batch)})
    return len(geometries) / (time.perf_counter() - started)
