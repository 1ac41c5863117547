"""More model forms: TorchScript, a self-describing .onnx, `geoclassify package`, and Esri dialects refused
with the way to convert them. Each through the CLI, with `inspect`."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import geopandas as gpd
import numpy as np
import onnx
import pytest
import shapely

from tests.support import emd_for, leftovers, run_classify, run_cli, write_dlpk, write_raster
from tests.support.onnx_models import mean_linear_model

X, Y = 500000.0, 4650000.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frameworks")
    rng = np.random.default_rng(21)
    raster = write_raster(folder / "scene.tif", rng.integers(0, 255, (3, 200, 200), dtype=np.uint8))
    boxes = [shapely.box(X + x, Y - y - 4, X + x + 4, Y - y) for x, y in rng.uniform(5, 90, size=(40, 2))]
    gpd.GeoDataFrame({"id": range(40)}, geometry=boxes, crs="EPSG:32633").to_file(folder / "houses.gpkg")
    return folder, raster, folder / "houses.gpkg"


def labels_of(path):
    got = gpd.read_file(path)
    return list(got["ClassLabel"]), got["Confidence"].to_numpy()


def tiny_cnn(seed: int = 0):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    ).eval()


def test_torchscript_matches_the_same_network_in_onnx(scene, tmp_path):
    torch = pytest.importorskip("torch")
    folder, raster, houses = scene
    net = tiny_cnn()
    example = torch.zeros(1, 3, 16, 16)
    torch.jit.save(torch.jit.trace(net, example), str(tmp_path / "net.pt"))
    torch.onnx.export(
        net,
        example,
        str(tmp_path / "net.onnx"),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}},
        dynamo=False,
    )
    script = write_dlpk(
        tmp_path / "script.dlpk",
        emd_for(model_file="net.pt", Framework="PyTorch", ModelConfiguration="FeatureClassifier"),
        tmp_path / "net.pt",
    )
    onnx_pkg = write_dlpk(tmp_path / "onnx.dlpk", emd_for(model_file="net.onnx"), tmp_path / "net.onnx")
    for package, name in ((script, "script.gpkg"), (onnx_pkg, "onnx.gpkg")):
        result = run_classify(raster, package, houses, tmp_path / name, "--argument", "test_time_augmentation=true")
        assert result.returncode == 0, result.stderr
    script_labels, script_conf = labels_of(tmp_path / "script.gpkg")
    onnx_labels, onnx_conf = labels_of(tmp_path / "onnx.gpkg")
    assert script_labels == onnx_labels
    np.testing.assert_allclose(script_conf, onnx_conf, atol=1e-5)
    assert np.ptp(script_conf) > 1e-3  # the chips differ, so a constant answer would show
    shown = run_cli("inspect", script)
    assert shown.returncode == 0, shown.stderr
    assert "PyTorch" in shown.stdout and "TorchScript" in shown.stdout and "batch_size" in shown.stdout


def test_torchscript_errors(scene, tmp_path):
    torch = pytest.importorskip("torch")
    folder, raster, houses = scene
    torch.save(tiny_cnn().state_dict(), str(tmp_path / "weights.pt"))
    weights = write_dlpk(
        tmp_path / "weights.dlpk",
        emd_for(model_file="weights.pt", Framework="PyTorch", ModelConfiguration="MyNet"),
        tmp_path / "weights.pt",
    )
    result = run_classify(raster, weights, houses, tmp_path / "out.gpkg")
    assert result.returncode == 1 and "not a TorchScript file" in result.stderr and "torch.jit.trace" in result.stderr
    torch.jit.save(torch.jit.trace(tiny_cnn(), torch.zeros(1, 3, 16, 16)), str(tmp_path / "net.pt"))
    three = [*emd_for()["Classes"], {"Value": 3, "Name": "Gone"}]
    wrong = write_dlpk(
        tmp_path / "three.dlpk", emd_for(model_file="net.pt", Framework="PyTorch", Classes=three), tmp_path / "net.pt"
    )
    result = run_classify(raster, wrong, houses, tmp_path / "out.gpkg")
    assert result.returncode == 1 and "outputs 2 classes but the EMD lists 3" in result.stderr
    assert not leftovers(tmp_path, "out")


def test_missing_torch_extra_is_named(scene, tmp_path):
    folder, raster, houses = scene
    (tmp_path / "net.pt").write_bytes(b"not read: torch is missing")
    package = write_dlpk(tmp_path / "t.dlpk", emd_for(model_file="net.pt", Framework="PyTorch"), tmp_path / "net.pt")
    code = (
        "import sys; sys.modules['torch'] = None; from geoclassify.cli import main; "
        f"sys.exit(main(['inspect', {str(package)!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "needs PyTorch, which is not installed" in result.stderr and "geoclassify[torch]" in result.stderr


def self_describing_onnx(path, **metadata):
    model_path = mean_linear_model(path, np.array([[1, 0, 0], [0, 1, 0]]), np.zeros(2), 3, 16, 16)
    model = onnx.load(str(model_path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))
    return path


def test_a_bare_onnx_describes_itself(scene, tmp_path):
    folder, raster, houses = scene
    classes = [{"Value": 10, "Name": "Red roof", "Color": [200, 0, 0]}, {"Value": 20, "Name": "Green roof"}]
    bare = self_describing_onnx(
        tmp_path / "bare.onnx",
        Classes=classes,
        ExtractBands=[0, 1, 2],
        CropSizeFixed=1,
        BlackenAroundFeature=1,
        ModelName="Roofs",
    )
    packaged = write_dlpk(
        tmp_path / "same.dlpk", emd_for(model_file="bare.onnx", Classes=classes, BlackenAroundFeature=1), bare
    )
    assert run_classify(raster, bare, houses, tmp_path / "bare.gpkg").returncode == 0
    assert run_classify(raster, packaged, houses, tmp_path / "same.gpkg").returncode == 0
    assert labels_of(tmp_path / "bare.gpkg")[0] == labels_of(tmp_path / "same.gpkg")[0]
    assert set(gpd.read_file(tmp_path / "bare.gpkg")["ClassValue"]) <= {10, 20}
    info = json.loads(run_cli("inspect", bare, "--json").stdout)
    assert info["model_name"] == "Roofs" and info["blacken_around_feature"] is True
    assert info["chip_size"] == {"height": 16, "width": 16}  # from the model's input shape
    assert [c["name"] for c in info["classes"]] == ["Red roof", "Green roof"]
    silent = self_describing_onnx(tmp_path / "silent.onnx")
    result = run_cli("inspect", silent)
    assert result.returncode == 1 and "must describe its classes" in result.stderr


def test_package_command_round_trips_through_inspect(scene, tmp_path):
    folder, raster, houses = scene
    model = mean_linear_model(tmp_path / "roofs.onnx", np.array([[1, 0, 0], [0, 1, 0]]), np.zeros(2), 3, 24, 24)
    stats = {
        "band_min_values": [0, 0, 0],
        "band_max_values": [255, 255, 255],
        "scaled_mean_values": [0.5, 0.5, 0.5],
        "scaled_std_values": [0.25, 0.25, 0.25],
    }
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    (tmp_path / "base.json").write_text(json.dumps({"ModelName": "from-file", "CropSizeFixed": 1}))
    out = tmp_path / "roofs.dlpk"
    result = run_cli(
        "package",
        model,
        "--out",
        out,
        "--emd",
        tmp_path / "base.json",
        "--classes",
        "Intact,Damaged",
        "--class-values",
        "0,1",
        "--bands",
        "2,1,0",
        "--crop",
        "envelope",
        "--blacken",
        "--normalization-stats",
        tmp_path / "stats.json",
        "--model-output",
        "logits",
        "--name",
        "Roofs",
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["roofs.emd", "roofs.onnx"]
        emd = json.loads(archive.read("roofs.emd"))
    assert (
        emd["Framework"] == "ONNX" and emd["ModelType"] == "ObjectClassification" and emd["ModelFile"] == "roofs.onnx"
    )
    assert emd["ImageWidth"] == 24 and emd["ImageHeight"] == 24 and emd["ExtractBands"] == [2, 1, 0]
    assert emd["CropSizeFixed"] == 0 and emd["BlackenAroundFeature"] == 1 and emd["ModelName"] == "Roofs"
    assert emd["Classes"][0] == {"Value": 0, "Name": "Intact", "Color": [56, 168, 0]}
    assert all(isinstance(emd[k], int) for k in ("ImageWidth", "ImageHeight", "CropSizeFixed", "BlackenAroundFeature"))
    info = json.loads(run_cli("inspect", out, "--json").stdout)
    assert info["chip_size"] == {"height": 24, "width": 24} and info["extract_bands"] == [2, 1, 0]
    assert info["crop_size_fixed"] is False and info["blacken_around_feature"] is True
    assert info["normalisation"]["kind"] == "NormalizationStats" and info["model_output"] == "logits"
    assert [(c["value"], c["name"]) for c in info["classes"]] == [(0, "Intact"), (1, "Damaged")]
    assert run_classify(raster, out, houses, tmp_path / "labels.gpkg").returncode == 0
    # A package that cannot run is not written: three classes for a two-output model.
    bad = run_cli("package", model, "--out", tmp_path / "bad.dlpk", "--classes", "a,b,c")
    assert bad.returncode == 1 and "outputs 2 classes but the EMD lists 3" in bad.stderr
    assert not (tmp_path / "bad.dlpk").exists()
    exists = run_cli("package", model, "--out", out, "--classes", "a,b")
    assert exists.returncode == 1 and "pass --overwrite" in exists.stderr


def test_package_a_torchscript_file(scene, tmp_path):
    torch = pytest.importorskip("torch")
    folder, raster, houses = scene
    torch.jit.save(torch.jit.trace(tiny_cnn(), torch.zeros(1, 3, 16, 16)), str(tmp_path / "net.pt"))
    missing = run_cli("package", tmp_path / "net.pt", "--out", tmp_path / "net.dlpk", "--classes", "a,b")
    assert missing.returncode == 1 and "--chip-size" in missing.stderr
    made = run_cli(
        "package",
        tmp_path / "net.pt",
        "--out",
        tmp_path / "net.dlpk",
        "--classes",
        "a,b",
        "--chip-size",
        "16",
        "--bands",
        "0,1,2",
    )
    assert made.returncode == 0, made.stderr
    info = json.loads(run_cli("inspect", tmp_path / "net.dlpk", "--json").stdout)
    assert info["framework"] == "PyTorch" and info["chip_size"] == {"height": 16, "width": 16}


@pytest.mark.parametrize(
    ("emd", "fragments"),
    [
        (
            {
                "Framework": "arcgis.learn.models._inferencing",
                "ModelConfiguration": "_FeatureClassifier",
                "ModelFile": "woolsey.pth",
                "InferenceFunction": None,
                "ModelParameters": {"backbone": "resnet34"},
            },
            # Runs now (tests/test_arcgis_learn.py); weights that are not a .pth are named, in the package.
            ["dialect.dlpk (dialect.emd): woolsey.pth: not a PyTorch .pth"],
        ),
        (
            {"Framework": "PyTorch", "ModelConfiguration": "FeatureClassifier", "ModelFile": "woolseyFire_600_50.pth"},
            ["dialect.dlpk (dialect.emd): woolseyFire_600_50.pth: not a PyTorch .pth"],
        ),
        (
            {"Framework": "TensorFlow", "ModelConfiguration": "ObjectDetectionAPI", "ModelFile": ".\\frozen.pb"},
            ["Keras/TensorFlow classifier dialect", "needs TensorFlow", "tf2onnx", "resampled_image_size"],
        ),
    ],
)
def test_esri_dialects_are_named_with_a_conversion(scene, tmp_path, emd, fragments):
    folder, raster, houses = scene
    name = emd["ModelFile"].split("\\")[-1]
    (tmp_path / name).write_bytes(b"weights this version cannot read")
    package = write_dlpk(
        tmp_path / "dialect.dlpk",
        emd_for(model_file=emd["ModelFile"], **{k: v for k, v in emd.items() if k != "ModelFile"}),
        tmp_path / name,
    )
    for result in (run_classify(raster, package, houses, tmp_path / "out.gpkg"), run_cli("inspect", package)):
        assert result.returncode == 1 and "Traceback" not in result.stderr
        for fragment in fragments:
            assert fragment in result.stderr, fragment


def test_torchscript_runs_large_chips_in_calls_with_each_chips_own_scores(tmp_path):
    """TorchScript on the CPU gets a batch of large chips a few a call, as ONNX Runtime does (224-px chips four a
    call ran 1.8x as fast as whole batches of 16); the scores are those of the whole batch at once, in order."""
    torch = pytest.importorskip("torch")
    from geoclassify.model.backends.base import CPU_PIXELS_PER_CALL
    from geoclassify.model.runtime import load_model

    size = 224
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(),
        torch.nn.Linear(64, 2),
    ).eval()  # fmt: skip
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, size, size)), str(tmp_path / "net.pt"))
    emd = emd_for(
        model_file="net.pt", Framework="PyTorch", ModelConfiguration="FeatureClassifier", ImageHeight=size,
        ImageWidth=size, BatchSize=11,
    )  # fmt: skip
    model = load_model(write_dlpk(tmp_path / "script.dlpk", emd, tmp_path / "net.pt"))
    calls: list[int] = []
    module = model.backend.module

    def recording(chips):
        calls.append(len(chips))
        return module(chips)

    model.backend.module = recording
    chips = np.random.default_rng(7).integers(0, 256, size=(11, 3, size, size)).astype("uint8")
    labels, confidence = model.classify(chips, np.ones(11, bool), (0, 1, 2))
    per_call = CPU_PIXELS_PER_CALL // (size * size)
    assert calls == [per_call, per_call, 11 - 2 * per_call]
    with torch.inference_mode():
        whole = torch.softmax(net(torch.from_numpy(model._preprocessors[(0, 1, 2)](chips))), dim=1).numpy()
    np.testing.assert_array_equal(labels, whole.argmax(axis=1))
    np.testing.assert_allclose(confidence, whole.max(axis=1), rtol=1e-5)
    assert np.ptp(confidence) > 1e-4  # the chips differ, so a constant answer would show
