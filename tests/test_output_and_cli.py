"""Atomic outputs, Ctrl-C, `inspect`, the progress bar and the summary line."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from geoclassify import classify_objects
from geoclassify.cli import main
from geoclassify.errors import OutputError

from tests.support import classify_argv, flat_package, leftovers, run_cli, write_raster

X, Y = 500000.0, 4650000.0


@pytest.fixture
def inputs(tmp_path):
    raster = write_raster(tmp_path / "scene.tif", np.random.default_rng(0).integers(0, 255, (3, 64, 64), np.uint8))
    houses = gpd.GeoDataFrame(
        {"n": [1, 2]},
        geometry=[shapely.box(X + 3, Y - 6, X + 6, Y - 3), shapely.box(X + 20, Y - 26, X + 24, Y - 22)],
        crs="EPSG:32633",
    )
    houses.to_file(tmp_path / "houses.gpkg")
    package, _, _ = flat_package(tmp_path)
    return raster, tmp_path / "houses.gpkg", package


@pytest.mark.parametrize("name", ["out.gpkg", "out.shp"])
def test_failed_write_leaves_nothing_and_keeps_the_old_output(inputs, tmp_path, monkeypatch, name):
    raster, features, package = inputs
    out = tmp_path / name
    classify_objects(raster, package, features, out)
    before = _as_read(tmp_path)
    real_write = pyogrio.write_dataframe

    def write_then_die(frame, path, **kwargs):
        real_write(frame.iloc[:1], path, **kwargs)  # a partial file exists now...
        raise KeyboardInterrupt  # ...and the user presses Ctrl-C

    monkeypatch.setattr(pyogrio, "write_dataframe", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        classify_objects(raster, package, features, out, overwrite=True)
    assert _as_read(tmp_path) == before
    assert not [p for p in leftovers(tmp_path, "out") if "partial" in p]


def _as_read(folder):
    """The old output as readers see it: a GeoPackage's layers and features (its bytes change when a failed run's
    temporary layer is added and dropped again), any other file's bytes."""
    return {
        p.name: [(name, pyogrio.read_dataframe(p, layer=name).to_wkt().to_json()) for name, _ in pyogrio.list_layers(p)]
        if p.suffix == ".gpkg"
        else p.read_bytes()
        for p in folder.iterdir()
        if p.name.startswith("out.")
    }


def test_ctrl_c_in_the_cli_says_nothing_was_written(inputs, tmp_path, monkeypatch, capsys):
    raster, features, package = inputs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("geoclassify.modes.collection.classify_plan", interrupted)
    code = main(
        [
            "classify",
            "--image",
            str(raster),
            "--model",
            str(package),
            "--features",
            str(features),
            "--out",
            str(tmp_path / "out.gpkg"),
        ]
    )
    assert code == 130
    assert "interrupted; no output was written" in capsys.readouterr().err
    assert not (tmp_path / "out.gpkg").exists()


def test_unknown_output_format_fails_before_any_work(inputs, tmp_path):
    raster, features, package = inputs
    with pytest.raises(OutputError, match="unknown format '.xyz'"):
        classify_objects(raster, package, features, tmp_path / "out.xyz")
    with pytest.raises(OutputError, match="does not exist"):
        classify_objects(raster, package, features, tmp_path / "no" / "out.gpkg")


def test_api_without_out_returns_a_geodataframe(inputs):
    raster, features, package = inputs
    result = classify_objects(raster, package, features, arguments={"batch_size": 1})
    assert isinstance(result, gpd.GeoDataFrame)
    assert list(result.columns) == ["n", "ClassLabel", "ClassValue", "Confidence", "Coverage", "geometry"]
    assert result.attrs["summary"].classified == 2


def test_inspect_text_and_json(inputs):
    _, _, package = inputs
    text = run_cli("inspect", package)
    assert text.returncode == 0, text.stderr
    for fragment in (
        "Framework    ONNX",
        "16 x 16 pixels",
        "CropSizeFixed 1",
        "[0, 1, 2]",
        "Intact",
        "Damaged",
        "[0, 200, 0]",
        "ImageNet",
        "batch_size (int, default 16)",
        "test_time_augmentation",
    ):
        assert fragment in text.stdout, fragment
    as_json = run_cli("inspect", package, "--json")
    info = json.loads(as_json.stdout)
    assert info["chip_size"] == {"height": 16, "width": 16}
    assert info["classes"][1] == {"position": 1, "value": 2, "name": "Damaged", "color": [200, 0, 0]}
    assert info["runtime"]["input"]["shape"] == ["batch", 3, 16, 16]
    assert [a["name"] for a in info["arguments"]] == ["batch_size", "test_time_augmentation"]
    bad = run_cli("inspect", package, "--argument", "batch_size=-1")
    assert bad.returncode == 1 and "batch_size='-1'" in bad.stderr


def test_progress_bar_on_a_terminal(inputs, tmp_path):
    """Under a pseudo-terminal the bar shows (with its usual one-second delay turned off); --quiet hides it."""
    pty = pytest.importorskip("pty")
    import fcntl
    import os
    import struct
    import subprocess
    import termios

    raster, _, package = inputs
    many = gpd.GeoDataFrame(
        geometry=[shapely.box(X + i % 30, Y - 20, X + i % 30 + 2, Y - 18) for i in range(3000)], crs="EPSG:32633"
    )
    many.to_file(tmp_path / "many.gpkg")
    outputs = {}
    for quiet in (False, True):
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
        out = tmp_path / f"p{quiet}.gpkg"
        args = classify_argv(raster, package, tmp_path / "many.gpkg", out, "--argument", "batch_size=1")
        env = {**os.environ, "GEOCLASSIFY_PROGRESS_DELAY": "0"}
        proc = subprocess.run(
            args + (["--quiet"] if quiet else []), stderr=follower, stdout=subprocess.DEVNULL, timeout=300, env=env
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert proc.returncode == 0
        outputs[quiet] = b"".join(chunks).decode()
    assert "features/s" in outputs[False] and "3000/3000" in outputs[False]
    assert "3000/3000" not in outputs[True]
    assert "3000 features read, 3000 classified" in outputs[True]
