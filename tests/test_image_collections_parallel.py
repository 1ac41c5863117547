"""Image collections without a feature layer on worker processes and on Dask: the rows of the in-process run, in
input order, and a run killed midway resumes with every image once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin

from geoclassify import classify_objects
from geoclassify.errors import UnreferencedImagesWarning
from geoclassify.io.journal import journal_folder

from tests.support import flat_package, write_raster


def photos(folder: Path, count: int, smallest: int = 20, largest: int = 60, seed: int = 0) -> Path:
    """``count`` PNG and JPEG photos (no georeference) of random sizes, and one file that is no image at all."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        for i in range(count):
            height, width = (int(v) for v in rng.integers(smallest, largest + 1, 2))
            driver, suffix = ("PNG", "png") if i % 3 else ("JPEG", "jpg")
            data = rng.integers(0, 256, (3, height, width), dtype=np.uint8)
            with rasterio.open(
                folder / f"photo{i:05d}.{suffix}", "w", driver=driver, width=width, height=height, count=3,
                dtype="uint8",
            ) as dst:  # fmt: skip
                dst.write(data)
    (folder / "photo-broken.png").write_bytes(b"not a PNG")
    return folder


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """90 photos, one broken file and two georeferenced GeoTIFFs (footprints travel back from the workers too)."""
    folder = photos(tmp_path_factory.mktemp("collection") / "images", 90)
    rng = np.random.default_rng(1)
    for i, crs in enumerate(("EPSG:32633", "EPSG:4326")):
        transform = from_origin(500000.0, 4650000.0, 0.5, 0.5) if i == 0 else from_origin(13.0, 42.0, 1e-5, 1e-5)
        write_raster(folder / f"tile{i}.tif", rng.integers(0, 256, (3, 40, 50), dtype=np.uint8), crs, transform)
    package, _, _ = flat_package(folder.parent, size=16, seed=3)
    return folder, package


def classify(folder: Path, package: Path, **options) -> gpd.GeoDataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreferencedImagesWarning)
        return classify_objects(str(folder), str(package), **options)


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got["ImageID"]) == list(want["ImageID"])  # input order
    assert list(got["ClassLabel"].fillna("")) == list(want["ClassLabel"].fillna(""))
    np.testing.assert_allclose(got["Confidence"], want["Confidence"], atol=1e-5)
    np.testing.assert_allclose(got["Coverage"], want["Coverage"], atol=1e-12)
    assert list(got["Error"].fillna("")) == list(want["Error"].fillna(""))
    if "geometry" in want:
        assert got.crs == want.crs
        assert list(got.geometry.isna()) == list(want.geometry.isna())
        placed = want.geometry.notna()
        assert got.geometry[placed].geom_equals_exact(want.geometry[placed], tolerance=1e-9).all()


@pytest.fixture(scope="module")
def in_process(collection):
    folder, package = collection
    return classify(folder, package, processing_mode="mosaic")


def test_two_worker_processes_give_the_rows_of_the_in_process_run(collection, in_process):
    folder, package = collection
    want = in_process
    assert len(want) == 93 and want["ClassLabel"].notna().sum() == 92
    assert want["Error"].notna().sum() == 1 and "photo-broken.png" in want.loc[want["Error"].notna(), "ImageID"].iloc[0]
    assert want.geometry.notna().sum() == 2  # the two GeoTIFFs
    got = classify(folder, package, parallel_factor=2, arguments={"batch_size": 5})
    assert_same_rows(got, want)
    summary = got.attrs["summary"]
    assert (summary.read, summary.classified, summary.errors) == (93, 92, 1)


def test_a_dask_local_cluster_gives_the_same_rows(collection, in_process):
    pytest.importorskip("distributed")
    folder, package = collection
    assert_same_rows(classify(folder, package, scheduler="local:2"), in_process)


def test_a_run_killed_midway_resumes_with_every_image_once(tmp_path):
    """SIGKILL of the run and its workers (a power cut) after a few saved parts; ``--resume`` classifies only the
    rest, and the output holds each image once, as an uninterrupted run writes it."""
    folder = photos(tmp_path / "images", 1000, smallest=60, largest=120, seed=5)
    package, _, _ = flat_package(tmp_path, size=16, seed=4)
    reference = classify_objects(str(folder), str(package))
    out = tmp_path / "killed.csv"
    command = [sys.executable, "-m", "geoclassify", "classify", "--image", str(folder), "--model", str(package),
               "--out", str(out), "-q"]  # fmt: skip
    argv = [*command, "--parallel-factor", "2", "--argument", "batch_size=1"]
    env = {**os.environ, "GEOCLASSIFY_JOURNAL_FEATURES": "1"}
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, start_new_session=True)
    journal = journal_folder(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(journal.glob("part-*.npz"))) < 3 and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = sorted(journal.glob("part-*.npz"))
    assert len(saved) >= 3 and not out.exists(), proc.stderr.read().decode() if proc.stderr else ""
    done = sum(len(np.load(p)["targets"]) for p in saved)
    assert 0 < done < 1000
    again = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "--resume" in again.stderr, again.stderr
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)  # in process this time
    assert resumed.returncode == 0, resumed.stderr
    assert "1001 images read, 1000 classified" in resumed.stderr and "1 unreadable" in resumed.stderr, resumed.stderr
    got = pd.read_csv(out, keep_default_na=True)
    assert got["ImageID"].is_unique and len(got) == 1001
    assert_same_rows(got, reference)
    assert not journal.exists()
