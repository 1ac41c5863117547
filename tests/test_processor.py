"""Processor Type and GPU ID (--processor-type, --gpu-id). This machine has no GPU: what can be checked is what each
runtime is asked for, that the choice travels with the model to workers, and the errors when no GPU is usable."""

from __future__ import annotations

import os
import pickle
import textwrap
from typing import ClassVar

import geopandas as gpd
import numpy as np
import onnxruntime
import pytest
import shapely

from geoclassify.api import classify_objects
from geoclassify.errors import DeviceError, MissingExtraError, SettingError
from geoclassify.model.device import CPU, Device, parse_device
from geoclassify.model.runtime import load_model

from tests.support import TWO_CLASSES, emd_for, flat_package, run_classify, write_dlpk, write_raster

CUDA = "CUDAExecutionProvider"
CPU_ONLY = "CPUExecutionProvider"
REAL_SESSION = onnxruntime.InferenceSession


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("processor")
    rng = np.random.default_rng(2)
    raster = write_raster(folder / "scene.tif", rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))
    houses = gpd.GeoDataFrame(
        {"id": range(6)},
        geometry=[shapely.box(500002 + 4 * i, 4649980, 500006 + 4 * i, 4649984) for i in range(6)],
        crs="EPSG:32633",
    )
    houses.to_file(folder / "houses.gpkg")
    package, _, _ = flat_package(folder)
    return folder, raster, package


class FakeCudaSession:
    """Stands in for ``onnxruntime.InferenceSession`` on a machine with a GPU: records what it is asked for, runs on
    the CPU, and reports the providers it was given as the ones it uses (``started`` False: CUDA failed to start)."""

    calls: ClassVar[list[list]] = []
    started = True

    def __init__(self, path, options=None, providers=None):
        type(self).calls.append(list(providers))
        self._session = REAL_SESSION(path, options, providers=[CPU_ONLY])
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        self._providers = names if type(self).started else [CPU_ONLY]

    def get_providers(self):
        return self._providers

    def __getattr__(self, name):
        return getattr(self._session, name)


@pytest.fixture
def cuda_machine(monkeypatch):
    """ONNX Runtime as onnxruntime-gpu on a GPU machine presents itself."""
    FakeCudaSession.calls, FakeCudaSession.started = [], True
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU_ONLY])
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeCudaSession)
    return FakeCudaSession


def test_gpu_asks_onnx_runtime_for_cuda_on_that_device_with_the_cpu_behind(scene, cuda_machine):
    folder, raster, package = scene
    on_gpu = classify_objects(raster, package, folder / "houses.gpkg", processor_type="gpu", gpu_id=1)
    assert cuda_machine.calls and all(call == [(CUDA, {"device_id": 1}), CPU_ONLY] for call in cuda_machine.calls), (
        cuda_machine.calls
    )
    cuda_machine.calls.clear()
    classify_objects(raster, package, folder / "houses.gpkg", processor_type="GPU")
    assert cuda_machine.calls[0] == [(CUDA, {"device_id": 0}), CPU_ONLY], "GPU 0 unless --gpu-id says otherwise"
    # CPU, the default, never touches the GPU even where one is offered.
    cuda_machine.calls.clear()
    on_cpu = classify_objects(raster, package, folder / "houses.gpkg")
    assert cuda_machine.calls == [[CPU_ONLY]]
    assert (on_cpu["ClassLabel"] == on_gpu["ClassLabel"]).all()


def test_the_device_travels_with_the_model_to_workers(scene, cuda_machine):
    """Worker processes and Dask workers load the model from its recipe (runners.work.open_worker_state)."""
    _, _, package = scene
    model = load_model(package, device=Device("GPU", 2))
    recipe = pickle.loads(pickle.dumps(model.recipe()))
    assert recipe.device == Device("GPU", 2)
    cuda_machine.calls.clear()
    again = recipe.load(threads=1)
    assert again.device == Device("GPU", 2) and cuda_machine.calls == [[(CUDA, {"device_id": 2}), CPU_ONLY]]
    assert again.backend.describe()["device"] == "GPU 2"


def test_a_cuda_provider_that_cannot_start_is_an_error_not_a_silent_cpu_run(scene, cuda_machine):
    _, _, package = scene
    cuda_machine.started = False
    with pytest.raises(DeviceError, match="could not start its CUDA execution provider on GPU 3"):
        load_model(package, device=Device("GPU", 3))


