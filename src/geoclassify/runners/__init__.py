"""Where a plan's batches run: in this process (:class:`LocalRunner`), on local worker processes
(:class:`ProcessRunner`) or on a Dask cluster (:class:`ClusterRunner`), all behind one :class:`Runner` protocol.

A run chooses its runner once, with :func:`runner_for`, and hands it to :func:`classify_plan` for every plan it
runs. Only :mod:`.cluster` and :mod:`.scheduler` touch Dask, and only when they run.
"""

from __future__ import annotations

from ..core.predictions import BatchResult
from .base import PlanJob, RetryPolicy, Runner, classify_plan
from .cluster import ClusterRunner
from .execution import Execution, check_execution, parse_parallel_factor
from .local import LocalRunner
from .processes import ProcessRunner
from .work import Work, WorkerSetup, chip_spec

__all__ = [
    "BatchResult",
    "ClusterRunner",
    "Execution",
    "LocalRunner",
    "PlanJob",
    "ProcessRunner",
    "RetryPolicy",
    "Runner",
    "Work",
    "WorkerSetup",
    "check_execution",
    "chip_spec",
    "classify_plan",
    "parse_parallel_factor",
    "runner_for",
]


def runner_for(execution: Execution) -> Runner:
    """The runner ``execution`` asks for: a Dask cluster when it names a scheduler, worker processes when it
    asks for some, and this process otherwise. Use it as a context manager around the run's plans."""
    if execution.scheduler is not None:
        return ClusterRunner(execution.scheduler, execution.retries)
    if execution.workers:
        return ProcessRunner(execution.workers, execution.retries, execution.recycle_interval)
    return LocalRunner(execution.retries)
