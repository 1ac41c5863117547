"""--scheduler: the batches on a Dask cluster give the local answers, survive a killed worker, honour --retries, and
bad settings are one-line errors.

One local cluster of two single-threaded worker processes serves the module; the CLI test starts its own.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import textwrap
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely
from onnx import helper

from geoclassify import classify_objects
from geoclassify.errors import InferenceError, MissingExtraError, RasterError
from geoclassify.io.rasters import RasterSource
from geoclassify.model.runtime import load_model
from geoclassify.runners import Work, WorkerSetup, check_execution, chip_spec, cluster

from tests.support import MARKED, TWO_CLASSES, emd_for, marked_scene, run_classify, write_dlpk, write_raster
from tests.support.onnx_models import failing_onnx, save_graph

distributed = pytest.importorskip("distributed")

X, Y = 500000.0, 4650000.0
HOUSES = 3000


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """Two worker processes of one thread each, sharing the test session's package cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEOCLASSIFY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as local_cluster,
            distributed.Client(local_cluster) as dask_client,
        ):
            yield dask_client


def conv_onnx(path: Path, layers: int = 4, width: int = 64) -> Path:
    """A small CNN of 3x3 convolutions (about 40 MFLOP per 16-px chip), so partitions take a noticeable time."""
    rng = np.random.default_rng(3)
    nodes, kernels, previous, channels = [], {}, "input", 3
    for i in range(layers):
        kernel = rng.normal(size=(width, channels, 3, 3)) / math.sqrt(9 * channels)
        kernels[f"K{i}"] = kernel.astype(np.float32)
        nodes += [
            helper.make_node("Conv", [previous, f"K{i}"], [f"conv{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Tanh", [f"conv{i}"], [f"act{i}"]),
        ]
        previous, channels = f"act{i}", width
    nodes += [
        helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1),
    ]
    head = rng.normal(size=(2, width)).astype(np.float32)
    return save_graph(path, nodes, "conv", ["batch", 3, 16, 16], ["batch", 2], head, np.zeros(2), kernels)


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    """3,000 houses over a 1,200 x 1,200 raster, some outside it; the model as a .dlpk and as an .emd in a folder of
    its own; and the in-process run everything is compared with."""
    folder = tmp_path_factory.mktemp("cluster")
    rng = np.random.default_rng(21)
    raster = write_raster(folder / "town.tif", rng.integers(0, 255, (3, 1200, 1200), dtype=np.uint8))
    xs, ys = rng.uniform(-5, 605, HOUSES), rng.uniform(-5, 605, HOUSES)
    gpd.GeoDataFrame(
        {"id": np.arange(HOUSES)},
        geometry=[shapely.box(X + x, Y - y - 4, X + x + 4, Y - y) for x, y in zip(xs, ys, strict=True)],
        crs="EPSG:32633",
    ).to_file(folder / "houses.gpkg")
    (folder / "model").mkdir()
    onnx_file = conv_onnx(folder / "model" / "conv.onnx")
    (folder / "model" / "conv.emd").write_text(json.dumps(emd_for(model_file="conv.onnx")))
    package = write_dlpk(folder / "conv.dlpk", emd_for(model_file="conv.onnx"), onnx_file)
    reference = classify_objects(raster, package, folder / "houses.gpkg")
    return SimpleNamespace(
        raster=raster,
        houses=folder / "houses.gpkg",
        package=package,
        emd=folder / "model" / "conv.emd",
        reference=reference,
        # Features with a chip on the raster: those that go to the workers.
        todo=int((reference["Coverage"] > 0).sum()),
    )


def assert_same(got, want) -> None:
    assert list(got["id"]) == list(want["id"])
    assert list(got["ClassLabel"].fillna("")) == list(want["ClassLabel"].fillna(""))
    np.testing.assert_allclose(got["Confidence"], want["Confidence"], atol=1e-5)
    np.testing.assert_allclose(got["Coverage"], want["Coverage"], atol=1e-12)


def test_a_run_on_the_cluster_equals_the_local_run(town, client):
    assert 2500 < town.todo < HOUSES
    with distributed.get_task_stream(client) as stream:
        got = classify_objects(town.raster, town.package, town.houses, scheduler=client)
    assert_same(got, town.reference)
    ran = [task for task in stream.data if task["key"].startswith("geoclassify-partition-")]
    assert len({task["key"] for task in ran}) >= 4  # spatial partitions, spread over both workers
    assert len({task["worker"] for task in ran}) == 2


