"""Helpers for the server tests: a real ``geoclassify serve`` in a subprocess on a free loopback port (as users
start it), users and tokens, the bundled sample under a data root, a slow scene for cancel and kill tests, and a
check that two result layers hold the same features. (No tests here; pytest collects the file and finds none.)"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geoclassify.api import sample_paths

from . import flat_package, write_raster

GP = "/arcgis/rest/services/System/RasterAnalysisTools/GPServer"
CLASSIFY = "ClassifyObjectsUsingDeepLearning"
X, Y = 500000.0, 4650000.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_user(state: Path, name: str, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "geoclassify", "users", "add", name, "--state", str(state), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


#: Every server a test started, so a failing test leaves none behind (see :func:`stop_servers`).
STARTED: list[Server] = []


@pytest.fixture(autouse=True)
def stop_servers() -> Iterator[None]:
    """Import into a test module to stop, after each test, the servers it started and left running."""
    yield
    while STARTED:
        STARTED.pop().stop()


class Server:
    """``geoclassify serve`` in its own process group (so a test can SIGKILL it with its workers)."""

    def __init__(self, state: Path, data_root: Path | None, *extra: str, env: dict[str, str] | None = None) -> None:
        self.state, self.data_root, self.extra = state, data_root, extra
        self.env = {**os.environ, "GEOCLASSIFY_SERVER_LEASE": "2", **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60) -> Server:
        roots = ["--data-root", str(self.data_root)] if self.data_root else []
        command = [sys.executable, "-m", "geoclassify", "serve", "--state", str(self.state), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, *roots, *self.extra],
            env=self.env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        STARTED.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server ended: {self.process.stderr.read()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url + "/", timeout=1) as reply:
                if reply.status == 200:
                    return self
            time.sleep(0.1)
        raise AssertionError("the server did not start")

    def workers(self) -> list[int]:
        """The worker processes' pids (children of the server)."""
        assert self.process is not None
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    parent = int(stat.rsplit(")", 1)[1].split()[1])
                    cmdline = (entry / "cmdline").read_bytes()
                    if parent == self.process.pid and b"geoclassify.server.worker" in cmdline:
                        found.append(int(entry.name))
        return found

    def kill(self) -> None:
        """SIGKILL the server and its workers at once: a power cut."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):  # workers left behind would be a bug: end them all the same
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def call(method: str, url: str, token: str | None = None, form: dict | None = None, body: dict | None = None):
    """One HTTP request with the standard library: (status, JSON)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            text = reply.read()
            return reply.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def download(url: str, token: str, target: Path) -> gpd.GeoDataFrame:
    """A result file, read as a layer."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        target.write_bytes(reply.read())
    return gpd.read_file(target)


def wait_for(predicate, timeout: float = 60, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


def sample_root(folder: Path) -> Path:
    """The bundled sample (121 houses, roof-damage model) copied under a data root."""
    root = folder / "data"
    root.mkdir(exist_ok=True)
    for path in sample_paths().values():
        shutil.copy(path, root / path.name)
    return root


def slow_scene(folder: Path, count: int) -> tuple[Path, Path, Path]:
    """``count`` houses over a 1,200 x 1,200 raster and a 16-px model: with batch_size 1 and
    GEOCLASSIFY_JOURNAL_FEATURES=1 it runs a few seconds and saves a journal part per feature."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    raster = write_raster(folder / "town.tif", rng.integers(0, 255, (3, 1200, 1200), dtype=np.uint8))
    xs, ys = rng.uniform(5, 595, count), rng.uniform(5, 595, count)
    houses = gpd.GeoDataFrame(
        {"id": np.arange(count)},
        geometry=[shapely.box(X + x, Y - y - 4, X + x + 4, Y - y) for x, y in zip(xs, ys, strict=True)],
        crs="EPSG:32633",
    )
    houses.to_file(folder / "houses.gpkg")
    package, _, _ = flat_package(folder, BlackenAroundFeature=1)
    return raster, folder / "houses.gpkg", package


def cli_reference(image: Path, features: Path, model: Path, out: Path) -> gpd.GeoDataFrame:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "geoclassify",
            "classify",
            "--image",
            str(image),
            "--features",
            str(features),
            "--model",
            str(model),
            "--out",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return gpd.read_file(out)


def assert_same_features(got: gpd.GeoDataFrame, want: gpd.GeoDataFrame, key: str | None = None) -> None:
    """Same rows in the same order (or by ``key``), same labels, confidences within 1e-5, same geometries."""
    if key is not None:
        assert got[key].is_unique, "a feature appears twice"
        got, want = got.set_index(key).sort_index(), want.set_index(key).sort_index()
        assert list(got.index) == list(want.index)
    assert len(got) == len(want)
    assert list(got["ClassLabel"]) == list(want["ClassLabel"])
    np.testing.assert_allclose(got["Confidence"].to_numpy(float), want["Confidence"].to_numpy(float), atol=1e-5)
    assert shapely.equals_exact(np.asarray(got.geometry), np.asarray(want.geometry), tolerance=1e-9).all()


def staging(state: Path, job_id: str) -> Path:
    return state / "jobs" / job_id
