"""Esri's execution environments, checked: parallel processing factor, retries on failures, the recycle interval,
and (geoclassify's own) a Dask scheduler. :func:`geoclassify.runners.runner_for` turns them into a runner."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import SettingError
from .scheduler import check_scheduler


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
        check_scheduler(scheduler)  # before features are read or the model loaded
    return Execution(workers, retries, recycle_interval, scheduler)
