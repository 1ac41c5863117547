"""Batches on a Dask cluster (``--scheduler``): the same work as local worker processes, on other machines.

Batches arrive in the pipeline's Z-order; runs of consecutive ones become partitions, one Dask task each, so a
worker reads neighbouring tiles and a task is worth its scheduling overhead. The model package travels once: its
bytes are scattered to every worker, written into the worker's package cache under their SHA-256, and loaded once
per worker thread and run, like a local worker process. Workers open the images themselves (by the same paths or
URIs); the feature layer stays here. Only a few partitions per worker thread are in flight, so this process's
memory does not grow with the run, and results reach ``done`` as partitions finish. Dask reruns the tasks of a
worker that dies; a partition that fails (a model error, or Dask giving up after repeated worker deaths) is
submitted again up to ``--retries`` times.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import logging
import math
import os
import signal
import tempfile
import threading
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..errors import GeoclassifyError, InferenceError, MissingExtraError, ModelPackageError, SettingError
from ..model.packages import MAX_PACKAGE_ENTRIES, cache_dir, extract_dlpk, max_package_bytes
from ..model.runtime import ModelRecipe
from .processes import Execution, Opener, Task, WorkerState, open_worker_state, run_task

if TYPE_CHECKING:
    from distributed import Client

Result = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

#: Most features in one Dask task: big enough that scheduling costs nothing next to the work, small enough that a
#: lost worker costs little and the progress bar moves.
PARTITION_FEATURES = 2048
#: Small runs are cut finer, into at least this many partitions per worker thread, so every thread gets work.
PARTITIONS_PER_THREAD = 4
#: Partitions submitted but not finished, per worker thread (at least MIN_IN_FLIGHT): keeps every thread busy while
#: results come back, and bounds what this process holds.
IN_FLIGHT_PER_THREAD = 3
MIN_IN_FLIGHT = 4
#: Seconds to wait for a scheduler to answer, and for a cluster without workers to get one
#: (GEOCLASSIFY_SCHEDULER_TIMEOUT overrides it).
SCHEDULER_TIMEOUT = 20.0
#: Runs whose loaded model and open raster a worker thread keeps (two runs may share a cluster).
RUNS_KEPT = 2
#: Times a run sends the model again after every worker holding it died (a cluster of one worker, restarted).
RESHIPMENTS = 3
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


def hold_cluster(execution: Execution, stack: contextlib.ExitStack) -> Execution:
    """Connect once for a whole run (items mode runs one plan per image, and ``local`` would start a cluster for
    each): the same execution with the connected Client, closed when ``stack`` is."""
    if not isinstance(execution.scheduler, str):
        return execution
    client, _ = stack.enter_context(connect(execution.scheduler))
    return replace(execution, scheduler=client)


class ClusterError(GeoclassifyError, OSError):
    """The Dask cluster cannot be reached, has no usable workers, or dropped the work."""


# -- the model package, shipped once ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shipment:
    """A model package as bytes, for workers that cannot see this machine's files.

    A .dlpk or .onnx travels as it is; an .emd travels as a zip of its folder (the model file and any inference
    function beside it), which workers unpack like a .dlpk. ``origin`` is the package's path here, so messages from
    workers name the file the user gave, not the worker's copy.
    """

    digest: str
    name: str
    data: bytes = b""
    member: str | None = None
    origin: str = ""

    def install(self) -> tuple[str, str]:
        """Write the package into this machine's cache, once per content: (the path to load, the local path that
        stands for :attr:`label` in messages)."""
        folder = cache_dir() / "shipped" / self.digest[:32]
        path = folder / self.name
        try:
            if not path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                handle, staging = tempfile.mkstemp(prefix=".ship-", dir=folder)
                try:
                    with os.fdopen(handle, "wb") as out:
                        out.write(self.data)
                    os.replace(staging, path)  # atomic: threads and processes sharing a cache see all or nothing
                finally:
                    if os.path.exists(staging):
                        os.unlink(staging)
        except OSError as exc:
            raise ClusterError(
                f"cannot write the model package into {folder} ({exc.strerror or exc}); give the workers a writable "
                "GEOCLASSIFY_CACHE_DIR"
            ) from None
        if self.member is None:
            return str(path), str(path)
        unpacked = extract_dlpk(path)
        return str(unpacked / self.member), str(unpacked)

    @property
    def label(self) -> str:
        """The package's path (a single file) or folder (an .emd's) on the machine that shipped it."""
        return self.origin if self.member is None else str(Path(self.origin).parent)

    def __repr__(self) -> str:  # the bytes would flood Dask's logs
        return f"Shipment({self.origin!r}, {len(self.data)} bytes, sha256 {self.digest[:12]})"


def ship_package(origin: str) -> Shipment:
    """Read the package a recipe loads from, as Shipment; refuses an inline EMD, whose files are only findable
    from this process's working folder."""
    if origin.lstrip().startswith("{"):
        raise ModelPackageError(
            "an inline EMD cannot be sent to Dask workers: save it as an .emd file beside its model file (or build "
            "a .dlpk with `geoclassify package`) and pass that path"
        )
    path = Path(origin)
    suffix = path.suffix.lower()
    try:
        if suffix in (".onnx", ".dlpk") or (suffix != ".emd" and zipfile.is_zipfile(path)):
            data, name, member = path.read_bytes(), path.name, None
        else:
            data, name, member = _zip_folder(path), "package.zip", path.name
    except OSError as exc:
        raise ModelPackageError(f"{origin}: cannot read the model package to send it to Dask ({exc})") from None
    return Shipment(hashlib.sha256(data).hexdigest(), name, data, member, origin)


