"""A worker process: claims one job at a time from the store, runs it with :func:`geoclassify.run`, publishes it.

``python -m geoclassify.server.worker --state DIR --id ID --parent PID`` (``geoclassify serve`` starts them). A
heartbeat thread renews the job's lease, records progress and polls twice a second whether the job was cancelled
or taken from this worker (its lease ran out), which the run's ``cancelled`` hook then reports between batches.
The run writes into the job's own folder and keeps its journal there, so a job claimed again (after a crash, a
kill, a server restart) continues from its saved results with ``resume``. A lock on that folder keeps a worker
that lost its lease but still runs (stopped, then continued) from sharing it with the one that took over.
SIGTERM stops a run as Ctrl-C does (results saved) and queues the job again; the worker exits when the server
process that started it is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from geoclassify import GeoclassifyError, RunContext, RunHooks, RunRequest, inspect_model, run
from geoclassify.errors import GeoclassifyWarning, RunCancelled

from .config import ServerConfig
from .db import Database
from .items import ItemStore
from .jobs import DISMISSED, FAILED, FINAL, Job, JobStore
from .modelinfo import model_info
from .tool import MODEL_INFO, staging_folder, user_message

POLL_SECONDS = 0.2
CANCEL_POLL_SECONDS = 0.5


class Heartbeat(threading.Thread):
    """Keeps one job's lease and tells the run when to stop."""

    def __init__(self, jobs: JobStore, job_id: str, worker: str, lease: float) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.jobs, self.job_id, self.worker, self.lease = jobs, job_id, worker, lease
        self.stop_event = threading.Event()
        self.cancel = threading.Event()
        self.lost = False
        self._progress: int | None = None

    def progress(self, done: int, total: int | None) -> None:
        if total:
            self._progress = min(99, int(100 * done / total))

    def stopping(self) -> bool:
        return self.cancel.is_set()

    def run(self) -> None:
        renewed = time.monotonic()
        written = None
        while not self.stop_event.wait(CANCEL_POLL_SECONDS):
            try:
                now = time.monotonic()
                if now - renewed >= self.lease / 3 or self._progress != written:
                    status = self.jobs.heartbeat(self.job_id, self.worker, self.lease, self._progress)
                    renewed, written = now, self._progress
                else:
                    status = self.jobs.held_status(self.job_id, self.worker)
            except Exception:  # a locked or busy database: try again at the next tick, the lease has slack
                continue
            if status is None:
                self.lost = True
            if status != "running":
                self.cancel.set()

    def finish(self) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join()


