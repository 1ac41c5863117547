"""ONNX Runtime: the default install's one runtime, fast on CPU and free of any training framework."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import DeviceError, InferenceError, ModelMismatchError, ModelPackageError
from ..arguments import ArgumentSpec
from ..device import CPU, Device, check_onnx_session, onnx_providers
from .base import CPU_PIXELS_PER_CALL, tensor_argument_specs


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _dim(value: object) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


class OnnxBackend:
    """One ONNX Runtime session on the CPU (or, for ``device`` GPU, CUDA); the first input takes NCHW float chips,
    the first output scores."""

    framework = "ONNX"

    def __init__(self, path: Path, threads: int | None = None, device: Device = CPU) -> None:
        import onnxruntime as ort

        self.path = path
        self.device = device
        providers = onnx_providers(device, ort)
        options = ort.SessionOptions()
        #: Batches worth running side by side (see ``Model.concurrency``). Without a thread count, on the CPU, a
        #: session runs each call on one thread and batches run on every core at once. On 2 cores a small model
        #: (64-px chips, 6.5 MFLOP) then does 21,350 chips/s where one batch at a time on the default threads does
        #: 16,000; for large chips see CPU_PIXELS_PER_CALL.
        self.concurrency = 1
        #: Pixels (chips times height times width) this session takes best in one call.
        self.pixels_per_call = None if device.gpu else CPU_PIXELS_PER_CALL
        if threads:
            options.intra_op_num_threads = threads
        elif not device.gpu:
            self.concurrency = available_cores()
            options.intra_op_num_threads = 1
        options.log_severity_level = 4  # errors reach the user through our own message, once
        # ORT's threads otherwise spin between runs, burning the core that cuts the next chips: +6% features/s on
        # the dense benchmark, no change on the compute-bound one.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
            if device.gpu:
                raise DeviceError(
                    f"{path}: ONNX Runtime cannot load this model on GPU {device.gpu_id} ({exc}); check «gpu_id» "
                    "(GPUs are numbered from 0) and the CUDA install, or use «processor_type» CPU"
                ) from None
            raise ModelPackageError(f"{path}: ONNX Runtime cannot load this model ({exc})") from None
        check_onnx_session(self.session, device, ort)
        self._ort_version = ort.__version__
        model_input = self.session.get_inputs()[0]
        model_output = self.session.get_outputs()[0]
        if len(model_input.shape) != 4:
            raise ModelMismatchError(
                f"{path}: the model input {model_input.name!r} has shape {model_input.shape}; "
                "an object classifier takes (batch, bands, height, width)"
            )
        if model_input.type not in ("tensor(float)", "tensor(float16)"):
            raise ModelMismatchError(
                f"{path}: the model input is {model_input.type}; geoclassify feeds float32 chips "
                "(export the model with a float input)"
            )
        self.input_name = model_input.name
        self.output_name = model_output.name
        self._dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        b, c, h, w = (_dim(d) for d in model_input.shape)
        self.input_shape = (b, c, h, w)
        if b is not None:  # a fixed batch pads every call to its size: slicing would multiply the work
            self.pixels_per_call = None
        out_shape = list(model_output.shape)
        self.output_classes = _dim(out_shape[1]) if len(out_shape) >= 2 else None

    def argument_specs(self, default_batch_size: int, default_tta: bool) -> list[ArgumentSpec]:
        return tensor_argument_specs(self.input_shape[0], default_batch_size, default_tta)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        fixed = self.input_shape[0]
        if fixed is not None and batch.shape[0] != fixed:
            return self._predict_fixed(batch, fixed)
        try:
            (scores,) = self.session.run([self.output_name], {self.input_name: batch.astype(self._dtype, copy=False)})
        except Exception as exc:
            chips = f"{len(batch)} chip" + ("s" if len(batch) != 1 else "")
            raise InferenceError(f"{self.path}: ONNX Runtime failed on {chips}: {exc}") from None
        scores = np.asarray(scores, dtype=np.float32)
        return scores.reshape(scores.shape[0], -1)

    def _predict_fixed(self, batch: np.ndarray, size: int) -> np.ndarray:
        """Models exported with a fixed batch take padded slices of exactly that size."""
        parts = []
        for start in range(0, len(batch), size):
            part = batch[start : start + size]
            count = len(part)
            if count < size:
                pad = np.zeros((size - count, *part.shape[1:]), dtype=part.dtype)
                part = np.concatenate([part, pad])
            (scores,) = self.session.run([self.output_name], {self.input_name: part.astype(self._dtype, copy=False)})
            parts.append(np.asarray(scores, dtype=np.float32).reshape(size, -1)[:count])
        return np.concatenate(parts)

    def describe(self) -> dict[str, object]:
        model_input = self.session.get_inputs()[0]
        model_output = self.session.get_outputs()[0]
        return {
            "runtime": f"onnxruntime {self._ort_version}",
            "device": self.device.describe(),
            "file": str(self.path),
            "input": {"name": model_input.name, "shape": list(model_input.shape), "type": model_input.type},
            "output": {"name": model_output.name, "shape": list(model_output.shape), "type": model_output.type},
        }
