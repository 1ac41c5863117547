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


def refuse_dialect(package: ModelPackage) -> None:
    """Raise for arcgis.learn FeatureClassifier packages and Esri's Keras sample; return for anything else."""
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
            f"ModelConfiguration {configuration!r}, weights {model_file!r}), which needs TensorFlow. Convert it to "
            "ONNX with tf2onnx: `python -m tf2onnx.convert --keras model.h5 --output model.onnx` (a SavedModel: "
            "`--saved-model DIR`). Note that Esri's KerasClassifier resized chips to `resampled_image_size` and did "
            "not normalise them; put that size in ImageWidth/ImageHeight. " + ONNX_HINT
        )