class Worker:
    def __init__(self, config: ServerConfig, worker_id: str) -> None:
        self.config = config
        self.id = worker_id
        db = Database(config.state)
        self.jobs = JobStore(db)
        self.items = ItemStore(db)

    def loop(self) -> None:
        """Claim and run jobs until SIGTERM or Ctrl-C."""
        while True:
            job = self.jobs.claim(self.id, self.config.lease, self.config.workers)
            if job is None:
                time.sleep(POLL_SECONDS)
                continue
            self.execute(job)

    def execute(self, job: Job) -> None:
        folder = staging_folder(self.config, job.id)
        folder.mkdir(parents=True, exist_ok=True)
        with _folder_lock(folder) as held:
            if not held:
                self.jobs.release(job.id, self.id, "Another worker still holds this job's files; queued again.")
                time.sleep(1)
                return
            heartbeat = Heartbeat(self.jobs, job.id, self.id, self.config.lease)
            heartbeat.start()
            try:
                if job.process == MODEL_INFO:
                    self._model_info(job, heartbeat)
                else:
                    self._classify(job, heartbeat)
            except RunCancelled:
                heartbeat.finish()
                if not heartbeat.lost:  # cancelled: no partial result, no journal
                    self.jobs.finish(job.id, self.id, DISMISSED, "warning", "Cancelled.")
                    shutil.rmtree(folder, ignore_errors=True)
            except KeyboardInterrupt:
                heartbeat.finish()
                self.jobs.release(
                    job.id, self.id, "The server stopped; the job goes on from its saved results when it starts again."
                )
                raise
            except GeoclassifyError as exc:
                heartbeat.finish()
                self.jobs.finish(job.id, self.id, FAILED, "error", user_message(exc))
                shutil.rmtree(folder, ignore_errors=True)
            except Exception as exc:
                heartbeat.finish()
                traceback.print_exc(file=sys.stderr)
                self.jobs.finish(
                    job.id,
                    self.id,
                    FAILED,
                    "error",
                    f"the job failed unexpectedly ({type(exc).__name__}); the server's log has the details",
                )
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                heartbeat.finish()

    def _classify(self, job: Job, heartbeat: Heartbeat) -> None:
        request = RunRequest.from_json(job.request)
        out = Path(request.output or "")
        # The run's journal, if an earlier attempt left one, lies beside the output in the job's own folder
        # (".NAME[.LAYER].geoclassify-run"): whatever is there is this job's.
        resume = any(p.is_dir() for p in out.parent.glob(f".{out.name}*.geoclassify-run"))
        if out.exists():  # a run that finished but was not published: run again (from its journal, if any)
            out.unlink()
        if resume:
            self.jobs.add_message(job.id, "info", "Continuing from its saved results.")
        request = dataclasses.replace(
            request,
            model=inline_package(request.model, out.parent),
            resume=resume,
            trust_code=request.trust_code and self.config.trust_code,
        )
        hooks = RunHooks(
            progress=heartbeat.progress,
            cancelled=heartbeat.stopping,
            warning=lambda w: self._warning(job, w),
        )
        summary = run(request, RunContext(hooks=hooks))
        heartbeat.finish()
        self._publish(job, request, dataclasses.replace(summary, output=None).line())

    def _warning(self, job: Job, warning: Warning) -> None:
        """The user's warnings (about their data and settings) go to the job's messages; the libraries' own
        (resource, deprecation) to the server's log."""
        if isinstance(warning, GeoclassifyWarning):
            self.jobs.add_message(job.id, "warning", user_message(warning))
        else:
            print(f"geoclassify worker {self.id}: {type(warning).__name__}: {warning}", file=sys.stderr)

    def _publish(self, job: Job, request: RunRequest, line: str) -> None:
        import pyogrio

        out = Path(request.output or "")
        count = int(pyogrio.read_info(out, layer=request.output_layer)["features"])
        item_id = os.urandom(16).hex()
        final = self.items.root / item_id / out.name

        def move() -> None:
            final.parent.mkdir()
            os.rename(out, final)

        item = {
            "id": item_id,
            "name": job.output_name,
            "kind": "result",
            "path": os.fspath(final),
            "size": out.stat().st_size,
            "info": {"layer": request.output_layer, "features": count, "format": "gpkg", "summary": line},
        }
        try:
            outcome = self.jobs.publish(
                job.id, self.id, {"itemId": item_id, "features": count}, item, move, text=f"Succeeded: {line}."
            )
        except BaseException:
            shutil.rmtree(final.parent, ignore_errors=True)
            raise
        if outcome != "lost" or self.jobs.get(job.id).status in FINAL:  # else the job's new worker needs it
            shutil.rmtree(out.parent, ignore_errors=True)

    def _model_info(self, job: Job, heartbeat: Heartbeat) -> None:
        spec = json.loads(job.request)
        model = inline_package(spec["model"], staging_folder(self.config, job.id))
        info = inspect_model(model, trust_code=bool(spec.get("trust_code")) and self.config.trust_code)
        heartbeat.finish()
        self.jobs.publish(job.id, self.id, {"modelInfo": json.dumps(model_info(info))})
        shutil.rmtree(staging_folder(self.config, job.id), ignore_errors=True)


def inline_package(model: str, folder: Path) -> str:
    """An inline EMD (its ModelFile a file under a data root, checked at submission) as a package of its own in the
    job's folder: the run core reads a package's files from its folder only, and an inline EMD has none."""
    if not model.lstrip().startswith("{"):
        return model
    emd = json.loads(model)
    source = Path(emd["ModelFile"])
    package = folder / "inline-model"
    package.mkdir(parents=True, exist_ok=True)
    target = package / source.name
    if not target.exists():
        try:
            os.link(source, target)  # the same file, instantly, where the data root is on the same disk
        except OSError:
            shutil.copy2(source, target)
    (package / "inline.emd").write_text(json.dumps({**emd, "ModelFile": source.name}))
    return os.fspath(package / "inline.emd")


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[bool]:
    handle = os.open(folder / ".worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(handle)


def _watch_parent(parent: int) -> None:
    """End this process as soon as the server that started it is gone (a SIGKILL leaves no one to tell us)."""
    while True:
        if os.getppid() != parent:
            os._exit(3)
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geoclassify.server.worker")
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--id", required=True)
    parser.add_argument("--parent", type=int, default=os.getppid())
    args = parser.parse_args(argv)
    threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    config = ServerConfig.load(args.state)
    worker = Worker(config, args.id)
    marker = config.state / "work" / f"ready-{args.id}"  # supervisor.ready_marker, without importing the supervisor
    marker.parent.mkdir(exist_ok=True)
    marker.touch()
    with contextlib.suppress(KeyboardInterrupt):
        worker.loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
