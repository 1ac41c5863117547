"""One state machine, two views: a job's state in Esri's words and in OGC's, from the same row."""

from __future__ import annotations

from .jobs import ACCEPTED, CANCELLING, DISMISSED, FAILED, RUNNING, SUCCESSFUL, Job

ESRI_MESSAGE_TYPES = {
    "info": "esriJobMessageTypeInformative",
    "warning": "esriJobMessageTypeWarning",
    "error": "esriJobMessageTypeError",
}


def esri_status(job: Job) -> str:
    """esriJobSubmitted until a worker first takes the job, esriJobWaiting when it is queued again."""
    if job.status == ACCEPTED:
        return "esriJobSubmitted" if job.attempts == 0 else "esriJobWaiting"
    return {
        RUNNING: "esriJobExecuting",
        CANCELLING: "esriJobCancelling",
        SUCCESSFUL: "esriJobSucceeded",
        FAILED: "esriJobFailed",
        DISMISSED: "esriJobCancelled",
    }[job.status]


def ogc_status(job: Job) -> str:
    """OGC has no word for "cancelling": the job still runs until its worker stops it."""
    return {
        ACCEPTED: "accepted",
        RUNNING: "running",
        CANCELLING: "running",
        SUCCESSFUL: "successful",
        FAILED: "failed",
        DISMISSED: "dismissed",
    }[job.status]


def esri_messages(job: Job) -> list[dict[str, str]]:
    return [{"type": ESRI_MESSAGE_TYPES[m["level"]], "description": m["text"]} for m in job.messages]


def last_message(job: Job) -> str:
    return job.messages[-1]["text"] if job.messages else ""
