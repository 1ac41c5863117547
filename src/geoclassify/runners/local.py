"""The in-process runner: every chip cut and classified here, the fastest way on one machine.

Features come grouped by the raster tile their chip falls in, tiles along a Z-order curve (see
:mod:`geoclassify.core.tiles`), and each tile's pixels are read once for all its chips. Tiles go to a few worker
threads, each of which reads, cuts and classifies its tile itself: GDAL's reads, numpy's copies, shapely and ONNX
Runtime all release the GIL, so the threads share the cores. A single thread that cuts for the others was the
bottleneck on dense layers of a small model: it kept one core busy while the model waited on the other.

On the CPU the model runs one batch per core side by side, each on one ONNX Runtime thread (see
``Model.concurrency``): for small models two batches side by side beat one batch on two threads by half. A model
that runs one batch at a time (TorchScript, Python inference functions, a GPU) is called under a lock, and the
other thread cuts the next tile meanwhile. With two threads, reads go through one lock: the open raster is one
GDAL handle, whose block cache neighbouring tiles share (the blocks on a tile's edge are decoded once), and a handle
must not be used by two threads at once. With more (a machine of many cores), one lock would make reading the
bottleneck, so each thread opens a single-file raster itself, as a worker process does. A mosaic keeps one
handle: it holds a dataset per image, and a copy per thread of a thousand-image mosaic would run out of files.

The results go back to the calling thread, which records them: recording, progress and cancellation stay on the
thread that started the run.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import numpy as np

from ..core.chips import ChipStack
from ..core.predictions import BatchResult
from ..errors import InferenceError
from ..io.rasters import RasterSource
from .base import PlanJob, Record, RetryPolicy
from .cutting import cut_region, read_region
from .work import Raster, classify_stack, open_raster

#: Threads that cut and classify tiles when the model runs one batch at a time: one cuts while the other waits on
#: the model.
MIN_THREADS = 2
#: More threads than this open the raster each (see the module's docstring).
SHARED_HANDLE_THREADS = 2
#: How often (seconds) the calling thread wakes while it waits for results, so Ctrl-C and cancellation are heard.
POLL = 0.1


class LocalRunner:
    """Batches in this process; a batch whose inference fails is run again up to ``retries`` times."""

    def __init__(self, retries: int = 0) -> None:
        self.retries = retries

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, job: PlanJob, record: Record) -> None:
        _TileThreads(job, self.retries).run(record)


class _TileThreads:
    """Worker threads that take tiles in Z-order, each reading, cutting and classifying its own."""

    def __init__(self, job: PlanJob, retries: int) -> None:
        self.job = job
        self.retries = retries
        side_by_side = job.model.concurrency
        self.count = max(MIN_THREADS, side_by_side)
        #: Serialises model calls for a model that runs one batch at a time.
        self._model_lock = threading.Lock() if side_by_side <= 1 else nullcontext()
        self._read_lock = threading.Lock()
        self._own_handles = (
            job.opener is not None and isinstance(job.raster, RasterSource) and self.count > SHARED_HANDLE_THREADS
        )
        self._take_lock = threading.Lock()
        self._groups = iter(job.groups)
        self._results: queue.SimpleQueue[BatchResult | BaseException | None] = queue.SimpleQueue()
        self._stop = threading.Event()

    def run(self, record: Record) -> None:
        # Each thread runs in a copy of the caller's context: the run's settings and hooks (warnings) hold there too.
        threads = [
            threading.Thread(
                target=contextvars.copy_context().run, args=(self._work,), name=f"geoclassify-tiles-{i}", daemon=True
            )
            for i in range(self.count)
        ]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                try:
                    item = self._results.get(timeout=POLL)
                except queue.Empty:
                    continue
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    record(item)
        finally:
            self._stop.set()
            for thread in threads:
                thread.join()

    def _next_group(self) -> np.ndarray | None:
        with self._take_lock:
            return next(self._groups, None)

    def _work(self) -> None:
        """One thread's loop; whatever it raises goes to the calling thread, which stops the others."""
        try:
            with self._raster() as (raster, lock):
                batches = _Batches(self.job.model.batch_size)
                retry = RetryPolicy(self.retries)
                while not self._stop.is_set() and (group := self._next_group()) is not None:
                    for targets, stack in self._cut(raster, lock, group, batches):
                        self._classify(targets, stack, retry)
                for targets, stack in batches.flush():
                    self._classify(targets, stack, retry)
        except BaseException as exc:
            self._results.put(exc)
        finally:
            self._results.put(None)

    @contextmanager
    def _raster(self) -> Iterator[tuple[Raster, AbstractContextManager[object]]]:
        """The raster this thread reads, and the lock its reads take (none for a handle of its own)."""
        if not self._own_handles:
            yield self.job.raster, self._read_lock
            return
        assert self.job.opener is not None
        raster = open_raster(self.job.opener, self.job.model)
        try:
            yield raster, nullcontext()
        finally:
            raster.close()

    def _cut(
        self, raster: Raster, lock: AbstractContextManager[object], group: np.ndarray, batches: _Batches
    ) -> Iterator[tuple[np.ndarray, ChipStack]]:
        job = self.job
        windows = job.windows[group]
        with lock:
            region = read_region(raster, windows)
        for positions, stack in cut_region(region, windows, job.spec, job.polygons(group)):
            yield from batches.add(job.targets[group[positions]], stack)

    def _classify(self, targets: np.ndarray, stack: ChipStack, retry: RetryPolicy) -> None:
        owned = self.retries == 0  # a batch that may run again must keep its raw pixels
        key = int(targets[0])
        while not self._stop.is_set():
            try:
                with self._model_lock:
                    result = classify_stack(self.job.model, self.job.band_indexes, targets, stack, owned)
            except InferenceError as exc:
                retry.again(key, exc)
                continue
            retry.done(key)
            self._results.put(result)
            return


class _Batches:
    """Collects one thread's chips into batches of the model's size, as slices of each tile's stack.

    A tile's last chips wait for the next tile's only when both together fill at most a batch (sparse layers);
    otherwise they go as a smaller batch, as joining them to the next tile's would copy every batch that straddles
    two tiles.
    """

    def __init__(self, step: int) -> None:
        self.step = step
        self._targets: list[np.ndarray] = []
        self._stacks: list[ChipStack] = []
        self._count = 0

    def add(self, targets: np.ndarray, stack: ChipStack) -> Iterator[tuple[np.ndarray, ChipStack]]:
        """The batches that are full once ``stack`` is added."""
        targets = np.asarray(targets, dtype=np.int64)
        step = self.step
        if self._count and self._count + len(targets) > step:
            yield from self.flush()
        if self._count:
            self._targets.append(targets)
            self._stacks.append(stack)
            self._count += len(targets)
            if self._count == step:
                yield from self.flush()
            return
        whole = len(targets) // step * step
        for at in range(0, whole, step):
            yield targets[at : at + step], stack.take(slice(at, at + step))
        if whole < len(targets):
            self._targets, self._stacks = [targets[whole:]], [stack.take(slice(whole, None))]
            self._count = len(targets) - whole

    def flush(self) -> Iterator[tuple[np.ndarray, ChipStack]]:
        """The chips carried, as one batch."""
        if not self._count:
            return
        targets, stack = np.concatenate(self._targets), ChipStack.concatenate(self._stacks)
        self._targets, self._stacks, self._count = [], [], 0
        yield targets, stack
