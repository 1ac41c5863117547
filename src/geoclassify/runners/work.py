"""The worker contract: what a batch is (:class:`Work`), what a worker needs to start (:class:`WorkerSetup`) and
keeps (:class:`WorkerState`), and how it runs a batch (:func:`run_work`).

Every runner cuts chips and classifies them through the functions here, so a feature's result does not depend on
whether it ran in this process, in a worker process or on a Dask worker. Setup and work are plain picklable
values: they cross process and machine boundaries as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely

from ..core.chips import Chip, ChipSpec, ChipStack
from ..core.predictions import BatchResult
from ..io.mosaics import GridSource
from ..io.rasters import RasterSource
from ..model.runtime import Model, ModelRecipe
from .cutting import cut_region, read_region

#: A raster the loop reads windows from: one image, or a collection on one grid.
Raster = RasterSource | GridSource
#: How a worker opens the run's raster itself (a picklable callable: a partial of the function that opened it).
Opener = Callable[[], Raster]


def chip_spec(model: Model) -> ChipSpec:
    """The chips ``model`` takes: what planning places and every runner cuts."""
    definition = model.definition
    return ChipSpec(
        height=model.chip_height,
        width=model.chip_width,
        fixed=definition.crop_size_fixed,
        blacken=definition.blacken_around_feature,
    )


@dataclass(frozen=True)
class Work:
    """One batch of features for a worker: their positions in the input, their windows and (for blackening) their
    polygons in pixel space as WKB, which pickles smaller and faster than geometries."""

    targets: np.ndarray
    windows: np.ndarray
    polygons: list[bytes | None]


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs before its first batch: how to load the model and open the raster, the chips to cut
    and the raster bands the model reads."""

    recipe: ModelRecipe
    opener: Opener
    spec: ChipSpec
    band_indexes: tuple[int, ...]

    def open(self) -> WorkerState:
        """The worker's state; a runner calls this, and :meth:`WorkerState.run`, whatever kind of work it runs."""
        return open_worker_state(self)


@dataclass
class WorkerState:
    """What a worker keeps between batches, so the raster is opened and the model loaded once, not per batch."""

    model: Model
    raster: Raster
    spec: ChipSpec
    band_indexes: tuple[int, ...]

    def run(self, work: Work) -> BatchResult:
        return run_work(self, work)


def open_worker_state(setup: WorkerSetup) -> WorkerState:
    """Load the model with one inference thread (a worker's parallelism is its siblings) and open the raster."""
    loaded = setup.recipe.load(threads=1)
    return WorkerState(loaded, open_raster(setup.opener, loaded), setup.spec, setup.band_indexes)


def open_raster(opener: Opener, model: Model) -> Raster:
    """The run's raster opened again, by a worker or a thread with a handle of its own, with the model's bands."""
    raster = opener()
    try:
        raster.select_bands(model.definition.extract_bands)
    except BaseException:
        raster.close()
        raise
    return raster


def run_work(state: WorkerState, work: Work) -> BatchResult:
    """One batch on a worker (a process of the pool or a Dask worker thread)."""
    polygons = [shapely.from_wkb(p) if p is not None else None for p in work.polygons]
    return classify_windows(
        state.model, state.raster, state.spec, state.band_indexes, work.windows, polygons, work.targets
    )


def classify_windows(
    model: Model,
    raster: Raster,
    spec: ChipSpec,
    band_indexes: tuple[int, ...],
    windows: np.ndarray,
    polygons: Sequence[shapely.Geometry | None],
    targets: np.ndarray,
) -> BatchResult:
    """Cut and classify one batch of windows, read as one region."""
    parts = cut_region(read_region(raster, windows), windows, spec, polygons)
    order = np.concatenate([positions for positions, _ in parts])
    stack = ChipStack.concatenate([stack for _, stack in parts])
    return classify_stack(model, band_indexes, np.asarray(targets)[order], stack)


def classify_chips(model: Model, band_indexes: tuple[int, ...], targets: np.ndarray, chips: list[Chip]) -> BatchResult:
    """Classify chips cut one at a time (see :func:`classify_stack`)."""
    return classify_stack(model, band_indexes, targets, ChipStack.of(chips))


def classify_stack(
    model: Model, band_indexes: tuple[int, ...], targets: np.ndarray, stack: ChipStack, owned: bool = True
) -> BatchResult:
    """Classify the chips that hold any valid pixel; the others keep class index -1. ``owned``: the caller hands the
    stack over, so normalisation may overwrite its pixels (a caller that may classify it again passes False)."""
    n = len(stack)
    labels = np.full(n, -1, dtype=np.int64)
    scores = np.full((n, *model.score_shape), np.nan)
    covered = np.asarray(stack.coverage, dtype=np.float64)
    keep = np.flatnonzero(covered > 0)
    if len(keep):
        whole = len(keep) == n
        pixels = stack.pixels if whole else stack.pixels[keep]
        valid = stack.valid if whole else stack.valid[keep]
        ids = [f"feature {targets[k]}" for k in keep]
        labels[keep], scores[keep] = model.classify(pixels, valid, band_indexes, ids, owned=owned or not whole)
    return BatchResult(targets, labels, scores, covered)
