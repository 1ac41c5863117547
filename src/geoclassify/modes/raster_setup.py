"""Fitting a model to a raster before a pixel is read: its bands, its cell size, and its pixel grid.

Every processing mode does these checks on each raster it opens, so a mismatch is one clear error (or a warning)
up front rather than a failure in the middle of a run.
"""

from __future__ import annotations

import numpy as np
from affine import Affine

from ..core.chips import pixel_geometries
from ..errors import CellSizeWarning, ModelMismatchError
from ..hooks import warn
from ..io.mosaics import GridSource
from ..io.rasters import RasterSource
from ..model.runtime import Model


def warn_outside_cell_range(model: Model, raster: RasterSource | GridSource) -> None:
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
            warn(
                CellSizeWarning(
                    f"raster {raster.label!r} has {x:g} x {y:g} cells, {too} than the model was trained on "
                    f"({'MinCellSize' if too == 'finer' else 'MaxCellSize'} {bound.x:g} x {bound.y:g}); objects will "
                    "look smaller or larger to the model than in training"
                )
            )


def prepare_raster(model: Model, raster: RasterSource | GridSource) -> tuple[int, ...]:
    """Choose the raster's bands for the model and check they fit, before a pixel is read."""
    band_indexes = raster.select_bands(model.definition.extract_bands)
    if model.band_count is not None and len(band_indexes) != model.band_count:
        raise ModelMismatchError(
            f"{model.package.source}: the model takes {model.band_count} bands but raster {raster.label!r} "
            f"has {len(band_indexes)} and the EMD has no ExtractBands to choose from them; add ExtractBands"
        )
    model.prepare(band_indexes)
    warn_outside_cell_range(model, raster)
    return band_indexes


def to_pixel_space(transform: Affine, geometries: np.ndarray) -> np.ndarray:
    """Geometries in a raster's CRS to its (column, row) grid, given the raster's transform."""
    return pixel_geometries(np.asarray(geometries, dtype=object), tuple(~transform)[:6])
