"""The in-process runner: every chip cut and classified here, the fastest way on one machine.

Features come grouped by the raster tile their chip falls in, tiles along a Z-order curve (see
:mod:`geoclassify.core.tiles`), and each tile's pixels are read once for all its chips. Chips are collected into
batches that background threads classify while the next ones are cut: ONNX Runtime releases the GIL, so
cutting (numpy and GDAL) and inference overlap. On the CPU there is one inference thread per core, each running its
batch on one ONNX Runtime thread (see ``Model.concurrency``): for small models two batches side by side beat one
batch on two threads by half.
"""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..core.chips import ChipStack
from ..core.predictions import BatchResult
from ..errors import InferenceError
from ..model.runtime import Model
from .base import PlanJob, Record, RetryPolicy
from .cutting import cut_region, read_region
from .work import classify_stack

#: Batches handed to the inference threads but not yet finished, beyond one per thread; bounds memory while cutting
#: runs ahead.
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
                for positions, stack in cut_region(region, job.windows[group], job.spec, job.polygons(group)):
                    batches.add(job.targets[group[positions]], stack)


class _ChipBatches:
    """Collects chips into batches of the model's size and classifies them on background threads (one per batch
    the model runs side by side) while the next ones are cut.

    Results are keyed by feature, so the order batches finish in does not matter.
    """

    def __init__(self, model: Model, band_indexes: tuple[int, ...], retry: RetryPolicy, record: Record) -> None:
        self.model = model
        self.band_indexes = band_indexes
        self.retry = retry
        self.record = record
        self._targets: list[np.ndarray] = []
        self._stacks: list[ChipStack] = []
        self._count = 0
        #: Batches the model runs side by side (one ONNX Runtime thread each), each on an inference thread of its own.
        self.workers = model.concurrency
        self._keys = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="geoclassify-inference")
        self._pending: deque[tuple[Future[BatchResult], int, np.ndarray, ChipStack]] = deque()

    def __enter__(self) -> _ChipBatches:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self._flush()
                while self._pending:
                    self._collect()
        finally:
            for future, *_ in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)

    def add(self, targets: np.ndarray, stack: ChipStack) -> None:
        """Submit whole batches as they fill, as slices of ``stack``. A tile's last chips wait for the next tile's
        only when both together fill at most a batch (sparse layers); otherwise they go as a smaller batch, as
        joining them to the next tile's would copy every batch that straddles two tiles."""
        targets = np.asarray(targets, dtype=np.int64)
        step = self.model.batch_size
        if self._count and self._count + len(targets) > step:
            self._flush()
        if self._count:
            self._targets.append(targets)
            self._stacks.append(stack)
            self._count += len(targets)
            if self._count == step:
                self._flush()
            return
        whole = len(targets) // step * step
        for at in range(0, whole, step):
            self._submit((next(self._keys), targets[at : at + step], stack.take(slice(at, at + step))))
        if whole < len(targets):
            self._targets, self._stacks = [targets[whole:]], [stack.take(slice(whole, None))]
            self._count = len(targets) - whole

    def _flush(self) -> None:
        """Submit the chips carried as one batch."""
        if not self._count:
            return
        batch = (next(self._keys), np.concatenate(self._targets), ChipStack.concatenate(self._stacks))
        self._targets, self._stacks, self._count = [], [], 0
        self._submit(batch)

    def _submit(self, batch: tuple[int, np.ndarray, ChipStack]) -> None:
        key, targets, stack = batch
        owned = self.retry.retries == 0  # a batch that may run again must keep its raw pixels
        future = self._pool.submit(classify_stack, self.model, self.band_indexes, targets, stack, owned)
        self._pending.append((future, key, targets, stack))
        while len(self._pending) > IN_FLIGHT + self.workers - 1:
            self._collect()

    def _collect(self) -> None:
        future, key, targets, stack = self._pending.popleft()
        try:
            result = future.result()
        except InferenceError as exc:
            self.retry.again(key, exc)
            self._submit((key, targets, stack))
            return
        self.retry.done(key)
        self.record(result)
