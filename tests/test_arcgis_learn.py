"""arcgis.learn FeatureClassifier packages in the default install: the .pth read without torch and without running
it, the fastai network rebuilt as ONNX, and its answers equal to the same network in torch (fastai_networks.py)."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import onnx
import pytest
import shapely

from geoclassify import classify_objects
from geoclassify.errors import ModelMismatchError, ModelPackageError, UnsupportedModelError
from geoclassify.model.backends.arcgis_learn.export import write_onnx_package
from geoclassify.model.backends.arcgis_learn.graph import build_graph, identify
from geoclassify.model.backends.arcgis_learn.pth import LEGACY_MAGIC, LEGACY_PROTOCOL, read_pth
from geoclassify.model.runtime import load_model

from tests.support import run_classify, run_cli, write_dlpk, write_raster
from tests.support.reference import imagenet, reference_chips

X, Y = 500000.0, 4650000.0
SIZE = 64  # resnets and mobilenet_v2 end at 1/32 of it: 2 x 2, so max and average pooling differ
CURRENT = {
    "Framework": "arcgis.learn.models._inferencing",
    "ModelConfiguration": "_FeatureClassifier",
    "InferenceFunction": "ArcGISObjectClassifier.py",
}
LEGACY = {"Framework": "PyTorch", "ModelConfiguration": "FeatureClassifier", "InferenceFunction": "ObjectClassifier.py"}
#: Stands in for Esri's wrapper: running it would leave a marker (and it needs arcpy, as Esri's does).
WRAPPER = "open(__file__ + '.ran', 'w').close()\nimport arcpy\n"
STATS = {  # NormalizationStats for 4 bands, as arcgis.learn writes them for multispectral data
    "band_min_values": [0.0, 0.0, 0.0, 0.0],
    "band_max_values": [255.0, 255.0, 255.0, 255.0],
    "band_mean_values": [110.0, 120.0, 100.0, 90.0],
    "band_std_values": [50.0, 55.0, 45.0, 40.0],
    "scaled_min_values": [0.0, 0.0, 0.0, 0.0],
    "scaled_max_values": [1.0, 1.0, 1.0, 1.0],
    "scaled_mean_values": [0.43, 0.47, 0.39, 0.35],
    "scaled_std_values": [0.2, 0.22, 0.18, 0.16],
}


@pytest.fixture(scope="module")
def nets():
    """The torch reference networks (torch but no torchvision needed)."""
    pytest.importorskip("torch")
    from tests.support import fastai_networks

    return fastai_networks


def save_pth(net, path: Path, legacy: bool = True, prefix: str = "", with_opt: bool = False) -> Path:
    """Save as fastai's learn.save does (torch's pre-1.6 format by default), optionally with the optimizer."""
    import torch

    state = {prefix + key: value for key, value in net.state_dict().items()}
    if with_opt:
        state = {"model": state, "opt": {"state": {}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.99)}]}}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def emd(
    backbone: str, classes: int, bands: int = 3, dialect: dict | None = None, multi_label: bool = False, **keys
) -> dict:
    names = ["Intact", "Damaged", "Destroyed", "Roofless", "Tarped"][:classes]
    definition = {
        **(dialect or CURRENT),
        "ModelType": "ObjectClassification",
        "ModelFile": "model.pth",
        "ImageHeight": SIZE,
        "ImageWidth": SIZE,
        "ExtractBands": list(range(bands)),
        "CropSizeFixed": 1,
        "BlackenAroundFeature": 0,
        "ImageSpaceUsed": "MAP_SPACE",
        "MetaDataMode": "MultiLabeled_Tiles" if multi_label else "Labeled_Tiles",
        "ModelParameters": {"backbone": backbone, "backend": "pytorch"},
        "ArcGISLearnVersion": "2.0.1",
        "Classes": [{"Value": i if multi_label else i + 1, "Name": n, "Color": [0, 0, 0]} for i, n in enumerate(names)],
        **({"IsMultispectral": True, "NormalizationStats": STATS} if bands == 4 else {}),
    }
    definition.update(keys)
    return definition


def package_folder(folder: Path, net, definition: dict, **save) -> Path:
    """A model folder as arcgis.learn saves it: the .emd, the .pth and Esri's wrapper; returns the .emd."""
    folder.mkdir(parents=True, exist_ok=True)
    save_pth(net, folder / "model.pth", **save)
    (folder / definition["InferenceFunction"]).write_text(WRAPPER)
    (folder / "model.emd").write_text(json.dumps(definition))
    return folder / "model.emd"


