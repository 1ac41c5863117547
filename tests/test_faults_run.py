"""Faults during a run (issue 10): killed parents, broken geometries and rasters, impossible settings, fields of
an earlier model, extents that miss. Each case was seen failing before; each test builds its own broken input."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from xml.sax.saxutils import escape

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely

from geoclassify.core.chips import ChipSpec, plan_windows
from geoclassify.io.journal import journal_folder
from geoclassify.modes.raster_setup import to_pixel_space

from tests.support import SHARED_DATA, classify_argv, flat_package, random_houses, run_classify, run_cli

X, Y = 500000.0, 4650000.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """600 houses on a 400 x 400 raster."""
    folder = tmp_path_factory.mktemp("faults")
    raster, _ = random_houses(folder, seed=11, pixels=400, count=600, low=2, high=190)
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
    _, stderr = proc.communicate(timeout=60)
    deadline = time.monotonic() + 30  # generous: a loaded machine is slow to reap
    while time.monotonic() < deadline and _alive(workers):
        time.sleep(0.1)
    assert not _alive(workers), f"workers outlived the run: {_alive(workers)}"
    if sig == signal.SIGTERM:  # stopped as Ctrl-C stops it: results saved, and a word on how to go on
        assert proc.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr, stderr
        resumed = run_classify(raster, package, houses, out, "-q", "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert len(gpd.read_file(out)) == 600


@pytest.mark.parametrize("size", ["inf", "nan", "1e-9", "0", "-1"])
def test_impossible_cell_sizes_are_one_clear_line(scene, tmp_path, size):
    """Seen: --cell-size inf and 1e-9 ended in ValueError and OverflowError."""
    folder, raster, houses, package = scene
    result = run_classify(raster, package, houses, tmp_path / "out.gpkg", "--cell-size", size)
    assert result.returncode == 1 and "--cell-size" in result.stderr, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.gpkg").exists()


@pytest.mark.parametrize("stream", ["0", "250000"])
def test_non_finite_vertices_leave_the_feature_unclassified(scene, tmp_path, stream):
    """Seen: polygons with NaN or infinite vertices raised GEOSException (read whole and streamed); a line with one
    infinite vertex must not be classified at its finite end."""
    folder, raster, houses, package = scene
    layer = gpd.read_file(houses)
    geometries = list(layer.geometry)
    x0, y0, x1, y1 = geometries[0].bounds
    geometries[0] = shapely.Polygon([(x0, y0), (np.nan, y0), (x1, y1), (x0, y1)])
    geometries[1] = shapely.Polygon([(x0, y0), (np.inf, y0), (x1, y1), (x0, y1)])
    geometries[2] = shapely.LineString([geometries[2].centroid.coords[0], (np.inf, y0)])
    broken = tmp_path / "broken.gpkg"
    layer.set_geometry(geometries).to_file(broken)
    out = tmp_path / "out.gpkg"
    env = {**os.environ, "GEOCLASSIFY_STREAM_FEATURES": stream}
    result = subprocess.run(classify_argv(raster, package, broken, out), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "3 feature(s) of" in result.stderr and "NaN or infinite coordinates (rows 0, 1, 2" in result.stderr
    got = gpd.read_file(out)
    assert len(got) == 600 and got["ClassLabel"][:3].isna().all() and got["ClassLabel"][3:].notna().all()
    assert (got["Coverage"][:3] == 0).all()
    assert "597 classified" in result.stderr


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet"])
def test_a_streamed_empty_layer_gives_an_empty_output(scene, tmp_path, suffix):
    """Seen: StopIteration when an empty layer was streamed."""
    folder, raster, houses, package = scene
    empty = tmp_path / f"empty{suffix}"
    layer = gpd.read_file(houses).iloc[:0]
    layer.to_parquet(empty) if suffix == ".parquet" else layer.to_file(empty)
    out = tmp_path / "out.gpkg"
    env = {**os.environ, "GEOCLASSIFY_STREAM_FEATURES": "0"}
    result = subprocess.run(classify_argv(raster, package, empty, out), env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "0 features read" in result.stderr, result.stderr
    assert list(gpd.read_file(out).columns[:2]) == ["id", "ClassLabel"] and len(gpd.read_file(out)) == 0


@pytest.mark.parametrize("variable", ["GEOCLASSIFY_STREAM_FEATURES", "GEOCLASSIFY_STREAM_BATCH"])
def test_a_bad_tuning_variable_is_named(scene, tmp_path, variable):
    """Seen: GEOCLASSIFY_STREAM_FEATURES=abc raised a traceback while Python imported geoclassify."""
    folder, raster, houses, package = scene
    env = {**os.environ, "GEOCLASSIFY_STREAM_FEATURES": "0", variable: "abc"}
    argv = classify_argv(raster, package, houses, tmp_path / "out.gpkg")
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and f"{variable}='abc'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def _vrt_of_missing_source(path: Path, like: Path) -> Path:
    """A VRT over a source file that does not exist."""
    with rasterio.open(like) as source:
        geotransform = ", ".join(map(str, source.transform.to_gdal()))
        height, width, wkt = source.height, source.width, source.crs.to_wkt()
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="1">gone.tif'
        f"</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in (1, 2, 3)
    )
    path.write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{escape(wkt)}</SRS>'
        f"<GeoTransform>{geotransform}</GeoTransform>{bands}</VRTDataset>"
    )
    return path


@pytest.mark.parametrize("broken", ["truncated", "vrt"])
@pytest.mark.parametrize("mode", ["mosaic", "items"])
def test_a_failed_read_names_gdals_cause(scene, tmp_path, broken, mode):
    """Seen: a truncated TIFF, a VRT whose source is missing and a broken image in items mode said only "Read
    failed. See previous exception for details."."""
    folder, raster, houses, package = scene
    if broken == "truncated":
        image = tmp_path / "cut.tif"
        whole = raster.read_bytes()
        image.write_bytes(whole[: len(whole) // 2])
        cause = "TIFFReadEncodedTile"
    else:
        image = _vrt_of_missing_source(tmp_path / "mosaic.vrt", raster)
        cause = "gone.tif: No such file or directory"
    images = ["--image", raster, "--image", image] if mode == "items" else ["--image", image]
    result = run_cli(
        "classify", *images, "--processing-mode", mode, "--features", houses, "--model", package,
        "--out", tmp_path / "out.gpkg",
    )
    assert result.returncode == 1, result.stderr
    assert cause in result.stderr and image.name in result.stderr, result.stderr
    assert "See previous exception" not in result.stderr and "Traceback" not in result.stderr


def test_envelope_windows_ignore_float_noise_at_pixel_edges():
    """Seen: a box whose edge is 227.00000000047 px became 228 px wide; 13 of 61 DeepForest crowns changed size.
    The crowns' pixel boxes, carried to map coordinates and back, must give exactly those windows."""
    crowns = SHARED_DATA / "neon-trees" / "OSBS_029.csv"
    if not crowns.exists():
        pytest.skip("shared data not present")
    boxes = pd.read_csv(crowns)
    with rasterio.open(crowns.with_suffix(".tif")) as image:
        transform = image.transform
    x0, y0 = transform * (boxes.xmin.to_numpy(), boxes.ymin.to_numpy())
    x1, y1 = transform * (boxes.xmax.to_numpy(), boxes.ymax.to_numpy())
    pixel = to_pixel_space(transform, shapely.box(x0, y1, x1, y0))
    windows = plan_windows(shapely.bounds(pixel), ChipSpec(height=224, width=224, fixed=False))
    expected = np.stack([boxes.ymin, boxes.xmin, boxes.ymax - boxes.ymin, boxes.xmax - boxes.xmin], axis=1)
    assert (windows == expected).all()
    # A real fraction of a pixel still takes the whole pixel.
    assert plan_windows(np.array([[0.0, 0.0, 10.001, 5.0]]), ChipSpec(64, 64, fixed=False))[0].tolist() == [0, 0, 5, 11]


@pytest.mark.parametrize(
    ("extent", "missed"),
    [(["0", "0", "10", "10"], "misses every feature of"), ([str(X + 250), str(Y - 250), str(X + 550), str(Y)], None)],
)
def test_an_extent_that_misses_says_so(scene, tmp_path, extent, missed):
    """Seen: an extent that missed the raster or every feature wrote an empty file with exit 0 and "0 features
    read". Features outside the extent are read and counted apart; a warning says the extent misses."""
    folder, raster, houses, package = scene
    layer = gpd.read_file(houses)
    far = layer.set_geometry(layer.geometry.translate(300, 0))  # east of the 200 m raster
    wide = tmp_path / "wide.gpkg"
    gpd.GeoDataFrame(pd.concat([layer, far], ignore_index=True), crs=layer.crs).to_file(wide)
    result = run_classify(raster, package, wide, tmp_path / "out.gpkg", "--extent", *extent)
    assert result.returncode == 0, result.stderr
    if missed:
        assert missed in result.stderr and "1200 features read, 1200 outside the extent left out" in result.stderr
    else:  # the extent holds the far copies but not the raster
        assert "misses raster '" in result.stderr and "scene.tif', so nothing is classified" in result.stderr
        assert "1200 features read, 600 outside the extent left out, 0 classified, 600 outside the raster" in (
            result.stderr
        )
    assert len(gpd.read_file(tmp_path / "out.gpkg")) == (0 if missed else 600)


def test_a_second_model_writes_its_fields_beside_the_first(scene, tmp_path):
    """Seen: a classified layer could not be classified again: --label-field Label2 still failed on ClassValue."""
    folder, raster, houses, package = scene
    first = tmp_path / "first.gpkg"
    assert run_classify(raster, package, houses, first).returncode == 0
    again = run_classify(raster, package, first, tmp_path / "clash.gpkg", "--label-field", "Label2")
    assert again.returncode == 1 and "--field-prefix" in again.stderr, again.stderr
    second = tmp_path / "second.gpkg"
    result = run_classify(raster, package, first, second, "--field-prefix", "m2_")
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(second)
    assert [c for c in got.columns if "Class" in c or "Conf" in c or "Cover" in c] == [
        "ClassLabel", "ClassValue", "Confidence", "Coverage",
        "m2_ClassLabel", "m2_ClassValue", "m2_Confidence", "m2_Coverage",
    ]
    assert (got["ClassLabel"] == got["m2_ClassLabel"]).all()
    shp = run_classify(raster, package, first, tmp_path / "second.shp", "--field-prefix", "model2_")
    assert shp.returncode == 1 and "'model2_ClassLabel' is longer than the 10 characters" in shp.stderr


def test_sample_keeps_a_users_files(tmp_path):
    """Seen: ``geoclassify sample DIR`` silently overwrote files in an existing folder, unlike classify."""
    assert run_cli("sample", tmp_path).returncode == 0
    assert run_cli("sample", tmp_path).returncode == 0  # the same files again: nothing to protect
    mine = tmp_path / "houses.gpkg"
    mine.write_bytes(b"my own layer")
    result = run_cli("sample", tmp_path)
    assert result.returncode == 1 and "houses.gpkg" in result.stderr and "--overwrite" in result.stderr
    assert mine.read_bytes() == b"my own layer"
    assert run_cli("sample", tmp_path, "--overwrite").returncode == 0 and mine.read_bytes() != b"my own layer"