def _zip_folder(emd: Path) -> bytes:
    """The .emd's folder as an uncompressed zip (model files hardly compress), within the package limits."""
    limit = max_package_bytes()
    files = sorted(p for p in emd.parent.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if len(files) > MAX_PACKAGE_ENTRIES or sum(p.stat().st_size for p in files) > limit:
        raise ModelPackageError(
            f"{emd}: its folder holds too much to send to Dask workers ({len(files)} files); put the .emd and its "
            "files in a folder of their own, or build a .dlpk with `geoclassify package`"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for file in files:
            archive.write(file, file.relative_to(emd.parent).as_posix())
    return buffer.getvalue()


# -- on the workers -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """What every partition of one run shares; ``token`` tells this run's loaded models from other runs'."""

    token: str
    recipe: ModelRecipe
    opener: Opener
    spec: Any
    bands: tuple[int, ...]


#: Loaded model and open raster per (run token, worker thread), with the local path of the package they came from.
#: Per thread rather than per process: a Dask worker may run several tasks at once, and a GDAL dataset must not be
#: read from two threads.
_STATES: dict[tuple[str, int], tuple[WorkerState, str]] = {}
_STATES_LOCK = threading.Lock()


def _run_partition(shipment: Shipment, run: _Run, tasks: list[Task]) -> Result:
    """A Dask task: each batch of the partition as a local worker runs it, results joined."""
    state, local = _worker_state(shipment, run)
    try:
        parts = [run_task(state, task) for task in tasks]
    except GeoclassifyError as exc:
        raise _relabel(exc, local, shipment.label) from None
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]


def _worker_state(shipment: Shipment, run: _Run) -> tuple[WorkerState, str]:
    key = (run.token, threading.get_ident())
    with _STATES_LOCK:
        kept = _STATES.pop(key, None)
        if kept is not None:
            _STATES[key] = kept  # most recently used last
            return kept
    local = ""
    try:
        path, local = shipment.install()
        state = open_worker_state(replace(run.recipe, origin=path), run.opener, run.spec, run.bands)
    except GeoclassifyError as exc:
        # Most likely the images are not reachable from this worker: say which worker it was.
        raise type(exc)(f"Dask worker {_worker_address()}: {_relabel(exc, local, shipment.label)}") from None
    with _STATES_LOCK:
        mine = [k for k in _STATES if k[1] == key[1]]
        for old in mine[: max(0, len(mine) - RUNS_KEPT + 1)]:
            del _STATES[old]  # closed when the last reference goes, even if another thread still reads it
        _STATES[key] = (state, local)
    return state, local


def _relabel(exc: GeoclassifyError, local: str, origin: str) -> GeoclassifyError:
    """The same error naming the user's package rather than the worker's copy of it."""
    text = exc.message
    return type(exc)(text.replace(local, origin)) if local and local in text else exc


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


def run_cluster_tasks(
    tasks: Iterable[Task], execution: Execution, init_args: tuple[Any, ...], done: Callable[[Task, Result], None]
) -> None:
    """Run every task on the cluster ``execution.scheduler`` names; ``done`` gets each task's results (in the
    order partitions finish, exactly once each)."""
    recipe, opener, spec, band_indexes = init_args
    count = len(tasks) if hasattr(tasks, "__len__") else None
    source = iter(tasks)
    first = next(source, None)
    if first is None:
        return  # nothing to classify: no cluster to start
    shipment = ship_package(recipe.origin)
    run = _Run(uuid.uuid4().hex, recipe, opener, spec, tuple(band_indexes))
    with connect(execution.scheduler) as (client, where):
        threads = _ready_threads(client, where)
        per_partition = _batches_per_partition(count, threads, len(first.targets))
        partitions = _partitions(itertools.chain([first], source), per_partition)
        _dispatch(client, where, shipment, run, partitions, execution.retries, done)


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


def _partitions(tasks: Iterator[Task], size: int) -> Iterator[list[Task]]:
    """Consecutive batches in groups of ``size``: neighbours in Z-order stay together."""
    while part := list(itertools.islice(tasks, size)):
        yield part


def _dispatch(
    client: Client,
    where: str,
    shipment: Shipment,
    run: _Run,
    partitions: Iterator[list[Task]],
    retries: int,
    done: Callable[[Task, Result], None],
) -> None:
    import distributed

    shared: list[distributed.Future] = []  # the package and the run's setup, on every worker
    generation = 0  # how often they were sent: a worker death can take the last copies with it
    numbered = enumerate(partitions)
    waiting: deque[tuple[int, list[Task]]] = deque()  # partitions to run again, before new ones
    attempts: dict[int, int] = {}
    in_flight: dict[distributed.Future, tuple[int, list[Task], int]] = {}
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

    def again(index: int, part: list[Task], why: str) -> None:
        attempts[index] = attempts.get(index, 0) + 1
        if attempts[index] > retries:
            raise InferenceError.out_of_retries(attempts[index], retries, why) from None
        waiting.append((index, part))

    def cancelled(index: int, part: list[Task], sent: int, exc: BaseException) -> None:
        """Dask cancels the tasks whose inputs died with the last workers holding them: send them again (a few
        times per run); any other cancellation ends the run."""
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
        waiting.append((index, part))

    try:
        ship()
        submit()
        for future in finished:
            index, part, sent = in_flight.pop(future)
            try:
                result = future.result()
            except InferenceError as exc:
                again(index, part, exc.message)
            except distributed.KilledWorker:
                again(
                    index, part, f"Dask gave up on it: the workers running it died repeatedly (see the logs of {where})"
                )
            except CancelledError as exc:
                cancelled(index, part, sent, exc)
            except GeoclassifyError as exc:
                raise exc.with_traceback(None) from None  # the message is the story; the remote frames are not
            else:
                if index not in recorded:  # a partition counts once, whatever Dask did behind the scenes
                    recorded.add(index)
                    attempts.pop(index, None)
                    for task, piece in zip(part, _split(result, part), strict=True):
                        done(task, piece)
            submit()
    finally:
        client.cancel(list(in_flight))
        in_flight.clear()
        finished.clear()
        shared.clear()  # the scheduler drops the package once no client holds it
        with contextlib.suppress(Exception):  # a cluster gone bad must not hide the error that ends the run
            client.run(_forget, run.token, wait=False)


def _split(result: Result, part: list[Task]) -> Iterator[Result]:
    cuts = np.cumsum([len(task.targets) for task in part])[:-1]
    return zip(*(np.split(column, cuts) for column in result), strict=True)  # type: ignore[return-value]
