"""Feature layers as batches: one batch for a layer read whole, many for a big layer that is never held whole.

A layer of ``GEOCLASSIFY_STREAM_FEATURES`` (250,000) features or more is read twice, batch by batch. The first
pass reads only the geometries, from which each processing mode keeps what its classification loop needs (chip
windows and flags; the polygons, on disk, when the model blackens). The second pass reads the layer again with its
attributes and joins each row to its results by position (the same reader gives the same order), writing the
output batch by batch. A smaller layer, or a GeoDataFrame, is the single batch of both passes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

from .. import settings
from ..errors import InvalidGeometryWarning, SettingError
from ..fields import describe, geometry_last
from ..hooks import warn
from .images import is_remote
from .layers import count_features, layer_info, read_features, stream_features

PathLike = str | os.PathLike[str]


class FeatureBatches:
    """The features of a run, batch by batch, with the extent applied.

    Iterating yields geometry batches (only the features that meet ``reach``, a polygon in the layer's CRS, when
    given); afterwards :attr:`kept` says which rows of the layer they were. :meth:`rows` is the second pass: the
    layer with its attributes, joined to per-feature results.
    """

    def __init__(
        self,
        features: PathLike | gpd.GeoDataFrame,
        layer: str | None,
        out: PathLike | None,
        where: str | None = None,
    ) -> None:
        """A big layer file classified into ``out`` is streamed; anything else is read whole. ``where`` (OGR SQL)
        keeps only the features it selects, in both passes, so they are all the run sees."""
        if where is not None and isinstance(features, gpd.GeoDataFrame):
            raise SettingError("«where» filters a layer file as OGR reads it; select the GeoDataFrame's rows instead")
        self.features, self.layer, self.where = features, layer, where
        self._frame: gpd.GeoDataFrame | None = None
        info = _info_if_file(features, layer) if out is not None else None
        self.streamed = info is not None and int(info["features"]) >= settings.current().stream_features
        if info is not None and self.streamed:
            self.fields = [str(f) for f in info["fields"]]
            self.count = int(info["features"]) if where is None else count_features(features, layer, where)
            self.geometry_type: str | None = info["geometry_type"]
            self.crs: ProjCRS | None = ProjCRS.from_user_input(info["crs"]) if info["crs"] else None
        else:
            frame = features if isinstance(features, gpd.GeoDataFrame) else read_features(features, layer, where=where)
            self._frame = frame
            self.fields = [str(c) for c in frame.columns if c != frame.geometry.name]
            self.count = len(frame)
            self.geometry_type = None
            self.crs = frame.crs
        self.reach: shapely.Geometry | None = None
        self.kept: np.ndarray | None = None

    @property
    def selected(self) -> int:
        """How many features the extent kept (all, without one)."""
        return self.count if self.kept is None else int(self.kept.sum())

    def __iter__(self) -> Iterator[gpd.GeoDataFrame]:
        kept: list[np.ndarray] = []
        broken: list[np.ndarray] = []
        batches = (
            [self._frame]
            if self._frame is not None
            else stream_features(self.features, self.layer, columns=[], where=self.where)
        )
        position = 0
        for batch in batches:
            batch, bad = _without_non_finite(batch)
            broken.append(bad + position)
            position += len(batch)
            if self.reach is not None:
                keep = batch.geometry.intersects(self.reach).to_numpy()
                kept.append(keep)
                batch = batch.loc[keep]
            yield batch
        self.kept = np.concatenate(kept) if kept else None
        _warn_non_finite(np.concatenate(broken) if broken else np.zeros(0, dtype=np.int64), self.features)

    def rows(
        self,
        results: pd.DataFrame,
        target_crs: CRS | None,
        feature: np.ndarray | None = None,
        extra: pd.DataFrame | None = None,
    ) -> Iterator[gpd.GeoDataFrame]:
        """The layer again with ``results`` joined: one row per kept feature in input order, or, with ``feature``
        (sorted positions among the kept features, repeated for a feature with several results), one row per
        result; ``extra`` columns (such as ItemID) go before the results."""
        batches = (
            [self._frame] if self._frame is not None else stream_features(self.features, self.layer, where=self.where)
        )
        added = results if extra is None else pd.concat([extra, results], axis=1)
        position = start = 0  # rows of the layer seen; kept features seen
        for batch in batches:
            count = len(batch)
            if self.kept is None:
                part, selected = batch, count
            else:
                mask = self.kept[position : position + count]
                part, selected = batch.loc[mask], int(mask.sum())
            if feature is None:
                lo, hi = start, start + selected
                part = part.copy()
            else:
                lo, hi = np.searchsorted(feature, [start, start + selected])
                part = part.iloc[feature[lo:hi] - start].copy()
            for name in added.columns:
                part[name] = added[name].array[lo:hi]
            part = geometry_last(part)
            yield part.to_crs(target_crs.to_wkt()) if target_crs is not None else part
            position += count
            start += selected


def _without_non_finite(batch: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """The batch with geometries that have a NaN or infinite coordinate taken as missing, and their positions.

    Such a vertex has no place on any grid (GEOS fails on it, a chip window would be infinite), and a line with
    one infinite vertex must not be classified at its finite end as if that were the object: the feature is left
    unclassified, as one with an empty geometry is. The output keeps the geometry as it was read.
    """
    geometries = batch.geometry.array
    coordinates, owner = shapely.get_coordinates(np.asarray(geometries, dtype=object), return_index=True)
    bad = np.unique(owner[~np.isfinite(coordinates).all(axis=1)])
    if not len(bad):
        return batch, bad
    batch = batch.copy()  # never the caller's GeoDataFrame
    cleaned = np.asarray(geometries, dtype=object).copy()
    cleaned[bad] = None
    return batch.set_geometry(gpd.GeoSeries(cleaned, index=batch.index, crs=batch.crs)), bad


def _warn_non_finite(positions: np.ndarray, features: PathLike | gpd.GeoDataFrame) -> None:
    if not len(positions):
        return
    shown = ", ".join(str(int(p)) for p in positions[:5]) + (", ..." if len(positions) > 5 else "")
    warn(
        InvalidGeometryWarning(
            f"{len(positions)} feature(s) of {describe(features)} have NaN or infinite coordinates (rows {shown}, "
            "counting from 0); they are left unclassified, like empty geometries: fix or drop those vertices to "
            "classify them."
        )
    )


def _info_if_file(features: PathLike | gpd.GeoDataFrame, layer: str | None) -> dict | None:
    """OGR's (or GeoParquet's) description of a layer file; None for a GeoDataFrame or a missing file, which
    :func:`read_features` refuses with its own error."""
    if isinstance(features, gpd.GeoDataFrame):
        return None
    text = os.fspath(features)
    return layer_info(features, layer) if is_remote(text) or Path(text).exists() else None
