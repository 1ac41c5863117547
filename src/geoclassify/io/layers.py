"""Feature layers through OGR (pyogrio), and GeoParquet through pyarrow, as GeoDataFrames.

The GeoDataFrame keeps every attribute, the original geometries and the input order; the pipeline only
ever works on reprojected *copies* of the geometries.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError

from .. import settings
from ..errors import DataLossWarning, FeatureSourceError, GeoclassifyWarning
from ..hooks import warn
from .datalosses import relayed
from .images import is_remote

PARQUET_SUFFIXES = (".parquet", ".geoparquet")


def list_layers(path: str | os.PathLike[str]) -> list[str]:
    """Layer names of a vector dataset (one for single-layer formats)."""
    if str(path).lower().endswith(PARQUET_SUFFIXES):
        return [Path(path).stem]
    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except (DataSourceError, OSError) as exc:
        raise FeatureSourceError(f"feature layer {os.fspath(path)!r} cannot be opened by OGR ({exc})") from None


def resolve_layer(text: str, layer: str | None) -> str:
    """The layer to read: the one named (it must exist: the error lists those there are), else the first."""
    layers = list_layers(text)
    if layer is not None and layer not in layers:
        raise FeatureSourceError(
            f"feature layer {text!r} has no layer {layer!r}; its layers: {', '.join(layers) or 'none'}"
        )
    if not layers:
        raise FeatureSourceError(f"feature layer {text!r} holds no layer")
    return layer if layer is not None else layers[0]


def read_features(
    path: str | os.PathLike[str], layer: str | None = None, columns: list[str] | None = None, where: str | None = None
) -> gpd.GeoDataFrame:
    """Read a whole layer (``columns=[]``: geometry only), only the features ``where`` (an OGR SQL clause)
    selects when given; a missing layer name is an error that lists the layers there are."""
    text = os.fspath(path)
    if not is_remote(text) and not Path(text).exists():
        raise FeatureSourceError(f"feature layer {text!r} not found; check the path given to «input_features»")
    if text.lower().endswith(PARQUET_SUFFIXES):
        _refuse_where_on_parquet(text, where)
        try:
            return gpd.read_parquet(text)
        except Exception as exc:  # pyarrow raises several unrelated types for bad files
            raise FeatureSourceError(f"feature layer {text!r} is not readable GeoParquet ({exc})") from None
    _warn_without_dbf(text)
    layers = list_layers(text)
    chosen = resolve_layer(text, layer)
    if layer is None and len(layers) > 1:
        warn(
            GeoclassifyWarning(
                f"feature layer {text!r} has {len(layers)} layers ({', '.join(layers)}); reading {chosen!r}. "
                "Choose one with «features_layer»."
            )
        )
    try:
        with relayed(f"feature layer {text!r}"):  # GDAL's word on values it could not read as they are
            frame = pyogrio.read_dataframe(text, layer=chosen, columns=columns, where=where)
    except DataLayerError as exc:
        if where is not None:
            raise _where_error(text, where, exc) from None
        raise FeatureSourceError(f"feature layer {text!r} cannot be read ({exc})") from None
    except (DataSourceError, OSError) as exc:
        raise FeatureSourceError(f"feature layer {text!r} cannot be read ({exc})") from None
    except UnicodeDecodeError as exc:
        raise FeatureSourceError(
            f"feature layer {text!r} holds text that is not {exc.encoding} ({exc.reason}), the encoding it declares "
            "(a shapefile's .cpg); correct the declared encoding, or save the layer again as UTF-8"
        ) from None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry is None:
        raise FeatureSourceError(f"feature layer {text!r} has no geometry column; give a layer of features")
    return frame


def layer_info(path: str | os.PathLike[str], layer: str | None = None) -> dict:
    """OGR's description of a layer: feature count, field names, geometry type, CRS (GeoParquet: the same keys,
    from its metadata)."""
    text = os.fspath(path)
    if text.lower().endswith(PARQUET_SUFFIXES):
        return _parquet_info(text)
    _warn_without_dbf(text)
    try:
        return pyogrio.read_info(text, layer=resolve_layer(text, layer))
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise FeatureSourceError(f"feature layer {text!r} cannot be read ({exc})") from None


def stream_features(
    path: str | os.PathLike[str], layer: str | None = None, columns: list[str] | None = None, where: str | None = None
) -> Iterator[gpd.GeoDataFrame]:
    """The layer in batches of rows (``columns=[]``: geometry only), in the same order as :func:`read_features`
    reads it, with the same ``where``."""
    text = os.fspath(path)
    if text.lower().endswith(PARQUET_SUFFIXES):
        _refuse_where_on_parquet(text, where)
        yield from _stream_parquet(text, columns)
        return
    layer = resolve_layer(text, layer)
    try:
        batch = settings.current().stream_batch
        stream = pyogrio.open_arrow(text, layer=layer, columns=columns, batch_size=batch, use_pyarrow=True, where=where)
        with stream as (_, reader):
            yield from _at_least_one(reader, reader.schema)
    except DataLayerError as exc:
        if where is not None:
            raise _where_error(text, where, exc) from None
        raise FeatureSourceError(f"feature layer {text!r} cannot be read ({exc})") from None
    except (DataSourceError, OSError) as exc:
        raise FeatureSourceError(f"feature layer {text!r} cannot be read ({exc})") from None


def count_features(path: str | os.PathLike[str], layer: str | None, where: str) -> int:
    """How many features of the layer ``where`` selects: OGR counts them reading no attribute or geometry."""
    text = os.fspath(path)
    if text.lower().endswith(PARQUET_SUFFIXES):
        _refuse_where_on_parquet(text, where)
    try:
        _, table = pyogrio.read_arrow(
            text, layer=resolve_layer(text, layer), columns=[], read_geometry=False, return_fids=True, where=where
        )
    except DataLayerError as exc:
        raise _where_error(text, where, exc) from None
    except (DataSourceError, OSError) as exc:
        raise FeatureSourceError(f"feature layer {text!r} cannot be read ({exc})") from None
    return int(table.num_rows)


def _where_error(text: str, where: str, exc: Exception) -> FeatureSourceError:
    return FeatureSourceError(
        f"«where» {where!r} cannot filter feature layer {text!r} ({exc}); give an SQL WHERE clause over the "
        "layer's fields, such as \"type = 'roof' AND area > 50\""
    )


def _refuse_where_on_parquet(text: str, where: str | None) -> None:
    if where is not None:
        raise FeatureSourceError(
            f"«where» filters layers read through OGR, and {text!r} is GeoParquet, read through pyarrow; filter it "
            "beforehand (geopandas' read_parquet, then to_file as a GeoPackage) or drop «where»"
        )


def _warn_without_dbf(text: str) -> None:
    """OGR reads a ``.shp`` whose ``.dbf`` is missing as features without attributes, and says nothing."""
    path = Path(text)
    if is_remote(text) or path.suffix.lower() != ".shp" or not path.exists():
        return
    stem = path.name[: -len(path.suffix)]
    if any((path.parent / (stem + suffix)).exists() for suffix in (".dbf", ".DBF")):
        return
    warnings.warn(
        f"feature layer {text!r} has no {stem}.dbf beside it, so its features have no attributes: the output holds "
        "only their geometry and the result fields; put the .dbf beside the .shp to keep them",
        DataLossWarning,
        stacklevel=1,  # one place, so a run that looks at the layer twice says it once
    )


def _parquet_file(text: str) -> tuple[pq.ParquetFile, dict]:
    """The file and its GeoParquet metadata (the ``geo`` key)."""
    try:
        file = pq.ParquetFile(text)
        if b"geo" not in (file.schema_arrow.metadata or {}):
            raise FeatureSourceError(
                f"feature layer {text!r} is Parquet without GeoParquet metadata (no 'geo' key), so its geometry "
                "column is unknown; write it as GeoParquet (geopandas' to_parquet, or ogr2ogr)"
            )
        geo = json.loads(file.schema_arrow.metadata[b"geo"])
        if geo["primary_column"] not in geo["columns"]:
            raise KeyError(f"no metadata for its geometry column {geo['primary_column']!r}")
    except (KeyError, TypeError, ValueError, OSError, pa.ArrowException) as exc:
        raise FeatureSourceError(f"feature layer {text!r} is not readable GeoParquet ({exc})") from None
    return file, geo


def _parquet_info(text: str) -> dict:
    file, geo = _parquet_file(text)
    geometry = geo["primary_column"]
    column = geo["columns"][geometry]
    types = column.get("geometry_types") or []
    # GeoParquet: no "crs" key means OGC:CRS84; null means unknown.
    crs = column.get("crs", "OGC:CRS84")
    return {
        "features": file.metadata.num_rows,
        "fields": [name for name in file.schema_arrow.names if name != geometry and not name.startswith("__")],
        "geometry_type": types[0].removesuffix(" Z") if len(types) == 1 else "Unknown",
        "crs": json.dumps(crs) if isinstance(crs, dict) else crs,
    }


def _stream_parquet(text: str, columns: list[str] | None) -> Iterator[gpd.GeoDataFrame]:
    file, geo = _parquet_file(text)
    wanted = None if columns is None else [*columns, geo["primary_column"]]
    try:
        schema = file.schema_arrow if wanted is None else pa.schema([file.schema_arrow.field(n) for n in wanted])
        yield from _at_least_one(file.iter_batches(batch_size=settings.current().stream_batch, columns=wanted), schema)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise FeatureSourceError(f"feature layer {text!r} cannot be read ({exc})") from None


def _at_least_one(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> Iterator[gpd.GeoDataFrame]:
    """Each record batch as a GeoDataFrame; an empty layer gives one empty batch (its fields and CRS), so every
    consumer sees the layer's shape and none has to handle "no batch at all"."""
    given = False
    for batch in batches:
        given = True
        yield gpd.GeoDataFrame.from_arrow(pa.Table.from_batches([batch]))
    if not given:
        yield gpd.GeoDataFrame.from_arrow(pa.Table.from_batches([], schema=schema))
