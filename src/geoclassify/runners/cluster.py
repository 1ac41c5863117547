"""The Dask runner (``scheduler``): the same batches as local worker processes, on other machines.

Batches arrive in tile order; runs of consecutive ones become partitions, one Dask task each, so a worker reads
neighbouring tiles and a task is worth its scheduling overhead. The model package travels once (see
:mod:`.shipping`): scattered to every worker and loaded once per worker thread, like a local worker process.
Workers open the images themselves (by the same paths or URIs); the feature layer stays here. Only a few
partitions per worker thread are in flight, so this process's memory does not grow with the run, and results are
recorded as partitions finish. Dask reruns the tasks of a worker that dies; a partition that fails (a model error,
or Dask giving up after repeated worker deaths) is submitted again up to ``retries`` times.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..core.predictions import BatchResult
from ..errors import ClusterError, GeoclassifyError, InferenceError
from .base import PlanJob, Record, RetryPolicy
from .images import ImageBatch, ImageSetup, ImageState, ImageWork
from .scheduler import connect, scheduler_timeout
from .shipping import Shipment, ship_package
from .work import Work, WorkerSetup, WorkerState

#: A run's setup, a worker's state and a batch: a feature plan's, or an image collection's.
Setup = WorkerSetup | ImageSetup
State = WorkerState | ImageState
AnyWork = Work | ImageWork

if TYPE_CHECKING:
    from distributed import Client

#: Most features in one Dask task: big enough that scheduling costs nothing next to the work, small enough that a
#: lost worker costs little and the progress bar moves.
PARTITION_FEATURES = 2048
#: Small runs are cut finer, into at least this many partitions per worker thread, so every thread gets work.
PARTITIONS_PER_THREAD = 4
#: Partitions submitted but not finished, per worker thread (at least MIN_IN_FLIGHT): keeps every thread busy while
#: results come back, and bounds what this process holds.
IN_FLIGHT_PER_THREAD = 3
MIN_IN_FLIGHT = 4
#: Runs whose loaded model and open raster a worker thread keeps (two runs may share a cluster).
RUNS_KEPT = 2
#: Times a run sends the model again after every worker holding it died (a cluster of one worker, restarted).
RESHIPMENTS = 3


# -- on the workers -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """What every partition of one run shares; ``token`` tells this run's loaded models from other runs'."""

    token: str
    setup: Setup


#: Loaded model and open raster per (run token, worker thread), with the local path of the package they came from.
#: Per thread rather than per process: a Dask worker may run several tasks at once, and a GDAL dataset must not be
#: read from two threads.
_STATES: dict[tuple[str, int], tuple[State, str]] = {}
_STATES_LOCK = threading.Lock()


def _run_partition(shipment: Shipment, run: _Run, works: list[AnyWork]) -> BatchResult | ImageBatch:
    """A Dask task: each batch of the partition as a local worker runs it, results joined."""
    state, local = _worker_state(shipment, run)
    try:
        results = [state.run(work) for work in works]  # type: ignore[arg-type]  # one kind of work per run
        return type(results[0]).joined(results)  # type: ignore[arg-type]
    except GeoclassifyError as exc:
        raise _relabel(exc, local, shipment.label) from None


def _worker_state(shipment: Shipment, run: _Run) -> tuple[State, str]:
    key = (run.token, threading.get_ident())
    with _STATES_LOCK:
        kept = _STATES.pop(key, None)
        if kept is not None:
            _STATES[key] = kept  # most recently used last
            return kept
    local = ""
    try:
        path, local = shipment.install()
        state = replace(run.setup, recipe=replace(run.setup.recipe, origin=path)).open()
    except GeoclassifyError as exc:
        # Most likely the images are not reachable from this worker: say which worker it was.
        relabelled = _relabel(exc, local, shipment.label)
        relabelled.args = (f"Dask worker {_worker_address()}: {relabelled.message}", *relabelled.args[1:])
        raise relabelled from None
    with _STATES_LOCK:
        mine = [k for k in _STATES if k[1] == key[1]]
        for old in mine[: max(0, len(mine) - RUNS_KEPT + 1)]:
            del _STATES[old]  # closed when the last reference goes, even if another thread still reads it
        _STATES[key] = (state, local)
    return state, local


def _relabel(exc: GeoclassifyError, local: str, origin: str) -> GeoclassifyError:
    """The same error naming the user's package rather than the worker's copy of it."""
    text = exc.message
    if local and local in text:
        exc.args = (text.replace(local, origin), *exc.args[1:])  # the same exception, its class and attributes
    return exc


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return "(unknown)"


async def _forget(token: str) -> None:
    """Drop a finished run's models and rasters on a worker (a coroutine: the client need not wait for it)."""
    with _STATES_LOCK:
        for key in [k for k in _STATES if k[0] == token]:
            del _STATES[key]


def _version() -> str:
    return __version__


# -- on this machine ----------------------------------------------------------------------------------------------


