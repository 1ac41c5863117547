"""A result's evaluation over HTTP: ``/api/items/{id}/evaluation`` (the figures as JSON) and ``.../evaluation.png``
(the confusion matrix drawn), the same :func:`geoclassify.evaluate` the command line runs, on the stored result.

The classes are in the order of the model the result's job ran, so the matrix reads as the CLI's with ``--model``;
a result whose model is gone is evaluated with its classes sorted. Both routes answer only the item's owner (or an
admin), like every My Content route. One evaluation serves both routes: the page asks for the JSON, then the
picture, and a result never changes once stored, so the pair is read once.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from geoclassify import GeoclassifyError
from geoclassify.errors import MissingExtraError, UnsupportedModelError
from geoclassify.evaluation import Evaluation, evaluate, model_classes
from geoclassify.fields import DEFAULT_LABEL_FIELD
from geoclassify.io.layers import layer_info

from .errors import InputError, NotInstalled
from .items import Item
from .services import Services, current_user, services
from .users import User

router = APIRouter(prefix="/api/items", tags=["My Content"])
UserDep = Annotated[User, Depends(current_user)]
TruthQuery = Annotated[str, Query(alias="truthField", min_length=1)]
LabelQuery = Annotated[str | None, Query(alias="labelField")]


@router.get("/{item_id}/evaluation")
async def evaluation_json(
    request: Request, item_id: str, user: UserDep, truth: TruthQuery, label: LabelQuery = None
) -> dict[str, Any]:
    """The result's labels against ``truthField``: accuracy, kappa, per-class figures and the matrix."""
    store = services(request)
    item = store.items.get(item_id, user)
    evaluation, notes = await run_in_threadpool(evaluate_item, store, item, truth, label)
    return {
        **evaluation.to_dict(),
        "source": {"itemId": item.id, "name": item.name, "layer": evaluation.layer},  # never the server's paths
        "modelClasses": list(evaluation.model_classes) if evaluation.model_classes is not None else None,
        "warnings": list(notes),
    }


@router.get("/{item_id}/evaluation.png")
async def evaluation_png(
    request: Request, item_id: str, user: UserDep, truth: TruthQuery, label: LabelQuery = None
) -> Response:
    """The confusion matrix as a PNG (needs the ``plot`` extra, matplotlib, on the server)."""
    store = services(request)
    item = store.items.get(item_id, user)
    evaluation, _ = await run_in_threadpool(evaluate_item, store, item, truth, label)
    png = await run_in_threadpool(_png, evaluation)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


def evaluate_item(store: Services, item: Item, truth: str, label: str | None) -> tuple[Evaluation, tuple[str, ...]]:
    """The evaluation and the warnings it gave (values that are no class of the model, nothing to compare)."""
    if item.kind != "result":
        raise InputError(f"item {item.name!r} is a {item.kind}: only a result (the output of a job) is evaluated")
    request = store.job_request(item)
    label = label or (request.class_label_field if request else DEFAULT_LABEL_FIELD)
    layer = item.info.get("layer")
    fields = [str(f) for f in layer_info(item.path, layer)["fields"]]
    for parameter, name in (("truthField", truth), ("labelField", label)):
        if name not in fields:
            alike = [f for f in fields if f.lower() == name.lower()]
            hint = f" (did you mean {alike[0]!r}?)" if alike else ""
            raise InputError(
                f"{parameter} {name!r}: result {item.name!r} has no such field{hint}; its fields: {', '.join(fields)}"
            )
    if truth == label:
        raise InputError(f"truthField and labelField are both {truth!r}: give the field that holds the truth")
    classes = _model_classes(request.model, *_stamp(request.model)) if request else None
    stamp = _stamp(item.path)
    return _evaluate(item.path, layer, truth, label, classes, *stamp)


@functools.lru_cache(maxsize=16)
def _evaluate(
    path: str, layer: str | None, truth: str, label: str, classes: tuple[str, ...] | None, mtime_ns: int, size: int
) -> tuple[Evaluation, tuple[str, ...]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluation = evaluate(path, truth, label_field=label, layer_name=layer, classes=classes)
    return evaluation, tuple(dict.fromkeys(str(w.message).replace(repr(path), "the result") for w in caught))



@functools.lru_cache(maxsize=32)
def _model_classes(model: str, mtime_ns: int, size: int) -> tuple[str, ...] | None:
    """The model's class names in its output order; None when the model file is gone or unreadable (the classes
    are then sorted). A multi-label model raises: its results have no single label to compare."""
    if mtime_ns < 0 and not model.lstrip().startswith("{"):
        return None
    try:
        return model_classes(model)
    except UnsupportedModelError:
        raise
    except GeoclassifyError:
        return None


def _stamp(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return -1, -1
    return stat.st_mtime_ns, stat.st_size


def _png(evaluation: Evaluation) -> bytes:
    from geoclassify.evaluation.plot import draw

    try:
        figure = draw(evaluation)
    except MissingExtraError as exc:
        raise NotInstalled(f"evaluation.png: the server cannot draw the matrix, {exc}") from None
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)  # its own canvas, never pyplot's global state (routes run in threads)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15)
    return buffer.getvalue()
