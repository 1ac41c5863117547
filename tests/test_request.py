"""The run as data: a RunRequest round-trips through JSON, and the CLI and the Python API make the same one."""

from __future__ import annotations

import contextlib
import json
import warnings

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geoclassify import RunRequest, classify_objects, run
from geoclassify.api import request_of
from geoclassify.cli import classify, classify_request
from geoclassify.errors import GeoclassifyWarning, RunCancelled, SettingError
from geoclassify.hooks import RunHooks
from geoclassify.io.journal import journal_folder
from geoclassify.runs import RunContext

from tests.support import flat_package, write_raster

FULL = {
    "image": ["a.tif", "b.tif"],
    "model": "roofs.dlpk",
    "features": "houses.gpkg",
    "out": "out.gpkg",
    "features_layer": "houses",
    "out_layer": "classified",
    "label_field": "Label",
    "field_prefix": "m2_",
    "arguments": {"batch_size": "8", "test_time_augmentation": "true"},
    "processing_mode": "PROCESS_ITEMS_SEPARATELY",
    "recursive": True,
    "asset": "visual",
    "extent": (1.0, 2.0, 3.0, 4.0),
    "extent_crs": "EPSG:4326",
    "cell_size": 0.5,
    "resampling": "BILINEAR",
    "out_crs": "EPSG:3857",
    "processor_type": "cpu",
    "parallel_factor": "50%",
    "retries": 2,
    "recycle_interval": 10,
    "resume": True,
    "overwrite": True,
    "trust_code": True,
    "where": "kind = 'roof'",
    "top_k": 3,
    "probabilities": True,
    "min_coverage": 0.4,
    "dry_run": True,
    "export_chips": "chips",
}


def test_a_request_round_trips_through_json():
    request = RunRequest.from_keywords(**FULL)
    text = request.to_json()
    assert RunRequest.from_json(text) == request
    assert json.loads(text)["processing_mode"] == "items" and json.loads(text)["resampling"] == "bilinear"
    assert RunRequest.from_json(RunRequest.from_json(text).to_json()) == request


def test_the_cli_and_the_api_make_the_same_request():
    argv = [
        "--image", "a.tif", "--image", "b.tif", "--model", "roofs.dlpk", "--features", "houses.gpkg",
        "--out", "out.gpkg", "--features-layer", "houses", "--out-layer", "classified", "--label-field", "Label",
        "--field-prefix", "m2_", "--argument", "batch_size=8", "--argument", "test_time_augmentation=true",
        "--processing-mode", "PROCESS_ITEMS_SEPARATELY", "--recursive", "--asset", "visual",
        "--extent", "1", "2", "3", "4", "--extent-crs", "EPSG:4326", "--cell-size", "0.5",
        "--resampling", "BILINEAR", "--out-crs", "EPSG:3857", "--processor-type", "cpu", "--parallel-factor", "50%",
        "--retries", "2", "--recycle-interval", "10", "--resume", "--overwrite", "--trust-code",
        "--where", "kind = 'roof'", "--top-k", "3", "--probabilities", "--min-coverage", "0.4", "--dry-run",
        "--export-chips", "chips",
    ]
    options = classify.make_context("classify", argv).params
    options.pop("quiet")
    from_cli = classify_request(options)
    from_api, _ = request_of(**{**FULL, "arguments": {"batch_size": 8, "test_time_augmentation": True}})
    assert from_cli == from_api
    # The defaults agree too.
    minimal = classify.make_context("classify", ["--image", "a.tif", "--model", "m.dlpk", "--out", "o.gpkg"]).params
    minimal.pop("quiet")
    assert classify_request(minimal) == request_of("a.tif", "m.dlpk", None, "o.gpkg")[0]


def test_a_request_with_unknown_or_future_settings_is_refused():
    data = RunRequest.from_keywords(**FULL).to_dict()
    with pytest.raises(SettingError, match="unknown settings: colour"):
        RunRequest.from_dict({**data, "colour": "red"})
    with pytest.raises(SettingError, match="newer"):
        RunRequest.from_dict({**data, "version": 99})
    with pytest.raises(SettingError, match="not JSON"):
        RunRequest.from_json("{")


def test_the_fingerprint_leaves_out_how_the_work_runs():
    base = RunRequest.from_keywords(**FULL)
    same = RunRequest.from_keywords(**{**FULL, "parallel_factor": "2", "retries": 0, "out_crs": None,
                                       "arguments": {**FULL["arguments"], "batch_size": "64"}})
    assert base.fingerprint() == same.fingerprint()
    other = RunRequest.from_keywords(**{**FULL, "cell_size": 1.0})
    assert base.fingerprint() != other.fingerprint()


@pytest.fixture()
def scene(tmp_path):
    x0, y0 = 500000.0, 4650000.0
    rng = np.random.default_rng(2)
    raster = write_raster(tmp_path / "scene.tif", rng.integers(0, 255, (3, 300, 300), dtype=np.uint8))
    boxes = [shapely.box(x0 + x, y0 - y - 3, x0 + x + 3, y0 - y) for x, y in rng.uniform(5, 140, size=(300, 2))]
    gpd.GeoDataFrame({"id": range(300)}, geometry=boxes, crs="EPSG:32633").to_file(tmp_path / "houses.gpkg")
    package, _, _ = flat_package(tmp_path)
    return raster, tmp_path / "houses.gpkg", package


def test_hooks_hear_progress_and_warnings_and_can_cancel(scene, tmp_path):
    raster, houses, package = scene
    seen: list[tuple[int, int | None]] = []
    warned: list[Warning] = []
    request = RunRequest.build(raster, package, houses, tmp_path / "out.gpkg", model_arguments={"batch_size": 10})
    hooks = RunHooks(progress=lambda done, total: seen.append((done, total)), warning=warned.append)
    summary = run(request, RunContext(hooks=hooks))
    assert summary.read == 300 and seen[-1] == (300, 300) and len(seen) >= 10  # 30 batches, handed over in groups
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    # Cancelled after the third batch: the run stops with RunCancelled, writes nothing and keeps no journal.
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    out = tmp_path / "cancelled.gpkg"
    stop = RunRequest.build(raster, package, houses, out, model_arguments={"batch_size": 10})
    with pytest.raises(RunCancelled):
        run(stop, RunContext(hooks=RunHooks(cancelled=cancelled)))
    assert not out.exists() and not journal_folder(out).exists()
    # A warning goes to the hook, not to Python's warnings.
    far = RunRequest.build(raster, package, houses, tmp_path / "far.gpkg", extent=(0, 0, 1, 1))
    with _no_python_warnings():
        run(far, RunContext(hooks=RunHooks(warning=warned.append)))
    assert any("misses every feature" in str(w) for w in warned)


@contextlib.contextmanager
def _no_python_warnings():
    """The block raises no geoclassify warning through Python's warnings (they went to the hook)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not [w for w in caught if issubclass(w.category, GeoclassifyWarning)]


def test_classify_objects_keeps_its_signature_and_answers(scene, tmp_path):
    raster, houses, package = scene
    frame = classify_objects(raster, package, gpd.read_file(houses))
    assert len(frame) == 300 and frame.attrs["summary"].read == 300