def test_without_onnxruntime_gpu_the_error_says_what_to_install(scene, tmp_path):
    folder, raster, package = scene
    assert CUDA not in onnxruntime.get_available_providers(), "this test expects the CPU build of ONNX Runtime"
    with pytest.raises(MissingExtraError, match=r"CUDA execution provider.*geoclassify\[gpu\].*replaces onnxruntime"):
        classify_objects(raster, package, folder / "houses.gpkg", processor_type="GPU")
    result = run_classify(raster, package, folder / "houses.gpkg", tmp_path / "out.gpkg", "--processor-type", "GPU")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'geoclassify[gpu]'" in lines[0] and "--processor-type CPU" in lines[0]
    assert not (tmp_path / "out.gpkg").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--processor-type", "TPU"], "--processor-type 'TPU' is not one of: CPU, GPU"),
        (["--gpu-id", "1"], "--gpu-id 1 picks a GPU, but the processor type is CPU; add --processor-type GPU"),
        (["--processor-type", "GPU", "--gpu-id", "-1"], "--gpu-id -1: give a GPU number, 0 for the first"),
        (["--processor-type", "GPU", "--gpu-id", "one"], "'one' is not a valid integer"),
    ],
)
def test_command_line_flags_that_cannot_work(scene, tmp_path, options, message):
    folder, raster, package = scene
    result = run_classify(raster, package, folder / "houses.gpkg", tmp_path / "out.gpkg", *options)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_explicit_cpu_on_the_command_line(scene, tmp_path):
    folder, raster, package = scene
    out = tmp_path / "out.gpkg"
    result = run_classify(raster, package, folder / "houses.gpkg", out, "--processor-type", "cpu")
    assert result.returncode == 0, result.stderr
    assert len(gpd.read_file(out)) == 6


def test_settings_as_values():
    assert parse_device() == CPU and parse_device(None, None) == CPU
    assert parse_device(" gpu ", 2) == Device("GPU", 2) and Device("GPU", 2).esri_device == 2
    assert CPU.esri_device == -1 and Device("GPU").gpu_id == 0
    with pytest.raises(SettingError, match="give a GPU number"):
        parse_device("GPU", True)  # type: ignore[arg-type]


def test_a_loaded_model_keeps_its_device(scene):
    folder, raster, package = scene
    model = load_model(package)
    with pytest.raises(SettingError, match="loaded for the CPU, not the GPU 0 asked for"):
        classify_objects(raster, model, folder / "houses.gpkg", processor_type="GPU")
    assert len(classify_objects(raster, model, folder / "houses.gpkg", processor_type="cpu")) == 6


def torchscript_package(folder):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    torch.jit.save(torch.jit.trace(net.eval(), torch.zeros(1, 3, 16, 16)), str(folder / "net.pt"))
    emd = emd_for(model_file="net.pt", Framework="PyTorch", ImageWidth=16, ImageHeight=16)
    return torch, write_dlpk(folder / "script.dlpk", emd, folder / "net.pt")


def test_torchscript_on_a_gpu(tmp_path, monkeypatch):
    torch, package = torchscript_package(tmp_path)
    assert not torch.cuda.is_available(), "this test expects a machine without CUDA"
    with pytest.raises(DeviceError, match=r"PyTorch .* sees no CUDA GPU .* install a CUDA build of PyTorch"):
        load_model(package, device=Device("GPU", 0))
    assert load_model(package).backend.describe()["device"] == "CPU"
    # As on a machine with two GPUs: the module is loaded onto the one asked for, and a third does not exist.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceError, match=r"gpu_id 2: PyTorch sees 2 GPUs \(numbered from 0 to 1\)"):
        load_model(package, device=Device("GPU", 2))
    asked = []

    def load(path, map_location=None):
        asked.append(map_location)
        raise RuntimeError("stop here: there is no GPU to load onto")

    monkeypatch.setattr(torch.jit, "load", load)
    with pytest.raises(Exception, match="stop here"):
        load_model(package, device=Device("GPU", 1))
    assert asked == [torch.device("cuda:1")]


WRAPPER = """
import numpy as np


class DeviceProbe:
    def initialize(self, **kwargs):
        self.device = kwargs["device"]

    def vectorize(self, **pixelBlocks):
        n = len(pixelBlocks["rasters_pixels"])
        return {"output_vectors": {"features": [{"attributes": {"Label": "Intact", "Confidence": 1.0}}] * n}}
"""

CHILD = """
class ChildObjectDetector:
    def initialize(self, model, model_as_file):
        pass

    def vectorize(self, **pixelBlocks):
        return [], [], []
"""


def function_package(folder, name: str, source: str):
    emd = emd_for(model_file=None, InferenceFunction=f"{name}.py", Classes=TWO_CLASSES, ImageWidth=8, ImageHeight=8)
    return write_dlpk(folder / f"{name}.dlpk", emd, None, extra={f"{name}.py": textwrap.dedent(source).encode()})


def test_python_inference_functions_get_the_device_as_esri_passes_it(tmp_path, monkeypatch):
    package = function_package(tmp_path, "DeviceProbe", WRAPPER)
    assert load_model(package, trust_code=True).backend.instance.device == -1
    on_gpu = load_model(package, trust_code=True, device=Device("GPU", 3))
    assert on_gpu.backend.instance.device == 3
    # A child gets no device; as Esri's wrapper does, its GPU is made PyTorch's current one first, which needs CUDA.
    pytest.importorskip("torch")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")  # restored after the test
    child = function_package(tmp_path, "Child", CHILD)
    with pytest.raises(DeviceError, match="sees no CUDA GPU"):
        load_model(child, trust_code=True, device=Device("GPU", 0))
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    load_model(child, trust_code=True)  # the CPU asks nothing of CUDA
