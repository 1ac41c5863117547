"""Features over imagery: each feature classified on the collection, and the output rows joined to the layer.

The processing mode decides where a feature's chip comes from (:mod:`.collection`); this module turns the
predictions into rows (one per feature, or one per feature and image in items mode) and the run's counts, and
says when nothing overlapped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
from rasterio.crs import CRS
from rasterio.enums import Resampling

from ..core.predictions import Predictions
from ..environment import Extent
from ..errors import CRSMismatchError, NoOverlapWarning
from ..fields import ResultFields, describe
from ..hooks import warn
from ..io.feature_batches import FeatureBatches
from ..io.images import ImageRef
from ..io.journal import Journal
from ..io.rasters import RasterSource
from ..model.runtime import Model
from ..runners import Runner
from ..summary import Summary
from .collection import classify_items, classify_mosaic
from .ranking import DEFAULT_OPTIONS, ResultOptions, below_coverage, class_counts, option_columns

PathLike = str | os.PathLike[str]


def classify_features(
    model: Model,
    refs: Sequence[ImageRef],
    source: FeatureBatches,
    mode: str,
    fields: ResultFields,
    area: Extent | None,
    cell_size: float | None,
    target_crs: CRS | None,
    runner: Runner,
    journal: Journal | None,
    resampling: Resampling,
    options: ResultOptions = DEFAULT_OPTIONS,
    prefix: str = "",
) -> tuple[Iterator[gpd.GeoDataFrame], Summary]:
    """Classify the features; the output rows come as batches, read again from the layer when it is streamed.
    ``options`` add fields (``prefix`` before their names) and set chips with too little valid raster apart."""
    features = source.features
    if area is not None:
        source.reach = area.polygon_in(source.crs, processing_crs(refs))
    if target_crs is not None and source.crs is None:
        raise CRSMismatchError(
            f"{describe(features)} has no coordinate system, so it cannot be written in "
            f"{target_crs.to_string()} («output_crs»)"
        )
    if mode == "mosaic":
        predictions = classify_mosaic(model, refs, source, features, cell_size, runner, journal, resampling)
        feature, extra = None, None
    else:
        items = classify_items(model, refs, source, features, cell_size, runner, journal, resampling)
        predictions, feature = items.predictions, items.feature
        ids = np.array([ref.image_id for ref in refs] + [None], dtype=object)
        extra = pd.DataFrame({"ItemID": pd.array(ids[items.item], dtype="string")})
    _warn_no_overlap(predictions, features, refs)
    low = below_coverage(predictions.class_index, predictions.coverage, options)
    if low is not None:
        predictions.class_index = np.where(low, -1, predictions.class_index)
    lacking = int(low.sum()) if low is not None else 0
    skipped = source.count - source.selected
    if feature is None:
        classified = predictions.classified
        summary = Summary(
            read=len(classified),
            classified=int(classified.sum()),
            outside=int((~classified & ~predictions.empty).sum()) - lacking,
            empty=int(predictions.empty.sum()),
            skipped=skipped,
            low_coverage=lacking,
        )
    else:
        classified = predictions.classified
        low_rows = low if low is not None else np.zeros(len(classified), dtype=bool)
        summary = Summary(
            read=source.selected,
            classified=int(np.unique(feature[classified]).size),
            outside=int(source.selected - np.unique(feature[classified | predictions.empty | low_rows]).size),
            empty=int(predictions.empty.sum()),
            rows=len(feature),
            skipped=skipped,
            # Features only chips of too little coverage cover, on every image.
            low_coverage=int(np.setdiff1d(feature[low_rows], feature[classified]).size),
        )
    columns = option_columns(
        model.definition.classes,
        predictions.class_index,
        predictions.confidence,
        predictions.coverage,
        fields,
        model.arguments.get("score_threshold"),
        options,
        model.multi_label,
        low,
        predictions.empty,
        prefix,
    )
    summary = summary.but(per_class=class_counts(columns[fields.label], model.definition.classes, model.multi_label))
    return source.rows(columns, target_crs, feature, extra), summary


def images_label(refs: Sequence[ImageRef]) -> str:
    return f"raster {refs[0].image_id!r}" if len(refs) == 1 else f"any of the {len(refs)} images"


def processing_crs(refs: Sequence[ImageRef]) -> CRS | None:
    """The CRS chips are cut in: the first image's (the mosaic grid takes it too)."""
    with RasterSource(refs[0].uri, label=refs[0].image_id) as first:
        return first.crs


def _warn_no_overlap(predictions: Predictions, features: PathLike | gpd.GeoDataFrame, refs: Sequence[ImageRef]) -> None:
    if len(predictions.class_index) and not predictions.classified.any() and predictions.outside.any():
        warn(
            NoOverlapWarning(
                f"no feature of {describe(features)} overlaps {images_label(refs)}; every label is empty. "
                "Check that the features and the raster cover the same place."
            )
        )
