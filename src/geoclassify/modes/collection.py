"""Esri's processing modes for features over an image collection.

``mosaic`` (PROCESS_AS_MOSAICKED_IMAGE) treats the collection as one image: a feature across two images gets
one chip composited from both. ``items`` (PROCESS_ITEMS_SEPARATELY) classifies each feature once per image
that covers it, one output row each, tagged with ``ItemID``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling

from ..core.plan import PlanBuilder
from ..core.predictions import Predictions
from ..environment import DEFAULT_RESAMPLING
from ..errors import CRSMismatchError, GeoclassifyError, GeoclassifyWarning
from ..hooks import tracking, warn
from ..io.feature_batches import FeatureBatches
from ..io.images import ImageRef
from ..io.journal import Journal
from ..io.mosaics import GridSource, mosaic_grid
from ..io.rasters import RasterSource
from ..model.runtime import Model
from ..runners import Runner, chip_spec, classify_plan
from .raster_setup import prepare_raster, to_pixel_space
from .reproject import check_lost, reproject
from .whole_images import footprint, open_image


def open_mosaic(
    refs: Sequence[ImageRef], cell_size: float | None, resampling: Resampling = DEFAULT_RESAMPLING
) -> RasterSource | GridSource:
    """The collection as one raster (images off its grid warped with ``resampling``): the image itself when there
    is one and no cell size is asked."""
    if len(refs) == 1:
        return open_image(refs[0], cell_size, resampling)
    sources: list[RasterSource] = []
    try:
        for ref in refs:
            sources.append(RasterSource(ref.uri, label=ref.image_id))
        return GridSource(sources, mosaic_grid(sources, cell_size), resampling=resampling)
    except GeoclassifyError:
        for source in sources:
            source.close()
        raise


def classify_mosaic(
    model: Model,
    refs: Sequence[ImageRef],
    batches: FeatureBatches,
    features_label: object,
    cell_size: float | None,
    runner: Runner,
    journal: Journal | None = None,
    resampling: Resampling = DEFAULT_RESAMPLING,
) -> Predictions:
    """One result per feature the batches yield, in their order: the plan is made batch by batch, then run."""
    with open_mosaic(refs, cell_size, resampling) as raster:
        band_indexes = prepare_raster(model, raster)
        rows, cols = raster.shape
        builder = PlanBuilder(chip_spec(model), rows, cols, spill=batches.streamed)
        lost = placed = 0
        for batch in batches:
            moved, batch_lost, batch_placed = reproject(batch, raster.crs, raster.label, features_label)  # type: ignore[arg-type]
            lost, placed = lost + batch_lost, placed + batch_placed
            builder.add(to_pixel_space(raster.transform, moved))
        check_lost(lost, placed, batches.crs, raster.crs, raster.label, features_label)  # type: ignore[arg-type]
        opener = partial(open_mosaic, refs, cell_size, resampling)
        with builder.finish() as plan, tracking(plan.count) as advance:
            return classify_plan(model, raster, plan, band_indexes, runner, opener, journal, advance)


@dataclass
class ItemRows:
    """Rows of an items-mode run: which feature, which image (None: no image covers it), and the result."""

    feature: np.ndarray
    item: np.ndarray
    predictions: Predictions


@dataclass
class _Item:
    """One image of an items-mode run while the features are planned: its grid, outline and the plan so far."""

    position: int
    ref: ImageRef
    crs: CRS | None
    label: str
    transform: Affine
    outline: shapely.Geometry
    builder: PlanBuilder
    hits: list[np.ndarray]
    lost: int = 0
    placed: int = 0
    skipped: bool = False


def classify_items(
    model: Model,
    refs: Sequence[ImageRef],
    batches: FeatureBatches,
    features_label: object,
    cell_size: float | None,
    runner: Runner,
    journal: Journal | None = None,
    resampling: Resampling = DEFAULT_RESAMPLING,
) -> ItemRows:
    """Each feature on each image that covers it. One pass over the features plans every image at once; then each
    image's plan is run."""
    spec = chip_spec(model)
    items: list[_Item] = []
    for position, ref in enumerate(refs):
        try:
            source = open_image(ref, cell_size, resampling)
        except GeoclassifyError as exc:
            warn(GeoclassifyWarning(f"image {ref.image_id!r} skipped: {exc}"))
            continue
        with source:
            rows, cols = source.shape
            builder = PlanBuilder(spec, rows, cols, spill=batches.streamed)
            outline = footprint(source)
            items.append(_Item(position, ref, source.crs, source.label, source.transform, outline, builder, []))
    empties: list[np.ndarray] = []
    offset = 0
    for batch in batches:
        geometries = batch.geometry.to_numpy()
        empty = shapely.is_missing(geometries) | shapely.is_empty(geometries)
        empties.append(empty)
        for item in items:
            if item.skipped:
                continue
            try:
                moved, lost, placed = reproject(batch, item.crs, item.label, features_label)  # type: ignore[arg-type]
            except CRSMismatchError as exc:
                warn(GeoclassifyWarning(f"image {item.ref.image_id!r} skipped: {exc}"))
                item.skipped = True
                continue
            item.lost, item.placed = item.lost + lost, item.placed + placed
            hits = np.flatnonzero(~empty & shapely.intersects(moved, item.outline))
            item.builder.add(to_pixel_space(item.transform, moved[hits]))
            item.hits.append(hits + offset)
        offset += len(batch)
    empty = np.concatenate(empties) if empties else np.zeros(0, dtype=bool)
    parts: list[tuple[np.ndarray, int, Predictions]] = []
    covered = np.zeros(len(empty), dtype=bool)
    with tracking(None) as advance:
        for item in items:
            with item.builder.finish() as plan:
                if item.skipped or plan.count == 0:
                    continue
                try:
                    check_lost(item.lost, item.placed, batches.crs, item.crs, item.label, features_label)  # type: ignore[arg-type]
                except CRSMismatchError as exc:
                    warn(GeoclassifyWarning(f"image {item.ref.image_id!r} skipped: {exc}"))
                    continue
                hits = np.concatenate(item.hits)
                opener = partial(open_image, item.ref, cell_size, resampling)
                if journal is not None:
                    journal.select(item.position)
                with opener() as source:
                    band_indexes = prepare_raster(model, source)
                    predictions = classify_plan(model, source, plan, band_indexes, runner, opener, journal, advance)
            covered[hits] = True
            parts.append((hits, item.position, predictions))
        lonely = np.flatnonzero(~covered)
        advance(len(lonely))
    # A feature no image covers keeps one row: empty label, outside (or empty geometry), no ItemID.
    parts.append(
        (
            lonely,
            -1,
            Predictions(
                class_index=np.full(len(lonely), -1),
                confidence=np.full((len(lonely), *model.score_shape), np.nan),
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
    return ItemRows(feature[order], item[order], predictions)
