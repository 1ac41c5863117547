"""Pick the runtime an EMD asks for, or explain precisely why this version cannot run it."""

from __future__ import annotations

from ..errors import UnsupportedModelError
from ..package import ModelPackage
from .base import Backend, ChipBackend, to_probabilities
from .onnx import OnnxBackend

__all__ = ["SUPPORTED_FRAMEWORKS", "Backend", "ChipBackend", "OnnxBackend", "create_backend", "to_probabilities"]

#: Frameworks this version runs, as written in the EMD's ``Framework`` key (any case).
SUPPORTED_FRAMEWORKS = ("ONNX",)


def create_backend(package: ModelPackage, threads: int | None = None) -> Backend:
    """Load the model file with the runtime its EMD names."""
    definition = package.definition
    framework = definition.framework
    if framework is None and str(definition.model_file or "").lower().endswith(".onnx"):
        framework = "ONNX"
    supported = ", ".join(SUPPORTED_FRAMEWORKS)
    if definition.inference_function:
        raise UnsupportedModelError(
            f"{package.source}: the model runs a Python inference function ({definition.inference_function}), "
            f"which this version cannot host; it runs these frameworks: {supported}. "
            'Export the model to ONNX and set "Framework": "ONNX".'
        )
    if framework is None:
        raise UnsupportedModelError(
            f'{package.source}: the EMD has no Framework key; set "Framework": "ONNX" for an ONNX model '
            f"(this version runs: {supported})"
        )
    if framework.strip().upper() == "ONNX":
        return OnnxBackend(package.resolve("ModelFile"), threads=threads)
    raise UnsupportedModelError(
        f"{package.source}: Framework {framework!r} is not supported by this version, which runs: {supported}. "
        'Export the model to ONNX (e.g. torch.onnx.export) and set "Framework": "ONNX".'
    )
