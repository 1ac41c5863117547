"""A result item in the shapes clients ask for: Esri's FeatureSet JSON (inline in ``outObjects``), or a file in
another format for ``/api/items/{id}/data?format=...``. The stored file is the run core's own GeoPackage, so
``format=gpkg`` returns exactly what the CLI would have written."""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

FORMATS = {
    "gpkg": ("application/geopackage+sqlite3", ".gpkg"),
    "geojson": ("application/geo+json", ".geojson"),
    "fgb": ("application/flatgeobuf", ".fgb"),
    "parquet": ("application/vnd.apache.parquet", ".parquet"),
    "csv": ("text/csv", ".csv"),
}
_GEOMETRY_TYPES = {
    "Point": "esriGeometryPoint",
    "MultiPoint": "esriGeometryMultipoint",
    "LineString": "esriGeometryPolyline",
    "MultiLineString": "esriGeometryPolyline",
    "Polygon": "esriGeometryPolygon",
    "MultiPolygon": "esriGeometryPolygon",
}


def convert(path: str, layer: str | None, fmt: str, scratch: Path) -> Path:
    """The result as a file of ``fmt`` (a temporary file in ``scratch``, for the caller to remove)."""
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "gpkg":
        return Path(path)
    import geopandas as gpd
    import pyogrio

    frame = gpd.read_file(path, layer=layer, engine="pyogrio")
    handle, name = tempfile.mkstemp(suffix=FORMATS[fmt][1], dir=scratch)
    os.close(handle)
    os.unlink(name)  # the writers want to create the file themselves
    target = Path(name)
    if fmt == "parquet":
        frame.to_parquet(target)
    elif fmt == "csv":
        pyogrio.write_dataframe(frame, target, driver="CSV", layer_options={"GEOMETRY": "AS_WKT"})
    else:
        pyogrio.write_dataframe(frame, target, driver={"geojson": "GeoJSON", "fgb": "FlatGeobuf"}[fmt])
    return target


def feature_set(path: str, layer: str | None) -> dict[str, Any]:
    """The layer as Esri's FeatureSet JSON (what a GPFeatureRecordSetLayer value carries inline)."""
    import geopandas as gpd

    frame = gpd.read_file(path, layer=layer, engine="pyogrio")
    columns = (
        [c for c in frame.columns if c != frame.geometry.name]
        if isinstance(frame, gpd.GeoDataFrame)
        else list(frame.columns)
    )
    fields = [{"name": "OBJECTID", "type": "esriFieldTypeOID", "alias": "OBJECTID"}]
    fields += [{"name": c, "type": _field_type(frame[c].dtype), "alias": c} for c in columns]
    geometries = frame.geometry if isinstance(frame, gpd.GeoDataFrame) else [None] * len(frame)
    values = {c: frame[c].tolist() for c in columns}
    features = []
    for i, geometry in enumerate(geometries):
        attributes = {"OBJECTID": i + 1, **{c: _value(values[c][i]) for c in columns}}
        feature: dict[str, Any] = {"attributes": attributes}
        shape = _geometry(geometry)
        if shape is not None:
            feature["geometry"] = shape
        features.append(feature)
    result: dict[str, Any] = {
        "objectIdFieldName": "OBJECTID",
        "fields": fields,
        "features": features,
    }
    if isinstance(frame, gpd.GeoDataFrame):
        present = [g for g in geometries if g is not None and not g.is_empty]
        if present:
            result["geometryType"] = _GEOMETRY_TYPES[present[0].geom_type]
        if frame.crs is not None:
            code = frame.crs.to_epsg()
            result["spatialReference"] = {"wkid": code} if code else {"wkt": frame.crs.to_wkt("WKT1_ESRI")}
    return result


def _field_type(dtype: Any) -> str:
    kind = getattr(dtype, "kind", "O")
    if kind in "iu":
        return "esriFieldTypeInteger" if getattr(dtype, "itemsize", 8) <= 4 else "esriFieldTypeBigInteger"
    if kind == "f":
        return "esriFieldTypeDouble"
    if kind == "b":
        return "esriFieldTypeSmallInteger"
    if kind == "M":
        return "esriFieldTypeDate"
    return "esriFieldTypeString"


def _value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    try:
        import pandas as pd

        if value is pd.NaT or value is pd.NA:
            return None
    except ImportError:  # pragma: no cover
        pass
    return value


def _geometry(geometry: Any) -> dict[str, Any] | None:
    """Esri JSON geometry: rings clockwise outside and counter-clockwise inside, as Esri draws them."""
    if geometry is None or geometry.is_empty:
        return None
    import shapely

    kind = geometry.geom_type
    if kind == "Point":
        return {"x": geometry.x, "y": geometry.y}
    if kind == "MultiPoint":
        return {"points": [[p.x, p.y] for p in geometry.geoms]}
    if kind in ("LineString", "MultiLineString"):
        lines = [geometry] if kind == "LineString" else list(geometry.geoms)
        return {"paths": [[list(c[:2]) for c in line.coords] for line in lines]}
    if kind in ("Polygon", "MultiPolygon"):
        rings = []
        for polygon in [geometry] if kind == "Polygon" else list(geometry.geoms):
            oriented = shapely.geometry.polygon.orient(polygon, sign=-1.0)
            rings.append([list(c[:2]) for c in oriented.exterior.coords])
            rings.extend([list(c[:2]) for c in ring.coords] for ring in oriented.interiors)
        return {"rings": rings}
    return None
