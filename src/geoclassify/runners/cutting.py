"""Cutting a tile's chips at once: one gather for the pixels and one vectorised scanline fill for blackening.

Blackening keeps a chip's pixels whose centre lies inside the feature's own polygon (:func:`centres_inside`).
Testing those centres one polygon at a time with shapely cost most of the run on dense layers of small houses;
:func:`centres_inside_many` fills every chip's polygon at once, each chip against its own polygon only, so
overlapping footprints need no special case. Invalid polygons (whose inside the even-odd rule and GEOS may see
differently) and empty ones are blackened apart, one at a time, as before; so are chips that need resizing
(CropSizeFixed 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely

from ..core.chips import ChipSpec, ChipStack, centres_inside, centres_inside_many, cut_chip, cut_fixed
from ..io.mosaics import GridSource
from ..io.rasters import RasterSource


@dataclass
class Region:
    """Pixels of one tile's windows, read once; chips are cut from them by slicing."""

    row_off: int
    col_off: int
    pixels: np.ndarray
    valid: np.ndarray

    def reader(self, row_off: int, col_off: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        r, c = row_off - self.row_off, col_off - self.col_off
        return self.pixels[:, r : r + height, c : c + width], self.valid[r : r + height, c : c + width]


def read_region(raster: RasterSource | GridSource, windows: np.ndarray) -> Region:
    """The smallest block holding every one of ``windows``, in one read."""
    r0, c0 = int(windows[:, 0].min()), int(windows[:, 1].min())
    r1 = int((windows[:, 0] + windows[:, 2]).max())
    c1 = int((windows[:, 1] + windows[:, 3]).max())
    pixels, valid = raster.read_window(r0, c0, r1 - r0, c1 - c0)
    return Region(r0, c0, pixels, valid)


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
            inside = _inside_masks(windows[fast], [polygons[i] for i in fast], spec)
            if inside is not None:
                np.multiply(stack.pixels, inside[:, None], out=stack.pixels)
        parts.append((fast, stack))
    slow = np.flatnonzero(~native)
    if len(slow):
        chips = [cut_chip(region.reader, windows[i], spec, polygons[i]) for i in slow]
        parts.append((slow, ChipStack.of(chips)))
    return parts


def _inside_masks(
    windows: np.ndarray, polygons: Sequence[shapely.Geometry | None], spec: ChipSpec
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
    for i in index[apart]:
        row_off, col_off = int(windows[i, 0]), int(windows[i, 1])
        inside[i] = centres_inside(geoms[i], row_off, col_off, 1.0, 1.0, spec.height, spec.width)
    burn = index[~apart]
    if len(burn):
        inside[burn] = centres_inside_many(geoms[burn], windows[burn, 0], windows[burn, 1], spec.height, spec.width)
    return inside
