"""Several rasters (or one at another cell size) seen as one grid: Esri's mosaicked image and cell-size environment.

The grid takes the CRS and pixel alignment of the first georeferenced image, the cell size of that image or
the one asked for, and the union of all footprints. A source already on that grid is read directly; any other
(another CRS, cell size or pixel alignment) is warped onto it by GDAL (a WarpedVRT) window by window, with the
Resampling Method environment's method (nearest by default, as in ArcGIS). Where images overlap, the first in the
list wins, as in a mosaic dataset's "first" method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from ..environment import DEFAULT_RESAMPLING
from ..errors import RasterError, SettingError
from .rasters import RasterSource, pixel_type, read_clamped


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid in one CRS."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        return (left, top + self.transform.e * self.height, left + self.transform.a * self.width, top)


#: GDAL addresses a raster's width and height as 32-bit integers.
MAX_GRID_CELLS = 2**31 - 1


def mosaic_grid(sources: Sequence[RasterSource], cell_size: float | None = None) -> Grid:
    """The grid that covers every source, aligned to the first one's pixels (or cell size)."""
    if not sources:
        raise RasterError("no images to mosaic")
    first = sources[0]
    base = first.dataset.transform
    if not base.is_rectilinear or base.a <= 0 or base.e >= 0:
        raise RasterError(
            f"raster {first.label!r} is rotated or not north-up; mosaics and «cell_size» need north-up "
            "rasters (warp it first, e.g. gdalwarp)"
        )
    res_x, res_y = (cell_size, cell_size) if cell_size else (base.a, -base.e)
    crs = first.crs
    lefts, bottoms, rights, tops = [], [], [], []
    for source in sources:
        if (source.crs is None) != (crs is None):
            raise RasterError(
                f"raster {source.label!r} and {first.label!r}: one has a coordinate system and the other "
                "not; a mosaic needs all or none"
            )
        bounds = source.dataset.bounds
        if source.crs is not None and source.crs != crs:
            bounds = transform_bounds(source.crs, crs, *bounds, densify_pts=21)
        lefts.append(bounds[0])
        bottoms.append(bounds[1])
        rights.append(bounds[2])
        tops.append(bounds[3])
    # Snap the union to the first image's pixel corners so that image is read without resampling.
    left = base.c + math.floor((min(lefts) - base.c) / res_x + 1e-9) * res_x
    top = base.f - math.floor((base.f - max(tops)) / res_y + 1e-9) * res_y
    width = max(1, math.ceil((max(rights) - left) / res_x - 1e-9))
    height = max(1, math.ceil((top - min(bottoms)) / res_y - 1e-9))
    if max(width, height) > MAX_GRID_CELLS:
        raise SettingError(
            f"«cell_size» {res_x:g} gives a grid of {width:.3g} x {height:.3g} cells over the images, more than GDAL "
            f"can address ({MAX_GRID_CELLS:,} a side); give a cell size near the images' own ({base.a:g})"
        )
    return Grid(crs, Affine(res_x, 0.0, left, 0.0, -res_y, top), width, height)


def warp_scales(source: RasterSource, grid: Grid) -> tuple[float, float]:
    """Grid pixels per source pixel along x and y, fixed for the whole source.

    GDAL otherwise derives them per warped chunk, and when downsampling that changes the bilinear or cubic
    kernel's width, so the same pixel could come out differently depending on which window asked for it.
    """
    bounds = source.dataset.bounds
    if source.crs is not None and grid.crs is not None and source.crs != grid.crs:
        bounds = transform_bounds(source.crs, grid.crs, *bounds, densify_pts=21)
    x_scale = (bounds[2] - bounds[0]) / grid.transform.a / source.dataset.width
    y_scale = (bounds[3] - bounds[1]) / -grid.transform.e / source.dataset.height
    return x_scale, y_scale