class ClusterRunner:
    """Batches on the Dask cluster ``scheduler`` names (an address, ``local[:N]``, or a connected Client).

    Inside ``with``, the cluster is connected to (or started) at the first plan and kept for every plan of the
    run: items mode runs one plan per image, and ``local`` would otherwise start a cluster for each. Outside, each
    plan connects for itself. A Client passed in is left open for its owner either way.
    """

    def __init__(self, scheduler: Any, retries: int = 0) -> None:
        self.scheduler = scheduler
        self.retries = retries
        self._stack: contextlib.ExitStack | None = None
        self._held: tuple[Client, str] | None = None

    def __enter__(self) -> ClusterRunner:
        self._stack = contextlib.ExitStack()
        return self

    def __exit__(self, *exc: object) -> None:
        stack, self._stack, self._held = self._stack, None, None
        if stack is not None:
            stack.close()

    def run(self, job: PlanJob, record: Record) -> None:
        self.run_works(job.works(), job.setup(), record, job.work_count)

    def run_works(self, works: Iterable[AnyWork], setup: Setup, record: Record, count: int | None = None) -> None:
        """Run every batch on the cluster (``count`` of them, when known); ``record`` gets each partition's results
        as it finishes, exactly once each."""
        source = iter(works)
        first = next(source, None)
        if first is None:
            return  # nothing to classify: no cluster to start
        shipment = ship_package(setup.recipe.origin)
        run = _Run(uuid.uuid4().hex, setup)
        with self._connection() as (client, where):
            threads = _ready_threads(client, where)
            per_partition = _batches_per_partition(count, threads, len(first.targets))
            partitions = _partitions(itertools.chain([first], source), per_partition)
            _dispatch(client, where, shipment, run, partitions, RetryPolicy(self.retries), record)

    def _connection(self) -> contextlib.AbstractContextManager[tuple[Client, str]]:
        if self._stack is None:
            return connect(self.scheduler)  # this plan only
        if self._held is None:
            self._held = self._stack.enter_context(connect(self.scheduler))
        return contextlib.nullcontext(self._held)


def _ready_threads(client: Client, where: str) -> int:
    """Worker threads of the cluster, once it has any and they run this version of geoclassify."""
    if not client.nthreads():
        timeout = scheduler_timeout()
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ClusterError(
                f"{where} has no workers (none joined within {timeout:g} s); start some with "
                f"`dask worker {client.scheduler.address}`"
            ) from None
    versions = client.run(_version, on_error="return")
    for address, version in versions.items():
        if version != __version__:
            found = f"geoclassify {version}" if isinstance(version, str) else f"no geoclassify ({version})"
            raise ClusterError(
                f"Dask worker {address} of {where} has {found} but this machine runs {__version__}; install "
                f"geoclassify[dask]=={__version__} on every worker"
            )
    return max(1, sum(client.nthreads().values()))


def _batches_per_partition(count: int | None, threads: int, batch: int) -> int:
    largest = max(1, PARTITION_FEATURES // max(1, batch))
    if count is None:
        return largest
    return max(1, min(largest, math.ceil(count / (PARTITIONS_PER_THREAD * threads))))


def _partitions(works: Iterator[AnyWork], size: int) -> Iterator[list[AnyWork]]:
    """Consecutive batches in groups of ``size``: neighbours in tile order stay together."""
    while part := list(itertools.islice(works, size)):
        yield part


def _dispatch(
    client: Client,
    where: str,
    shipment: Shipment,
    run: _Run,
    partitions: Iterator[list[AnyWork]],
    retry: RetryPolicy,
    record: Record,
) -> None:
    import distributed

    shared: list[distributed.Future] = []  # the package and the run's setup, on every worker
    generation = 0  # how often they were sent: a worker death can take the last copies with it
    numbered = enumerate(partitions)
    waiting: deque[tuple[int, list[AnyWork]]] = deque()  # partitions to run again, before new ones
    in_flight: dict[distributed.Future, tuple[int, list[AnyWork], int]] = {}
    recorded: set[int] = set()
    finished = distributed.as_completed(loop=client.loop)
    serial = itertools.count()

    def ship() -> None:
        nonlocal generation
        shared[:] = [
            client.scatter(shipment, broadcast=True, hash=True),  # runs of the same model share one copy
            client.scatter(run, broadcast=True, hash=False),
        ]
        generation += 1

    def submit() -> None:
        limit = max(MIN_IN_FLIGHT, IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))
        while len(in_flight) < limit:
            item = waiting.popleft() if waiting else next(numbered, None)
            if item is None:
                return
            index, part = item
            # A fresh key per submission: Dask would hand back a failed key's error instead of running it again.
            key = f"geoclassify-partition-{index}-{next(serial)}-{run.token}"
            future = client.submit(_run_partition, *shared, part, key=key)
            in_flight[future] = (index, part, generation)
            finished.add(future)

    def cancelled(sent: int, exc: BaseException) -> None:
        """Dask cancels the tasks whose inputs died with the last workers holding them: send the inputs again (a
        few times per run); any other cancellation ends the run."""
        if sent == generation and all(future.status == "finished" for future in shared):
            raise ClusterError(f"{where} dropped the work ({exc!r}); is the scheduler still running?") from None
        if sent == generation:
            if generation > RESHIPMENTS:
                raise ClusterError(f"{where} kept losing every worker; see the workers' logs") from None
            timeout = scheduler_timeout()
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                raise ClusterError(f"{where} lost its workers and none came back within {timeout:g} s") from None
            ship()

    try:
        ship()
        submit()
        for future in finished:
            index, part, sent = in_flight.pop(future)
            try:
                result = future.result()
            except InferenceError as exc:
                retry.again(index, exc.message)
                waiting.append((index, part))
            except distributed.KilledWorker:
                retry.again(
                    index, f"Dask gave up on it: the workers running it died repeatedly (see the logs of {where})"
                )
                waiting.append((index, part))
            except CancelledError as exc:
                cancelled(sent, exc)
                waiting.append((index, part))
            except GeoclassifyError as exc:
                raise exc.with_traceback(None) from None  # the message is the story; the remote frames are not
            else:
                if index not in recorded:  # a partition counts once, whatever Dask did behind the scenes
                    recorded.add(index)
                    retry.done(index)
                    record(result)
            submit()
    finally:
        client.cancel(list(in_flight))
        in_flight.clear()
        finished.clear()
        shared.clear()  # the scheduler drops the package once no client holds it
        with contextlib.suppress(Exception):  # a cluster gone bad must not hide the error that ends the run
            client.run(_forget, run.token, wait=False)
