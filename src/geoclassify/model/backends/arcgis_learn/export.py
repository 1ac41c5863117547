"""``geoclassify convert``: an arcgis.learn FeatureClassifier package rewritten as an ONNX package.

The new package needs neither this converter nor anything of arcgis.learn: its EMD is the original one, with the
ONNX file as its model and ``ModelOutput: probabilities`` (the graph ends in arcgis.learn's activation).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ....errors import UnsupportedModelError
from ...building import build_package
from ...packages import open_package
from ..dialects import feature_classifier_dialect
from .convert import convert, declared_backbone

#: EMD keys that describe the arcgis.learn form (its runtime, weights and Esri's wrapper), not the model.
ARCGIS_LEARN_KEYS = ("Framework", "ModelConfiguration", "ModelFile", "InferenceFunction", "TFLite", "TorchScript")


def write_onnx_package(
    model: str | os.PathLike[str], out: str | os.PathLike[str], overwrite: bool = False
) -> dict[str, Any]:
    """Convert ``model`` (a .dlpk or .emd of arcgis.learn's FeatureClassifier) and write ``out``; returns its EMD."""
    package = open_package(model)
    dialect = feature_classifier_dialect(package)
    if dialect is None:
        raise UnsupportedModelError(
            f"{package.source}: not an arcgis.learn FeatureClassifier package (Framework "
            f"{package.definition.framework!r}, ModelConfiguration {package.definition.model_configuration!r}); "
            "`geoclassify convert` rewrites those as ONNX packages. Other packages run as they are."
        )
    conversion = convert(package)
    raw = package.definition.raw
    emd = {key: value for key, value in raw.items() if key not in ARCGIS_LEARN_KEYS}
    emd["ModelOutput"] = "probabilities"
    emd["ConvertedFrom"] = {
        "Framework": raw.get("Framework"),
        "ModelConfiguration": raw.get("ModelConfiguration"),
        "ModelFile": raw.get("ModelFile"),
        "backbone": declared_backbone(package),
        "dialect": dialect,
    }
    with tempfile.TemporaryDirectory(prefix=".convert-") as folder:
        onnx_file = Path(folder) / f"{conversion.weights.stem}.onnx"
        shutil.copyfile(conversion.onnx, onnx_file)
        return build_package(onnx_file, out, emd, overwrite=overwrite)
