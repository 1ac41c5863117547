"""Feature layers on the web map as Mapbox Vector Tiles, made by GDAL's MVT driver into one MBTiles file per zoom
level and served from SQLite, so a result of 100,000 features costs the page only the tiles in view.

A layer gets two levels: a coarse one at which the whole layer spans about a quarter of a tile (the map overzooms
it until the next level), and a fine one four zoom levels in, encoded at 16,384 units a tile so that overzooming
it to the map's last zoom levels stays sharp. Tiles carry the fields the map styles by and ``_fid``; a click
asks :func:`feature` for the full record. Tiles and class counts are cached under ``STATE/viewer`` by the file's
identity (path, layer, size, modification time), built once under a lock and put in place by a rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import threading
import warnings
from pathlib import Path
from typing import Any

from geoclassify.server.errors import InputError, NotFound

#: The layer name inside the tiles (the page's style refers to it).
TILE_LAYER = "features"
FID = "_fid"
#: The finest level made; the map overzooms past it.
MAX_LEVEL = 18
FINE_EXTENT = 16384
_WORLD = 2 * math.pi * 6378137.0
_VERSION = "1"
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


class VectorCache:
    """The tiles and counts of the layers shown so far, in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    # -- what a layer is --------------------------------------------------------------------------------------

    def info(self, path: str, layer: str | None, name: str, keep: list[str]) -> dict[str, Any]:
        """The layer's WGS 84 bounds, feature count, geometry type, fields and tile levels; the tiles are made
        (with ``keep`` fields in them) the first time the layer is asked for."""
        key = _key(path, layer)
        meta = self._meta(key)
        if meta is not None and meta.get("keep") == keep:
            return meta
        with _lock(key):
            meta = self._meta(key)
            if meta is not None and meta.get("keep") == keep:
                return meta
            meta = self._build(key, path, layer, name, keep)
        self._prune()
        return meta

    def tile(self, path: str, layer: str | None, level: int, z: int, x: int, y: int) -> bytes | None:
        """One gzip-compressed tile, None where the layer has no feature; the layer must have been asked for."""
        key = _key(path, layer)
        meta = self._meta(key)
        if meta is None or level not in meta["levels"]:
            raise NotFound("those tiles are not made yet: ask for the layer first (/viewer/api/layer)")
        if z != level or not (0 <= x < 2**z and 0 <= y < 2**z):
            return None
        uri = f"file:{self.folder / f'{key}-{level}.mbtiles'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
            row = con.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (z, x, 2**z - 1 - y),
            ).fetchone()
        return bytes(row[0]) if row else None

    def counts(self, path: str, layer: str | None, field: str) -> dict[str, int]:
        """How many features hold each value of ``field`` (an empty text for none), cached with the tiles."""
        key = _key(path, layer)
        store = self.folder / f"{key}-counts.json"
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(store.read_text())
            if field in cached:
                return cached[field]
        frame = read_frame(path, layer, columns=[field], geometry=False)
        if field not in frame.columns:
            raise InputError(f"the layer has no field {field!r}")
        values = frame[field].astype("string").fillna("").str.strip()
        counts = {str(k): int(v) for k, v in values.value_counts(sort=False).items()}
        cached = {}
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(store.read_text())
        _write_json(store, {**cached, field: counts})
        return counts

    # -- making the tiles -------------------------------------------------------------------------------------

    def _meta(self, key: str) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((self.folder / f"{key}.json").read_text())
            if all((self.folder / f"{key}-{level}.mbtiles").exists() for level in meta["levels"]):
                return meta
        return None

    def _build(self, key: str, path: str, layer: str | None, name: str, keep: list[str]) -> dict[str, Any]:
        import pyogrio

        self.folder.mkdir(parents=True, exist_ok=True)
        frame = read_frame(path, layer)
        if frame.crs is None:
            raise InputError(f"{name} has no coordinate reference system, so it cannot be placed on the map")
        fields = [c for c in frame.columns if c != frame.geometry.name]
        slim = frame[[c for c in keep if c in fields] + [frame.geometry.name]].copy()
        slim[FID] = frame.index.to_numpy()
        present = slim[~(slim.geometry.is_empty | slim.geometry.isna())]
        kinds = sorted(set(present.geom_type.dropna()))
        if len(present):
            west, south, east, north = present.to_crs(4326).total_bounds
            mercator = present.to_crs(3857).total_bounds
            span = max(mercator[2] - mercator[0], mercator[3] - mercator[1])
        else:
            west = south = east = north = 0.0
            span = 0.0
        levels = tile_levels(span)
        for level in levels:
            target = self.folder / f"{key}-{level}.mbtiles"
            partial = target.with_name(f".partial-{target.name}")
            partial.unlink(missing_ok=True)
            options = {"MINZOOM": level, "MAXZOOM": level, "NAME": name[:120], "TYPE": "overlay"}
            if level == levels[-1] and len(levels) > 1:
                options["EXTENT"] = FINE_EXTENT
            with warnings.catch_warnings():  # "a tile was encoded at lower resolution": expected at coarse levels
                warnings.simplefilter("ignore", RuntimeWarning)
                pyogrio.write_dataframe(present, partial, driver="MBTiles", layer=TILE_LAYER, dataset_options=options)
            os.replace(partial, target)
        meta = {
            "version": _VERSION,
            "source": {"path": path, "layer": layer, **_stat(path)},
            "bounds": [float(west), float(south), float(east), float(north)],
            "count": len(frame),
            "drawn": len(present),
            "geometryTypes": kinds,
            "fields": fields,
            "keep": keep,
            "levels": levels,
        }
        _write_json(self.folder / f"{key}.json", meta)
        return meta

    def _prune(self) -> None:
        """Drop the caches of files that changed or went away (a deleted item, an edited layer)."""
        for meta_path in self.folder.glob("*.json"):
            if meta_path.name.endswith("-counts.json"):
                continue
            with contextlib.suppress(OSError, ValueError, KeyError):
                source = json.loads(meta_path.read_text())["source"]
                if _stat(source["path"]) == {k: source[k] for k in ("size", "mtime_ns")}:
                    continue
            key = meta_path.stem
            for stale in self.folder.glob(f"{key}*"):
                stale.unlink(missing_ok=True)


