"""OGC API - Processes 1.0 documents as pydantic models: FastAPI checks every answer against them and puts them in
the OpenAPI document, which clients (and schemathesis) read."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Link(BaseModel):
    href: str
    rel: str | None = None
    type: str | None = None
    title: str | None = None


class LandingPage(BaseModel):
    title: str
    description: str
    links: list[Link]


class ConfClasses(BaseModel):
    conformsTo: list[str]


class ProcessSummary(BaseModel):
    id: str
    title: str
    description: str
    version: str
    jobControlOptions: list[Literal["async-execute", "sync-execute", "dismiss"]]
    outputTransmission: list[Literal["value", "reference"]]
    links: list[Link]


class ProcessList(BaseModel):
    processes: list[ProcessSummary]
    links: list[Link]


class InputDescription(BaseModel):
    title: str
    description: str
    schema_: dict[str, Any] = Field(alias="schema")
    minOccurs: int
    maxOccurs: int

    model_config = ConfigDict(populate_by_name=True)


class OutputDescription(BaseModel):
    title: str
    description: str
    schema_: dict[str, Any] = Field(alias="schema")

    model_config = ConfigDict(populate_by_name=True)


class Process(ProcessSummary):
    inputs: dict[str, InputDescription]
    outputs: dict[str, OutputDescription]


class Execute(BaseModel):
    """The execute request: ``inputs`` by name (a value, ``{"value": ...}`` or ``{"href": ...}``)."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    response: Literal["document", "raw"] = "document"
    subscriber: dict[str, Any] | None = None


class StatusInfo(BaseModel):
    processID: str | None = None
    type: Literal["process"] = "process"
    jobID: str
    status: Literal["accepted", "running", "successful", "failed", "dismissed"]
    message: str | None = None
    created: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    updated: datetime | None = None
    progress: int | None = Field(default=None, ge=0, le=100)
    links: list[Link] = Field(default_factory=list)


class JobList(BaseModel):
    jobs: list[StatusInfo]
    links: list[Link]


class OgcException(BaseModel):
    """An exception document (RFC 7807 fields): ``type`` names the kind, ``detail`` says what to do."""

    type: str
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    instance: str | None = None
