"""Esri's geoprocessing REST API at the path of ArcGIS's raster-analysis service, so Esri's clients (the ArcGIS
API for Python's ``import_toolbox``, web apps) work unchanged: the service and task JSON, ``submitJob``, job
status with messages, results and cancel, GET and form-encoded POST alike, ``f=json`` or ``pjson``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .errors import InputError, NotFound
from .inputs import parse_reference
from .jobs import SUCCESSFUL, Job
from .results import feature_set
from .services import current_user, services
from .status import esri_messages, esri_status
from .tool import CLASSIFY, DESCRIPTIONS, PARAMETERS, TASKS, TITLES

PREFIX = "/arcgis/rest/services/System/RasterAnalysisTools/GPServer"
CURRENT_VERSION = 11.3
#: Parameters every GP request may carry that are not the task's.
_ENVELOPE = {"f", "token", "returnZ", "returnM", "returnMessages", "returnFeatureCollection"}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


async def parameters(request: Request) -> dict[str, str]:
    """Query string and form body as one set of parameters (the form wins), as ArcGIS Server reads them."""
    params = dict(request.query_params)
    if request.method == "POST" and "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def reply(data: dict[str, Any], params: dict[str, str]) -> Response:
    """JSON, indented for ``f=pjson``."""
    fmt = params.get("f", "json").lower()
    if fmt not in ("json", "pjson", "html"):
        raise InputError(f"f={fmt}: this server answers f=json or f=pjson")
    if fmt == "pjson":
        return Response(json.dumps(data, indent=2), media_type="application/json")
    return JSONResponse(data)


def _task(task: str) -> str:
    if task not in TASKS:
        raise NotFound(f"the service has no task {task!r}; it has {', '.join(TASKS)}")
    return task


@router.api_route("", methods=["GET", "POST"])
async def service(request: Request) -> Response:
    params = await parameters(request)
    await current_user(request)
    return reply(
        {
            "currentVersion": CURRENT_VERSION,
            "serviceDescription": "geoclassify: Classify Objects Using Deep Learning, Query Deep Learning Model Info",
            "tasks": list(TASKS),
            "executionType": "esriExecutionTypeAsynchronous",
            "resultMapServerName": "",
            "maximumRecords": services(request).config.inline_features,
        },
        params,
    )


@router.api_route("/{task}", methods=["GET", "POST"])
async def task_info(request: Request, task: str) -> Response:
    params = await parameters(request)
    await current_user(request)
    task = _task(task)
    return reply(
        {
            "name": task,
            "displayName": TITLES[task],
            "description": DESCRIPTIONS[task],
            "category": "",
            "helpUrl": "",
            "executionType": "esriExecutionTypeAsynchronous",
            "parameters": [p.esri() for p in PARAMETERS[task]],
        },
        params,
    )


@router.api_route("/{task}/submitJob", methods=["GET", "POST"])
async def submit_job(request: Request, task: str) -> Response:
    params = await parameters(request)
    user = await current_user(request)
    task = _task(task)
    store = services(request)
    given = {k: v for k, v in params.items() if k not in _ENVELOPE and not k.startswith("env:") and v != ""}
    if params.get("env:outSR") and task == CLASSIFY:  # arcgis.env.out_spatial_reference
        context = parse_reference(given.get("context"), "context") or {}
        if isinstance(context, dict):
            given["context"] = json.dumps({"outSR": params["env:outSR"], **context})
    job = await run_in_threadpool(store.submit, user, task, given, False)
    return reply({"jobId": job.id, "jobStatus": esri_status(job)}, params)


async def _job(request: Request, task: str, job_id: str) -> tuple[Job, dict[str, str]]:
    params = await parameters(request)
    user = await current_user(request)
    task = _task(task)
    job = services(request).jobs.get(job_id, user)
    if job.process != task:
        raise NotFound(f"there is no job {job_id!r}")
    return job, params


def job_json(job: Job) -> dict[str, Any]:
    data: dict[str, Any] = {
        "jobId": job.id,
        "jobStatus": esri_status(job),
        "messages": esri_messages(job),
        "progress": {
            "type": "default",
            "message": job.messages[-1]["text"] if job.messages else "",
            "percent": job.progress,
        },
        "inputs": {},
        "results": {},
    }
    if job.status == SUCCESSFUL:
        output = next(p.name for p in PARAMETERS[job.process] if p.output)
        data["results"] = {output: {"paramUrl": f"results/{output}"}}
    return data


@router.api_route("/{task}/jobs/{job_id}", methods=["GET", "POST"])
async def job_status(request: Request, task: str, job_id: str) -> Response:
    job, params = await _job(request, task, job_id)
    return reply(job_json(job), params)


@router.api_route("/{task}/jobs/{job_id}/cancel", methods=["GET", "POST"])
async def cancel_job(request: Request, task: str, job_id: str) -> Response:
    job, params = await _job(request, task, job_id)
    job = services(request).jobs.cancel(job.id)
    return reply({"jobId": job.id, "jobStatus": esri_status(job), "messages": esri_messages(job)}, params)


@router.api_route("/{task}/jobs/{job_id}/results/{param}", methods=["GET", "POST"])
async def job_result(request: Request, task: str, job_id: str, param: str) -> Response:
    job, params = await _job(request, task, job_id)
    output = next(p for p in PARAMETERS[job.process] if p.output)
    if param != output.name:
        raise NotFound(f"task {job.process} has no result {param!r}; its result is {output.name}")
    if job.status != SUCCESSFUL or job.result is None:
        raise InputError(f"job {job.id} has no result: it is {esri_status(job)}")
    if job.process != CLASSIFY:
        value: dict[str, Any] = job.result
    else:
        value = await run_in_threadpool(out_objects, request, job)
    return reply({"paramName": output.name, "dataType": output.data_type, "value": value}, params)


def out_objects(request: Request, job: Job) -> dict[str, Any]:
    """The result item's id and where to download it and, for results of up to ``inline_features`` features,
    the features themselves as a FeatureSet (which Esri's Python client turns into its FeatureSet). There is no
    ``url`` key: Esri's client takes a value with one for a feature service layer and contacts it."""
    store = services(request)
    item_id = (job.result or {})["itemId"]
    base = str(request.base_url).rstrip("/")
    value: dict[str, Any] = {"itemId": item_id, "dataUrl": f"{base}/api/items/{item_id}/data"}
    try:
        item = store.items.get(item_id)
    except NotFound:
        return {**value, "removed": True}
    value.update(itemName=item.name, featureCount=item.info.get("features"))
    if (item.info.get("features") or 0) <= store.config.inline_features:
        value.update(feature_set(item.path, item.info.get("layer")))
    return value