def normalised(chips: np.ndarray, bands: int) -> np.ndarray:
    """What arcgis.learn feeds the network: ImageNet statistics on 0-255, or NormalizationStats per band."""
    if bands == 3:
        return imagenet(chips)
    low, high = np.array(STATS["band_min_values"]), np.array(STATS["band_max_values"])
    mean, std = np.array(STATS["scaled_mean_values"]), np.array(STATS["scaled_std_values"])
    scaled = (chips - low[None, :, None, None]) / (high - low)[None, :, None, None]
    return ((scaled - mean[None, :, None, None]) / std[None, :, None, None]).astype("float32")


@pytest.mark.parametrize(
    ("backbone", "bands", "multi_label", "save"),
    [
        ("resnet18", 3, False, {"legacy": True}),
        ("resnet34", 4, True, {"legacy": False}),
        ("resnet50", 3, False, {"legacy": True, "prefix": "module.", "with_opt": True}),
        ("mobilenet_v2", 4, True, {"legacy": True}),
        ("mobilenet_v2", 3, False, {"legacy": False, "with_opt": True}),
    ],
)
def test_the_onnx_network_answers_as_the_torch_one(nets, tmp_path, backbone, bands, multi_label, save):
    classes = 4
    net = nets.cnn_learner_model(backbone, bands, classes, seed=len(backbone) + bands)
    definition = emd(backbone, classes, bands, multi_label=multi_label)
    model = load_model(package_folder(tmp_path, net, definition, **save))
    chips = np.random.default_rng(3).integers(0, 256, (6, bands, SIZE, SIZE)).astype("float32")
    expected = nets.reference_probabilities(net, normalised(chips, bands), multi_label)
    labels, confidence = model.classify(chips, np.ones((6, SIZE, SIZE), bool), tuple(range(bands)))
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))
    if multi_label:
        np.testing.assert_allclose(confidence, expected, atol=1e-4)
    else:
        np.testing.assert_allclose(confidence, expected.max(axis=1), atol=1e-4)
    assert model.backend.describe()["backbone"] == backbone


@pytest.mark.parametrize(("backbone", "convs"), [("resnet101", 104), ("resnet152", 155)])
def test_deep_resnets_are_rebuilt_from_their_shapes(nets, backbone, convs):
    body, nf = nets.resnet_body(backbone, 3)
    state = {k: v.numpy() for k, v in nets.torch.nn.Sequential(body, nets.fastai_head(nf, 3)).state_dict().items()}
    network = identify(state, "test")
    assert (network.backbone, network.bands, network.classes) == (backbone, 3, 3)
    graph = build_graph(state, network, False, SIZE, SIZE, "test").graph
    assert sum(node.op_type == "Conv" for node in graph.node) == convs  # every conv, downsamples included
    assert not any(node.op_type in ("BatchNormalization", "Dropout") for node in graph.node)  # folded, eval mode


def test_pth_reader_gives_what_torch_load_gives(nets, tmp_path):
    torch = nets.torch
    state = {
        "weight": torch.randn(4, 3, 3, 3),
        "transposed": torch.randn(5, 7).t(),  # not contiguous
        "sliced": torch.arange(40, dtype=torch.float64).reshape(8, 5)[2:6, 1:4],  # an offset into its storage
        "half": torch.randn(6).half(),
        "bfloat": torch.randn(6).bfloat16(),
        "count": torch.tensor(7),
        "mask": torch.tensor([True, False]),
    }
    for legacy in (True, False):
        path = tmp_path / f"state-{legacy}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        read = read_pth(path)
        for key, tensor in state.items():
            np.testing.assert_array_equal(read[key], tensor.float().numpy() if key == "bfloat" else tensor.numpy())
            assert read[key].shape == tuple(tensor.shape)


