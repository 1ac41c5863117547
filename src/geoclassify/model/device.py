"""Esri's Processor Type and GPU ID environments: where a model runs.

CPU is the default, as without a GPU in ArcGIS, and then no GPU is ever touched (ONNX Runtime is given only its CPU
provider, even when a GPU build is installed). GPU means an NVIDIA GPU through CUDA: ONNX Runtime's CUDA execution
provider (the ``onnxruntime-gpu`` build, extra ``geoclassify[gpu]``), TorchScript on ``cuda:N``, and an Esri Python
inference function is handed the GPU id as Esri's wrappers are (``device``, -1 meaning CPU). A GPU that cannot be
used is an error saying what to install, never a silent fall-back to the CPU: a user who asked for the GPU and got
a run ten times slower would not know why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..errors import DeviceError, MissingExtraError, SettingError

ProcessorType = Literal["CPU", "GPU"]
#: Esri's ``device`` for a Python inference function that is to run on the CPU.
ESRI_CPU_DEVICE = -1
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
GPU_INSTALL_HINT = (
    "install ONNX Runtime's GPU build: `pip install 'geoclassify[gpu]'`, then `pip uninstall -y onnxruntime "
    "onnxruntime-gpu` and `pip install onnxruntime-gpu` (onnxruntime-gpu replaces onnxruntime: both hold the same "
    "module), with the CUDA and cuDNN its release notes name"
)


@dataclass(frozen=True)
class Device:
    """``processor_type`` CPU or GPU, and for GPU which one (``gpu_id``, CUDA's numbering from 0)."""

    processor_type: ProcessorType = "CPU"
    gpu_id: int = 0

    @property
    def gpu(self) -> bool:
        return self.processor_type == "GPU"

    @property
    def esri_device(self) -> int:
        """The ``device`` Esri's tool hands a Python inference function: the GPU id, or -1 for the CPU."""
        return self.gpu_id if self.gpu else ESRI_CPU_DEVICE

    def describe(self) -> str:
        return f"GPU {self.gpu_id}" if self.gpu else "CPU"


CPU = Device()


def parse_device(processor_type: str | None = "CPU", gpu_id: int | None = None) -> Device:
    """The two environments as one choice; ``--gpu-id`` alone is refused rather than quietly run on the CPU."""
    kind = (processor_type or "CPU").strip().upper()
    if kind not in ("CPU", "GPU"):
        raise SettingError(f"«processor_type» {processor_type!r} is not one of: CPU, GPU")
    if gpu_id is not None and (isinstance(gpu_id, bool) or not isinstance(gpu_id, int) or gpu_id < 0):
        raise SettingError(f"«gpu_id» {gpu_id!r}: give a GPU number, 0 for the first")
    if gpu_id is not None and kind == "CPU":
        raise SettingError(
            f"«gpu_id» {gpu_id} picks a GPU, but the processor type is CPU; add «processor_type» GPU or leave "
            "«gpu_id» out"
        )
    return Device(kind, gpu_id or 0)  # type: ignore[arg-type]


def choose_device(processor_type: str | None, gpu_id: int | None, loaded: Device | None = None) -> Device:
    """The run's device: as asked (CPU when nothing is), or that of a model the caller loaded already, which
    cannot be moved."""
    if loaded is not None and processor_type is None and gpu_id is None:
        return loaded
    device = parse_device(processor_type, gpu_id)
    if loaded is not None and device != loaded:
        raise SettingError(
            f"the model given was loaded for the {loaded.describe()}, not the {device.describe()} asked for "
            "(processor_type/gpu_id); load it with load_model(..., device=...) or pass its path"
        )
    return device


def onnx_providers(device: Device, ort: Any) -> list[Any]:
    """ONNX Runtime's providers for ``device``; the CPU provider stays last for any operator CUDA lacks."""
    if not device.gpu:
        return [CPU_PROVIDER]
    available = ort.get_available_providers()
    if CUDA_PROVIDER not in available:
        raise MissingExtraError(
            f"«processor_type» GPU needs ONNX Runtime's CUDA execution provider, which this onnxruntime "
            f"{ort.__version__} does not have (it offers {', '.join(available)}): {GPU_INSTALL_HINT}; or use "
            "«processor_type» CPU"
        )
    return [(CUDA_PROVIDER, {"device_id": device.gpu_id}), CPU_PROVIDER]


def check_onnx_session(session: Any, device: Device, ort: Any) -> None:
    """ONNX Runtime falls back to the CPU when the CUDA provider cannot start (no driver, a missing cuDNN); a GPU
    run must not go on like that."""
    if device.gpu and CUDA_PROVIDER not in session.get_providers():
        raise DeviceError(
            f"«processor_type» GPU: ONNX Runtime {ort.__version__} could not start its CUDA execution provider on "
            f"GPU {device.gpu_id} (no NVIDIA GPU or driver, no GPU {device.gpu_id}, or CUDA/cuDNN libraries missing "
            "or of another version than this onnxruntime-gpu needs); check `nvidia-smi` and onnxruntime-gpu's CUDA "
            "requirements, or use «processor_type» CPU"
        )


def torch_device(device: Device, torch: Any) -> Any:
    """The ``torch.device`` to load a TorchScript module on, checked to exist."""
    if not device.gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"«processor_type» GPU: PyTorch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is "
            "False: a CPU-only build of PyTorch, or no NVIDIA GPU or driver); install a CUDA build of PyTorch "
            "(see pytorch.org, 'Get started') or use «processor_type» CPU"
        )
    count = torch.cuda.device_count()
    if device.gpu_id >= count:
        raise DeviceError(
            f"«gpu_id» {device.gpu_id}: PyTorch sees {count} GPU{'s' * (count != 1)} (numbered from 0"
            f"{f' to {count - 1}' if count > 1 else ''}); give one of those"
        )
    return torch.device(f"cuda:{device.gpu_id}")
