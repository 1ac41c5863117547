"""Dask schedulers: checking what «scheduler» names, and connecting to it (or starting a local cluster).

Only these functions import Dask, when they run: the default install never needs it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import ClusterError, MissingExtraError, SettingError

if TYPE_CHECKING:
    from distributed import Client

#: Seconds to wait for a scheduler to answer, and for a cluster without workers to get one
#: (GEOCLASSIFY_SCHEDULER_TIMEOUT overrides it).
SCHEDULER_TIMEOUT = 20.0
INSTALL_HINT = "install the extra with `pip install 'geoclassify[dask]'`"
FORMS = (
    "give a Dask scheduler's address (tcp://HOST:PORT, or tls://HOST:PORT), local (a local cluster, one worker "
    "per core) or local:N (N workers)"
)


def check_scheduler(scheduler: Any) -> None:
    """Refuse a value that names no cluster, before the run reads anything; a Client object is taken as is."""
    distributed = _require_dask()
    if not isinstance(scheduler, str):
        if isinstance(scheduler, distributed.Client):
            return
        raise SettingError(f"«scheduler»: {FORMS}; got a {type(scheduler).__name__}")
    text = scheduler.strip()
    if text == "local" or text.startswith("local:"):
        _local_workers(text)
        return
    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(text, strict=False)
        get_backend(scheme).get_address_host_port(location)
    except ValueError as exc:
        raise SettingError(f"«scheduler» {scheduler!r}: {FORMS} ({exc})") from None


def _local_workers(text: str) -> int:
    count = text.partition(":")[2]
    if not count:
        return os.cpu_count() or 1
    if not count.isdigit() or int(count) < 1:
        raise SettingError(f"«scheduler» {text!r}: local:N takes a number of worker processes, 1 or more (local:4)")
    return int(count)


def _require_dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise MissingExtraError(
            f"«scheduler» needs Dask's distributed scheduler, which is not installed: {INSTALL_HINT}"
        ) from None
    return distributed


def scheduler_timeout() -> float:
    text = os.environ.get("GEOCLASSIFY_SCHEDULER_TIMEOUT")
    if text is None:
        return SCHEDULER_TIMEOUT
    try:
        value = float(text)
        if value <= 0:
            raise ValueError
    except ValueError:
        raise SettingError(f"GEOCLASSIFY_SCHEDULER_TIMEOUT={text!r}: give a number of seconds above 0") from None
    return value


@contextmanager
def connect(scheduler: Any) -> Iterator[tuple[Client, str]]:
    """A client of the cluster ``scheduler`` names, and how to name it in messages; what is opened here is closed
    here, and a Client passed in is left open for its owner."""
    distributed = _require_dask()
    if isinstance(scheduler, distributed.Client):
        yield scheduler, f"the Dask scheduler at {scheduler.scheduler.address}"
        return
    check_scheduler(scheduler)
    text = scheduler.strip()
    if text == "local" or text.startswith("local:"):
        workers = _local_workers(text)
        with _workers_ignore_ctrl_c():
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,  # a run's own cluster: its errors reach us through the futures
            )
        with cluster, distributed.Client(cluster, set_as_default=False) as client:
            yield client, f"the local Dask cluster of {workers} workers"
        return
    timeout = scheduler_timeout()
    try:
        client = distributed.Client(text, timeout=timeout, set_as_default=False)
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {text} ({exc}); start it there (`dask scheduler`) or fix "
            "«scheduler» (GEOCLASSIFY_SCHEDULER_TIMEOUT sets how long to wait)"
        ) from None
    with client:
        yield client, f"the Dask scheduler at {text}"


@contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start worker processes with SIGINT ignored (inherited through exec): Ctrl-C in a terminal reaches the whole
    process group, and this process, not each worker, should stop the run and close the cluster."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