class Hostile:
    """A pickle that runs a shell command when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def hostile_pth(path: Path, marker: Path, legacy: bool) -> Path:
    """Weights whose pickle calls os.system, in either of torch's layouts (no torch needed to write them)."""
    payload = {"0.0.weight": Hostile(marker)}
    if legacy:
        info = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True, "type_sizes": {}}
        path.write_bytes(b"".join(pickle.dumps(v, protocol=2) for v in (LEGACY_MAGIC, LEGACY_PROTOCOL, info, payload)))
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("model/data.pkl", pickle.dumps(payload, protocol=2))
            archive.writestr("model/byteorder", "little")
    return path


@pytest.mark.parametrize("legacy", [True, False])
def test_a_hostile_pth_is_refused_without_running_anything(tmp_path, legacy):
    marker = tmp_path / "ran"
    weights = hostile_pth(tmp_path / "model.pth", marker, legacy)
    with pytest.raises(ModelPackageError, match=r"refusing to load these weights: the pickle asks for posix\.system"):
        read_pth(weights)
    if legacy:  # the format fastai writes, as a user meets it
        package = write_dlpk(tmp_path / "hostile.dlpk", emd("resnet18", 2), weights)
        result = run_cli("inspect", package)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "hostile.dlpk (hostile.emd): model.pth: refusing to load these weights" in result.stderr
        assert "Nothing of it was run" in result.stderr
    assert not marker.exists()


def test_weights_that_disagree_with_the_emd_are_named(nets, tmp_path):
    net = nets.cnn_learner_model("resnet18", 3, 3)
    cases = [
        (emd("resnet34", 3), "ModelParameters.backbone is 'resnet34' but model.pth holds a resnet18"),
        (emd("resnet18", 2), r"the last layer of model.pth \(1.8\) gives 3 classes but the EMD lists 2 Classes"),
        (emd("resnet18", 3, ExtractBands=[0, 1, 2, 3]), "takes 3 bands but ExtractBands selects 4"),
    ]
    for number, (definition, message) in enumerate(cases):
        with pytest.raises(ModelMismatchError, match=message):
            load_model(package_folder(tmp_path / str(number), net, definition))


@pytest.mark.parametrize("backbone", ["timm:convnext_tiny", "vit_b_16"])
def test_backbones_that_cannot_be_rebuilt_say_what_to_do(tmp_path, backbone):
    (tmp_path / "model.pth").write_bytes(b"never read")
    (tmp_path / "model.emd").write_text(json.dumps(emd(backbone, 2)))
    with pytest.raises(UnsupportedModelError) as raised:
        load_model(tmp_path / "model.emd")
    message = str(raised.value)
    assert f"backbone {backbone!r}" in message
    assert "torch.onnx.export(m.learn.model.eval(), torch.zeros(1, 3, 64, 64), 'model.onnx'" in message
    assert "geoclassify package" in message


def test_conversion_is_made_once_per_content(nets, tmp_path):
    net = nets.cnn_learner_model("mobilenet_v2", 3, 2)
    first = load_model(package_folder(tmp_path / "a", net, emd("mobilenet_v2", 2)))
    assert first.backend.conversion.seconds > 0
    renamed = emd("mobilenet_v2", 2, Classes=[{"Value": 5, "Name": "Yes"}, {"Value": 6, "Name": "No"}])
    again = load_model(package_folder(tmp_path / "b", net, renamed))  # same weights elsewhere, other class names
    assert again.backend.conversion.seconds == 0 and again.backend.conversion.onnx == first.backend.conversion.onnx
    other = load_model(package_folder(tmp_path / "c", nets.cnn_learner_model("mobilenet_v2", 3, 2, seed=9), renamed))
    assert other.backend.conversion.onnx != first.backend.conversion.onnx
    assert not list(first.backend.conversion.onnx.parent.glob(".*"))  # no temporary file left


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    """A 3-band raster and 12 points whose fixed 32 px chips lie inside it."""
    folder = tmp_path_factory.mktemp("arcgis_learn")
    rng = np.random.default_rng(11)
    raster = write_raster(folder / "scene.tif", rng.integers(0, 256, (3, 160, 160), dtype=np.uint8))
    spots = [shapely.Point(X + x, Y - y) for x, y in rng.uniform(10, 70, size=(12, 2))]
    gpd.GeoDataFrame({"id": range(12)}, geometry=spots, crs="EPSG:32633").to_file(folder / "points.gpkg")
    return raster, folder / "points.gpkg", spots


