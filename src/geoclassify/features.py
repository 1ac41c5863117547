"""Feature layers through OGR (pyogrio), and GeoParquet through pyarrow, as GeoDataFrames.

The GeoDataFrame keeps every attribute, the original geometries and the input order; the pipeline only
ever works on reprojected *copies* of the geometries.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pyarrow as pa
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError

from .errors import FeatureSourceError, GeoclassifyWarning
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
    path: str | os.PathLike[str], layer: str | None = None, columns: list[str] | None = None
) -> gpd.GeoDataFrame:
    """Read a whole layer (``columns=[]``: geometry only); a missing layer name is an error that lists the layers
    there are."""
    text = os.fspath(path)
    if not is_remote(text) and not Path(text).exists():
        raise FeatureSourceError(f"feature layer {text!r} not found; check the path given to --features")
    if text.lower().endswith(PARQUET_SUFFIXES):
        try:
            return gpd.read_parquet(text)
        except Exception as exc:  # pyarrow raises several unrelated types for bad files
            raise FeatureSourceError(f"feature layer {text!r} is not readable GeoParquet ({exc})") from None
    layers = list_layers(text)
    chosen = resolve_layer(text, layer)
    if layer is None and len(layers) > 1:
        warnings.warn(
            f"feature layer {text!r} has {len(layers)} layers ({', '.join(layers)}); reading {chosen!r}. "
            "Choose one with --features-layer.",
            GeoclassifyWarning,
            stacklevel=2,
        )
    try:
        frame = pyogrio.read_dataframe(text, layer=chosen, columns=columns)
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise FeatureSourceError(f"feature layer {text!r} cannot be read ({exc})") from None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry is None:
        raise FeatureSourceError(f"feature layer {text!r} has no geometry column; give a layer of features")
    return frame


def layer_info(path: str | os.PathLike[str], layer: str | None = None) -> dict:
    """OGR's description of a layer: feature count, field names, geometry type."""
    text = os.fspath(path)
    try:
        return pyogrio.read_info(text, layer=resolve_layer(text, layer))
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise FeatureSourceError(f"feature layer {text!r} cannot be read ({exc})") from None


def stream_features(
    path: str | os.PathLike[str], layer: str | None = None, batch_size: int = 65_536
) -> Iterator[gpd.GeoDataFrame]:
    """The layer in batches of rows, in the same order as :func:`read_features` reads it."""
    text = os.fspath(path)
    layer = resolve_layer(text, layer)
    try:
        with pyogrio.open_arrow(text, layer=layer, batch_size=batch_size, use_pyarrow=True) as (_, reader):
            for batch in reader:
                yield gpd.GeoDataFrame.from_arrow(pa.Table.from_batches([batch]))
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise FeatureSourceError(f"feature layer {text!r} cannot be read ({exc})") from None
