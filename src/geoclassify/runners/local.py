"""The classification loop: geometries in the raster's CRS in, one class index, confidence and coverage out.

Features are grouped by the raster tile their chip falls in, tiles visited along a Z-order curve, and each tile's
pixels read once for all its chips; results are scattered back to input order. No feature is dropped: empty
geometries and features outside the raster come back with class index -1 and coverage 0.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine

from ..core.chips import Chip, ChipSpec, cut_chip, pixel_geometries
from ..core.plan import ChipPlan
from ..errors import BlackenIgnoredWarning, CellSizeWarning, InferenceError, ModelMismatchError
from ..io.journal import Journal
from ..io.rasters import RasterSource
from ..model.runtime import Model
from .processes import Execution, Task, run_tasks

#: Side, in pixels, of the tiles features are grouped by: each tile's pixels are read once for all its chips.
TILE = 512
#: Batches handed to the inference thread but not yet finished; bounds memory while cutting runs ahead.
IN_FLIGHT = 2


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


def prepare_raster(model: Model, raster: RasterSource) -> tuple[int, ...]:
    """Choose the raster's bands for the model and check they fit, before a pixel is read."""
    band_indexes = raster.select_bands(model.definition.extract_bands)
    if model.band_count is not None and len(band_indexes) != model.band_count:
        raise ModelMismatchError(
            f"{model.package.source}: the model takes {model.band_count} bands but raster {raster.path!r} "
            f"has {len(band_indexes)} and the EMD has no ExtractBands to choose from them; add ExtractBands"
        )
    model.prepare(band_indexes)
    check_cell_size(model, raster)
    return band_indexes


def to_pixel_space(transform: Affine, geometries: np.ndarray) -> np.ndarray:
    """Geometries in a raster's CRS to its (column, row) grid, given the raster's transform."""
    return pixel_geometries(np.asarray(geometries, dtype=object), tuple(~transform)[:6])


def classify_plan(
    model: Model,
    raster: RasterSource,
    plan: ChipPlan,
    band_indexes: tuple[int, ...],
    progress: Callable[[int], None] | None = None,
    execution: Execution | None = None,
    opener: Callable[[], RasterSource] | None = None,
    journal: Journal | None = None,
) -> Predictions:
    """Classify the features of a plan (see :func:`prepare_raster`, :class:`PlanBuilder`).

    With ``execution.workers`` (or a Dask ``execution.scheduler``) and an ``opener`` (how a worker opens the same
    raster) the batches run on worker processes; otherwise here, cutting the next chips while the model runs. With
    a ``journal`` the results are saved as they come, and what it already holds is not classified again.
    """
    execution = execution or Execution()
    spec = chip_spec(model)
    n = plan.count
    class_index = np.full(n, -1, dtype=np.int64)
    confidence = np.full((n, *model.score_shape), np.nan, dtype=np.float64)  # multi-label: every probability
    coverage = np.zeros(n, dtype=np.float64)
    entries = np.arange(len(plan.todo))  # positions in the plan still to classify
    if journal is not None:
        done, labels, scores, covered = journal.saved()
        class_index[done], coverage[done] = labels, covered
        confidence[done] = scores.reshape(len(done), *model.score_shape)
        entries = np.flatnonzero(~np.isin(plan.todo, done))
        if progress is not None and len(done):
            progress(len(done))
    if len(entries) == 0:
        return Predictions(class_index, confidence, coverage, plan.empty, plan.outside)
    if spec.blacken and plan.not_polygonal:
        warnings.warn(
            f"BlackenAroundFeature has no meaning for points and lines; {plan.not_polygonal} "
            "feature(s) are classified with their surroundings kept",
            BlackenIgnoredWarning,
            stacklevel=3,
        )
    windows = plan.windows[entries]
    targets = plan.todo[entries]
    groups = tile_groups(windows)

    def record(done: np.ndarray, labels: np.ndarray, scores: np.ndarray, covered: np.ndarray) -> None:
        classified = labels >= 0
        class_index[done[classified]] = labels[classified]
        confidence[done[classified]] = scores[classified]
        coverage[done] = covered
        if journal is not None:
            journal.add(done, labels, scores, covered)
        if progress is not None:
            progress(len(done))

    if execution.distributed and opener is not None:
        tasks = _Tasks(plan, entries, targets, windows, np.concatenate(groups), model.batch_size)
        run_tasks(tasks, execution, (model.recipe(), opener, spec, band_indexes), lambda task, result: record(*result))
    else:
        with _ChipBatches(model, band_indexes, execution.retries, record) as batches:
            for group in groups:
                region = _read_region(raster, windows[group])
                for i, polygon in zip(group, plan.polygons_at(entries[group]), strict=True):
                    batches.add(targets[i], cut_chip(region.reader, windows[i], spec, polygon))
    return Predictions(class_index, confidence, coverage, plan.empty, plan.outside)


