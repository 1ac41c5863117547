"""What a model is and how it will be run, as plain data: ``geoclassify inspect``, a service's model info."""

from __future__ import annotations

from typing import Any

from .runtime import Model


def describe_model(loaded: Model) -> dict[str, Any]:
    """The model's package, runtime, chip geometry, normalisation, classes and arguments (with their values)."""
    definition = loaded.definition
    stats = definition.normalization
    own: dict[str, Any] | None = getattr(loaded.backend, "normalisation", None)  # a dialect's own (Keras)
    if own is not None:
        normalisation: dict[str, Any] = own
    elif stats is not None:
        normalisation = {
            "kind": "NormalizationStats",
            "formula": "((x - band_min) / (band_max - band_min) - scaled_mean) / scaled_std, per ExtractBands index",
            "band_min": list(stats.band_min),
            "band_max": list(stats.band_max),
            "scaled_mean": list(stats.scaled_mean),
            "scaled_std": list(stats.scaled_std),
        }
    else:
        normalisation = {
            "kind": "ImageNet",
            "formula": "(x - 255 * mean) / (255 * std)",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        }
    return {
        "source": loaded.package.source,
        "model_name": definition.model_name,
        "framework": definition.framework,
        "model_type": definition.model_type or "ObjectClassification",
        "runtime": loaded.backend.describe(),
        "chip_size": {"height": loaded.chip_height, "width": loaded.chip_width},
        "extract_bands": list(definition.extract_bands) if definition.extract_bands is not None else "all",
        "crop_size_fixed": definition.crop_size_fixed,
        "blacken_around_feature": definition.blacken_around_feature,
        "image_space": definition.image_space_used,
        "model_output": definition.model_output
        or getattr(loaded.backend, "model_output", None)
        or "auto (probabilities if rows sum to 1, else logits)",
        "multi_label": loaded.multi_label,
        "inference_function": definition.inference_function,
        "data_range": list(definition.data_range) if definition.data_range else None,
        "normalisation": normalisation,
        "cell_size_range": {
            "min": definition.min_cell_size.__dict__ if definition.min_cell_size else None,
            "max": definition.max_cell_size.__dict__ if definition.max_cell_size else None,
        },
        "classes": [
            {"position": i, "value": c.value, "name": c.name, "color": list(c.color) if c.color else None}
            for i, c in enumerate(definition.classes)
        ],
        "arguments": [
            {
                "name": s.name,
                "type": s.type,
                "default": s.default,
                "value": loaded.arguments[s.name],
                "description": s.description,
            }
            for s in loaded.specs
        ],
    }
