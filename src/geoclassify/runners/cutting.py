"""Cutting a tile's chips at once: one gather for the pixels and one GDAL rasterization for blackening.

Blackening keeps a chip's pixels whose centre lies inside the feature's own polygon (:func:`centres_inside`).
Testing those centres one polygon at a time with shapely cost most of the run on dense layers of small houses; GDAL's
scanline rasterizer (``all_touched=False`` burns the pixels whose centre is inside) labels every pixel of the tile
with the polygon it falls in, in one call. A pixel can carry one label only, so features whose polygon meets another
of the same tile, and invalid polygons (whose inside GDAL and GEOS may see differently), are blackened apart, one at
a time, as before. Chips that need resizing (CropSizeFixed 0) are cut one at a time too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize

from ..core.chips import ChipSpec, ChipStack, centres_inside, cut_chip, cut_fixed, gather_windows
from .work import Region


def cut_region(
    region: Region, windows: np.ndarray, spec: ChipSpec, polygons: Sequence[shapely.Geometry | None]
) -> list[tuple[np.ndarray, ChipStack]]:
    """The chips of ``windows`` (all inside ``region``), as (positions in ``windows``, stack) parts."""
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    native = (windows[:, 2] == spec.height) & (windows[:, 3] == spec.width)
    parts: list[tuple[np.ndarray, ChipStack]] = []
    fast = np.flatnonzero(native)
    if len(fast):
        rows = windows[fast, 0] - region.row_off
        cols = windows[fast, 1] - region.col_off
        stack = cut_fixed(region.pixels, region.valid, rows, cols, spec)
        if spec.blacken:
            inside = _inside_masks(region, windows[fast], [polygons[i] for i in fast], spec)
            if inside is not None:
                np.multiply(stack.pixels, inside[:, None], out=stack.pixels)
        parts.append((fast, stack))
    slow = np.flatnonzero(~native)
    if len(slow):
        chips = [cut_chip(region.reader, windows[i], spec, polygons[i]) for i in slow]
        parts.append((slow, ChipStack.of(chips)))
    return parts


def _inside_masks(
    region: Region, windows: np.ndarray, polygons: Sequence[shapely.Geometry | None], spec: ChipSpec
) -> np.ndarray | None:
    """(n, h, w) bool: chip pixels whose centre lies in the chip's own polygon; all True without one (points,
    lines); None when no chip has a polygon."""
    geoms = np.array(polygons, dtype=object)
    has = np.array([g is not None for g in polygons], dtype=bool)
    if not has.any():
        return None
    inside = np.ones((len(windows), spec.height, spec.width), dtype=bool)
    index = np.flatnonzero(has)
    shapes = geoms[index]
    apart = ~shapely.is_valid(shapes) | shapely.is_empty(shapes)
    tree = shapely.STRtree(shapes)
    left, right = tree.query(shapes, predicate="intersects")
    met = left != right
    apart[left[met]] = True
    burn = index[~apart]
    if len(burn):
        labels = rasterize(
            zip(geoms[burn], range(1, len(burn) + 1), strict=True),
            out_shape=region.valid.shape,
            transform=Affine(1.0, 0.0, region.col_off, 0.0, 1.0, region.row_off),
            fill=0,
            all_touched=False,
            dtype=np.int32,
        )
        rows = windows[burn, 0] - region.row_off
        cols = windows[burn, 1] - region.col_off
        chip_labels = gather_windows(labels, rows, cols, spec.height, spec.width)
        inside[burn] = chip_labels == np.arange(1, len(burn) + 1, dtype=np.int32)[:, None, None]
    for i in index[apart]:
        row_off, col_off = int(windows[i, 0]), int(windows[i, 1])
        inside[i] = centres_inside(geoms[i], row_off, col_off, 1.0, 1.0, spec.height, spec.width)
    return inside
