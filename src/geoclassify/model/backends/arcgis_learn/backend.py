"""arcgis.learn FeatureClassifier packages on ONNX Runtime: their weights converted once, Esri's wrapper not run."""

from __future__ import annotations

from ...device import CPU, Device
from ...packages import ModelPackage
from ..onnx import OnnxBackend
from .convert import Conversion, check, convert, network_of


class ArcGISLearnBackend(OnnxBackend):
    """The package's fastai network, rebuilt as ONNX from its ``.pth``; it returns probabilities (softmax, or
    sigmoid for multi-label packages) as arcgis.learn's ``pred_batch`` does."""

    framework = "arcgis.learn FeatureClassifier"
    model_output = "probabilities"

    def __init__(self, package: ModelPackage, dialect: str, threads: int | None = None, device: Device = CPU) -> None:
        self.dialect = dialect
        self.conversion: Conversion = convert(package)
        super().__init__(self.conversion.onnx, threads=threads, device=device)
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.network = network_of(metadata, self.input_shape[1], self.output_classes)
        check(package, self.network, self.conversion.weights)  # also when cached: the EMD may have been edited

    def describe(self) -> dict[str, object]:
        conversion = self.conversion
        return {
            **super().describe(),
            "dialect": self.dialect,
            "backbone": self.network.backbone,
            "weights": str(conversion.weights),
            "converted": "from the cache" if not conversion.seconds else f"now, in {conversion.seconds:.2f} s",
        }
