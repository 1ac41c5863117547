"""The web process's side of the workers: start ``--workers`` worker processes, start again any that dies (its
job is moved on at once rather than when its lease runs out), sweep the store for lost leases, and stop them all
on shutdown (SIGTERM first: a running job saves its results and is queued again)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from .config import ServerConfig
from .jobs import FINAL, JobStore

#: How long the workers of a server that died may take to notice and exit (they poll their parent twice a second).
PREVIOUS_WORKERS_GRACE = 2.0
STOP_SECONDS = 10.0
READY_SECONDS = 60.0


def ready_marker(config: ServerConfig, worker_id: str) -> Path:
    """The file a worker writes once it is ready to claim jobs."""
    return config.state / "work" / f"ready-{worker_id}"


class Supervisor:
    def __init__(self, config: ServerConfig, jobs: JobStore) -> None:
        self.config = config
        self.jobs = jobs
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        # Jobs still marked running belong to workers of a server that is gone: they move on after the grace.
        self.jobs.expire(before=time.time() + PREVIOUS_WORKERS_GRACE)
        for _ in range(self.config.workers):
            self._spawn()
        self._await_ready()
        self._thread.start()

    def _await_ready(self) -> None:
        """Wait (at most READY_SECONDS) until every worker has imported what a run needs: the server answers only
        then, so its first requests do not share the cores with the workers' start."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            waiting = [
                w for w, p in self.workers.items() if p.poll() is None and not ready_marker(self.config, w).exists()
            ]
            if not waiting:
                return
            time.sleep(0.05)

    def _spawn(self) -> None:
        worker_id = f"w-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        work = self.config.state / "work"
        work.mkdir(exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "geoclassify.server.worker",
            "--state",
            os.fspath(self.config.state),
            "--id",
            worker_id,
            "--parent",
            str(os.getpid()),
        ]
        self.workers[worker_id] = subprocess.Popen(command, cwd=work, stdin=subprocess.DEVNULL)

    def _watch(self) -> None:
        while not self._stop.wait(self.config.sweep_interval):
            with self._lock:
                if self._stop.is_set():
                    return
                for worker_id, process in list(self.workers.items()):
                    if process.poll() is not None:
                        del self.workers[worker_id]
                        ready_marker(self.config, worker_id).unlink(missing_ok=True)
                        with contextlib.suppress(Exception):
                            self.jobs.expire(worker=worker_id)
                        self._spawn()
            with contextlib.suppress(Exception):  # a busy database: the next sweep will do
                for job_id, status in self.jobs.sweep():
                    if status in FINAL:  # its worker is gone: nobody else will remove its files
                        shutil.rmtree(self.config.state / "jobs" / job_id, ignore_errors=True)

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            for process in self.workers.values():
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
            deadline = time.monotonic() + STOP_SECONDS
            for process in self.workers.values():
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for worker_id in self.workers:
                ready_marker(self.config, worker_id).unlink(missing_ok=True)
            self.workers.clear()