def tile_levels(span: float) -> list[int]:
    """The coarse and fine zoom levels for a layer ``span`` metres wide (Web Mercator)."""
    fit = MAX_LEVEL if span <= 0 else math.floor(math.log2(_WORLD / span))
    coarse = max(0, min(MAX_LEVEL, fit - 2))
    fine = min(MAX_LEVEL, coarse + 4)
    return [coarse] if fine == coarse else [coarse, fine]


def read_frame(path: str, layer: str | None, columns: list[str] | None = None, geometry: bool = True) -> Any:
    """The layer as a GeoDataFrame indexed by feature id (GeoParquet by row number: GDAL here lacks Parquet)."""
    import geopandas as gpd
    import pyogrio

    try:
        if path.lower().endswith(".parquet"):
            frame = gpd.read_parquet(path, columns=None if columns is None else [*columns, "geometry"])
            return frame if geometry else frame.drop(columns=frame.geometry.name)
        return pyogrio.read_dataframe(path, layer=layer, columns=columns, read_geometry=geometry, fid_as_index=True)
    except Exception as exc:  # pyogrio's DataSourceError, pyarrow's errors: all about the file
        raise InputError(f"cannot read the layer {Path(path).name}: {exc}") from None


def feature(path: str, layer: str | None, fid: int) -> dict[str, Any]:
    """One feature's attributes (JSON-safe), by the ``_fid`` its tile carries."""
    import geopandas as gpd
    import pyogrio

    if path.lower().endswith(".parquet"):
        frame = gpd.read_parquet(path)
        if not 0 <= fid < len(frame):
            raise NotFound(f"the layer has no feature {fid}")
        row = frame.drop(columns=frame.geometry.name).iloc[fid]
    else:
        try:
            frame = pyogrio.read_dataframe(path, layer=layer, fids=[fid], read_geometry=False)
        except Exception:  # pyogrio raises a plain error for a FID the layer does not hold
            raise NotFound(f"the layer has no feature {fid}") from None
        if not len(frame):
            raise NotFound(f"the layer has no feature {fid}")
        row = frame.iloc[0]
    return {str(k): _json_value(v) for k, v in row.items()}


def _json_value(value: Any) -> Any:
    import numpy as np
    import pandas as pd

    if value is None or (not isinstance(value, str | bytes) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float | str | bool):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _key(path: str, layer: str | None) -> str:
    stat = _stat(path)
    text = f"{_VERSION}|{os.path.realpath(path)}|{layer or ''}|{stat['size']}|{stat['mtime_ns']}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _stat(path: str) -> dict[str, int]:
    try:
        stat = os.stat(path)
    except OSError:
        return {"size": -1, "mtime_ns": -1}
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _lock(key: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(key, threading.Lock())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)
