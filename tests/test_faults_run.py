"""Faults during a run (issue 10): killed parents, broken geometries and rasters, impossible settings, fields of
an earlier model, extents that miss. Each case was seen failing before; each test builds its own broken input."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geoclassify.journal import journal_folder

from conftest import classify_argv, flat_package, run_classify, run_cli, write_raster

X, Y = 500000.0, 4650000.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """600 houses on a 400 x 400 raster."""
    folder = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(11)
    raster = write_raster(folder / "scene.tif", rng.integers(0, 255, (3, 400, 400), dtype=np.uint8))
    xs, ys = rng.uniform(2, 190, 600), rng.uniform(2, 190, 600)
    houses = gpd.GeoDataFrame(
        {"id": np.arange(600)},
        geometry=[shapely.box(X + x, Y - y - 4, X + x + 4, Y - y) for x, y in zip(xs, ys, strict=True)],
        crs="EPSG:32633",
    )
    houses.to_file(folder / "houses.gpkg")
    package, _, _ = flat_package(folder, BlackenAroundFeature=1)
    return folder, raster, folder / "houses.gpkg", package


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` still alive (read from /proc, so a re-parented orphan is found by its name)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    for child in list(found):
        found |= _children(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_worker_processes_end_with_a_killed_run(scene, tmp_path, sig):
    """Seen: after SIGKILL or SIGTERM of a --parallel-factor 2 run, both workers and the resource tracker lived on
    (about 290 MB each) and held stderr open, so ``| tee`` hung."""
    folder, raster, houses, package = scene
    out = tmp_path / "killed.gpkg"
    args = classify_argv(raster, package, houses, out, "-q", "--parallel-factor", "2", "--argument", "batch_size=1")
    env = {**os.environ, "GEOCLASSIFY_JOURNAL_FEATURES": "1"}
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(journal_folder(out).glob("part-*.npz")):
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) >= 2, "the run should have worker processes by now"
    proc.send_signal(sig)
    # communicate() reads stderr to its end: it returns only once no process holds it open (the `| tee` hang).
    _, stderr = proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(workers):
        time.sleep(0.1)
    assert not _alive(workers), f"workers outlived the run: {_alive(workers)}"
    if sig == signal.SIGTERM:  # stopped as Ctrl-C stops it: results saved, and a word on how to go on
        assert proc.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr, stderr
        resumed = run_classify(raster, package, houses, out, "-q", "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert len(gpd.read_file(out)) == 600
