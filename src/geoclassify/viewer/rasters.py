"""Imagery on the web map: Web Mercator PNG tiles cut by rio-tiler from a raster in any CRS, with one stretch per
raster so neighbouring tiles match (8-bit data as stored, 0-255; other types from the 2nd to the 98th percentile
of each band, taken on an overview-sized read of the whole raster)."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from collections.abc import Iterator
from typing import Any

from geoclassify.errors import MissingExtraError
from geoclassify.server.errors import InputError

TILE_SIZE = 256
#: Statistics are taken on a read of at most this many pixels a side (GDAL picks the overview that fits).
STATS_SIZE = 1024
#: Zoom levels below the raster's native one that are still drawn (each is a 4x smaller read of the overview).
ZOOM_OUT = 6


def _reader() -> Any:
    try:
        from rio_tiler.io import Reader
    except ImportError as exc:
        raise MissingExtraError(
            f"map tiles need the serve extra ({exc.name} is missing): pip install 'geoclassify[serve]'"
        ) from None
    return Reader


def _identity(path: str) -> tuple[str, int, int]:
    stat = os.stat(path)
    return path, stat.st_mtime_ns, stat.st_size


def raster_info(path: str, name: str) -> dict[str, Any]:
    """Where the raster lies (WGS 84 bounds), its bands and type, the stretch its tiles use and their zooms."""
    return dict(_info(*_identity(path), name))


@functools.lru_cache(maxsize=128)
def _info(path: str, mtime_ns: int, size: int, name: str) -> dict[str, Any]:
    from rio_tiler.constants import WGS84_CRS

    with _open(path, name) as src:
        dataset = src.dataset
        if dataset.crs is None:
            raise InputError(f"{name} has no coordinate reference system, so it cannot be placed on the map")
        indexes = _indexes(dataset)
        dtype = dataset.dtypes[0]
        if dtype == "uint8":
            stretch = [[0.0, 255.0] for _ in indexes]
        else:
            stats = src.statistics(indexes=indexes, max_size=STATS_SIZE, percentiles=[2, 98])
            stretch = [[_finite(s.percentile_2), _finite(s.percentile_98)] for s in stats.values()]
            stretch = [[lo, hi if hi > lo else lo + 1.0] for lo, hi in stretch]
        west, south, east, north = src.get_geographic_bounds(WGS84_CRS)
        return {
            "bounds": [max(west, -180.0), max(south, -85.05), min(east, 180.0), min(north, 85.05)],
            "crs": dataset.crs.to_string(),
            "width": dataset.width,
            "height": dataset.height,
            "bands": dataset.count,
            "dtype": dtype,
            "indexes": list(indexes),
            "stretch": stretch,
            "minzoom": max(0, int(src.minzoom) - ZOOM_OUT),
            "maxzoom": int(src.maxzoom),
        }


def raster_tile(path: str, name: str, z: int, x: int, y: int) -> bytes | None:
    """The tile as PNG (transparent outside the raster and where it has no data), or None where it has none."""
    from rio_tiler.errors import TileOutsideBounds

    info = raster_info(path, name)
    if z < info["minzoom"]:
        return None
    with _open(path, name) as src:
        try:
            image = src.tile(x, y, z, tilesize=TILE_SIZE, indexes=tuple(info["indexes"]))
        except TileOutsideBounds:
            return None
    image.rescale(in_range=tuple(tuple(r) for r in info["stretch"]))
    return bytes(image.render(img_format="PNG"))


@contextlib.contextmanager
def _open(path: str, name: str) -> Iterator[Any]:
    """rio-tiler's reader with its overview warning silenced (a missing overview costs speed, nothing else) and
    GDAL's failures as one line naming the raster."""
    import rasterio

    reader = _reader()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*has no Overviews.*")
        try:
            src = reader(path)
        except rasterio.errors.RasterioError as exc:
            raise InputError(f"{name} is not a raster GDAL can open: {exc}") from None
        with src:
            yield src


def _indexes(dataset: Any) -> tuple[int, ...]:
    """Red, green, blue where the raster says which bands they are, else its first three (or its first one)."""
    from rasterio.enums import ColorInterp

    interp = list(dataset.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in interp for c in wanted):
        return tuple(interp.index(c) + 1 for c in wanted)
    return (1, 2, 3) if dataset.count >= 3 else (1,)


def _finite(value: float) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0
