"""The worker-process runner (Esri's parallel processing factor): batches on a pool of local processes.

A job's batches are taken in tile order, so a batch's chips come from a few neighbouring tiles. Worker processes
(spawned, so no inherited runtime threads) open the raster and load the model once each, with one inference
thread, and send back only a :class:`BatchResult`. A batch that fails is run again up to ``retries`` times; a
worker that dies takes only its batch with it. Recycling replaces the workers after ``recycle_interval`` batches
each.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ..core.predictions import BatchResult
from ..errors import InferenceError
from .base import PlanJob, Record, RetryPolicy
from .images import ImageBatch, ImageSetup, ImageState, ImageWork
from .work import Work, WorkerSetup, WorkerState

#: A worker's setup, its state and a batch: a feature plan's, or an image collection's.
Setup = WorkerSetup | ImageSetup
State = WorkerState | ImageState
AnyWork = Work | ImageWork

_STATE: State | None = None


def _init_worker(parent: int, setup: Setup) -> None:
    """The pool's initializer: once per worker process, not per batch."""
    global _STATE
    watch_parent(parent)
    _STATE = setup.open()


def watch_parent(parent: int, every: float = 0.25) -> None:
    """End this worker as soon as the process that started it is gone.

    A pool's workers wait on a queue that a SIGKILLed or SIGTERMed parent never closes: without this they lived
    on (about 290 MB each) and held the terminal's stderr open, so ``| tee`` hung. A thread polls the parent's
    pid (a dead parent's children are re-parented) rather than using PR_SET_PDEATHSIG, which fires when the
    *thread* that spawned the worker ends and so would kill workers started by the pool's manager thread. The
    parent's pid is given, not read here: a parent killed while this worker was still starting has already
    handed it to init, and the worker must end at once rather than watch init.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="geoclassify-parent-watch", daemon=True).start()


def _run_work(work: AnyWork) -> BatchResult | ImageBatch:
    assert _STATE is not None, "the pool's initializer sets the worker state"
    return _STATE.run(work)  # type: ignore[arg-type]  # a pool runs one kind of work, the kind its setup made


class ProcessRunner:
    """Batches on ``workers`` processes; each is replaced after ``recycle_interval`` batches (on average)."""

    def __init__(self, workers: int, retries: int = 0, recycle_interval: int | None = None) -> None:
        self.workers = workers
        self.retries = retries
        self.recycle_interval = recycle_interval

    def __enter__(self) -> ProcessRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, job: PlanJob, record: Record) -> None:
        self.run_works(job.works(), job.setup(), record)

    def run_works(self, works: Iterable[AnyWork], setup: Setup, record: Record, count: int | None = None) -> None:
        """Run every batch; ``record`` receives each one's result as it comes (``count``, the number of batches,
        is for runners that plan by it; this one takes batches as they come).

        Recycling renews the whole pool once its workers have run ``recycle_interval`` batches each on average:
        ``ProcessPoolExecutor(max_tasks_per_child=...)`` deadlocks on Python 3.11-3.13 (CPython gh-115634).
        """
        context = multiprocessing.get_context("spawn")
        source = enumerate(works)  # taken as needed: a big run never holds every batch at once
        waiting: list[tuple[int, AnyWork]] = []  # batches to run again, before new ones
        retry = RetryPolicy(self.retries)
        exhausted = False
        in_flight: dict[Future[BatchResult | ImageBatch], tuple[int, AnyWork]] = {}
        limit = max(2, self.workers * 3)
        renew_after = self.recycle_interval * self.workers if self.recycle_interval else None

        def new_pool() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(), setup)
            )

        pool, submitted = new_pool(), 0
        try:
            while True:
                while len(in_flight) < limit and (renew_after is None or submitted < renew_after):
                    item = waiting.pop() if waiting else next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    in_flight[pool.submit(_run_work, item[1])] = item
                    submitted += 1
                if not in_flight:
                    if exhausted and not waiting:
                        break
                    pool.shutdown(wait=True)  # the pool has had its share of batches: replace its workers
                    pool, submitted = new_pool(), 0
                    continue
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = in_flight.pop(future)
                    key = item[0]
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        # A worker died (killed, out of memory): start a fresh pool and run its batches again.
                        pool.shutdown(wait=False, cancel_futures=True)
                        waiting.extend(in_flight.values())
                        in_flight.clear()
                        retry.again(key, "a worker process died")
                        waiting.append(item)
                        pool, submitted = new_pool(), 0
                        break
                    except InferenceError as exc:
                        retry.again(key, exc.message)
                        waiting.append(item)
                        continue
                    retry.done(key)
                    record(result)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
