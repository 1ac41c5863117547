"""The classification loop: geometries in the raster's CRS in, one class index, confidence and coverage out.

Features are visited in raster order (by window row band, then column) so neighbouring chips hit GDAL's
block cache, and results are scattered back to input order. No feature is dropped: empty geometries
and features outside the raster come back with class index -1 and coverage 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely

from .chips import ChipSpec, cut_chip, pixel_geometries, plan_windows
from .errors import BlackenIgnoredWarning, CellSizeWarning, ModelMismatchError
from .model import Model
from .raster import RasterSource

#: Rows of the raster grouped together when ordering features for locality.
ROW_BAND = 256


@dataclass
class Predictions:
    """Per-feature results in input order; ``class_index`` is -1 where nothing was classified."""

    class_index: np.ndarray
    confidence: np.ndarray
    coverage: np.ndarray
    empty: np.ndarray
    outside: np.ndarray

    @property
    def classified(self) -> np.ndarray:
        return self.class_index >= 0


def chip_spec(model: Model) -> ChipSpec:
    definition = model.definition
    return ChipSpec(
        height=model.chip_height,
        width=model.chip_width,
        fixed=definition.crop_size_fixed,
        blacken=definition.blacken_around_feature,
    )


def check_cell_size(model: Model, raster: RasterSource) -> None:
    """Warn when the raster's cells are outside the range the model was trained on (MinCellSize/MaxCellSize).

    Only sizes in the raster's own CRS are compared; a range recorded in another spatial reference is skipped
    rather than guessed at.
    """
    definition = model.definition
    epsg = raster.crs.to_epsg() if raster.crs is not None else None
    x, y = raster.cell_size
    for bound, too in ((definition.min_cell_size, "finer"), (definition.max_cell_size, "coarser")):
        if bound is None or (bound.wkid is not None and bound.wkid != epsg):
            continue
        outside = (
            (x < bound.x * 0.999 or y < bound.y * 0.999)
            if too == "finer"
            else (x > bound.x * 1.001 or y > bound.y * 1.001)
        )
        if outside:
            warnings.warn(
                f"raster {raster.path!r} has {x:g} x {y:g} cells, {too} than the model was trained on "
                f"({'MinCellSize' if too == 'finer' else 'MaxCellSize'} {bound.x:g} x {bound.y:g}); objects will "
                "look smaller or larger to the model than in training",
                CellSizeWarning,
                stacklevel=3,
            )


def classify_geometries(
    model: Model,
    raster: RasterSource,
    geometries: np.ndarray,
    progress: Callable[[int], None] | None = None,
) -> Predictions:
    """Classify one chip per geometry; ``geometries`` are shapely objects in the raster's CRS."""
    definition = model.definition
    band_indexes = raster.select_bands(definition.extract_bands)
    if model.band_count is not None and len(band_indexes) != model.band_count:
        raise ModelMismatchError(
            f"{model.package.source}: the model takes {model.band_count} bands but raster {raster.path!r} "
            f"has {len(band_indexes)} and the EMD has no ExtractBands to choose from them; add ExtractBands"
        )
    model.prepare(band_indexes)
    spec = chip_spec(model)
    check_cell_size(model, raster)

    n = len(geometries)
    pixel_space = pixel_geometries(np.asarray(geometries, dtype=object), raster.inverse_transform)
    empty = shapely.is_missing(pixel_space) | shapely.is_empty(pixel_space)
    rows, cols = raster.shape
    grid = shapely.box(0, 0, cols, rows)
    outside = ~empty & ~shapely.intersects(pixel_space, grid)
    todo = np.flatnonzero(~empty & ~outside)

    class_index = np.full(n, -1, dtype=np.int64)
    confidence = np.full(n, np.nan, dtype=np.float64)
    coverage = np.zeros(n, dtype=np.float64)
    if len(todo) == 0:
        return Predictions(class_index, confidence, coverage, empty, outside)

    geoms = pixel_space[todo]
    type_names = shapely.get_type_id(geoms)
    polygonal = np.isin(type_names, [3, 6])  # Polygon, MultiPolygon
    points = shapely.get_dimensions(geoms) == 0
    if spec.blacken and not polygonal.all():
        warnings.warn(
            f"BlackenAroundFeature has no meaning for points and lines; {int((~polygonal).sum())} "
            "feature(s) are classified with their surroundings kept",
            BlackenIgnoredWarning,
            stacklevel=2,
        )
    windows = plan_windows(shapely.bounds(geoms), spec, points)
    order = np.lexsort((windows[:, 1], windows[:, 0] // ROW_BAND))

    step = model.batch_size
    for start in range(0, len(order), step):
        batch = order[start : start + step]
        chips = []
        for i in batch:
            polygon = geoms[i] if polygonal[i] else None
            chip = cut_chip(raster.read_window, windows[i], spec, polygon)
            coverage[todo[i]] = chip.coverage
            chips.append(chip)
        with_data = np.array([coverage[todo[i]] > 0 for i in batch])
        if with_data.any():
            kept = [chips[k] for k in np.flatnonzero(with_data)]
            targets = todo[batch[with_data]]
            labels, scores = model.classify(
                np.stack([c.pixels for c in kept]),
                np.stack([c.valid for c in kept]),
                band_indexes,
                ids=[f"feature {t}" for t in targets],
            )
            class_index[targets] = labels
            confidence[targets] = scores
        if progress is not None:
            progress(len(batch))
    return Predictions(class_index, confidence, coverage, empty, outside)
