"""Execution at scale: same answers whatever the batch size, worker count or order; resume after a real kill;
Ctrl-C; the parallel processing factor."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from geoclassify import classify_objects
from geoclassify.errors import OutputError, SettingError
from geoclassify.io.journal import journal_folder
from geoclassify.runners import parse_parallel_factor

from tests.support import classify_argv, flat_package, random_houses, run_classify, run_cli, write_raster

X, Y = 500000.0, 4650000.0


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    """2,000 houses over a 1,200 x 1,200 raster, some at the edges."""
    folder = tmp_path_factory.mktemp("town")
    raster, _ = random_houses(folder, seed=5, pixels=1200, count=2000, low=-5, high=605, name="town.tif")
    package, _, _ = flat_package(folder, BlackenAroundFeature=1)
    return folder, raster, folder / "houses.gpkg", package


def second_image(folder):
    """A second image over the town's south-east part, on a shifted grid: items mode gives those features two rows."""
    rng = np.random.default_rng(9)
    return write_raster(
        folder / "second.tif",
        rng.integers(0, 255, (3, 700, 700), dtype=np.uint8),
        transform=rasterio.transform.from_origin(X + 250.25, Y - 250.25, 0.5, 0.5),
    )


def read(path):
    return gpd.read_file(path).set_index("id").sort_index()


