"""Esri's processing modes for features over an image collection.

``mosaic`` (PROCESS_AS_MOSAICKED_IMAGE) treats the collection as one image: a feature across two images gets
one chip composited from both. ``items`` (PROCESS_ITEMS_SEPARATELY) classifies each feature once per image
that covers it, one output row each, tagged with ``ItemID``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import geopandas as gpd
import numpy as np
import shapely

from .errors import CRSMismatchError, GeoclassifyError, GeoclassifyWarning
from .images import ImageRef
from .journal import Journal
from .model import Model
from .mosaic import GridSource, mosaic_grid
from .parallel import Execution
from .pipeline import Predictions, classify_geometries
from .raster import RasterSource
from .results import geometries_in
from .whole_images import footprint, open_image

Advance = Callable[[int], None]


def open_mosaic(refs: Sequence[ImageRef], cell_size: float | None) -> RasterSource | GridSource:
    """The collection as one raster: the image itself when there is one and no cell size is asked."""
    if len(refs) == 1:
        return open_image(refs[0], cell_size)
    sources: list[RasterSource] = []
    try:
        for ref in refs:
            sources.append(RasterSource(ref.uri, label=ref.image_id))
        return GridSource(sources, mosaic_grid(sources, cell_size))
    except GeoclassifyError:
        for source in sources:
            source.close()
        raise


def classify_mosaic(
    model: Model,
    refs: Sequence[ImageRef],
    frame: gpd.GeoDataFrame,
    features_label: object,
    cell_size: float | None,
    advance: Advance | None,
    execution: Execution | None = None,
    journal: Journal | None = None,
) -> Predictions:
    with open_mosaic(refs, cell_size) as raster:
        geometries = geometries_in(frame, raster.crs, raster.path, features_label)  # type: ignore[arg-type]
        return classify_geometries(
            model, raster, geometries, advance, execution, partial(open_mosaic, refs, cell_size), journal
        )


@dataclass
class ItemRows:
    """Rows of an items-mode run: which feature, which image (None: no image covers it), and the result."""

    feature: np.ndarray
    item: np.ndarray
    predictions: Predictions


def classify_items(
    model: Model,
    refs: Sequence[ImageRef],
    frame: gpd.GeoDataFrame,
    features_label: object,
    cell_size: float | None,
    advance: Advance | None,
    execution: Execution | None = None,
) -> ItemRows:
    n = len(frame)
    parts: list[tuple[np.ndarray, int, Predictions]] = []
    covered = np.zeros(n, dtype=bool)
    empty = frame.geometry.isna().to_numpy() | frame.geometry.is_empty.to_numpy()
    for position, ref in enumerate(refs):
        try:
            source = open_image(ref, cell_size)
        except GeoclassifyError as exc:
            warnings.warn(f"image {ref.image_id!r} skipped: {exc}", GeoclassifyWarning, stacklevel=2)
            continue
        with source:
            try:
                geometries = geometries_in(frame, source.crs, source.path, features_label)  # type: ignore[arg-type]
            except CRSMismatchError as exc:
                warnings.warn(f"image {ref.image_id!r} skipped: {exc}", GeoclassifyWarning, stacklevel=2)
                continue
            reach = footprint(source)
            hits = np.flatnonzero(~empty & shapely.intersects(geometries, reach))
            if len(hits) == 0:
                continue
            predictions = classify_geometries(
                model, source, geometries[hits], advance, execution, partial(open_image, ref, cell_size)
            )
            covered[hits] = True
            parts.append((hits, position, predictions))
    lonely = np.flatnonzero(~covered)
    # A feature no image covers keeps one row: empty label, outside (or empty geometry), no ItemID.
    parts.append(
        (
            lonely,
            -1,
            Predictions(
                class_index=np.full(len(lonely), -1),
                confidence=np.full(len(lonely), np.nan),
                coverage=np.zeros(len(lonely)),
                empty=empty[lonely],
                outside=~empty[lonely],
            ),
        )
    )
    feature = np.concatenate([hits for hits, _, _ in parts]).astype(np.int64)
    item = np.concatenate([np.full(len(hits), position) for hits, position, _ in parts])
    order = np.lexsort((item, feature))
    predictions = Predictions(
        **{
            name: np.concatenate([getattr(p, name) for _, _, p in parts])[order]
            for name in ("class_index", "confidence", "coverage", "empty", "outside")
        }
    )
    if advance is not None:
        advance(len(lonely))
    return ItemRows(feature[order], item[order], predictions)
