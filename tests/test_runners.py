"""Runners behind one protocol: every runner gives the same results for a plan, retries count per batch, and the
package's layers import each other in one direction only."""

from __future__ import annotations

import ast
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import shapely
from rasterio.transform import from_origin

from geoclassify.core.plan import PlanBuilder
from geoclassify.core.predictions import BatchResult
from geoclassify.errors import InferenceError
from geoclassify.io.rasters import RasterSource
from geoclassify.model.runtime import load_model
from geoclassify.modes.raster_setup import prepare_raster, to_pixel_space
from geoclassify.runners import (
    ClusterRunner,
    Execution,
    LocalRunner,
    PlanJob,
    ProcessRunner,
    RetryPolicy,
    chip_spec,
    classify_plan,
    local,
    runner_for,
)
from geoclassify.runners.work import open_worker_state, run_work

from tests.support import flat_package, write_raster

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "geoclassify"
X, Y = 500000.0, 4650000.0


class InlineRunner:
    """A runner written against the protocol alone: the worker contract (setup, state, work), run here."""

    def __init__(self) -> None:
        self.batches = 0

    def __enter__(self) -> InlineRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, job: PlanJob, record) -> None:
        state = open_worker_state(job.setup())
        for work in job.works():
            self.batches += 1
            record(run_work(state, work))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runners")
    rng = np.random.default_rng(12)
    raster = write_raster(folder / "scene.tif", rng.integers(0, 255, (3, 700, 700), dtype=np.uint8))
    package, _, _ = flat_package(folder, BlackenAroundFeature=1)  # polygons travel to workers as WKB
    x = X + rng.uniform(-20, 370, 150)
    y = Y - rng.uniform(-20, 370, 150)
    boxes = shapely.box(x, y - rng.uniform(2, 9, 150), x + rng.uniform(2, 9, 150), y)
    boxes[7] = shapely.Point(X + 100, Y - 100)  # not polygonal: cut with its surroundings
    boxes[11] = None  # no geometry
    return raster, package, boxes


def classify_with(runner, scene):
    raster, package, boxes = scene
    model = load_model(package, {"batch_size": 8})
    with RasterSource(str(raster)) as source, runner:
        bands = prepare_raster(model, source)
        builder = PlanBuilder(chip_spec(model), *source.shape)
        builder.add(to_pixel_space(from_origin(X, Y, 0.5, 0.5), boxes))
        done: list[int] = []
        with builder.finish() as plan, pytest.warns(UserWarning, match="BlackenAroundFeature"):
            predictions = classify_plan(
                model, source, plan, bands, runner, partial(RasterSource, str(raster)), advance=done.append
            )
    return predictions, sum(done)


