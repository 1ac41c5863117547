"""Imagery on the web map: Web Mercator PNG tiles cut by rio-tiler from a raster in any CRS, with one stretch per
raster so neighbouring tiles match (8-bit data as stored, 0-255; other types from the 2nd to the 98th percentile
of each band, taken on an overview-sized read of the whole raster).

A large raster without overviews would make every zoomed-out tile a read of the whole file, so the viewer gives it
overviews of its own: a VRT of the raster with an external ``.ovr`` in ``STATE/viewer/rasters`` (the user's file is
never written), made once per file identity (a 10,000 x 10,000 GeoTIFF: 1.5 s here), through which every tile of
that raster is then read."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from geoclassify.errors import MissingExtraError
from geoclassify.server.errors import InputError

TILE_SIZE = 256
#: Statistics are taken on a read of at most this many pixels a side (GDAL picks the overview that fits).
STATS_SIZE = 1024
#: Rasters up to this many pixels a side are read whole for a zoomed-out tile; larger ones get overviews.
SMALL = 2048


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


def raster_info(path: str, name: str, cache: Path) -> dict[str, Any]:
    """Where the raster lies (WGS 84 bounds), its bands and type, the stretch its tiles use and their zooms;
    ``display`` is the file tiles are read from (the raster, or the viewer's VRT with overviews of it)."""
    return dict(_info(*_identity(path), name, cache))


_building = threading.Lock()


@functools.lru_cache(maxsize=128)
def _info(path: str, mtime_ns: int, size: int, name: str, cache: Path) -> dict[str, Any]:
    from rio_tiler.constants import WGS84_CRS

    with _building:
        display = _with_overviews(path, mtime_ns, size, name, cache)
    with _open(display, name) as src:
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
        coarsest = max([1, *dataset.overviews(1)])
        side = max(dataset.width, dataset.height)
        # A tile reads at most 4x its size from the coarsest overview, unless that overview is small anyway.
        minzoom = 0 if side / coarsest <= SMALL else max(0, int(src.maxzoom) - int(math.log2(coarsest)) - 2)
        return {
            "bounds": [max(west, -180.0), max(south, -85.05), min(east, 180.0), min(north, 85.05)],
            "crs": dataset.crs.to_string(),
            "width": dataset.width,
            "height": dataset.height,
            "bands": dataset.count,
            "dtype": dtype,
            "indexes": list(indexes),
            "stretch": stretch,
            "overviews": dataset.overviews(1),
            "minzoom": minzoom,
            "maxzoom": int(src.maxzoom),
            "display": display,
        }


def _with_overviews(path: str, mtime_ns: int, size: int, name: str, cache: Path) -> str:
    """``path``, or for a raster over SMALL pixels a side without overviews, the viewer's VRT with them."""
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling

    try:
        with rasterio.open(path) as dataset:
            side = max(dataset.width, dataset.height)
            if dataset.overviews(1) or side <= SMALL:
                return path
    except rasterio.errors.RasterioError as exc:
        raise InputError(f"{name} is not a raster GDAL can open: {exc}") from None
    key = hashlib.sha256(f"{os.path.realpath(path)}|{size}|{mtime_ns}".encode()).hexdigest()[:32]
    vrt = cache / f"{key}.vrt"
    if vrt.exists() and Path(f"{vrt}.ovr").exists():
        return os.fspath(vrt)
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"partial-{key}.vrt"
    factors = [4**n for n in range(1, 12) if side / 4 ** (n - 1) > 256]
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", COMPRESS_OVERVIEW="DEFLATE"):
        rasterio.shutil.copy(path, partial, driver="VRT")
        with rasterio.open(partial, "r+") as dataset:
            dataset.build_overviews(factors, Resampling.average)
    # GDAL finds a VRT's external overviews as NAME.ovr beside it: the .ovr goes first, then the VRT.
    os.replace(f"{partial}.ovr", f"{vrt}.ovr")
    os.replace(partial, vrt)
    for stale in cache.glob("*.vrt"):
        if stale != vrt and _source_gone(stale):
            stale.unlink(missing_ok=True)
            Path(f"{stale}.ovr").unlink(missing_ok=True)
    return os.fspath(vrt)


def _source_gone(vrt: Path) -> bool:
    """A cached VRT whose raster went away (its SourceFilename no longer exists)."""
    try:
        sources = re.findall(r"<SourceFilename([^>]*)>([^<]+)</SourceFilename>", vrt.read_text())
    except OSError:
        return True
    paths = [vrt.parent / name if 'relativeToVRT="1"' in attributes else Path(name) for attributes, name in sources]
    return not paths or not all(p.exists() for p in paths)


def raster_tile(path: str, name: str, cache: Path, z: int, x: int, y: int) -> bytes | None:
    """The tile as PNG (transparent outside the raster and where it has no data), or None where it has none."""
    from rio_tiler.errors import TileOutsideBounds

    info = raster_info(path, name, cache)
    if z < info["minzoom"]:
        return None
    with _open(info["display"], name) as src:
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
