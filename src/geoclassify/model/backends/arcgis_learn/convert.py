"""An arcgis.learn FeatureClassifier's ``.pth`` as ONNX: converted once per content, kept in the package cache.

The conversion is checked against the EMD (``ModelParameters.backbone``, Classes, ExtractBands) every time the
package is opened, cached or not, because an EMD can be edited while its weights stay the same.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ....errors import ModelMismatchError, UnsupportedModelError
from ...packages import ModelPackage
from ..conversion_cache import converted_onnx
from ..dialects import arcgis_learn_export
from .graph import RESNETS, Network, build_graph, identify
from .pth import read_state_dict

#: Bump when the graphs built change, so cached conversions are made again.
CONVERTER_VERSION = 1
SUPPORTED_BACKBONES = (*RESNETS, "mobilenet_v2")


@dataclass(frozen=True)
class Conversion:
    """An ONNX file made from a package's weights."""

    onnx: Path
    weights: Path
    #: Seconds the conversion took in this process; 0 when it came from the cache.
    seconds: float


def declared_backbone(package: ModelPackage) -> str | None:
    """``ModelParameters.backbone`` as arcgis.learn writes it (``resnet34``, ``timm:...``), if the EMD has one."""
    parameters = package.definition.raw.get("ModelParameters")
    backbone = parameters.get("backbone") if isinstance(parameters, Mapping) else None
    return str(backbone).strip() if backbone else None


def convert(package: ModelPackage) -> Conversion:
    """The package's network as an ONNX file in the cache (GEOCLASSIFY_CACHE_DIR), made now if it is not there.

    The key is the weights' content plus what of the EMD shapes the graph (activation, chip size).
    """
    definition = package.definition
    declared = declared_backbone(package)
    if declared is not None and _plain(declared) not in SUPPORTED_BACKBONES:
        raise UnsupportedModelError(
            f"{package.source}: an arcgis.learn FeatureClassifier with the backbone {declared!r} "
            "(ModelParameters.backbone). " + recipe(package)
        )
    weights = package.resolve("ModelFile")
    label = f"{package.source}: {weights.name}"
    height, width = definition.image_height, definition.image_width
    converter = (
        f"arcgis.learn FeatureClassifier {CONVERTER_VERSION} multi_label={definition.multi_label} {height}x{width}"
    )
    timing: list[float] = []

    def build() -> bytes:
        started = time.perf_counter()
        state = read_state_dict(weights, label)
        try:
            network = identify(state, label)
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(f"{exc}. {recipe(package)}") from None
        check(package, network, weights)  # before the work of building: a wrong package fails fast
        model = build_graph(state, network, definition.multi_label, height, width, label)
        data = model.SerializeToString()
        timing.append(time.perf_counter() - started)
        return data

    onnx_file = converted_onnx(weights, converter, build)
    return Conversion(onnx_file, weights, timing[0] if timing else 0.0)


def network_of(metadata: Mapping[str, str], bands: int | None, classes: int | None) -> Network:
    """What a converted graph was made from: its metadata names the backbone, its shapes say the rest."""
    return Network(metadata.get("backbone", "unknown"), int(bands or 0), int(classes or 0))


def recipe(package: ModelPackage) -> str:
    """What to do with a FeatureClassifier this version cannot rebuild: export it to ONNX where arcgis.learn runs."""
    return (
        f"geoclassify rebuilds {', '.join(SUPPORTED_BACKBONES)} networks from their weights, not this one. Export it "
        "to ONNX once where arcgis.learn is installed (ArcGIS Pro's Python): " + arcgis_learn_export(package.definition)
    )


def check(package: ModelPackage, network: Network, weights: Path) -> None:
    """The weights agree with the EMD: backbone, class count, band count (each error names both sides)."""
    definition = package.definition
    name = weights.name
    declared = declared_backbone(package)
    if declared is not None and _plain(declared) != network.backbone:
        raise ModelMismatchError(
            f"{package.source}: ModelParameters.backbone is {declared!r} but {name} holds a {network.backbone}; "
            "fix ModelParameters.backbone, or put the weights trained with that backbone in the package"
        )
    if network.classes != len(definition.classes):
        raise ModelMismatchError(
            f"{package.source}: the last layer of {name} (1.8) gives {network.classes} classes but the EMD lists "
            f"{len(definition.classes)} Classes; Classes must name the model's outputs, in order"
        )
    bands = definition.extract_bands
    if bands is not None and len(bands) != network.bands:
        raise ModelMismatchError(
            f"{package.source}: the first convolution of {name} takes {network.bands} bands but ExtractBands "
            f"selects {len(bands)}; fix ExtractBands in the EMD"
        )


def _plain(backbone: str) -> str:
    """``resnet34`` from ``resnet34``, ``models.resnet34`` or ``ResNet34``; a ``timm:`` name stays whole."""
    return backbone.lower() if ":" in backbone else backbone.rpartition(".")[2].lower()
