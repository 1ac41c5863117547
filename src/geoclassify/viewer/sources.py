"""What the viewer may show: the user's items and the files under the server's data roots, nothing else.

A layer is named by a source key, ``item:ID`` or ``file:N:PATH`` (PATH relative to data root N), and optionally
a layer name. Keys are resolved by the server's own rules (:class:`geoclassify.server.inputs.Resolver` and the
item store's ownership check), so a tile or feature request can reach exactly what a job's ``{"itemId": ...}`` or
``{"uri": ...}`` could: never an arbitrary path, a GDAL virtual path or a URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoclassify.server.errors import InputError
from geoclassify.server.inputs import Resolver
from geoclassify.server.items import Item
from geoclassify.server.services import Services
from geoclassify.server.users import User

RASTER_SUFFIXES = (".tif", ".tiff", ".img", ".jp2", ".vrt")
FEATURE_SUFFIXES = (".gpkg", ".geojson", ".shp", ".fgb", ".parquet")
MODEL_SUFFIXES = (".dlpk", ".emd", ".onnx")
#: A data root is listed up to this many files (a folder of millions of tiles is not a layers list).
MAX_FILES = 2000


@dataclass(frozen=True)
class Source:
    """One resolvable layer: where its file is, what kind it is, and how a job names it."""

    key: str
    kind: str  # raster, features, result or model
    name: str
    path: str
    layer: str | None
    reference: dict[str, Any]
    item: Item | None = None

    def describe(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "src": self.key,
            "layer": self.layer,
            "kind": self.kind,
            "name": self.name,
            "reference": self.reference,
        }
        if self.item is not None:
            data.update(itemId=self.item.id, created=self.item.created, jobId=self.item.job_id, info=self.item.info)
        return data


def kind_of(path: str | os.PathLike[str]) -> str | None:
    suffix = Path(path).suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return "raster"
    if suffix in FEATURE_SUFFIXES:
        return "features"
    if suffix in MODEL_SUFFIXES:
        return "model"
    return None


def resolve(store: Services, user: User, key: str, layer: str | None = None) -> Source:
    """The source ``key`` names, if ``user`` may read it (NotFound for another user's item, Forbidden outside the
    data roots), checked as a job's input would be."""
    resolver = Resolver(store.config, store.items, user)
    if key.startswith("item:"):
        item = store.items.get(key[5:], user)
        return Source(
            key,
            item.kind,
            item.name,
            item.path,
            layer or item.info.get("layer"),
            {"itemId": item.id},
            item,
        )
    if key.startswith("file:"):
        index, _, relative = key[5:].partition(":")
        roots = store.config.data_roots
        if not index.isdigit() or int(index) >= len(roots) or not relative:
            raise InputError(f"src {key!r}: a data-root file is named file:N:PATH, N below {len(roots)}")
        given = os.fspath(Path(roots[int(index)]) / relative)
        kind = kind_of(relative)
        if kind == "raster":
            path = resolver.rasters({"uri": given}, "src")[0]
        elif kind == "features":
            path, layer = resolver.features({"uri": given, **({"layer": layer} if layer else {})}, "src")
            if path is None:
                raise InputError(f"src {key!r}: give a layer file")
        elif kind == "model":
            path = resolver.model({"uri": given}, "src")
        else:
            raise InputError(f"src {key!r}: not a raster, layer or model this viewer shows (by its suffix)")
        name = relative if layer is None else f"{relative} ({layer})"
        reference: dict[str, Any] = {"uri": given, **({"layer": layer} if layer else {})}
        return Source(key, kind, name, os.fspath(path), layer, reference)
    raise InputError(f"src {key!r}: give item:ID or file:N:PATH")


def listing(store: Services, user: User) -> list[dict[str, Any]]:
    """Every item of the user's content, then the data roots' rasters, layers (a GeoPackage's each) and models."""
    entries = [resolve(store, user, f"item:{item.id}").describe() for item in store.items.list(user)]
    for index, root in enumerate(store.config.data_roots):
        for relative in _files(Path(root)):
            key = f"file:{index}:{relative}"
            kind = kind_of(relative)
            layers = _layers(Path(root) / relative) if relative.lower().endswith(".gpkg") else [None]
            for layer in layers:
                name = relative if layer is None or len(layers) == 1 else f"{relative} ({layer})"
                reference: dict[str, Any] = {"uri": os.fspath(Path(root) / relative)}
                if layer is not None and len(layers) > 1:
                    reference["layer"] = layer
                entries.append(
                    {
                        "src": key,
                        "layer": layer if len(layers) > 1 else None,
                        "kind": kind,
                        "name": name,
                        "reference": reference,
                        "root": os.fspath(root),
                    }
                )
    return entries


def _files(root: Path) -> list[str]:
    """Viewable files under ``root`` (relative, sorted), hidden ones and links that leave the root skipped."""
    real_root = os.path.realpath(root)
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.lower().endswith(".gdb"))
        for name in sorted(files):
            if name.startswith(".") or kind_of(name) is None:
                continue
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            if os.path.commonpath([real_root, real]) != real_root:
                continue
            found.append(os.path.relpath(path, root))
            if len(found) >= MAX_FILES:
                return found
    return found


def _layers(path: Path) -> list[str | None]:
    import pyogrio

    try:
        names = [str(row[0]) for row in pyogrio.list_layers(path) if row[1] is not None]
    except Exception:  # pyogrio's DataSourceError and friends: not a vector GeoPackage, listed as a plain file
        return [None]
    return names or [None]
