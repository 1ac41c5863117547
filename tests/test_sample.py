"""The bundled sample end to end, and the sample model on a fresh scene against an independent reference."""

from __future__ import annotations

import zipfile

import geopandas as gpd
import numpy as np
import onnxruntime as ort
import pytest

from geoclassify.sample import DATA_DIR, MODEL
from geoclassify.sample.synthetic import make_scene, write_scene

from tests.support import run_classify, run_cli
from tests.support.reference import imagenet, reference_chips, softmax


@pytest.fixture(scope="module")
def fresh_scene(tmp_path_factory):
    """A scene the model never saw (seed 4242 is outside the training, evaluation and bundled seeds)."""
    folder = tmp_path_factory.mktemp("fresh")
    scene = make_scene(seed=4242, size=1024)
    write_scene(scene, folder / "ortho.tif", folder / "houses.gpkg")
    return folder, scene


def reference_probabilities(raster, geometries, shift=(0, 0)) -> np.ndarray:
    with zipfile.ZipFile(DATA_DIR / MODEL) as archive:
        session = ort.InferenceSession(archive.read("roof-damage.onnx"), providers=["CPUExecutionProvider"])
    chips = imagenet(reference_chips(raster, geometries, 64, [0, 1, 2], blacken=True, shift=shift))
    return softmax(session.run(None, {"input": chips})[0])


def test_sample_command_then_classify(tmp_path):
    copied = run_cli("sample", tmp_path / "demo")
    assert copied.returncode == 0, copied.stderr
    demo = tmp_path / "demo"
    out = demo / "houses-classified.gpkg"
    result = run_classify(demo / "orthophoto.tif", demo / "roof-damage.dlpk", demo / "houses.gpkg", out)
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    assert len(got) == len(gpd.read_file(demo / "houses.gpkg"))
    assert (got["ClassLabel"] == got["Truth"]).mean() >= 0.95
    assert "classified" in result.stderr and "features/s" in result.stderr


def test_fresh_scene_matches_the_reference_and_a_shifted_chip_would_not(fresh_scene, tmp_path):
    folder, scene = fresh_scene
    out = tmp_path / "labels.gpkg"
    result = run_classify(
        folder / "ortho.tif", DATA_DIR / MODEL, folder / "houses.gpkg", out, "--argument", "batch_size=37"
    )
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(out)
    truth = scene.houses["Truth"].to_numpy()
    accuracy = (got["ClassLabel"].to_numpy() == truth).mean()
    probs = reference_probabilities(folder / "ortho.tif", scene.houses.geometry)
    reference_labels = np.array(["Intact", "Damaged"])[probs.argmax(axis=1)]
    reference_accuracy = (reference_labels == truth).mean()
    print(f"fresh scene: {len(truth)} houses, geoclassify accuracy {accuracy:.3f}, reference {reference_accuracy:.3f}")
    assert reference_accuracy >= 0.9
    assert accuracy >= reference_accuracy
    assert list(got["ClassLabel"]) == list(reference_labels)
    np.testing.assert_allclose(got["Confidence"], probs.max(axis=1), atol=1e-4)
    # The same comparison against chips cut 3 pixels off would fail: the check can tell misaligned chips apart.
    shifted = reference_probabilities(folder / "ortho.tif", scene.houses.geometry, shift=(3, -3))
    assert np.mean(np.abs(shifted[np.arange(len(got)), probs.argmax(axis=1)] - got["Confidence"]) > 1e-4) > 0.5
