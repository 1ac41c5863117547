"""Big layers, never held whole: planned from batches of geometries, their attributes streamed to the output.

A layer of :data:`STREAM_FEATURES` features or more is read twice, batch by batch. The first pass keeps only what
the classification loop needs of each feature (its chip window and flags; its polygon, on disk, when the model
blackens). The second pass reads the layer again with its attributes and joins each row to its results by position
(the same reader gives the same order), writing the output batch by batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

from .environment import Extent
from .errors import CRSMismatchError
from .features import layer_info, stream_features
from .images import ImageRef, is_remote
from .journal import Journal
from .model import Model
from .modes import open_mosaic
from .parallel import Execution
from .pipeline import Predictions, classify_plan, prepare_raster, to_pixel_space
from .plan import PlanBuilder
from .progress import progress_bar
from .results import RESULT_FIELDS, check_lost, geometry_last, reproject

PathLike = str | os.PathLike[str]

#: Layers of at least this many features (GEOCLASSIFY_STREAM_FEATURES) are streamed rather than read whole.
STREAM_FEATURES = int(os.environ.get("GEOCLASSIFY_STREAM_FEATURES", "250000"))


def should_stream(features: PathLike | gpd.GeoDataFrame, layer: str | None, mode: str, out: PathLike | None) -> bool:
    """Stream a big layer file classified in mosaic mode into a file; everything else is read whole."""
    if isinstance(features, gpd.GeoDataFrame) or out is None or mode != "mosaic":
        return False
    text = os.fspath(features)
    if not (is_remote(text) or Path(text).exists()):
        return False  # a missing file gets its own error when read
    return int(layer_info(features, layer)["features"]) >= STREAM_FEATURES


def layer_crs(features: PathLike, layer: str | None) -> ProjCRS | None:
    text = layer_info(features, layer)["crs"]
    return ProjCRS.from_user_input(text) if text else None


def classify_streamed(
    model: Model,
    refs: Sequence[ImageRef],
    features: PathLike,
    layer: str | None,
    area: Extent | None,
    cell_size: float | None,
    target_crs: CRS | None,
    progress: bool,
    execution: Execution,
    journal: Journal | None,
) -> tuple[Predictions, np.ndarray | None]:
    """Classify a big layer in mosaic mode: (predictions of the features kept, which features the extent kept)."""
    source_crs = layer_crs(features, layer)
    if target_crs is not None and source_crs is None:
        raise CRSMismatchError(
            f"{os.fspath(features)!r} has no coordinate system, so it cannot be written in "
            f"{target_crs.to_string()} (--out-crs)"
        )
    with open_mosaic(refs, cell_size) as raster:
        band_indexes, spec = prepare_raster(model, raster)
        rows, cols = raster.shape
        builder = PlanBuilder(spec, rows, cols, spill=True)
        reach = area.polygon_in(source_crs, raster.crs) if area is not None else None
        kept: list[np.ndarray] = []
        lost = placed = 0
        for batch in stream_features(features, layer, columns=[]):
            if reach is not None:
                keep = batch.geometry.intersects(reach).to_numpy()
                kept.append(keep)
                batch = batch.loc[keep]
            moved, batch_lost, batch_placed = reproject(batch, raster.crs, raster.path, features)
            lost, placed = lost + batch_lost, placed + batch_placed
            builder.add(to_pixel_space(raster, moved))
        check_lost(lost, placed, source_crs, raster.crs, raster.path, features)
        opener = partial(open_mosaic, refs, cell_size)
        with builder.finish() as plan, progress_bar(plan.count, progress) as advance:
            predictions = classify_plan(model, raster, plan, band_indexes, advance, execution, opener, journal)
    return predictions, (np.concatenate(kept) if kept else None)


def streamed_rows(
    features: PathLike,
    layer: str | None,
    results: pd.DataFrame,
    kept: np.ndarray | None,
    label_field: str,
    target_crs: CRS | None,
) -> Iterator[gpd.GeoDataFrame]:
    """The input layer again, batch by batch, with each row's results joined by position; rows the extent left out
    are skipped."""
    results = results[[label_field, *RESULT_FIELDS]]
    position = row = 0
    for batch in stream_features(features, layer):
        count = len(batch)
        mask = np.ones(count, dtype=bool) if kept is None else kept[position : position + count]
        part = batch.loc[mask].copy()
        for name in results.columns:
            part[name] = results[name].array[row : row + len(part)]
        part = geometry_last(part)
        yield part.to_crs(target_crs.to_wkt()) if target_crs is not None else part
        position += count
        row += len(part)
