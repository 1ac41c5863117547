"""A ``geoclassify serve`` for the server benchmarks: started in a subprocess on a free loopback port with a user,
stopped with SIGTERM. (Loopback only: the benchmarks send nothing anywhere else.)"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

GP = "/arcgis/rest/services/System/RasterAnalysisTools/GPServer"


class BenchServer:
    def __init__(self, data_root: Path, workers: int = 1) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="geoclassify-bench-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._local = threading.local()
        geoclassify = [sys.executable, "-m", "geoclassify"]
        self.token = subprocess.run(
            [*geoclassify, "users", "add", "bench", "--state", str(self.state)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.process = subprocess.Popen(
            [
                *geoclassify,
                "serve",
                "--state",
                str(self.state),
                "--port",
                str(self.port),
                "--data-root",
                str(data_root),
                "--workers",
                str(workers),
            ],
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the server did not start")

    def call(self, method: str, path: str, form: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request on this thread's keep-alive connection, as clients' sessions (requests, arcgis) keep one."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        headers = {"Authorization": f"Bearer {self.token}"}
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=data, headers=headers)
        reply = connection.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise SystemExit(f"{method} {path}: {reply.status} {body[:300]!r}")
        return json.loads(body)

    def submit(self, name: str, **params: Any) -> str:
        form = {k: json.dumps(v) for k, v in params.items()} | {"outputFeatureClass": name, "f": "json"}
        return self.call("POST", f"{GP}/ClassifyObjectsUsingDeepLearning/submitJob", form)["jobId"]

    def status(self, job_id: str) -> dict[str, Any]:
        return self.call("GET", f"{GP}/ClassifyObjectsUsingDeepLearning/jobs/{job_id}?f=json")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
