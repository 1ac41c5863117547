"""Esri model dialects this version recognises but cannot run, each answered with how to convert it.

A generic "unsupported" leaves a user stuck; naming the dialect and the conversion gets them moving.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UnsupportedModelError
from ..package import ModelPackage

ONNX_HINT = (
    'Then write an EMD with "Framework": "ONNX" and "ModelFile" naming the .onnx (or build a package with '
    "`geoclassify package MODEL.onnx ...`)."
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
    suffix = Path(str(package.definition.model_file or "").replace("\\", "/")).suffix.lower()
    return suffix == ".h5" and framework in ("keras", "tensorflow", "")


def refuse_dialect(package: ModelPackage) -> None:
    """Raise for arcgis.learn FeatureClassifier packages and Keras/TensorFlow models other than a Keras .h5."""
    definition = package.definition
    framework = (definition.framework or "").strip()
    configuration = (definition.model_configuration or "").strip()
    model_file = str(definition.model_file or "")
    suffix = Path(model_file.replace("\\", "/")).suffix.lower()
    if (
        framework.startswith("arcgis.learn")
        or configuration == "_FeatureClassifier"
        or (framework.lower() == "pytorch" and configuration == "FeatureClassifier" and suffix == ".pth")
    ):
        backbone = (definition.raw.get("ModelParameters") or {}).get("backbone", "its backbone")
        raise UnsupportedModelError(
            f"{package.source}: an arcgis.learn FeatureClassifier package (Framework {framework!r}, "
            f"ModelConfiguration {configuration!r}, weights {model_file!r}). Its .pth holds fastai weights that only "
            f"arcgis.learn can rebuild into a network ({backbone}), so this version cannot run it. Convert it once "
            "where arcgis.learn is installed: `m = arcgis.learn.FeatureClassifier.from_model(r'<the .emd>'); "
            "torch.onnx.export(m.learn.model.eval(), torch.zeros(1, bands, height, width), 'model.onnx', "
            "input_names=['input'], output_names=['logits'], dynamic_axes={'input': {0: 'batch'}})`. " + ONNX_HINT
        )
    if framework.lower() in ("keras", "tensorflow") or suffix in (".h5", ".keras", ".pb"):
        raise UnsupportedModelError(
            f"{package.source}: Esri's Keras/TensorFlow classifier dialect (Framework {framework!r}, "
            f"ModelConfiguration {configuration!r}, weights {model_file!r}); geoclassify reads Keras 2 HDF5 files "
            "(.h5) itself, but this one needs TensorFlow. " + TF2ONNX_RECIPE
        )
