"""The in-process runner: every chip cut and classified here, the fastest way on one machine.

Features come grouped by the raster tile their chip falls in, tiles along a Z-order curve (see
:mod:`geoclassify.core.tiles`), and each tile's pixels are read once for all its chips. Chips are collected into
batches that a background thread classifies while the next ones are cut: ONNX Runtime releases the GIL, so
cutting (Python and GDAL) and inference overlap.
"""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..core.chips import Chip, cut_chip
from ..core.predictions import BatchResult
from ..errors import InferenceError
from ..model.runtime import Model
from .base import PlanJob, Record, RetryPolicy
from .work import classify_chips, read_region

#: Batches handed to the inference thread but not yet finished; bounds memory while cutting runs ahead.
IN_FLIGHT = 2


class LocalRunner:
    """Batches in this process; a batch whose inference fails is run again up to ``retries`` times."""

    def __init__(self, retries: int = 0) -> None:
        self.retries = retries

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, job: PlanJob, record: Record) -> None:
        with _ChipBatches(job.model, job.band_indexes, RetryPolicy(self.retries), record) as batches:
            for group in job.groups:
                region = read_region(job.raster, job.windows[group])
                for i, polygon in zip(group, job.polygons(group), strict=True):
                    batches.add(job.targets[i], cut_chip(region.reader, job.windows[i], job.spec, polygon))


class _ChipBatches:
    """Collects chips into batches and classifies them on a background thread while the next ones are cut.

    Results are keyed by feature, so the order batches finish in does not matter.
    """

    def __init__(self, model: Model, band_indexes: tuple[int, ...], retry: RetryPolicy, record: Record) -> None:
        self.model = model
        self.band_indexes = band_indexes
        self.retry = retry
        self.record = record
        self._targets: list[int] = []
        self._chips: list[Chip] = []
        self._keys = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoclassify-inference")
        self._pending: deque[tuple[Future[BatchResult], int, np.ndarray, list[Chip]]] = deque()

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

    def _submit(self, again: tuple[int, np.ndarray, list[Chip]] | None = None) -> None:
        if again is None:
            if not self._chips:
                return
            again = (next(self._keys), np.array(self._targets), self._chips)
            self._targets, self._chips = [], []
        key, targets, chips = again
        future = self._pool.submit(classify_chips, self.model, self.band_indexes, targets, chips)
        self._pending.append((future, key, targets, chips))
        while len(self._pending) > IN_FLIGHT:
            self._collect()

    def _collect(self) -> None:
        future, key, targets, chips = self._pending.popleft()
        try:
            result = future.result()
        except InferenceError as exc:
            self.retry.again(key, exc)
            self._submit((key, targets, chips))
            return
        self.retry.done(key)
        self.record(result)
