"""The order chips are cut in: features grouped by raster tile, tiles along a Z-order curve.

Reading a tile's pixels once for all its chips, and visiting neighbouring tiles one after another, is what keeps a
dense layer from reading the same blocks over and over; batches taken in this order also give a worker chips from
a few neighbouring tiles only.
"""

from __future__ import annotations

import numpy as np

#: Side, in pixels, of the tiles features are grouped by: each tile's pixels are read once for all its chips.
TILE = 512


def tile_groups(windows: np.ndarray) -> list[np.ndarray]:
    """Indexes of ``windows`` grouped by the tile their centre falls in, tiles in Z-order (a space-filling curve),
    so consecutive groups are neighbours and share GDAL's block cache."""
    if len(windows) == 0:
        return []
    tile_r = (windows[:, 0] + windows[:, 2] // 2) // TILE
    tile_c = (windows[:, 1] + windows[:, 3] // 2) // TILE
    key = morton(tile_r - tile_r.min(), tile_c - tile_c.min())
    order = np.lexsort((windows[:, 1], windows[:, 0], key))
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    return np.split(order, bounds)


def morton(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Interleave the bits of two non-negative integer arrays (Z-order key)."""
    key = np.zeros(len(rows), dtype=np.uint64)
    rows, cols = rows.astype(np.uint64), cols.astype(np.uint64)
    for bit in range(32):
        key |= ((rows >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit + 1)
        key |= ((cols >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit)
    return key
