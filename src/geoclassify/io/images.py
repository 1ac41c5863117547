"""What ``--image`` names: one raster, a folder, a list file, a glob pattern, a VRT, or a STAC Item(Collection).

Everything is resolved to a list of :class:`ImageRef` before any pixel is read, so a typo fails at once
and every image keeps the identifier the user gave it (``ImageID``/``ItemID`` in the output).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RasterError

#: File extensions taken as images when a folder is given.
IMAGE_SUFFIXES = (
    ".tif",
    ".tiff",
    ".gtiff",
    ".vrt",
    ".jp2",
    ".j2k",
    ".png",
    ".jpg",
    ".jpeg",
    ".img",
    ".bmp",
    ".gif",
    ".webp",
    ".ntf",
    ".nitf",
    ".dt2",
    ".hdr",
    ".bil",
    ".kea",
    ".nc",
    ".h5",
    ".hdf",
)
LIST_SUFFIXES = (".txt", ".lst", ".list")
STAC_SUFFIXES = (".json", ".geojson")
_RASTER_MEDIA = ("image/tiff", "image/jp2", "image/png", "image/jpeg", "image/vnd.stac.geotiff", "application/x-vrt")


@dataclass(frozen=True)
class ImageRef:
    """An image GDAL can open (``uri``) and the name it goes by in outputs (``image_id``)."""

    uri: str
    image_id: str


def is_remote(text: str) -> bool:
    return "://" in text or text.startswith("/vsi")


def resolve_images(
    spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    asset: str | None = None,
) -> list[ImageRef]:
    """Expand what the user gave into images, in a stable order."""
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        refs = [ref for item in spec for ref in resolve_images(item, recursive=recursive, asset=asset)]
        if not refs:
            raise RasterError("no images given")
        return refs
    text = os.fspath(spec)
    if is_remote(text):
        return [ImageRef(text, text)]
    path = Path(text).expanduser()
    if path.is_dir():
        return _folder(path, text, recursive)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in LIST_SUFFIXES:
            return _list_file(path)
        if suffix in STAC_SUFFIXES:
            return _stac(path, asset)
        return [ImageRef(str(path), text)]
    if glob.has_magic(text):
        matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        files = [m for m in matches if os.path.isfile(m) and not _is_sidecar(m)]
        if not files:
            raise RasterError(f"the pattern {text!r} matches no image file")
        return [ImageRef(m, m) for m in files]
    raise RasterError(f"raster {text!r} not found; check the path given to «input_raster»")


def _is_sidecar(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith((".aux.xml", ".ovr", ".msk", ".tfw", ".wld", ".prj", ".xml"))


def _folder(path: Path, given: str, recursive: bool) -> list[ImageRef]:
    candidates = path.rglob("*") if recursive else path.iterdir()
    files = sorted(
        p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not _is_sidecar(p.name)
    )
    if not files:
        hint = "" if recursive else " (add «recursive» to look in subfolders)"
        raise RasterError(f"folder {given!r} holds no image files{hint}")
    return [ImageRef(str(p), os.path.join(given, str(p.relative_to(path)))) for p in files]


def _list_file(path: Path) -> list[ImageRef]:
    refs = []
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if is_remote(line):
            refs.append(ImageRef(line, line))
            continue
        target = Path(line).expanduser()
        if not target.is_absolute():
            target = path.parent / target
        if not target.exists():
            raise RasterError(
                f"{path}, line {number}: image {line!r} not found (relative paths start at the list's folder)"
            )
        refs.append(ImageRef(str(target), line))
    if not refs:
        raise RasterError(f"image list {str(path)!r} names no image")
    return refs


def _stac(path: Path, asset: str | None) -> list[ImageRef]:
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RasterError(f"{path}: not valid JSON ({exc}); give a STAC Item or ItemCollection") from None
    if document.get("type") == "FeatureCollection":
        items = document.get("features") or []
    elif document.get("type") == "Feature":
        items = [document]
    else:
        raise RasterError(f"{path}: not a STAC Item or ItemCollection (its type is {document.get('type')!r})")
    refs = []
    for position, item in enumerate(items):
        assets: dict[str, Any] = item.get("assets") or {}
        key = _pick_asset(assets, asset, path, item.get("id", position))
        href = str(assets[key]["href"])
        uri = href if is_remote(href) or os.path.isabs(href) else str(path.parent / href)
        refs.append(ImageRef(uri, href))
    if not refs:
        raise RasterError(f"{path}: the STAC document holds no items")
    return refs


def _pick_asset(assets: dict[str, Any], asset: str | None, path: Path, item_id: object) -> str:
    if asset is not None:
        if asset not in assets:
            raise RasterError(
                f"{path}: item {item_id!r} has no asset {asset!r}; its assets: {', '.join(assets) or 'none'}"
            )
        return asset
    rasters = [
        k
        for k, v in assets.items()
        if str(v.get("type", "")).split(";")[0].strip() in _RASTER_MEDIA or "data" in (v.get("roles") or [])
    ]
    if len(rasters) == 1:
        return rasters[0]
    raise RasterError(
        f"{path}: item {item_id!r} has {len(rasters) or len(assets)} candidate assets "
        f"({', '.join(rasters or list(assets)) or 'none'}); choose one with «asset» KEY"
    )
