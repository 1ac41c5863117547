"""What the map needs to draw a result by class: the job that made it (its label field and model), the model's
classes with their EMD colours, and how many features got each label."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from geoclassify import GeoclassifyError, inspect_model
from geoclassify.server.errors import NotFound
from geoclassify.server.items import Item
from geoclassify.server.services import Services


def result_details(store: Services, item: Item) -> dict[str, Any]:
    """The result's label and score fields, model name and classes (empty when the model is gone)."""
    request = store.job_request(item)
    prefix = request.field_prefix if request else ""
    details: dict[str, Any] = {
        "labelField": request.class_label_field if request else "ClassLabel",
        "valueField": f"{prefix}ClassValue",
        "confidenceField": f"{prefix}Confidence",
        "coverageField": f"{prefix}Coverage",
        "model": None,
        "classes": [],
    }
    if request is None:
        return details
    details["model"] = _model_name(store, request.model)
    with_code = request.trust_code and store.config.trust_code
    details["classes"] = list(_classes(request.model, *_stamp(request.model), with_code))
    return details



def _model_name(store: Services, model: str) -> str:
    """The model item's name when the model was an item, else the file's name (an inline EMD: its ModelName)."""
    path = Path(model)
    if model.lstrip().startswith("{"):
        return "inline model definition"
    content = store.items.root
    if content in path.parents:
        item_id = path.relative_to(content).parts[0]
        try:
            return store.items.get(item_id).name
        except NotFound:
            return f"{path.name} (removed)"
    return path.name


def _stamp(model: str) -> tuple[int, int]:
    try:
        stat = os.stat(model)
    except (OSError, ValueError):
        return -1, -1
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=32)
def _classes(model: str, mtime_ns: int, size: int, trust_code: bool) -> tuple[dict[str, Any], ...]:
    if mtime_ns < 0 and not model.lstrip().startswith("{"):
        return ()
    try:
        info = inspect_model(model, trust_code=trust_code)
    except GeoclassifyError:
        return ()
    return tuple({"value": c["value"], "name": c["name"], "color": c["color"]} for c in info["classes"])