def test_the_command_line_on_a_local_cluster_writes_the_same_output(town, tmp_path):
    out = tmp_path / "local2.gpkg"
    # The .emd form: its folder is zipped and shipped to the workers.
    result = run_classify(town.raster, town.emd, town.houses, out, "-q", "--scheduler", "local:2")
    assert result.returncode == 0, result.stderr
    assert_same(gpd.read_file(out), town.reference)


def run_with_a_kill(dask_client, town, monkeypatch) -> None:
    """A run in which a worker process that is running partitions is SIGKILLed as the first results arrive: the
    output still holds every feature once, with the local answers."""
    seen: list[np.ndarray] = []
    kill: dict[str, Any] = {}
    run_works = cluster.ClusterRunner.run_works

    def kill_a_busy_worker() -> None:
        busy = {address: keys for address, keys in dask_client.processing().items() if keys}
        assert busy, "no partition was running when the first results came back"
        address, keys = next(iter(busy.items()))
        kill.update(pid=dask_client.run(os.getpid, workers=[address])[address], running=len(keys))
        kill["outstanding"] = town.todo - sum(map(len, seen))
        os.kill(kill["pid"], signal.SIGKILL)

    def watched(runner, works, setup, record, count=None) -> None:
        def recorded(result) -> None:
            record(result)
            seen.append(result.targets)
            if not kill:
                kill_a_busy_worker()

        run_works(runner, works, setup, recorded, count)

    monkeypatch.setattr(cluster.ClusterRunner, "run_works", watched)
    workers = len(dask_client.nthreads())
    got = classify_objects(town.raster, town.package, town.houses, scheduler=dask_client)
    assert kill["running"] >= 1 and kill["outstanding"] > town.todo // 2
    targets = np.concatenate(seen)
    assert len(targets) == len(np.unique(targets)) == town.todo  # every feature once
    assert_same(got, town.reference)
    dask_client.wait_for_workers(workers, timeout=60)  # the nanny replaced the killed process
    assert kill["pid"] not in dask_client.run(os.getpid).values()


def test_a_worker_killed_midway_loses_and_repeats_nothing(town, client, monkeypatch):
    run_with_a_kill(client, town, monkeypatch)  # Dask runs the dead worker's partitions on the other one


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")  # the module's cluster has it
def test_the_only_worker_killed_midway_gets_the_model_again(town, monkeypatch):
    """The one worker held the only copy of the shipped package: the run sends it again to its replacement."""
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as single,
        distributed.Client(single, set_as_default=False) as dask_client,
    ):
        run_with_a_kill(dask_client, town, monkeypatch)


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster_retries")
    raster, houses = marked_scene(folder)
    return raster, houses


FAILS_ONCE = """
    import json
    import os

    MARKER = {marker!r}


    class FailsOnce:
        def initialize(self, **kwargs):
            pass

        def getParameterInfo(self):
            return [
                {{"name": "rasters", "dataType": "rasters"}},
                {{"name": "model", "dataType": "string"}},
                {{"name": "batch_size", "dataType": "numeric", "value": 4}},
            ]

        def getConfiguration(self, **scalars):
            return {{"tx": 16, "ty": 16, "extractBands": (0, 1, 2), "batch_size": scalars["batch_size"]}}

        def vectorize(self, **pixelBlocks):
            chips = pixelBlocks["rasters_pixels"]
            if any(chip[:, 0, 0].max() >= 255 for chip in chips):
                try:  # whichever worker process gets here first fails, once per marker file
                    os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    raise RuntimeError("simulated failure on a marked chip")
            intact = [{{"attributes": {{"OID": i, "Confidence": "0.5", "Label": "Intact"}}}} for i in range(len(chips))]
            return {{"output_vectors": json.dumps({{"features": intact}})}}
"""


def fails_once_package(folder, marker):
    emd = emd_for(model_file=None, Framework="PyTorch", InferenceFunction="FailsOnce.py", Classes=TWO_CLASSES)
    source = textwrap.dedent(FAILS_ONCE.format(marker=str(marker)))
    return write_dlpk(folder / f"{marker.stem}.dlpk", emd, None, extra={"FailsOnce.py": source.encode()})


