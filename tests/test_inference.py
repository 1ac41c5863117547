"""Model outputs, normalisation and test-time augmentation, computed by hand and compared."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geoclassify.model.backends import to_probabilities
from geoclassify.model.emd import parse_emd
from geoclassify.model.preprocess import Preprocessor
from geoclassify.model.runtime import load_model

from tests.support import emd_for, write_dlpk
from tests.support.onnx_models import expected_scores, flat_linear_model, mean_linear_model
from tests.support.reference import imagenet, softmax


def test_probabilities_logits_and_auto():
    logits = np.array([[2.0, -1.0], [0.1, 0.3]])
    np.testing.assert_allclose(to_probabilities(logits, "logits"), softmax(logits))
    np.testing.assert_allclose(to_probabilities(logits, None), softmax(logits))
    probs = np.array([[0.9, 0.1], [0.25, 0.75]])
    np.testing.assert_allclose(to_probabilities(probs, None), probs)
    np.testing.assert_allclose(to_probabilities(probs, "logits"), softmax(probs))
    np.testing.assert_allclose(to_probabilities(probs, "probabilities"), probs)


def test_imagenet_normalisation_matches_arcgis_learn():
    definition = parse_emd(emd_for())
    chips = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 4, 4)).astype("float32")
    np.testing.assert_allclose(
        Preprocessor.for_model(definition, [0, 1, 2])(chips), imagenet(chips), rtol=1e-5, atol=1e-5
    )


def test_normalization_stats_are_indexed_by_extract_bands():
    stats = {
        "band_min_values": [0, 10, 100, 1000],
        "band_max_values": [1, 20, 300, 5000],
        "scaled_mean_values": [0.1, 0.2, 0.3, 0.4],
        "scaled_std_values": [0.5, 0.6, 0.7, 0.8],
    }
    definition = parse_emd(emd_for(ExtractBands=[3, 1], NormalizationStats=stats))
    chips = np.random.default_rng(1).uniform(0, 5000, size=(2, 2, 3, 3)).astype("float32")
    got = Preprocessor.for_model(definition, [3, 1])(chips)
    for channel, band in enumerate([3, 1]):
        scaled = (chips[:, channel] - stats["band_min_values"][band]) / (
            stats["band_max_values"][band] - stats["band_min_values"][band]
        )
        want = (scaled - stats["scaled_mean_values"][band]) / stats["scaled_std_values"][band]
        np.testing.assert_allclose(got[:, channel], want, rtol=1e-5, atol=1e-4)


def test_data_range_clips_before_normalising():
    definition = parse_emd(emd_for(DataRange=[10, 200]))
    chips = np.array([0, 5, 100, 250], dtype="float32").reshape(1, 1, 2, 2).repeat(3, axis=1)
    got = Preprocessor.for_model(definition, [0, 1, 2])(chips)
    np.testing.assert_allclose(got, imagenet(np.clip(chips, 10, 200)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("data_range", [None, [10, 200]])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_chips_in_the_rasters_own_type_normalise_as_float32_ones(dtype, data_range):
    """Chips keep the raster's type up to normalisation, which must give what the same values as float32 give, and
    leave the caller's chips as they were."""
    extra = {"DataRange": data_range} if data_range else {}
    preprocess = Preprocessor.for_model(parse_emd(emd_for(**extra)), [0, 1, 2])
    chips = np.random.default_rng(2).integers(0, 256, size=(3, 3, 5, 5)).astype(dtype)
    kept = chips.copy()
    got = preprocess(chips, in_place=True)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(chips, kept)
    np.testing.assert_allclose(got, preprocess(chips.astype(np.float32)), rtol=1e-6, atol=1e-6)


def test_imagenet_needs_three_bands():
    with pytest.raises(Exception, match="Add NormalizationStats"):
        Preprocessor.for_model(parse_emd(emd_for(ExtractBands=[0])), [0])


def _flat_model(tmp_path, space, size=8):
    rng = np.random.default_rng(5)
    weights = rng.normal(size=(3, 3 * size * size)).astype("float32")
    model_path = flat_linear_model(tmp_path / "model.onnx", weights, np.zeros(3), 3, size, size)
    classes = [{"Value": i, "Name": n} for i, n in enumerate("ABC")]
    emd = emd_for(ImageWidth=size, ImageHeight=size, ImageSpaceUsed=space, Classes=classes)
    return write_dlpk(tmp_path / "flat.dlpk", emd, model_path), weights


