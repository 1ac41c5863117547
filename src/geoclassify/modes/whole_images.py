"""No feature layer: each image is one object (Esri's tool without ``in_features``).

Every image becomes one chip (see :func:`geoclassify.core.chips.whole_image_window`), read and resampled by GDAL so a
large image never sits in memory at full resolution. That resize is bilinear whatever the Resampling Method
environment says: it shrinks a whole image to a thumbnail of the chip size, where nearest neighbour would keep one
pixel in many and alias, and Esri documents the environment for a change of grid (another CRS, cell size or
alignment), which ``--cell-size`` here is and which does follow the environment. An image that cannot be read, or
lacks the bands the model needs, becomes a row with an ``Error`` text; the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform_geom

from ..core.chips import whole_image_window
from ..environment import DEFAULT_RESAMPLING, Extent
from ..errors import GeoclassifyError
from ..io.images import ImageRef
from ..io.mosaics import GridSource, mosaic_grid
from ..io.rasters import RasterSource
from ..model.runtime import Model
from ..runners import chip_spec
from .raster_setup import warn_outside_cell_range


@dataclass
class ImageResult:
    """One image's row: where it lies (in its own CRS) and what the model said, or why it could not."""

    ref: ImageRef
    crs: CRS | None = None
    footprint: shapely.Geometry | None = None
    class_index: int = -1
    confidence: float | np.ndarray = float("nan")  # multi-label: every class's probability
    coverage: float = 0.0
    error: str | None = None


def open_image(
    ref: ImageRef, cell_size: float | None, resampling: Resampling = DEFAULT_RESAMPLING
) -> RasterSource | GridSource:
    """An image on its own grid, or warped with ``resampling`` onto a grid of ``cell_size`` when one is asked for."""
    source = RasterSource(ref.uri, label=ref.image_id)
    if cell_size is None:
        return source
    try:
        return GridSource([source], mosaic_grid([source], cell_size), resampling=resampling)
    except GeoclassifyError:
        source.close()
        raise


def select_images(refs: Sequence[ImageRef], extent: Extent) -> list[ImageRef]:
    """The images whose footprint meets ``extent`` (in the first georeferenced image's CRS unless it names one).

    Images without georeference cannot meet an extent and are left out; unreadable ones are kept, so their error
    reaches the output.
    """
    kept: list[ImageRef] = []
    default: CRS | None = None
    for ref in refs:
        try:
            with RasterSource(ref.uri, label=ref.image_id) as source:
                if source.crs is None:
                    continue
                default = default or source.crs
                if shapely.intersects(footprint(source), extent.polygon_in(source.crs, default)):
                    kept.append(ref)
        except GeoclassifyError:
            kept.append(ref)
    return kept


def classify_whole_images(
    model: Model,
    refs: Sequence[ImageRef],
    cell_size: float | None = None,
    progress: Callable[[int], None] | None = None,
    resampling: Resampling = DEFAULT_RESAMPLING,
) -> list[ImageResult]:
    """One chip per image, classified in batches of the model's batch size.

    ``resampling`` (the Resampling Method environment) warps an image to ``cell_size``; the resize of the whole
    image to the model's chip size is not a change of grid but a thumbnail, and stays bilinear (see the module's
    docstring)."""
    spec = chip_spec(model)
    results: list[ImageResult] = []
    pending: list[tuple[ImageResult, np.ndarray, np.ndarray, tuple[int, ...]]] = []

    def flush() -> None:
        # Images may resolve ExtractBands to different bands (names), so each group is classified on its own.
        for bands in {item[3] for item in pending}:
            group = [item for item in pending if item[3] == bands and item[0].coverage > 0]
            if not group:
                continue
            labels, scores = model.classify(
                np.stack([g[1] for g in group]),
                np.stack([g[2] for g in group]),
                bands,
                ids=[f"image {g[0].ref.image_id!r}" for g in group],
            )
            for (result, *_), label, score in zip(group, labels, scores, strict=True):
                result.class_index = int(label)
                result.confidence = score if np.ndim(score) else float(score)
        if progress is not None:
            progress(len(pending))
        pending.clear()

    for ref in refs:
        result = ImageResult(ref)
        results.append(result)
        try:
            with open_image(ref, cell_size, resampling) as source:
                bands = source.select_bands(model.definition.extract_bands)
                if model.band_count is not None and len(bands) != model.band_count:
                    raise GeoclassifyError(
                        f"the model takes {model.band_count} bands; image {ref.image_id!r} has "
                        f"{len(bands)} and the EMD has no ExtractBands to choose from them"
                    )
                model.prepare(bands)
                if not results[:-1]:  # one cell-size warning for the run, from the first image
                    warn_outside_cell_range(model, source)
                rows, cols = source.shape
                window = whole_image_window(rows, cols, spec)
                if window[2:] == (spec.height, spec.width):
                    pixels, valid = source.read_window(*window)
                else:
                    pixels, valid = source.read_resampled(*window, (spec.height, spec.width))
                result.coverage = float(valid.mean())
                result.crs = source.crs
                if source.crs is not None:
                    result.footprint = footprint(source)
        except GeoclassifyError as exc:
            result.error = str(exc)
            if progress is not None:
                progress(1)
            continue
        pending.append((result, pixels, valid, bands))
        if len(pending) >= model.batch_size:
            flush()
    flush()
    return results


def footprint(source: RasterSource | GridSource) -> shapely.Geometry:
    """The image's outline in its own CRS, as a polygon through its four corners."""
    rows, cols = source.shape
    forward = source.transform
    return shapely.Polygon([forward @ (0, 0), forward @ (cols, 0), forward @ (cols, rows), forward @ (0, rows)])


def to_crs(geometry: shapely.Geometry, source: CRS, target: CRS) -> shapely.Geometry:
    """Reproject a footprint, densified along its edges so curved projections stay faithful."""
    if source == target:
        return geometry
    dense = shapely.segmentize(geometry, max(geometry.length / 400, 1e-9))
    return shapely.geometry.shape(transform_geom(source, target, shapely.geometry.mapping(dense)))