def test_a_batch_that_fails_once_on_a_worker_is_run_again(marked, client, tmp_path):
    raster, houses = marked
    once = fails_once_package(tmp_path, tmp_path / "failed-a")
    with pytest.raises(InferenceError, match=r"a batch failed 1 time \(retries 0\)") as failed:
        classify_objects(raster, once, houses, trust_code=True, scheduler=client)
    assert "simulated failure on a marked chip" in str(failed.value) and f"feature {MARKED}" in str(failed.value)
    again = fails_once_package(tmp_path, tmp_path / "failed-b")
    got = classify_objects(raster, again, houses, trust_code=True, retries=1, scheduler=client)
    assert (tmp_path / "failed-b").exists()  # it did fail, and the retry saved the run
    assert len(got) == 40 and (got["ClassLabel"] == "Intact").all()


def test_a_batch_that_always_fails_gives_the_local_error(marked, client, tmp_path):
    raster, houses = marked
    package = write_dlpk(tmp_path / "fails.dlpk", emd_for(), failing_onnx(tmp_path / "model.onnx"))
    settings = {"retries": 2, "arguments": {"batch_size": 4}}
    with pytest.raises(InferenceError) as local:
        classify_objects(raster, package, houses, **settings)
    with pytest.raises(InferenceError) as remote:  # by address this time: geoclassify connects its own client
        classify_objects(raster, package, houses, scheduler=client.scheduler.address, **settings)
    assert str(remote.value) == str(local.value)
    assert "a batch failed 3 times (retries 2)" in str(remote.value) and f"feature {MARKED}" in str(remote.value)


def test_a_worker_that_cannot_open_the_image_names_itself(town, client):
    """Workers open the images themselves; one that cannot says which worker it is."""
    model = load_model(town.package)
    work = Work(np.array([0]), np.array([[0, 0, 16, 16]]), [None])
    setup = WorkerSetup(model.recipe(), partial(RasterSource, "/nowhere/town.tif"), chip_spec(model), (0, 1, 2))
    with pytest.raises(RasterError, match=r"^Dask worker tcp://\S+: raster '/nowhere/town.tif' not found"):
        cluster.ClusterRunner(client).run_works([work], setup, lambda _: None)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheduler", "nonsense"], "--scheduler 'nonsense': give a Dask scheduler's address (tcp://HOST:PORT"),
        (["--scheduler", "local:none"], "local:N takes a number of worker processes"),
        (["--scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler at tcp://127.0.0.1:1"),
        (["--scheduler", "local", "--parallel-factor", "2"], "--parallel-factor and --scheduler both say where"),
    ],
)
def test_bad_scheduler_settings_are_one_line_errors(marked, tmp_path, monkeypatch, extra, message):
    raster, houses = marked
    monkeypatch.setenv("GEOCLASSIFY_SCHEDULER_TIMEOUT", "1")
    package = write_dlpk(tmp_path / "fails.dlpk", emd_for(), failing_onnx(tmp_path / "model.onnx"))
    result = run_classify(raster, package, houses, tmp_path / "out.gpkg", *extra)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("geoclassify: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "out.gpkg").exists()


def test_without_dask_the_error_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'geoclassify\[dask\]'"):
        check_execution(0, 0, None, "local:2")


def test_items_mode_uses_one_cluster_for_every_image(town, tmp_path, monkeypatch):
    """Items mode runs one plan per image; ``local`` still starts one cluster for the whole run."""
    rng = np.random.default_rng(4)
    second = write_raster(tmp_path / "second.tif", rng.integers(0, 255, (3, 600, 600), dtype=np.uint8))
    images = [town.raster, second]
    want = classify_objects(images, town.package, town.houses, processing_mode="items")
    connections = []
    connect = cluster.connect

    def counted(scheduler):
        connections.append(scheduler)
        return connect(scheduler)

    monkeypatch.setattr(cluster, "connect", counted)
    got = classify_objects(images, town.package, town.houses, processing_mode="items", scheduler="local:1")
    assert connections == ["local:1"]  # the images then share its Client
    assert (want["ItemID"] == str(second)).sum() > 500  # both images classified some features
    assert list(got["ItemID"].fillna("")) == list(want["ItemID"].fillna(""))
    assert_same(got, want)
