"""No feature layer: each image is one object (Esri's tool without ``in_features``).

Every image becomes one chip (see :func:`geoclassify.core.chips.whole_image_window`), read and resampled by GDAL so a
large image never sits in memory at full resolution. That resize is bilinear whatever the Resampling Method
environment says: it shrinks a whole image to a thumbnail of the chip size, where nearest neighbour would keep one
pixel in many and alias, and Esri documents the environment for a change of grid (another CRS, cell size or
alignment), which ``--cell-size`` here is and which does follow the environment. An image that cannot be read, or
lacks the bands the model needs, becomes a row with an ``Error`` text; the run goes on.

With ``--parallel-factor`` or ``--scheduler`` the images go to workers in batches (see
:mod:`geoclassify.runners.images`), each worker opening its images itself; rows come back in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform_geom

from ..environment import DEFAULT_RESAMPLING, Extent
from ..errors import GeoclassifyError
from ..io.images import ImageRef
from ..io.journal import Journal
from ..io.rasters import RasterSource
from ..model.runtime import Model
from ..runners import ClusterRunner, ProcessRunner, chip_spec
from ..runners.images import (
    IMAGES_PER_WORK,
    ImageBatch,
    ImageSetup,
    classify_works_here,
    footprint,
    image_works,
    open_image,
)
from .raster_setup import warn_outside_cell_range

__all__ = ["ImageResult", "classify_whole_images", "footprint", "open_image", "select_images", "to_crs"]

#: Where image batches can run besides this process: local worker processes or a Dask cluster.
ImageRunner = ProcessRunner | ClusterRunner


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
    runner: ImageRunner | None = None,
    journal: Journal | None = None,
) -> list[ImageResult]:
    """One chip per image, in input order: in this process, or in batches of images on ``runner``'s workers,
    each opening its images itself; with a ``journal``, results are saved as they come and the images it holds
    already are not classified again.

    ``resampling`` (the Resampling Method environment) warps an image to ``cell_size``; the resize of the whole
    image to the model's chip size is not a change of grid but a thumbnail, and stays bilinear (see the module's
    docstring)."""
    spec = chip_spec(model)
    results = [ImageResult(ref) for ref in refs]
    crs_of: dict[str, CRS] = {}
    todo = np.arange(len(refs))
    if journal is not None:
        todo = _restore(journal, results, model, cell_size, resampling, progress)
    if len(todo) and todo[0] == 0:
        _warn_cell_range(model, refs[0], cell_size, resampling)

    def record(batch: ImageBatch) -> None:
        for k, target in enumerate(batch.targets):
            result = results[int(target)]
            result.class_index = int(batch.labels[k])
            result.confidence = batch.scores[k] if np.ndim(batch.scores[k]) else float(batch.scores[k])
            result.coverage = float(batch.coverage[k])
            result.error = batch.errors[k]
            wkt, wkb = batch.crs[k], batch.footprints[k]
            if wkt is not None and wkb is not None:
                if wkt not in crs_of:  # one CRS object per distinct CRS, not one per image
                    crs_of[wkt] = CRS.from_wkt(wkt)
                result.crs = crs_of[wkt]
                result.footprint = shapely.from_wkb(wkb)
        if journal is not None:
            journal.add(batch.saved())
        if progress is not None:
            progress(len(batch))

    works = image_works(todo, refs, model.batch_size)
    if runner is None:
        classify_works_here(model, works, spec, cell_size, resampling, record)
    else:
        setup = ImageSetup(model.recipe(), spec, cell_size, resampling)
        count = -(-len(todo) // max(model.batch_size, IMAGES_PER_WORK))
        runner.run_works(works, setup, record, count)  # type: ignore[arg-type]
    return results


def _restore(
    journal: Journal,
    results: list[ImageResult],
    model: Model,
    cell_size: float | None,
    resampling: Resampling,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """Fill in what an interrupted run saved and return the positions still to classify. The journal keeps the
    numbers; an image's footprint is read again from its header (no pixels)."""
    saved = journal.saved()
    scores = saved.scores.reshape(len(saved), *model.score_shape)
    for k, target in enumerate(saved.targets):
        result = results[int(target)]
        result.class_index, result.coverage = int(saved.labels[k]), float(saved.coverage[k])
        result.confidence = scores[k] if model.score_shape else float(scores[k])
        try:
            with open_image(result.ref, cell_size, resampling) as source:
                if source.crs is not None:
                    result.crs, result.footprint = source.crs, footprint(source)
        except GeoclassifyError as exc:  # gone since: say so, as a fresh run would
            result.error, result.class_index = str(exc), -1
    if progress is not None and len(saved):
        progress(len(saved))
    return np.flatnonzero(~np.isin(np.arange(len(results)), saved.targets))


def _warn_cell_range(model: Model, ref: ImageRef, cell_size: float | None, resampling: Resampling) -> None:
    """One cell-size warning for the run, from the first image (here, as a worker's warnings are not seen)."""
    try:
        with open_image(ref, cell_size, resampling) as source:
            warn_outside_cell_range(model, source)
    except GeoclassifyError:
        return  # its row says why


def to_crs(geometry: shapely.Geometry, source: CRS, target: CRS) -> shapely.Geometry:
    """Reproject a footprint, densified along its edges so curved projections stay faithful."""
    if source == target:
        return geometry
    dense = shapely.segmentize(geometry, max(geometry.length / 400, 1e-9))
    return shapely.geometry.shape(transform_geom(source, target, shapely.geometry.mapping(dense)))
