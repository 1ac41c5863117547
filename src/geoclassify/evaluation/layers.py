"""What a vector file holds, layer by layer: before a user names ``--features-layer``, ``--layer`` or a field.

OGR formats are described by OGR itself (pyogrio); GeoParquet, one layer, by its own metadata, through the same
functions the runs read it with, so this shows what a run will see.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS
from pyproj.exceptions import CRSError

from ..errors import FeatureSourceError
from ..io.images import is_remote
from ..io.layers import PARQUET_SUFFIXES, layer_info, list_layers


def describe_layers(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One entry per layer: name, geometry type (None for a table), feature count, CRS and fields with types."""
    text = os.fspath(path)
    if not is_remote(text) and not Path(text).exists():
        raise FeatureSourceError(f"vector file {text!r} not found")
    if text.lower().endswith(PARQUET_SUFFIXES):
        return [_parquet_layer(text)]
    return [_ogr_layer(text, name) for name in list_layers(text)]


def format_layers(path: str | os.PathLike[str], layers: list[dict[str, Any]]) -> str:
    """One line per layer, columns aligned: ``name  geometry  N features  CRS  fields: a, b``."""
    if not layers:
        return f"{os.fspath(path)}: no layer"
    rows = [
        (
            layer["name"],
            layer["geometry_type"] or "no geometry",
            f"{layer['features']} feature{'s' * (layer['features'] != 1)}" if layer["features"] >= 0 else "? features",
            layer["crs"] or "no CRS",
            "fields: " + (", ".join(f["name"] for f in layer["fields"]) or "none"),
        )
        for layer in layers
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)), row[4]]) for row in rows
    )


def _ogr_layer(text: str, name: str) -> dict[str, Any]:
    try:
        info = pyogrio.read_info(text, layer=name, force_feature_count=True)
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise FeatureSourceError(f"layer {name!r} of {text!r} cannot be read ({exc})") from None
    return {
        "name": name,
        "geometry_type": info.get("geometry_type"),
        "features": int(info["features"]),
        "crs": _crs_text(info.get("crs")),
        "fields": [
            {"name": str(field), "type": str(kind)} for field, kind in zip(info["fields"], info["dtypes"], strict=True)
        ],
    }


def _parquet_layer(text: str) -> dict[str, Any]:
    info = layer_info(text)  # checks the GeoParquet metadata, as a run does
    try:
        schema = pq.read_schema(text)
    except (OSError, pa.ArrowException) as exc:
        raise FeatureSourceError(f"vector file {text!r} is not readable GeoParquet ({exc})") from None
    return {
        "name": Path(text).stem,
        "geometry_type": info["geometry_type"],
        "features": int(info["features"]),
        "crs": _crs_text(info["crs"]),
        "fields": [{"name": name, "type": str(schema.field(name).type)} for name in info["fields"]],
    }


def _crs_text(crs: str | None) -> str | None:
    """``EPSG:32633`` where the CRS has an authority code, else what PROJ calls it; GeoParquet's PROJJSON too."""
    if not crs:
        return None
    try:
        parsed = CRS.from_user_input(crs)
    except CRSError:
        return str(crs)
    authority = parsed.to_authority(min_confidence=90)
    return ":".join(authority) if authority else parsed.name
