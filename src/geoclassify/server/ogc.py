"""OGC API - Processes 1.0 at ``/ogcapi``: landing page, conformance, the process list and descriptions (inputs as
JSON Schema), asynchronous execution, the job list with the standard filters, status, results (document form,
outputs by reference), dismiss, and this API's OpenAPI document."""

from __future__ import annotations

import copy
import datetime as dt
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from .._version import __version__
from .errors import InputError, JobFailed, NoSuchJob, NoSuchProcess, NotFound, ResultNotReady
from .jobs import ACCEPTED, CANCELLING, DISMISSED, FAILED, RUNNING, SUCCESSFUL, Job
from .results import FORMATS
from .schemas import ConfClasses, Execute, JobList, LandingPage, OgcException, Process, ProcessList, StatusInfo
from .services import current_user, services
from .status import last_message, ogc_status
from .tool import CLASSIFY, DESCRIPTIONS, PARAMETERS, TASKS, TITLES, inputs_of
from .users import User

PREFIX = "/ogcapi"
CONFORMANCE = [
    f"http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/{name}"
    for name in ("core", "ogc-process-description", "json", "oas30", "job-list", "dismiss")
]
#: OGC's status words as the store's states ("running" covers a job being cancelled).
STATES = {
    "accepted": [ACCEPTED],
    "running": [RUNNING, CANCELLING],
    "successful": [SUCCESSFUL],
    "failed": [FAILED],
    "dismissed": [DISMISSED],
}
_INSTANT = (
    r"(?:[12]\d{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
    r"(?:Z|[+-](?:0\d|1[0-3]):[0-5]\d))"
)
#: OGC's ``datetime`` filter: an RFC 3339 instant, or an interval of two with ``..`` (or nothing) for an open end.
INTERVAL = rf"^(?:{_INSTANT}|(?:{_INSTANT}|\.\.)?/(?:{_INSTANT}|\.\.)?)$"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OgcException, "description": text}
    for code, text in ((400, "Invalid request"), (401, "No valid token"), (404, "Not found"))
}

bearer = HTTPBearer(auto_error=False, description="A token from `geoclassify users add NAME`.")


async def ogc_user(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None) -> User:
    return await current_user(request)


UserDep = Annotated[User, Depends(ogc_user)]
router = APIRouter(prefix=PREFIX, tags=["OGC API - Processes"], responses=ERRORS)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


@router.get("", response_model=LandingPage, response_model_exclude_none=True, summary="Landing page")
@router.get("/", response_model=LandingPage, response_model_exclude_none=True, include_in_schema=False)
def landing(request: Request) -> dict[str, Any]:
    base = _base(request)
    return {
        "title": "geoclassify",
        "description": "Classify objects in imagery with deep learning (OGC API - Processes)",
        "links": [
            {"href": base, "rel": "self", "type": "application/json"},
            {"href": f"{base}/api", "rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0"},
            {
                "href": f"{base}/conformance",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/conformance",
                "type": "application/json",
            },
            {
                "href": f"{base}/processes",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/processes",
                "type": "application/json",
            },
            {
                "href": f"{base}/jobs",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/job-list",
                "type": "application/json",
            },
        ],
    }


@router.get("/conformance", response_model=ConfClasses, response_model_exclude_none=True, summary="Conformance classes")
def conformance() -> dict[str, Any]:
    return {"conformsTo": CONFORMANCE}


@router.get("/api", summary="This API's OpenAPI document")
def openapi_document(request: Request) -> JSONResponse:
    """The OGC paths of the application's OpenAPI document, in OpenAPI 3.0 (OGC's ``oas30``)."""
    document = copy.deepcopy(request.app.openapi())
    document["openapi"] = "3.0.3"
    document["info"] = {"title": "geoclassify OGC API - Processes", "version": __version__}
    document["paths"] = {path: spec for path, spec in document["paths"].items() if path.startswith(PREFIX)}
    return JSONResponse(as_openapi30(document), media_type="application/vnd.oai.openapi+json;version=3.0")