def test_cli_classifies_a_current_dialect_dlpk_without_running_its_wrapper(nets, points, tmp_path):
    raster, features, spots = points
    net = nets.cnn_learner_model("resnet34", 3, 3, seed=4)
    weights = save_pth(net, tmp_path / "model.pth", legacy=True)
    wrapper = {"ArcGISObjectClassifier.py": WRAPPER}
    package = write_dlpk(tmp_path / "damage.dlpk", emd("resnet34", 3), weights, extra=wrapper)
    out = tmp_path / "out.gpkg"
    result = run_classify(raster, package, features, out)  # no --trust-code
    assert result.returncode == 0, result.stderr
    expected = nets.reference_probabilities(net, imagenet(reference_chips(raster, spots, SIZE, [0, 1, 2], False)))
    got = gpd.read_file(out)
    names = np.array(["Intact", "Damaged", "Destroyed"])
    assert list(got["ClassLabel"]) == list(names[expected.argmax(axis=1)])
    np.testing.assert_allclose(got["Confidence"], expected.max(axis=1), atol=1e-4)
    cache = Path(os.environ["GEOCLASSIFY_CACHE_DIR"])
    assert list(cache.rglob("ArcGISObjectClassifier.py")) and not list(cache.rglob("*.ran"))  # there, never run
    info = json.loads(run_cli("inspect", package, "--json").stdout)
    assert info["runtime"]["backbone"] == "resnet34" and info["runtime"]["dialect"] == "current"
    assert [c["name"] for c in info["classes"]] == list(names)


def test_multi_label_labels_are_the_classes_reaching_the_threshold(nets, points, tmp_path):
    raster, features, spots = points
    net = nets.cnn_learner_model("mobilenet_v2", 3, 3, seed=2)
    package = package_folder(tmp_path, net, emd("mobilenet_v2", 3, dialect=LEGACY, multi_label=True))
    expected = nets.reference_probabilities(
        net, imagenet(reference_chips(raster, spots, SIZE, [0, 1, 2], False)), multi_label=True
    )
    names = np.array(["Intact", "Damaged", "Destroyed"])
    threshold = 0.49  # not the default 0.5, which would label feature 2 otherwise
    got = classify_objects(raster, package, features, arguments={"score_threshold": str(threshold)})
    labels = list(got["ClassLabel"])
    assert labels == [";".join(names[p >= threshold]) for p in expected]
    assert labels != [";".join(names[p >= 0.5]) for p in expected]
    assert "" in labels and any(";" in label for label in labels)  # no class, and several, both occur
    shown = np.array([[float(v) for v in text.split(";")] for text in got["Confidence"]])
    np.testing.assert_allclose(shown, expected, atol=1e-4)
    assert got["ClassValue"].isna().all()


def test_convert_writes_an_onnx_package_of_the_same_model(nets, points, tmp_path):
    raster, features, spots = points
    net = nets.cnn_learner_model("resnet18", 3, 2, seed=5)
    original = package_folder(tmp_path / "learn", net, emd("resnet18", 2, dialect=LEGACY))
    converted = tmp_path / "onnx.dlpk"
    made = run_cli("convert", original, "--out", converted)
    assert made.returncode == 0, made.stderr
    with zipfile.ZipFile(converted) as archive:
        written = json.loads(archive.read("onnx.emd"))
        assert sorted(archive.namelist()) == ["model.onnx", "onnx.emd"]
        onnx.checker.check_model(onnx.load_from_string(archive.read("model.onnx")))
    assert written["Framework"] == "ONNX" and "InferenceFunction" not in written
    assert written["ModelOutput"] == "probabilities" and written["ModelParameters"]["backbone"] == "resnet18"
    before = classify_objects(raster, original, features)
    after = classify_objects(raster, converted, features)
    assert list(after["ClassLabel"]) == list(before["ClassLabel"])
    np.testing.assert_allclose(after["Confidence"], before["Confidence"], atol=1e-6)
    with pytest.raises(UnsupportedModelError, match="not an arcgis.learn FeatureClassifier package"):
        write_onnx_package(converted, tmp_path / "twice.dlpk")
