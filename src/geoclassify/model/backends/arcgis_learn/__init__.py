"""arcgis.learn FeatureClassifier packages without torch: a restricted ``.pth`` reader (:mod:`.pth`), the fastai
network as an ONNX graph (:mod:`.graph`), the cached conversion (:mod:`.convert`) and the backend running it."""

from .backend import ArcGISLearnBackend
from .convert import Conversion, convert

__all__ = ["ArcGISLearnBackend", "Conversion", "convert"]
