"""Pick the runtime an EMD asks for, or explain precisely why this version cannot run it."""

from __future__ import annotations

from pathlib import Path

from ...errors import UnsupportedModelError
from ..device import CPU, Device
from ..packages import ModelPackage
from .base import Backend, ChipBackend, to_probabilities
from .dialects import feature_classifier_dialect, is_keras_h5, refuse_dialect
from .onnx import OnnxBackend

__all__ = ["SUPPORTED_FRAMEWORKS", "Backend", "ChipBackend", "OnnxBackend", "create_backend", "to_probabilities"]

#: What this version runs, as written in the EMD's ``Framework`` key (any case), plus Python inference functions.
SUPPORTED_FRAMEWORKS = ("ONNX", "PyTorch (TorchScript)", "arcgis.learn FeatureClassifier", "Keras (.h5)")


def create_backend(
    package: ModelPackage, threads: int | None = None, trust_code: bool = False, device: Device = CPU
) -> Backend | ChipBackend:
    """Load the model with the runtime its EMD names, on ``device``: ONNX Runtime (also for arcgis.learn
    FeatureClassifier weights and Keras .h5 files, converted), TorchScript, or a Python inference function."""
    definition = package.definition
    dialect = feature_classifier_dialect(package)
    if dialect is not None:  # Esri's own wrapper, if named, is recognised and not run: no trust needed
        from .arcgis_learn import ArcGISLearnBackend

        return ArcGISLearnBackend(package, dialect, threads=threads, device=device)
    if definition.inference_function:
        from .prf import PythonFunctionBackend

        return PythonFunctionBackend(package, trust_code=trust_code, device=device)
    framework = (definition.framework or "").strip()
    model_file = str(definition.model_file or "")
    if not framework and model_file.lower().endswith(".onnx"):
        framework = "ONNX"
    if framework.upper() == "ONNX":
        return OnnxBackend(package.resolve("ModelFile"), threads=threads, device=device)
    if is_keras_h5(package):
        from .keras import KerasBackend

        return KerasBackend(package, threads=threads, device=device)
    refuse_dialect(package)
    if framework.lower() == "pytorch":
        from .torchscript import TorchScriptBackend

        return TorchScriptBackend(package.resolve("ModelFile"), threads=threads, source=package.source, device=device)
    supported = ", ".join(SUPPORTED_FRAMEWORKS)
    if not framework:
        raise UnsupportedModelError(
            f'{package.source}: the EMD has no Framework key; set "Framework": "ONNX" for an ONNX model '
            f"(this version runs: {supported}, and Python inference functions)"
        )
    suffix = Path(model_file).suffix or "(none)"
    raise UnsupportedModelError(
        f"{package.source}: Framework {framework!r} (model file type {suffix}) is not supported by this version, "
        f"which runs: {supported}, and Python inference functions. Export the model to ONNX (e.g. torch.onnx.export, "
        'tf2onnx) and set "Framework": "ONNX".'
    )
