"""A ``geoclassify serve`` for the server benchmarks: started in a subprocess on a free loopback port with a user,
stopped with SIGTERM. (Loopback only: the benchmarks send nothing anywhere else.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
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
        geoclassify = [sys.executable, "-m", "geoclassify"]
        self.token = subprocess.run(
            [*geoclassify, "users", "add", "bench", "--state", str(self.state)], capture_output=True, text=True,
            check=True,
        ).stdout.strip()
        self.process = subprocess.Popen(
            [*geoclassify, "serve", "--state", str(self.state), "--port", str(self.port), "--data-root",
             str(data_root), "--workers", str(workers)],
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
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        headers = {"Authorization": f"Bearer {self.token}"}
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"{method} {path}: {exc.code} {exc.read()[:300]!r}") from None

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