class GridSource:
    """Pixels of several rasters on one :class:`Grid`, read window by window (the pipeline's raster); sources off
    the grid are warped with ``resampling``."""

    def __init__(
        self,
        sources: Sequence[RasterSource],
        grid: Grid,
        label: str | None = None,
        resampling: Resampling = DEFAULT_RESAMPLING,
    ) -> None:
        self.sources = list(sources)
        self.grid = grid
        self.resampling = resampling
        self.label = label or (
            self.sources[0].label if len(self.sources) == 1 else f"mosaic of {len(self.sources)} images"
        )
        self.band_indexes: tuple[int, ...] = ()
        #: The type windows are read in, of the bands chosen (:func:`select_bands` sets both).
        self._pixel_type = np.dtype(np.float32)
        self._readers = [self._reader(source) for source in self.sources]

    def _reader(self, source: RasterSource) -> tuple[object, tuple[int, int], tuple[float, float, float, float], bool]:
        """How to read one source: its dataset (or a WarpedVRT), the grid offset, its extent in grid pixels."""
        grid = self.grid
        transform = source.dataset.transform
        same_crs = source.crs == grid.crs
        offset_c = (transform.c - grid.transform.c) / grid.transform.a
        offset_r = (transform.f - grid.transform.f) / grid.transform.e
        aligned = (
            same_crs
            and transform.b == 0
            and transform.d == 0
            and math.isclose(transform.a, grid.transform.a, rel_tol=1e-9)
            and math.isclose(transform.e, grid.transform.e, rel_tol=1e-9)
            and abs(offset_c - round(offset_c)) < 1e-6
            and abs(offset_r - round(offset_r)) < 1e-6
        )
        if aligned:
            col, row = round(offset_c), round(offset_r)
            extent = (col, row, col + source.dataset.width, row + source.dataset.height)
            return source.dataset, (row, col), extent, source.needs_mask
        if grid.crs is None:
            raise RasterError(
                f"raster {source.label!r} has no coordinate system, so it cannot be warped onto the grid "
                "of the other images or another cell size"
            )
        x_scale, y_scale = warp_scales(source, grid)
        vrt = WarpedVRT(
            source.dataset,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=self.resampling,
            add_alpha=True,
            XSCALE=repr(x_scale),
            YSCALE=repr(y_scale),
        )
        bounds = source.dataset.bounds
        if not same_crs and source.crs is not None:
            bounds = transform_bounds(source.crs, grid.crs, *bounds, densify_pts=21)
        inverse = ~grid.transform
        c0, r0 = inverse @ (bounds[0], bounds[3])
        c1, r1 = inverse @ (bounds[2], bounds[1])
        return vrt, (0, 0), (math.floor(c0) - 1, math.floor(r0) - 1, math.ceil(c1) + 1, math.ceil(r1) + 1), True

    def __enter__(self) -> GridSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for dataset, *_ in self._readers:
            if isinstance(dataset, WarpedVRT):
                dataset.close()
        for source in self.sources:
            source.close()

    @property
    def crs(self) -> CRS | None:
        return self.grid.crs

    @property
    def transform(self) -> Affine:
        return self.grid.transform

    @property
    def shape(self) -> tuple[int, int]:
        return (self.grid.height, self.grid.width)

    @property
    def cell_size(self) -> tuple[float, float]:
        return (self.grid.transform.a, -self.grid.transform.e)

    def select_bands(self, extract_bands: Sequence[int | str] | None) -> tuple[int, ...]:
        """Resolve ExtractBands on every image; they must agree on how many bands that gives."""
        chosen = [source.select_bands(extract_bands) for source in self.sources]
        counts = {len(c) for c in chosen}
        if len(counts) > 1:
            detail = ", ".join(f"{s.label!r}: {s.dataset.count}" for s in self.sources)
            raise RasterError(
                f"the images have different band counts ({detail}); a mosaic needs the same bands in "
                "each, or give ExtractBands in the EMD"
            )
        self.band_indexes = chosen[0]
        self._pixel_type = pixel_type([s.dataset.dtypes[i] for s in self.sources for i in s.band_indexes])
        return self.band_indexes

    def read_window(self, row_off: int, col_off: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Composite the window from every image that reaches it; the first valid pixel wins."""
        pixels = np.zeros((len(self.band_indexes), height, width), dtype=self._pixel_type)
        valid = np.zeros((height, width), dtype=bool)
        for source, (dataset, (d_row, d_col), extent, needs_mask) in zip(self.sources, self._readers, strict=True):
            if (
                col_off >= extent[2]
                or col_off + width <= extent[0]
                or row_off >= extent[3]
                or row_off + height <= extent[1]
            ):
                continue
            window = (row_off - d_row, col_off - d_col, height, width)
            data, ok = _read(dataset, source.band_indexes, window, needs_mask, source.label)
            fill = ok & ~valid
            if fill.any():
                pixels[:, fill] = data[:, fill]
                valid |= fill
            if valid.all():
                break
        return pixels, valid

    def read_resampled(
        self, row_off: int, col_off: int, height: int, width: int, out_shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A window inside a one-image grid, resampled by GDAL to ``out_shape`` while reading."""
        if len(self.sources) != 1:
            raise ValueError("resampled reads are for one-image grids")
        dataset, (d_row, d_col), _, needs_mask = self._readers[0]
        return _read(
            dataset,
            self.sources[0].band_indexes,
            (row_off - d_row, col_off - d_col, height, width),
            needs_mask,
            self.label,
            out_shape,
        )


def _read(
    dataset: object,
    band_indexes: Sequence[int],
    window: tuple[int, int, int, int],
    needs_mask: bool,
    label: str,
    out_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_clamped`, with a WarpedVRT's alpha band as its mask.

    GDAL reports the warped bands' masks as all valid (seen with GDAL 3.10, rasterio 1.4), so without the alpha
    band the margin of the grid around a warped image read as valid zeros, and in a mosaic hid the next image's
    pixels there. The alpha band is read in the same call as the pixels.
    """
    if not isinstance(dataset, WarpedVRT):
        return read_clamped(dataset, band_indexes, window, needs_mask, label, out_shape)  # type: ignore[arg-type]
    pixels, inside = read_clamped(dataset, (*band_indexes, dataset.count - 1), window, False, label, out_shape)
    valid = inside & (pixels[-1] > 0)
    pixels = pixels[:-1]
    pixels[:, ~valid] = 0
    return pixels, valid