def test_every_runner_gives_the_same_predictions(scene):
    want, advanced = classify_with(LocalRunner(), scene)
    assert want.classified.sum() > 100 and want.outside.sum() > 5 and want.empty.sum() == 1
    assert advanced == int((~want.outside & ~want.empty).sum())  # every feature to classify, once
    inline = InlineRunner()
    for runner in (inline, ProcessRunner(1)):
        got, advanced_here = classify_with(runner, scene)
        assert advanced_here == advanced
        np.testing.assert_array_equal(got.class_index, want.class_index)
        np.testing.assert_allclose(got.confidence, want.confidence, rtol=1e-6)
        np.testing.assert_array_equal(got.coverage, want.coverage)
    assert inline.batches == -(-advanced // 8)


def test_many_threads_each_open_the_raster_and_give_the_same_predictions(scene, monkeypatch):
    """Past two threads (a machine of many cores) each thread reads through a raster handle of its own."""
    want, advanced = classify_with(LocalRunner(), scene)
    opened: list[str] = []

    class Counted(RasterSource):
        def __init__(self, *args, **kwargs):
            opened.append(threading.current_thread().name)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(local, "MIN_THREADS", 5)
    monkeypatch.setattr("tests.test_runners.RasterSource", Counted)
    got, advanced_here = classify_with(LocalRunner(), scene)
    assert advanced_here == advanced
    assert sum(name.startswith("geoclassify-tiles") for name in opened) == 5
    np.testing.assert_array_equal(got.class_index, want.class_index)
    np.testing.assert_allclose(got.confidence, want.confidence, rtol=1e-6)
    np.testing.assert_array_equal(got.coverage, want.coverage)


def test_a_plan_job_yields_each_feature_once_in_tile_order(scene):
    raster, package, boxes = scene
    model = load_model(package, {"batch_size": 8})
    with RasterSource(str(raster)) as source:
        builder = PlanBuilder(chip_spec(model), *source.shape)
        builder.add(to_pixel_space(from_origin(X, Y, 0.5, 0.5), boxes))
        with builder.finish() as plan:
            job = PlanJob(model, source, plan, chip_spec(model), (0, 1, 2), np.arange(len(plan.todo)))
            works = list(job.works())
    assert len(works) == job.work_count and all(len(w.targets) <= 8 for w in works)
    targets = np.concatenate([w.targets for w in works])
    assert sorted(targets) == sorted(plan.todo)
    assert list(targets) == list(job.targets[np.concatenate(job.groups)])  # the local loop's order
    assert all(len(w.polygons) == len(w.targets) for w in works)


def test_retries_are_counted_per_batch_and_forgotten_once_it_works():
    retry = RetryPolicy(1)
    retry.again("a", "first")
    retry.again("b", "first")
    retry.done("b")
    retry.again("b", "once more")  # b's earlier failure no longer counts
    with pytest.raises(InferenceError, match=r"a batch failed 2 times \(retries 1\): the model broke"):
        retry.again("a", "the model broke")
    with pytest.raises(InferenceError, match=r"failed 1 time \(retries 0\)"):
        RetryPolicy(0).again(3, "x")


def test_the_execution_chooses_the_runner():
    assert type(runner_for(Execution(retries=2))) is LocalRunner
    processes = runner_for(Execution(workers=3, retries=1, recycle_interval=5))
    assert isinstance(processes, ProcessRunner)
    assert (processes.workers, processes.retries, processes.recycle_interval) == (3, 1, 5)
    cluster = runner_for(Execution(retries=4, scheduler="local:2"))
    assert isinstance(cluster, ClusterRunner) and (cluster.scheduler, cluster.retries) == ("local:2", 4)


def test_batch_results_join_in_order():
    parts = [
        BatchResult(np.array([3, 1]), np.array([0, -1]), np.array([0.5, np.nan]), np.array([1.0, 0.0])),
        BatchResult(np.array([7]), np.array([1]), np.array([0.9]), np.array([0.4])),
    ]
    joined = BatchResult.joined(parts)
    assert len(joined) == 3 and list(joined.targets) == [3, 1, 7] and list(joined.labels) == [0, -1, 1]


# -- the layers -------------------------------------------------------------------------------------------------

#: Layer -> the geoclassify subpackages and modules it must not import.
FORBIDDEN = {
    "core": {"io", "model", "runners", "modes", "api", "run", "cli", "server"},
    "runners": {"modes", "api", "run", "cli", "server"},
    "modes": {"api", "run", "cli", "server"},
    "io": {"runners", "modes", "api", "run", "cli", "server"},
}
#: The only modules a function of core, runners or modes may import: optional extras.
LATE_IMPORTS = {"distributed", "dask", "torch"}


def imports(path: Path) -> tuple[set[str], set[str]]:
    """Modules ``path`` imports (dotted, relative ones resolved), and those of them imported inside functions."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    tree = ast.parse(path.read_text())
    functions = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
    inner = {id(n) for f in functions for n in ast.walk(f)}
    names: set[str] = set()
    late: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found = {module} if node.module else {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found = {a.name for a in node.names}
        else:
            continue
        names |= found
        if id(node) in inner:
            late |= found
    return names, late


def test_layers_import_downwards_only():
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            names, late = imports(path)
            ours = {n.split(".")[1] for n in names if n.startswith("geoclassify.")}
            assert not ours & forbidden, f"{path.relative_to(PACKAGE)} imports {sorted(ours & forbidden)}"
            if layer != "io":
                odd = {n for n in late if n.split(".")[0] not in LATE_IMPORTS}
                assert not odd, f"{path.relative_to(PACKAGE)} imports {sorted(odd)} inside a function"


def test_the_runners_import_no_circle():
    modules = {p.stem: p for p in (PACKAGE / "runners").glob("*.py") if p.stem != "__init__"}
    edges = {
        name: {n.rsplit(".", 1)[1] for n in imports(path)[0] if n.startswith("geoclassify.runners.")} & set(modules)
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"import circle: {' -> '.join((*trail, name))}"
        if name not in done:
            for other in edges[name]:
                visit(other, (*trail, name))
            done.add(name)

    for name in modules:
        visit(name, ())