def as_openapi30(node: Any) -> Any:
    """OpenAPI 3.1's ``anyOf: [X, {"type": "null"}]`` (what pydantic writes for optional values) as 3.0's
    ``X`` with ``nullable: true``; ``examples`` lists, which 3.0 schemas lack, are dropped."""
    if isinstance(node, list):
        return [as_openapi30(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: as_openapi30(v) for k, v in node.items() if not (k == "examples" and isinstance(v, list))}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        node.pop("anyOf")
        node.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        node["nullable"] = True
    if isinstance(node.get("type"), list):  # ["string", "number", ...] in our own schemas
        node["anyOf"] = [{"type": t} for t in node.pop("type")]
    return node


def _summary(request: Request, task: str) -> dict[str, Any]:
    return {
        "id": task,
        "title": TITLES[task],
        "description": DESCRIPTIONS[task],
        "version": __version__,
        "jobControlOptions": ["async-execute", "dismiss"],
        "outputTransmission": ["reference"] if task == CLASSIFY else ["value"],
        "links": [{"href": f"{_base(request)}/processes/{task}", "rel": "self", "type": "application/json"}],
    }


@router.get("/processes", response_model=ProcessList, response_model_exclude_none=True, summary="The processes")
def processes(request: Request, user: UserDep) -> dict[str, Any]:
    return {
        "processes": [_summary(request, t) for t in TASKS],
        "links": [{"href": f"{_base(request)}/processes", "rel": "self", "type": "application/json"}],
    }


def _process(task: str) -> str:
    if task not in TASKS:
        raise NoSuchProcess(f"there is no process {task!r}; there are {', '.join(TASKS)}")
    return task


@router.get(
    "/processes/{processID}",
    response_model=Process,
    response_model_exclude_none=True,
    summary="A process's description",
)
def process(request: Request, processID: str, user: UserDep) -> dict[str, Any]:
    task = _process(processID)
    outputs = [p for p in PARAMETERS[task] if p.output]
    return {
        **_summary(request, task),
        "inputs": {
            p.name: {
                "title": p.display,
                "description": p.description,
                "schema": p.schema,
                "minOccurs": int(p.required and p.name != "outputFeatureClass"),
                "maxOccurs": 1,
            }
            for p in inputs_of(task)
        },
        "outputs": {
            p.name: {
                "title": p.display,
                "description": p.description,
                "schema": {"type": "string", "contentMediaType": FORMATS["gpkg"][0]} if task == CLASSIFY else p.schema,
            }
            for p in outputs
        },
    }


def _time(value: float | None) -> str | None:
    return dt.datetime.fromtimestamp(value, dt.timezone.utc).isoformat() if value is not None else None


def status_info(request: Request, job: Job, status: str | None = None) -> dict[str, Any]:
    base = _base(request)
    status = status or ogc_status(job)
    links = [{"href": f"{base}/jobs/{job.id}", "rel": "self", "type": "application/json"}]
    if status == "successful":
        links.append(
            {
                "href": f"{base}/jobs/{job.id}/results",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/results",
                "type": "application/json",
            }
        )
    return {
        "processID": job.process,
        "type": "process",
        "jobID": job.id,
        "status": status,
        "message": last_message(job),
        "created": _time(job.created),
        "started": _time(job.started),
        "finished": _time(job.finished),
        "updated": _time(job.updated),
        "progress": job.progress,
        "links": links,
    }


def prefers_async(prefer: str | None) -> bool:
    """RFC 7240: ``Prefer`` is a comma-separated list of preferences, each a token with optional parameters."""
    tokens = [part.split(";")[0].split("=")[0].strip().lower() for part in (prefer or "").split(",")]
    return "respond-async" in tokens


def _unwrap(value: Any) -> Any:
    """An OGC input value as the tool's parameter: ``{"value": X}`` is X, ``{"href": URL}`` a ``url`` input."""
    if isinstance(value, dict):
        if "value" in value and set(value) <= {"value", "mediaType", "encoding", "schema"}:
            return value["value"]
        if "href" in value and set(value) <= {"href", "type", "rel", "title", "hreflang"}:
            return {"url": value["href"]}
    return value


@router.post(
    "/processes/{processID}/execution",
    status_code=201,
    response_model=StatusInfo,
    response_model_exclude_none=True,
    summary="Execute a process (asynchronously)",
    responses={
        201: {
            "description": "The job was created; Location is its status",
            "headers": {"Location": {"schema": {"type": "string"}, "description": "The job's status URL"}},
        }
    },
)
async def execute(
    request: Request,
    processID: str,
    body: Execute,
    user: UserDep,
    prefer: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    task = _process(processID)
    store = services(request)
    params = {name: _unwrap(value) for name, value in body.inputs.items()}
    job = await run_in_threadpool(store.submit, user, task, params, True)
    headers = {"Location": f"{_base(request)}/jobs/{job.id}"}
    if prefers_async(prefer):
        headers["Preference-Applied"] = "respond-async"
    return JSONResponse(
        StatusInfo(**status_info(request, job)).model_dump(mode="json", exclude_none=True), 201, headers=headers
    )


def _interval(text: str) -> tuple[float | None, float | None]:
    """OGC's ``datetime``: an instant, or ``start/end`` with ``..`` (or nothing) for an open end."""

    def instant(part: str) -> float | None:
        part = part.strip()
        if part in ("", ".."):
            return None
        try:
            return dt.datetime.fromisoformat(part.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise InputError(f"datetime: {part!r} is not an RFC 3339 date-time") from None

    if "/" in text:
        start, end = text.split("/", 1)
        return instant(start), instant(end)
    moment = instant(text)
    return moment, moment


@router.get("/jobs", response_model=JobList, response_model_exclude_none=True, summary="The jobs")
def jobs(
    request: Request,
    user: UserDep,
    type: Annotated[list[str] | None, Query()] = None,
    processID: Annotated[list[str] | None, Query()] = None,
    status: Annotated[list[Literal["accepted", "running", "successful", "failed", "dismissed"]] | None, Query()] = None,
    datetime: Annotated[str | None, Query(pattern=INTERVAL)] = None,
    minDuration: Annotated[int | None, Query(ge=0)] = None,
    maxDuration: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    unknown = sorted(set(status or ()) - set(STATES))
    if unknown:
        raise InputError(f"status: {', '.join(unknown)} is not a job status; use {', '.join(STATES)}")
    if type and "process" not in type:
        found: list[Job] = []
    else:
        start, end = _interval(datetime) if datetime else (None, None)
        states = [s for name in status or () for s in STATES[name]] or None
        found = services(request).jobs.list(
            user, processes=processID or None, statuses=states, created_from=start, created_to=end, limit=10**9
        )
    now = time.time()

    def duration(job: Job) -> float:
        return ((job.finished or now) - job.started) if job.started else 0.0

    found = [
        j
        for j in found
        if (minDuration is None or duration(j) >= minDuration) and (maxDuration is None or duration(j) <= maxDuration)
    ]
    page = found[offset : offset + limit]
    links = [{"href": str(request.url), "rel": "self", "type": "application/json"}]
    if offset + limit < len(found):
        links.append(
            {
                "href": str(request.url.include_query_params(offset=offset + limit, limit=limit)),
                "rel": "next",
                "type": "application/json",
            }
        )
    return {"jobs": [status_info(request, j) for j in page], "links": links}


def _job(request: Request, job_id: str, user: User) -> Job:
    try:
        return services(request).jobs.get(job_id, user)
    except NotFound:
        raise NoSuchJob(f"there is no job {job_id!r}") from None


@router.get("/jobs/{jobId}", response_model=StatusInfo, response_model_exclude_none=True, summary="A job's status")
def job(request: Request, jobId: str, user: UserDep) -> dict[str, Any]:
    return status_info(request, _job(request, jobId, user))


@router.delete(
    "/jobs/{jobId}",
    response_model=StatusInfo,
    response_model_exclude_none=True,
    summary="Dismiss a job: cancel it, or forget it",
)
def dismiss(request: Request, jobId: str, user: UserDep) -> dict[str, Any]:
    """A job that has not ended is cancelled (a running one stops within seconds, leaving no result); the job
    then leaves the job list. A result already published stays in My Content."""
    store = services(request).jobs
    found = _job(request, jobId, user)
    cancelled = store.cancel(found.id)
    store.hide(found.id)
    return status_info(request, cancelled, status="dismissed")


@router.get(
    "/jobs/{jobId}/results",
    summary="A job's results (document, by reference)",
    responses={
        200: {"description": "The results, by name"},
        500: {"model": OgcException, "description": "The job failed"},
    },
)
def results(request: Request, jobId: str, user: UserDep) -> dict[str, Any]:
    found = _job(request, jobId, user)
    if found.status == FAILED:
        raise JobFailed(f"job {found.id} failed: {last_message(found)}")
    if found.status == DISMISSED:
        raise ResultNotReady(f"job {found.id} was dismissed; it has no results")
    if found.status != SUCCESSFUL or found.result is None:
        raise ResultNotReady(f"job {found.id} is {ogc_status(found)}; its results are not ready")
    if found.process != CLASSIFY:
        return {"outModelInfo": {"value": found.result, "mediaType": "application/json"}}
    item_id = found.result["itemId"]
    base = str(request.base_url).rstrip("/")
    return {
        "outObjects": {
            "href": f"{base}/api/items/{item_id}/data?format=gpkg",
            "type": FORMATS["gpkg"][0],
            "rel": "http://www.opengis.net/def/rel/iana/1.0/item",
            "title": f"{found.output_name} (item {item_id})",
        }
    }
