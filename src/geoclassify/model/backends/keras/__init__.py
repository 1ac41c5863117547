"""Esri's Keras object classifiers (``Framework: "Keras"``, ``KerasClassifier``, a Keras 2 ``.h5``) without TensorFlow.

The ``.h5`` is read with h5py and rebuilt as an ONNX graph once per file content (kept in the cache), then run on
ONNX Runtime like any ONNX model; the chips are prepared as Esri's KerasClassifier prepares them (resized to
``resampled_image_size``, zero-padded square, no normalisation: :mod:`.resample`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ....errors import MissingExtraError, ModelArgumentError
from ...arguments import ArgumentSpec
from ...device import CPU, Device
from ...emd import ModelDefinition
from ...packages import ModelPackage
from ..base import tensor_argument_specs
from ..conversion_cache import converted_onnx
from ..onnx import OnnxBackend
from .resample import KerasChips

#: Esri's default for the ``resampled_image_size`` argument.
ESRI_RESAMPLED_SIZE = 64
#: Names the conversion in the cache key; bump it whenever a conversion would come out differently.
CONVERTER = "geoclassify-keras-1"


def _convert(path: Path, source: str) -> bytes:
    try:
        import h5py  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            f"{source}: reading the Keras model {path.name} needs {exc.name}: pip install 'geoclassify[keras]'"
        ) from None
    from .convert import keras_to_onnx
    from .h5 import read_keras_h5

    return keras_to_onnx(read_keras_h5(path, source), source).SerializeToString()


class KerasBackend:
    """A Keras ``.h5`` converted to ONNX, with Esri's KerasClassifier chip preparation as its preprocessor."""

    framework = "Keras"

    def __init__(self, package: ModelPackage, threads: int | None = None, device: Device = CPU) -> None:
        self.source = package.source
        self.model_file = package.resolve("ModelFile")
        self.converted = converted_onnx(self.model_file, CONVERTER, lambda: _convert(self.model_file, self.source))
        self.onnx = OnnxBackend(self.converted, threads=threads, device=device)
        batch, bands, self.model_height, self.model_width = self.onnx.input_shape
        # The chips are resized in preprocessing, so any chip size fits; the model's own size is the resize target.
        self.input_shape = (batch, bands, None, None)
        self.output_classes = self.onnx.output_classes
        facts = self.onnx.session.get_modelmeta().custom_metadata_map
        self.keras_version = facts.get("keras_version", "unknown")
        #: "probabilities" when the model ends in a softmax or sigmoid, whose outputs Esri reports as they are.
        self.model_output = facts.get("output") or None

    def argument_specs(self, default_batch_size: int, default_tta: bool) -> list[ArgumentSpec]:
        fixed = self.model_height if self.model_height == self.model_width else None
        return [
            *tensor_argument_specs(self.input_shape[0], default_batch_size, default_tta),
            ArgumentSpec(
                "resampled_image_size",
                "int",
                fixed or ESRI_RESAMPLED_SIZE,
                "side of the square chip the model sees: each chip is resized so its longer side is this, then "
                "zero-padded (Esri's KerasClassifier argument; default: the model's input size, else 64)",
                minimum=1,
            ),
        ]

    def preprocessor(
        self, definition: ModelDefinition, band_indexes: Sequence[int], arguments: Mapping[str, Any]
    ) -> KerasChips:
        """Esri's resize-and-pad, checked against the model's fixed input size and the chip size now."""
        size = int(arguments.get("resampled_image_size") or ESRI_RESAMPLED_SIZE)
        height, width = self.model_height, self.model_width
        if height is not None and width is not None and height != width:
            raise ModelArgumentError(
                f"{self.source}: the Keras model takes {height} x {width} chips (height x width), but Esri's "
                "KerasClassifier feeds it square chips of resampled_image_size; it cannot run as Esri ran it"
            )
        if (height or width) not in (None, size):
            raise ModelArgumentError(
                f"{self.source}: resampled_image_size is {size} but the Keras model takes chips of {height or width} "
                f"pixels a side; set resampled_image_size={height or width} (or leave it out)"
            )
        chips = KerasChips(size, definition.data_range)
        if definition.image_height is not None and definition.image_width is not None:
            chips.check(definition.image_height, definition.image_width, self.source)
        return chips

    @property
    def normalisation(self) -> dict[str, str]:
        """What ``inspect`` shows in place of a normalisation: Esri's KerasClassifier feeds pixels as they are."""
        return {
            "kind": "KerasClassifier",
            "formula": "none; each chip is resized so its longer side is resampled_image_size (bilinear, no "
            "anti-aliasing), zero-padded to a centred square and truncated to whole numbers for integer rasters",
        }

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.onnx.predict(batch)

    def describe(self) -> dict[str, object]:
        facts = self.onnx.describe()
        facts["runtime"] = f"{facts['runtime']} (converted from a Keras {self.keras_version} HDF5 file)"
        facts["file"] = str(self.model_file)
        facts["converted"] = str(self.converted)
        return facts