@dataclass
class _Tasks:
    """The worker tasks of a plan, one batch each in tile order, made as they are taken: a big run never holds
    every task's polygons at once."""

    plan: ChipPlan
    entries: np.ndarray
    targets: np.ndarray
    windows: np.ndarray
    order: np.ndarray
    step: int

    def __len__(self) -> int:
        return -(-len(self.order) // self.step)

    def __iter__(self) -> Iterator[Task]:
        for start in range(0, len(self.order), self.step):
            part = self.order[start : start + self.step]
            yield Task(self.targets[part], self.windows[part], self.plan.polygons_wkb(self.entries[part]))


def tile_groups(windows: np.ndarray) -> list[np.ndarray]:
    """Indexes of ``windows`` grouped by the tile their centre falls in, tiles in Z-order (a space-filling curve),
    so consecutive groups are neighbours and share GDAL's block cache."""
    if len(windows) == 0:
        return []
    tile_r = (windows[:, 0] + windows[:, 2] // 2) // TILE
    tile_c = (windows[:, 1] + windows[:, 3] // 2) // TILE
    key = morton(tile_r - tile_r.min(), tile_c - tile_c.min())
    order = np.lexsort((windows[:, 1], windows[:, 0], key))
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    return np.split(order, bounds)


def morton(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Interleave the bits of two non-negative integer arrays (Z-order key)."""
    key = np.zeros(len(rows), dtype=np.uint64)
    rows, cols = rows.astype(np.uint64), cols.astype(np.uint64)
    for bit in range(32):
        key |= ((rows >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit + 1)
        key |= ((cols >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit)
    return key


@dataclass
class _Region:
    """Pixels of one tile's windows, read once; chips are cut from them by slicing."""

    row_off: int
    col_off: int
    pixels: np.ndarray
    valid: np.ndarray

    def reader(self, row_off: int, col_off: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        r, c = row_off - self.row_off, col_off - self.col_off
        return self.pixels[:, r : r + height, c : c + width], self.valid[r : r + height, c : c + width]


def _read_region(raster: RasterSource, windows: np.ndarray) -> _Region:
    r0, c0 = int(windows[:, 0].min()), int(windows[:, 1].min())
    r1 = int((windows[:, 0] + windows[:, 2]).max())
    c1 = int((windows[:, 1] + windows[:, 3]).max())
    pixels, valid = raster.read_window(r0, c0, r1 - r0, c1 - c0)
    return _Region(r0, c0, pixels, valid)


def classify_windows(
    model: Model,
    raster: RasterSource,
    spec: ChipSpec,
    band_indexes: tuple[int, ...],
    windows: np.ndarray,
    polygons: Sequence[shapely.Geometry | None],
    targets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut and classify one batch (a worker's task): ``(targets, class index or -1, confidence, coverage)``."""
    region = _read_region(raster, windows)
    chips = [cut_chip(region.reader, window, spec, polygon) for window, polygon in zip(windows, polygons, strict=True)]
    return _classify_chips(model, band_indexes, np.asarray(targets), chips)


def _classify_chips(
    model: Model, band_indexes: tuple[int, ...], targets: np.ndarray, chips: list[Chip]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Classify the chips that hold any valid pixel; the others keep class index -1."""
    labels = np.full(len(chips), -1, dtype=np.int64)
    scores = np.full((len(chips), *model.score_shape), np.nan)
    covered = np.array([c.coverage for c in chips], dtype=np.float64)
    keep = np.flatnonzero(covered > 0)
    if len(keep):
        pixels = np.stack([chips[k].pixels for k in keep])
        valid = np.stack([chips[k].valid for k in keep])
        ids = [f"feature {targets[k]}" for k in keep]
        labels[keep], scores[keep] = model.classify(pixels, valid, band_indexes, ids, owned=True)
    return targets, labels, scores, covered


class _ChipBatches:
    """Collects chips into batches and classifies them on a background thread while the next ones are cut.

    ONNX Runtime releases the GIL, so cutting (Python and GDAL) and inference overlap. A batch that fails is run
    again up to ``retries`` times. Results are keyed by feature, so the order batches finish in does not matter.
    """

    def __init__(
        self,
        model: Model,
        band_indexes: tuple[int, ...],
        retries: int,
        record: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None],
    ) -> None:
        self.model = model
        self.band_indexes = band_indexes
        self.retries = retries
        self.record = record
        self._targets: list[int] = []
        self._chips: list[Chip] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoclassify-inference")
        self._pending: deque[tuple[Future, np.ndarray, list[Chip], int]] = deque()

    def __enter__(self) -> _ChipBatches:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self._submit()
                while self._pending:
                    self._collect()
        finally:
            for future, *_ in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)

    def add(self, target: int, chip: Chip) -> None:
        self._targets.append(int(target))
        self._chips.append(chip)
        if len(self._chips) >= self.model.batch_size:
            self._submit()

    def _submit(self, attempt: int = 0, batch: tuple[np.ndarray, list[Chip]] | None = None) -> None:
        if batch is None:
            if not self._chips:
                return
            batch = (np.array(self._targets), self._chips)
            self._targets, self._chips = [], []
        targets, chips = batch
        future = self._pool.submit(_classify_chips, self.model, self.band_indexes, targets, chips)
        self._pending.append((future, targets, chips, attempt))
        while len(self._pending) > IN_FLIGHT:
            self._collect()

    def _collect(self) -> None:
        future, targets, chips, attempt = self._pending.popleft()
        try:
            result = future.result()
        except InferenceError as exc:
            if attempt >= self.retries:
                raise InferenceError.out_of_retries(attempt + 1, self.retries, exc) from None
            self._submit(attempt + 1, (targets, chips))
            return
        self.record(*result)
