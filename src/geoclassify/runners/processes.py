"""Esri's execution environments: parallel processing factor, retries on failures, and the recycle interval.

Work is split into tasks of one batch each, taken in the pipeline's Z-order so a task's chips come from a few
neighbouring tiles. Worker processes (spawned, so no inherited runtime threads) open the raster and load the
model once each, with one inference thread, and send back only class indexes, confidences and coverage. A
task that fails is run again up to ``retries`` times; a worker that dies takes only its task with it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from ..errors import InferenceError, SettingError

Opener = Callable[[], Any]


@dataclass(frozen=True)
class Execution:
    """How to run: ``workers`` processes (0: in this process), ``retries`` per failed batch, and processes
    replaced after ``recycle_interval`` batches; or, with ``scheduler`` (a Dask scheduler address, ``local[:N]``
    or a ``dask.distributed.Client``), on a Dask cluster."""

    workers: int = 0
    retries: int = 0
    recycle_interval: int | None = None
    scheduler: Any = None

    @property
    def distributed(self) -> bool:
        """Whether batches leave this process (worker processes or a Dask cluster)."""
        return bool(self.workers) or self.scheduler is not None


def parse_parallel_factor(value: str | int | None, cores: int | None = None) -> int:
    """Esri's parallel processing factor: a worker count (``"2"``) or a share of the cores (``"50%"``).

    ``None`` and ``0`` mean no worker processes: everything runs here, with every core for inference.
    """
    if value is None or value == "":
        return 0
    cores = cores or os.cpu_count() or 1
    text = str(value).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return max(1, round(cores * share / 100))
        count = int(text)
        if count < 0:
            raise ValueError
        return count
    except ValueError:
        raise SettingError(
            f"«parallel_factor» {value!r}: give a number of processes (e.g. 2) or a share of the "
            f"{cores} cores (e.g. 50%)"
        ) from None


def check_execution(workers: int, retries: int, recycle_interval: int | None, scheduler: Any = None) -> Execution:
    if retries < 0:
        raise SettingError(f"«retries» {retries}: give 0 or more")
    if recycle_interval is not None and recycle_interval < 1:
        raise SettingError(f"«recycle_interval» {recycle_interval}: give 1 or more batches")
    if scheduler is not None and workers:
        raise SettingError(
            "«parallel_factor» and «scheduler» both say where to run; give one (a Dask cluster sets its own workers)"
        )
    if scheduler is not None and recycle_interval is not None:
        raise SettingError(
            "«recycle_interval» replaces local worker processes; a Dask cluster manages its workers' lifetime "
            "itself (dask worker --lifetime)"
        )
    if scheduler is not None:
        from .cluster import check_scheduler

        check_scheduler(scheduler)  # before features are read or the model loaded
    return Execution(workers, retries, recycle_interval, scheduler)


@dataclass(frozen=True)
class Task:
    """One batch of features for a worker: their windows and (for blackening) polygons in pixel space."""

    targets: np.ndarray
    windows: np.ndarray
    polygons: list[bytes | None]


@dataclass
class WorkerState:
    """What a worker keeps between batches, so the raster is opened and the model loaded once, not per batch."""

    model: Any
    raster: Any
    spec: Any
    bands: tuple[int, ...]


def open_worker_state(model: Any, opener: Opener, spec: Any, band_indexes: tuple[int, ...]) -> WorkerState:
    """Load the model with one inference thread (a worker's parallelism is its siblings) and open the raster."""
    loaded = model.load(threads=1)
    raster = opener()
    raster.select_bands(loaded.definition.extract_bands)
    return WorkerState(loaded, raster, spec, band_indexes)


def run_task(state: WorkerState, task: Task) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One batch on a worker (a process of the pool or a Dask worker thread): the in-process chip cutting and
    inference, so results do not depend on where they ran."""
    from .local import classify_windows

    polygons = [shapely.from_wkb(p) if p is not None else None for p in task.polygons]
    return classify_windows(state.model, state.raster, state.spec, state.bands, task.windows, polygons, task.targets)


_STATE: WorkerState | None = None


def _init_worker(parent: int, model: Any, opener: Opener, spec: Any, band_indexes: tuple[int, ...]) -> None:
    """The pool's initializer: once per worker process, not per task."""
    global _STATE
    watch_parent(parent)
    _STATE = open_worker_state(model, opener, spec, band_indexes)


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


def _run_task(task: Task) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    assert _STATE is not None, "the pool's initializer sets the worker state"
    return run_task(_STATE, task)


def run_tasks(
    tasks: Iterable[Task],
    execution: Execution,
    init_args: tuple[Any, ...],
    done: Callable[[Task, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], None],
) -> None:
    """Run every task on ``execution.workers`` processes (or the Dask cluster of ``execution.scheduler``);
    ``done`` receives each task's results as they come.

    Recycling renews the whole pool once its workers have run ``recycle_interval`` batches each on average:
    ``ProcessPoolExecutor(max_tasks_per_child=...)`` deadlocks on Python 3.11-3.13 (CPython gh-115634).
    """
    if execution.scheduler is not None:
        from .cluster import run_cluster_tasks

        run_cluster_tasks(tasks, execution, init_args, done)
        return
    context = multiprocessing.get_context("spawn")
    source = iter(tasks)  # taken as needed: a big run never holds every task at once
    waiting: list[Task] = []  # tasks to run again, before new ones
    attempts: dict[int, int] = {}
    exhausted = False
    in_flight: dict[Future, Task] = {}
    limit = max(2, execution.workers * 3)
    renew_after = execution.recycle_interval * execution.workers if execution.recycle_interval else None

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            execution.workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(), *init_args)
        )

    pool, submitted = new_pool(), 0
    try:
        while True:
            while len(in_flight) < limit and (renew_after is None or submitted < renew_after):
                task = waiting.pop() if waiting else next(source, None)
                if task is None:
                    exhausted = True
                    break
                in_flight[pool.submit(_run_task, task)] = task
                submitted += 1
            if not in_flight:
                if exhausted and not waiting:
                    break
                pool.shutdown(wait=True)  # the pool has had its share of batches: replace its workers
                pool, submitted = new_pool(), 0
                continue
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                task = in_flight.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    # A worker died (killed, out of memory): start a fresh pool and run its tasks again.
                    pool.shutdown(wait=False, cancel_futures=True)
                    waiting.extend(in_flight.values())
                    in_flight.clear()
                    _retry_or_fail(task, attempts, execution, waiting, "a worker process died")
                    pool, submitted = new_pool(), 0
                    break
                except InferenceError as exc:
                    _retry_or_fail(task, attempts, execution, waiting, exc.message)
                    continue
                attempts.pop(id(task), None)
                done(task, result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _retry_or_fail(task: Task, attempts: dict[int, int], execution: Execution, queue: list[Task], why: str) -> None:
    attempts[id(task)] = attempts.get(id(task), 0) + 1
    if attempts[id(task)] > execution.retries:
        raise InferenceError.out_of_retries(attempts[id(task)], execution.retries, why)
    queue.append(task)