@pytest.mark.parametrize(("space", "views"), [("MAP_SPACE", 8), ("PIXEL_SPACE", 2)])
def test_test_time_augmentation_averages_the_esri_transform_set(tmp_path, space, views):
    package, weights = _flat_model(tmp_path, space)
    chips = np.random.default_rng(2).normal(size=(5, 3, 8, 8)).astype("float32")
    model = load_model(package, {"test_time_augmentation": "true", "batch_size": "2"})
    variants = []
    for k in range(4):
        for flip in (False, True):
            if space == "PIXEL_SPACE" and k:
                continue
            view = np.rot90(chips, k, axes=(2, 3))
            variants.append(view[..., ::-1] if flip else view)
    assert len(variants) == views
    want = np.mean([softmax(v.reshape(5, -1) @ weights.T) for v in variants], axis=0)
    np.testing.assert_allclose(model.predict(chips), want, rtol=1e-5, atol=1e-6)
    plain = load_model(package).predict(chips)
    np.testing.assert_allclose(plain, softmax(chips.reshape(5, -1) @ weights.T), rtol=1e-5, atol=1e-6)


def test_fixed_batch_models_and_argument_defaults(tmp_path):
    path = mean_linear_model(tmp_path / "fixed.onnx", np.eye(2, 3), np.array([0.5, -0.5]), 3, 16, 16, batch=4)
    package = write_dlpk(tmp_path / "fixed.dlpk", emd_for(model_file="fixed.onnx"), path)
    model = load_model(package)
    assert model.batch_size == 4  # the model fixes it
    chips = np.random.default_rng(3).normal(size=(7, 3, 16, 16)).astype("float32")
    np.testing.assert_allclose(
        model.predict(chips), softmax(expected_scores(chips, np.eye(2, 3), [0.5, -0.5])), rtol=1e-5
    )
    dynamic = mean_linear_model(tmp_path / "dyn.onnx", np.eye(2, 3), np.zeros(2), 3, 16, 16)
    with_batch = write_dlpk(tmp_path / "b.dlpk", emd_for(model_file="dyn.onnx", BatchSize=32), dynamic)
    assert load_model(with_batch).batch_size == 32
    without = write_dlpk(tmp_path / "n.dlpk", emd_for(model_file="dyn.onnx"), dynamic)
    assert load_model(without).batch_size == 16


def test_softmax_model_output_is_not_softmaxed_twice(tmp_path):
    path = mean_linear_model(tmp_path / "sm.onnx", np.eye(2, 3) * 3, np.zeros(2), 3, 16, 16, softmax=True)
    package = write_dlpk(tmp_path / "sm.dlpk", emd_for(model_file="sm.onnx"), path)
    chips = np.random.default_rng(4).normal(size=(3, 3, 16, 16)).astype("float32") * 5
    want = softmax(expected_scores(chips, np.eye(2, 3) * 3, np.zeros(2)))
    np.testing.assert_allclose(load_model(package).predict(chips), want, rtol=1e-5)
    assert json.loads(json.dumps(load_model(package).arguments)) == {"batch_size": 16, "test_time_augmentation": False}


def test_onnx_runs_large_chips_in_calls_that_keep_each_chips_scores(tmp_path):
    """A batch of large chips goes to ONNX Runtime a few chips a call, each call's chips normalised just before it
    (they then stay nearer the core: 16% more chips/s for a plain CNN at 224 px); every chip keeps its own scores,
    in order. A model with a fixed batch is not sliced, as every call would be padded to that batch."""
    from geoclassify.model.backends.base import CPU_PIXELS_PER_CALL

    size = 224
    weights = np.random.default_rng(4).normal(size=(2, 3 * size * size)).astype("float32") / 100
    path = flat_linear_model(tmp_path / "flat.onnx", weights, np.array([0.5, -0.5]), 3, size, size)
    emd = emd_for(model_file="flat.onnx", ImageHeight=size, ImageWidth=size, BatchSize=11)
    model = load_model(write_dlpk(tmp_path / "flat.dlpk", emd, path))
    calls: list[int] = []
    session = model.backend.session

    class Recording:
        def run(self, names, feeds):
            calls.append(len(next(iter(feeds.values()))))
            return session.run(names, feeds)

    model.backend.session = Recording()
    chips = np.random.default_rng(5).integers(0, 256, size=(11, 3, size, size)).astype("uint8")
    labels, confidence = model.classify(chips, np.ones(11, bool), (0, 1, 2))
    per_call = CPU_PIXELS_PER_CALL // (size * size)
    assert calls == [per_call, per_call, 11 - 2 * per_call]
    normalised = model._preprocessors[(0, 1, 2)](chips)
    expected = softmax(normalised.reshape(11, -1) @ weights.T + [0.5, -0.5])
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))
    np.testing.assert_allclose(confidence, expected.max(axis=1), rtol=1e-4)

    fixed = mean_linear_model(tmp_path / "fixed.onnx", np.eye(2, 3), np.zeros(2), 3, size, size, batch=8)
    fixed_emd = emd_for(model_file="fixed.onnx", ImageHeight=size, ImageWidth=size)
    model = load_model(write_dlpk(tmp_path / "fixed.dlpk", fixed_emd, fixed))
    calls.clear()
    session = model.backend.session
    model.backend.session = Recording()
    model.classify(chips[:8], np.ones(8, bool), (0, 1, 2))
    assert calls == [8]
