"""Esri model dialects: the arcgis.learn FeatureClassifier packages this version runs without their Python, and
those it recognises but cannot run, each answered with how to convert it.

A generic "unsupported" leaves a user stuck; naming the dialect and the conversion gets them moving.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import UnsupportedModelError
from ..emd import ModelDefinition
from ..packages import ModelPackage

ONNX_HINT = (
    'Then write an EMD with "Framework": "ONNX" and "ModelFile" naming the .onnx (or build a package with '
    "`geoclassify package MODEL.onnx ...`)."
)


def arcgis_learn_export(definition: ModelDefinition) -> str:
    """The one command that exports a FeatureClassifier to ONNX where arcgis.learn runs, with this EMD's chip
    shape filled in, and what to do with the file: every message that sends a user there says the same."""
    bands = len(definition.extract_bands) if definition.extract_bands is not None else "bands"
    height, width = definition.image_height or "height", definition.image_width or "width"
    return (
        "`m = arcgis.learn.FeatureClassifier.from_model(r'<the .emd>'); torch.onnx.export(m.learn.model.eval(), "
        f"torch.zeros(1, {bands}, {height}, {width}), 'model.onnx', input_names=['input'], "
        "output_names=['logits'], dynamic_axes={'input': {0: 'batch'}})`. " + ONNX_HINT
    )


#: How to convert a Keras or TensorFlow model this version cannot read itself.
TF2ONNX_RECIPE = (
    "Convert it to ONNX with tf2onnx where TensorFlow is installed: `python -m tf2onnx.convert --keras model.h5 "
    "--output model.onnx --inputs-as-nchw INPUT_NAME` (a SavedModel: `--saved-model DIR`; geoclassify feeds NCHW "
    "chips). Esri's KerasClassifier resized chips to `resampled_image_size` and did not normalise them: put that "
    "size in ImageWidth/ImageHeight and NormalizationStats of band_min_values 0, band_max_values 1, "
    "scaled_mean_values 0, scaled_std_values 1 per band. " + ONNX_HINT
)


def is_keras_h5(package: ModelPackage) -> bool:
    """Esri's KerasClassifier dialect (or any Keras 2 model) in an HDF5 file, which :mod:`.keras` converts itself."""
    framework = (package.definition.framework or "").strip().lower()
    return _suffix(package.definition) == ".h5" and framework in ("keras", "tensorflow", "")


#: Esri's standard object classification wrappers: they only hand the chips to arcgis.learn's FeatureClassifier
#: (and import arcpy), so geoclassify does their work itself and never runs them.
STANDARD_WRAPPERS = ("arcgisobjectclassifier.py", "objectclassifier.py")


def feature_classifier_dialect(package: ModelPackage) -> str | None:
    """``"current"`` or ``"legacy"`` for an arcgis.learn FeatureClassifier package whose InferenceFunction, if any, is
    Esri's standard wrapper; ``None`` for anything else (a package with its own function keeps needing trust)."""
    definition = package.definition
    framework = (definition.framework or "").strip()
    configuration = (definition.model_configuration or "").strip()
    function = (definition.inference_function or "").strip()
    if function and re.split(r"[\\/]", function)[-1].lower() not in STANDARD_WRAPPERS:
        return None
    if framework.startswith("arcgis.learn") and configuration in ("_FeatureClassifier", "FeatureClassifier"):
        return "current"
    if framework.lower() == "pytorch" and configuration == "FeatureClassifier" and _suffix(definition) == ".pth":
        return "legacy"
    return None


def _suffix(definition: ModelDefinition) -> str:
    return Path(str(definition.model_file or "").replace("\\", "/")).suffix.lower()


def refuse_dialect(package: ModelPackage) -> None:
    """Raise for arcgis.learn models other than FeatureClassifier and for Keras/TensorFlow models other than a
    Keras .h5; return otherwise."""
    definition = package.definition
    framework = (definition.framework or "").strip()
    configuration = (definition.model_configuration or "").strip()
    model_file = str(definition.model_file or "")
    suffix = _suffix(definition)
    if framework.startswith("arcgis.learn"):
        raise UnsupportedModelError(
            f"{package.source}: an arcgis.learn model of type {configuration!r} (Framework {framework!r}); this "
            "version runs arcgis.learn FeatureClassifier packages only. Export the model to ONNX where arcgis.learn "
            "is installed (`torch.onnx.export(model.learn.model.eval(), ...)`). " + ONNX_HINT
        )
    if framework.lower() in ("keras", "tensorflow") or suffix in (".h5", ".keras", ".pb"):
        raise UnsupportedModelError(
            f"{package.source}: Esri's Keras/TensorFlow classifier dialect (Framework {framework!r}, "
            f"ModelConfiguration {configuration!r}, weights {model_file!r}); geoclassify reads Keras 2 HDF5 files "
            "(.h5) itself, but this one needs TensorFlow. " + TF2ONNX_RECIPE
        )
