"""What every runner shares: the job it is given (:class:`PlanJob`), the protocol it follows (:class:`Runner`), how
it retries (:class:`RetryPolicy`), and the part of running a plan that does not depend on where batches run
(:func:`classify_plan`: results already in the journal, recording, :class:`Predictions`).

Which runner does the work is chosen once per run, from its :class:`~geoclassify.runners.execution.Execution`
(:func:`geoclassify.runners.runner_for`), and passed down; nothing below asks again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import shapely

from ..core.chips import ChipSpec
from ..core.plan import ChipPlan
from ..core.predictions import BatchResult, Predictions
from ..core.tiles import tile_groups
from ..errors import BlackenIgnoredWarning, InferenceError
from ..hooks import warn
from ..io.journal import Journal
from ..model.runtime import Model
from .work import Opener, Raster, Work, WorkerSetup, chip_spec

Record = Callable[[BatchResult], None]


@dataclass
class PlanJob:
    """The features of one plan still to classify (``entries``, positions in ``plan.todo``), with what any runner
    needs to classify them: the model and open raster here, and ``opener`` for workers that open it themselves."""

    model: Model
    raster: Raster
    plan: ChipPlan
    spec: ChipSpec
    band_indexes: tuple[int, ...]
    entries: np.ndarray
    opener: Opener | None = None
    targets: np.ndarray = field(init=False)
    windows: np.ndarray = field(init=False)
    #: Indexes into ``targets`` and ``windows`` by raster tile, tiles in Z-order: the order chips are cut in.
    groups: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.targets = self.plan.todo[self.entries]
        self.windows = self.plan.windows[self.entries]
        self.groups = tile_groups(self.windows)

    def polygons(self, indexes: np.ndarray) -> list[shapely.Geometry | None]:
        """Pixel-space polygons (or Nones) of the job's features ``indexes``, for blackening."""
        return self.plan.polygons_at(self.entries[indexes])

    @property
    def work_count(self) -> int:
        """How many batches :meth:`works` yields."""
        return -(-len(self.entries) // self.model.batch_size)

    def works(self) -> Iterator[Work]:
        """The job as batches of ``model.batch_size`` features in tile order, made as they are taken: a big run
        never holds every batch's polygons at once."""
        order = np.concatenate(self.groups) if self.groups else np.zeros(0, dtype=np.int64)
        step = self.model.batch_size
        for start in range(0, len(order), step):
            part = order[start : start + step]
            yield Work(self.targets[part], self.windows[part], self.plan.polygons_wkb(self.entries[part]))

    def setup(self) -> WorkerSetup:
        """What a worker process or Dask worker needs to classify this job's batches."""
        if self.opener is None:
            raise ValueError("a runner that opens the raster on workers needs the job's opener")
        return WorkerSetup(self.model.recipe(), self.opener, self.spec, self.band_indexes)


class Runner(Protocol):
    """Where a plan's batches run. ``run`` hands ``record`` each batch's result as it comes, every feature of the
    job exactly once, in any order. A runner is also a context manager: one that connects to something (a Dask
    cluster) holds the connection for every plan of the run inside ``with``."""

    def run(self, job: PlanJob, record: Record) -> None: ...

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc: object) -> None: ...


class RetryPolicy:
    """Failed attempts per batch (``key``), for one run: a batch is tried again until it has failed more than
    ``retries`` times, and then ends the run."""

    def __init__(self, retries: int) -> None:
        self.retries = retries
        self._failed: dict[Hashable, int] = {}

    def again(self, key: Hashable, why: object) -> None:
        """Count a failure of ``key``; return when it may run again, raise once it is out of retries."""
        failed = self._failed.get(key, 0) + 1
        if failed > self.retries:
            raise InferenceError.out_of_retries(failed, self.retries, why) from None
        self._failed[key] = failed

    def done(self, key: Hashable) -> None:
        """``key`` succeeded: forget its failures."""
        self._failed.pop(key, None)


def classify_plan(
    model: Model,
    raster: Raster,
    plan: ChipPlan,
    band_indexes: tuple[int, ...],
    runner: Runner,
    opener: Opener | None = None,
    journal: Journal | None = None,
    advance: Callable[[int], None] | None = None,
) -> Predictions:
    """Classify the features of a plan on ``runner``; ``opener`` is how workers open the same raster, and
    ``advance(n)`` hears of every ``n`` features done.

    With a ``journal`` the results are saved as they come, and what it already holds is not classified again.
    """
    n = plan.count
    class_index = np.full(n, -1, dtype=np.int64)
    confidence = np.full((n, *model.score_shape), np.nan, dtype=np.float64)  # multi-label: every probability
    coverage = np.zeros(n, dtype=np.float64)
    entries = np.arange(len(plan.todo))  # positions in the plan still to classify
    if journal is not None:
        saved = journal.saved()
        class_index[saved.targets], coverage[saved.targets] = saved.labels, saved.coverage
        confidence[saved.targets] = saved.scores.reshape(len(saved), *model.score_shape)
        entries = np.flatnonzero(~np.isin(plan.todo, saved.targets))
        if advance is not None and len(saved):
            advance(len(saved))
    if len(entries) == 0:
        return Predictions(class_index, confidence, coverage, plan.empty, plan.outside)
    spec = chip_spec(model)
    if spec.blacken and plan.not_polygonal:
        warn(
            BlackenIgnoredWarning(
                f"BlackenAroundFeature has no meaning for points and lines; {plan.not_polygonal} "
                "feature(s) are classified with their surroundings kept"
            )
        )

    def record(result: BatchResult) -> None:
        classified = result.labels >= 0
        class_index[result.targets[classified]] = result.labels[classified]
        confidence[result.targets[classified]] = result.scores[classified]
        coverage[result.targets] = result.coverage
        if journal is not None:
            journal.add(result)
        if advance is not None:
            advance(len(result))

    runner.run(PlanJob(model, raster, plan, spec, band_indexes, entries, opener), record)
    return Predictions(class_index, confidence, coverage, plan.empty, plan.outside)