def test_same_answers_whatever_the_batch_size_and_workers(town, tmp_path):
    folder, raster, houses, package = town
    runs = {}
    for name, extra in {
        "b16": ["--argument", "batch_size=16"],
        "b7": ["--argument", "batch_size=7"],
        "w2": ["--parallel-factor", "2", "--argument", "batch_size=64"],
        "w1r": ["--parallel-factor", "1", "--recycle-interval", "3", "--argument", "batch_size=32"],
    }.items():
        result = run_classify(raster, package, houses, tmp_path / f"{name}.gpkg", "-q", *extra)
        assert result.returncode == 0, result.stderr
        runs[name] = gpd.read_file(tmp_path / f"{name}.gpkg")
    first = runs["b16"]
    assert list(first["id"]) == list(range(2000))  # input order
    for name, other in runs.items():
        assert list(other["id"]) == list(range(2000)), name
        assert list(other["ClassLabel"]) == list(first["ClassLabel"]), name
        np.testing.assert_allclose(other["Confidence"], first["Confidence"], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(other["Coverage"], first["Coverage"], atol=1e-12, err_msg=name)
    assert first["ClassLabel"].notna().sum() > 1900


def test_resume_after_sigkill_holds_every_feature_once(town, tmp_path):
    folder, raster, houses, package = town
    reference = tmp_path / "whole.gpkg"
    assert run_classify(raster, package, houses, reference, "-q").returncode == 0
    out = tmp_path / "killed.gpkg"
    args = classify_argv(raster, package, houses, out, "-q", "--argument", "batch_size=1")
    env = {**os.environ, "GEOCLASSIFY_JOURNAL_FEATURES": "1"}
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
    journal = journal_folder(out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(journal.glob("part-*.npz"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: a power cut
    proc.wait()
    saved = len(list(journal.glob("part-*.npz")))
    assert saved >= 3 and not out.exists()
    again = run_classify(raster, package, houses, out, "-q")
    assert again.returncode == 1 and "--resume" in again.stderr
    resumed = run_classify(raster, package, houses, out, "-q", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    got, want = read(out), read(reference)
    assert len(got) == 2000 and got.index.is_unique
    assert list(got["ClassLabel"]) == list(want["ClassLabel"])
    np.testing.assert_allclose(got["Confidence"], want["Confidence"], atol=1e-5)
    assert not journal.exists()
    nothing = run_classify(raster, package, houses, tmp_path / "fresh.gpkg", "--resume")
    assert nothing.returncode == 1 and "nothing to resume" in nothing.stderr


def test_items_mode_resumes_after_sigkill_on_its_second_image(town, tmp_path):
    """In items mode the journal keeps each image's results apart: a run killed on the second image resumes with
    every (feature, image) row once."""
    folder, raster, houses, package = town
    second = second_image(tmp_path)

    def argv(out, *extra):
        return [*classify_argv(raster, package, houses, out, "-q", "--processing-mode", "items", *extra),
                "--image", str(second)]  # fmt: skip

    reference = tmp_path / "whole.gpkg"
    assert subprocess.run(argv(reference), capture_output=True).returncode == 0
    out = tmp_path / "killed.gpkg"
    env = {**os.environ, "GEOCLASSIFY_JOURNAL_FEATURES": "1"}
    proc = subprocess.Popen(argv(out, "--argument", "batch_size=1"), env=env, stderr=subprocess.PIPE)
    journal = journal_folder(out)

    def on_second_image() -> bool:
        return any((np.load(p)["items"] == 1).any() for p in sorted(journal.glob("part-*.npz"))[-3:])

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not on_second_image():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert on_second_image() and not out.exists()
    resumed = subprocess.run(argv(out, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    got, want = (gpd.read_file(p).sort_values(["id", "ItemID"]).reset_index(drop=True) for p in (out, reference))
    assert len(got) == len(want) > 2000 and not got.duplicated(["id", "ItemID"]).any()
    assert list(got["ItemID"].fillna("")) == list(want["ItemID"].fillna(""))
    assert list(got["ClassLabel"].fillna("")) == list(want["ClassLabel"].fillna(""))
    np.testing.assert_allclose(got["Confidence"], want["Confidence"], atol=1e-5)
    assert not journal.exists()


def test_a_failure_while_writing_keeps_the_results_for_resume(town, tmp_path, monkeypatch):
    folder, raster, houses, package = town
    out = tmp_path / "disk-full.gpkg"

    def full_disk(*args, **kwargs):
        raise OutputError("cannot write GPKG output: No space left on device")

    monkeypatch.setattr("geoclassify.runs.write_batches", full_disk)
    with pytest.raises(OutputError, match="No space left") as failure:
        classify_objects(raster, package, houses, out)
    assert re.search(r"The (19\d\d) features classified before the failure are saved", str(failure.value))
    assert "resume=True" in str(failure.value) and journal_folder(out).exists() and not out.exists()
    monkeypatch.undo()
    summary = classify_objects(raster, package, houses, out, resume=True)
    assert summary.read == 2000 and len(read(out)) == 2000 and not journal_folder(out).exists()


def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes(town, tmp_path):
    """Two runs writing one output would mix (or, with --overwrite, delete) each other's saved results."""
    folder, raster, houses, package = town
    out = tmp_path / "busy.gpkg"
    args = classify_argv(raster, package, houses, out, "-q", "--argument", "batch_size=1")
    env = {**os.environ, "GEOCLASSIFY_JOURNAL_FEATURES": "1"}
    first = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    journal = journal_folder(out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(journal.glob("part-*.npz"))) < 2:
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # paused midway, however fast the machine: it still holds its journal
    try:
        assert first.poll() is None, "the first run ended before the second was tried"
        for extra in ("--overwrite", "--resume"):
            second = run_classify(raster, package, houses, out, "-q", extra)
            assert second.returncode == 1
            assert "another geoclassify run is writing" in second.stderr and "busy.gpkg" in second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    got = read(out)
    assert len(got) == 2000 and got.index.is_unique and not journal.exists()


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(town, tmp_path):
    folder, raster, houses, package = town
    out = tmp_path / "stopped.gpkg"
    args = classify_argv(raster, package, houses, out, "-q", "--argument", "batch_size=1")
    proc = subprocess.Popen(
        args, env={**os.environ, "GEOCLASSIFY_JOURNAL_FEATURES": "1"}, stderr=subprocess.PIPE, text=True
    )
    journal = journal_folder(out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(journal.glob("part-*.npz")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "features are saved: run the same command with --resume" in stderr and "Traceback" not in stderr
    assert not out.exists()
    resumed = run_classify(raster, package, houses, out, "-q", "--resume")
    assert resumed.returncode == 0 and len(gpd.read_file(out)) == 2000


def test_parallel_factor_forms():
    assert parse_parallel_factor(None) == 0 and parse_parallel_factor("3") == 3
    assert parse_parallel_factor("50%", cores=8) == 4 and parse_parallel_factor("100%", cores=2) == 2
    assert parse_parallel_factor("1%", cores=2) == 1
    for bad in ("-1", "150%", "many"):
        with pytest.raises(SettingError, match="parallel_factor"):
            parse_parallel_factor(bad, cores=2)


@pytest.mark.parametrize("suffix", [".gpkg", ".shp", ".csv", ".fgb", ".geojson", ".parquet"])
def test_streamed_layers_give_the_same_output(town, tmp_path, monkeypatch, suffix):
    """A layer above the streaming size is classified from its geometries and written batch by batch."""
    folder, raster, houses, package = town
    extra = ["-q", "--extent", str(X + 100), str(Y - 500), str(X + 500), str(Y - 100), "--out-crs", "EPSG:4326"]
    whole = tmp_path / f"whole{suffix}"
    assert run_classify(raster, package, houses, whole, *extra).returncode == 0
    monkeypatch.setenv("GEOCLASSIFY_STREAM_FEATURES", "1")
    monkeypatch.setenv("GEOCLASSIFY_STREAM_BATCH", "97")
    streamed = tmp_path / f"streamed{suffix}"
    result = run_classify(raster, package, houses, streamed, *extra)
    assert result.returncode == 0, result.stderr
    reader = {".csv": __import__("pandas").read_csv, ".parquet": gpd.read_parquet}.get(suffix, gpd.read_file)
    a, b = reader(whole), reader(streamed)
    if suffix == ".fgb":  # FlatGeobuf may return rows in another order
        a, b = a.sort_values("id").reset_index(drop=True), b.sort_values("id").reset_index(drop=True)
    assert 300 < len(a) < 1900 and len(a) == len(b)
    assert list(a["id"]) == list(b["id"])
    assert list(a["ClassLabel"].fillna("")) == list(b["ClassLabel"].fillna(""))
    np.testing.assert_allclose(a["Confidence"], b["Confidence"], atol=1e-5)
    if suffix != ".csv":
        assert b.crs.to_epsg() == 4326 and a.geometry.geom_equals_exact(b.geometry, tolerance=1e-9).all()


def test_streamed_geoparquet_layer(town, tmp_path, monkeypatch):
    """GeoParquet is streamed too: planned from its geometry column, attributes joined back batch by batch."""
    folder, raster, houses, package = town
    source = tmp_path / "houses.parquet"
    gpd.read_file(houses).to_parquet(source)
    whole = tmp_path / "whole.gpkg"
    assert run_classify(raster, package, houses, whole, "-q").returncode == 0
    monkeypatch.setenv("GEOCLASSIFY_STREAM_FEATURES", "1")
    monkeypatch.setenv("GEOCLASSIFY_STREAM_BATCH", "300")
    streamed = tmp_path / "streamed.parquet"
    result = run_classify(raster, package, source, streamed, "-q")
    assert result.returncode == 0, result.stderr
    a, b = read(whole), gpd.read_parquet(streamed).set_index("id").sort_index()
    assert len(a) == len(b) == 2000 and b.crs.to_epsg() == 32633
    assert list(gpd.read_parquet(streamed)["id"]) == list(range(2000))  # input order kept
    assert list(a["ClassLabel"].fillna("")) == list(b["ClassLabel"].fillna(""))
    np.testing.assert_allclose(a["Confidence"], b["Confidence"], atol=1e-5)
    assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all()


def test_parquet_without_geo_metadata_is_refused(town, tmp_path):
    folder, raster, houses, package = town
    plain = tmp_path / "plain.parquet"
    gpd.read_file(houses).to_wkb().to_parquet(plain)
    result = run_classify(raster, package, plain, tmp_path / "out.gpkg")
    assert result.returncode == 1
    assert "without GeoParquet metadata" in result.stderr and "plain.parquet" in result.stderr


def test_streamed_items_mode_gives_the_same_rows(town, tmp_path, monkeypatch):
    """Items mode plans every image in one streamed pass and writes (feature, image) rows batch by batch."""
    folder, raster, houses, package = town
    second = second_image(tmp_path)
    extra = ["-q", "--processing-mode", "items", "--extent", str(X), str(Y - 550), str(X + 600), str(Y - 50)]

    def run(out):
        result = run_cli("classify", "--image", raster, "--image", second, "--model", package, "--features", houses,
                         "--out", out, *extra)  # fmt: skip
        assert result.returncode == 0, result.stderr

    whole = tmp_path / "whole.gpkg"
    run(whole)
    monkeypatch.setenv("GEOCLASSIFY_STREAM_FEATURES", "1")
    monkeypatch.setenv("GEOCLASSIFY_STREAM_BATCH", "131")
    streamed = tmp_path / "streamed.fgb"
    run(streamed)
    a, b = gpd.read_file(whole), gpd.read_file(streamed)  # FlatGeobuf may reorder rows: sort both alike
    assert list(a["id"]) == sorted(a["id"])  # rows in input order
    a, b = (f.sort_values(["id", "ItemID"], na_position="last").reset_index(drop=True) for f in (a, b))
    assert a["ItemID"].str.endswith("second.tif").sum() > 300 and a["id"].duplicated().sum() > 300
    assert list(a["id"]) == list(b["id"]) and list(a["ItemID"].fillna("")) == list(b["ItemID"].fillna(""))
    assert list(a["ClassLabel"].fillna("")) == list(b["ClassLabel"].fillna(""))
    np.testing.assert_allclose(a["Confidence"], b["Confidence"], atol=1e-5)
    assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all()
