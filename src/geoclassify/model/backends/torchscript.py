"""PyTorch TorchScript models, through the optional ``geoclassify[torch]`` extra.

TorchScript carries the network with its weights, so no Python class is needed to rebuild it; plain state
dicts (``.pth`` weights) are refused with the way to export one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InferenceError, MissingExtraError, UnsupportedModelError
from ..arguments import ArgumentSpec
from ..device import CPU, Device, torch_device
from .base import CPU_PIXELS_PER_CALL, tensor_argument_specs

INSTALL_HINT = (
    "install the extra with `pip install 'geoclassify[torch]'` (on a machine without a GPU, install PyTorch's CPU "
    "build first, so pip does not fetch the much larger CUDA build)"
)


def import_torch(purpose: str):
    try:
        import torch
    except ImportError:
        raise MissingExtraError(f"{purpose} needs PyTorch, which is not installed: {INSTALL_HINT}") from None
    return torch


class TorchScriptBackend:
    """A TorchScript module on the CPU (or, for ``device`` GPU, ``cuda:N``); takes NCHW float32 chips, returns
    (batch, classes) scores."""

    framework = "PyTorch (TorchScript)"
    input_shape: tuple[int | None, int | None, int | None, int | None] = (None, None, None, None)
    output_classes: int | None = None

    def __init__(self, path: Path, threads: int | None = None, source: str = "", device: Device = CPU) -> None:
        torch = import_torch(f"{source or path}: a PyTorch (TorchScript) model")
        self.path = path
        self._torch = torch
        self.device = device
        self._device = torch_device(device, torch)
        #: See ``CPU_PIXELS_PER_CALL``: 224-px chips four a call ran 1.8x as fast as whole batches of 16.
        self.pixels_per_call = None if device.gpu else CPU_PIXELS_PER_CALL
        try:
            self.module = torch.jit.load(str(path), map_location=self._device).eval()
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UnsupportedModelError(
                f"{path}: not a TorchScript file ({first}). A .pth of weights (a state dict, such as arcgis.learn "
                "saves) cannot be run without the Python class that built it: load it in PyTorch and save "
                "`torch.jit.trace(model.eval(), example)` with `torch.jit.save`, or export it to ONNX."
            ) from None
        if threads:
            torch.set_num_threads(threads)

    def argument_specs(self, default_batch_size: int, default_tta: bool) -> list[ArgumentSpec]:
        return tensor_argument_specs(None, default_batch_size, default_tta)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        try:
            with torch.inference_mode():
                chips = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self._device)
                output = self.module(chips)
        except Exception as exc:  # TorchScript raises its own error types with the model's own trace
            raise InferenceError(
                f"{self.path}: the TorchScript model failed on a batch of {len(batch)} chips: "
                f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}"
            ) from None
        if isinstance(output, dict):
            output = next(iter(output.values()))
        if isinstance(output, list | tuple):
            output = output[0]
        scores = output.detach().float().cpu().numpy()
        return scores.reshape(scores.shape[0], -1)

    def describe(self) -> dict[str, object]:
        return {
            "runtime": f"torch {self._torch.__version__} (TorchScript)",
            "file": str(self.path),
            "device": self.device.describe(),
        }
