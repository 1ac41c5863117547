"""What a backend is: something that maps a normalised (batch, bands, height, width) stack to scores."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..arguments import ArgumentSpec

#: Pixels (chips times height times width) a runtime on the CPU takes best in one call: the model runs a batch the
#: user asked for in calls of about this size (``Model._run``), since a large chip's activations then stay nearer
#: the core. A backend says so with a ``pixels_per_call`` attribute. Four 224-px chips, measured on this project's
#: 2-core machine (chips/s, calls of 4 against whole batches of 16): ONNX Runtime as two one-thread sessions side by
#: side, a plain 1.5 GFLOP CNN 243 against 209 (one chip a call: 260), fastai's ResNet-34 49.7 against 50.6 and
#: ResNet-50 46.8 against 45.6 (one chip a call: 6 to 9% slower); TorchScript on two threads, the plain CNN 85
#: against 48. Chips of 64 px keep whole batches of 16, the fastest there. A chip's scores do not depend on its batch.
CPU_PIXELS_PER_CALL = 4 * 224 * 224


class Backend(Protocol):
    """A loaded model in some runtime. Shapes use ``None`` for a dimension the model leaves open."""

    framework: str
    input_shape: tuple[int | None, int | None, int | None, int | None]
    output_classes: int | None

    def argument_specs(self, default_batch_size: int, default_tta: bool) -> list[ArgumentSpec]:
        """The model arguments this backend accepts, with their defaults."""
        ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Raw scores, shaped (batch, classes)."""
        ...

    def describe(self) -> dict[str, object]:
        """Runtime facts for ``inspect`` (file, runtime version, input and output names and shapes)."""
        ...


@runtime_checkable
class ChipBackend(Protocol):
    """A model that takes raw chips and answers with classes itself (an Esri Python inference function).

    It normalises as it likes, so geoclassify hands it the pixels as read (invalid pixels 0) and their masks.
    """

    framework: str

    def argument_specs(self) -> list[ArgumentSpec]:
        """The function's own arguments (its ``getParameterInfo`` without rasters, model and device)."""
        ...

    def configure(self, arguments: dict[str, object]) -> dict[str, object]:
        """Call ``getConfiguration`` with the arguments; return the EMD keys it overrides (ImageWidth, ...)."""
        ...

    def classify_chips(self, chips: np.ndarray, valid: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Class index (position in Classes) and confidence per chip."""
        ...

    def describe(self) -> dict[str, object]: ...


def tensor_argument_specs(fixed_batch: int | None, default_batch_size: int, default_tta: bool) -> list[ArgumentSpec]:
    """The model arguments of every tensor runtime (ONNX, TorchScript): Esri's batch size and TTA."""
    return [
        ArgumentSpec(
            "batch_size",
            "int",
            fixed_batch or default_batch_size,
            "chips classified per model call; larger is faster until memory runs short",
            minimum=1,
        ),
        ArgumentSpec(
            "test_time_augmentation",
            "bool",
            default_tta,
            "average the probabilities over rotated and flipped copies of each chip "
            "(8 for MAP_SPACE, 2 for PIXEL_SPACE); slower, often steadier",
        ),
    ]


def to_probabilities(scores: np.ndarray, model_output: str | None, multi_label: bool = False) -> np.ndarray:
    """Probabilities per row: softmax of logits, or the scores as they are when they already are probabilities.

    With no ``ModelOutput`` key we look at the numbers: rows that are non-negative and sum to 1 are
    probabilities; anything else is taken as logits. A multi-label model's classes are independent: its logits
    go through a sigmoid, and only ``ModelOutput: probabilities`` says they need none (its rows need not sum to 1).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if model_output == "probabilities":
        return scores
    if multi_label:
        return np.exp(-np.logaddexp(0.0, -scores))  # the sigmoid, without overflow for large logits
    if model_output is None and scores.size and np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4):
        return scores
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
