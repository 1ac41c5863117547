"""What every route needs, made once per server: the settings and the stores over the one database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from geoclassify import GeoclassifyError, RunRequest

from .config import ServerConfig
from .db import Database
from .errors import NotAuthorized, NotFound
from .inputs import Resolver
from .items import Item, ItemStore
from .jobs import Job, JobStore, new_id
from .tool import plan_job
from .users import User, Users


@dataclass
class Services:
    config: ServerConfig
    db: Database
    jobs: JobStore
    items: ItemStore
    users: Users

    @classmethod
    def open(cls, config: ServerConfig) -> Services:
        db = Database(config.state)
        return cls(config, db, JobStore(db), ItemStore(db), Users(db))

    def job_request(self, item: Item) -> RunRequest | None:
        """The request of the job that made a result item (its model, its label field), while the job is recorded."""
        if not item.job_id:
            return None
        try:
            return RunRequest.from_json(self.jobs.get(item.job_id).request)
        except (NotFound, GeoclassifyError, ValueError, TypeError):
            return None

    def submit(self, user: User, task: str, params: Mapping[str, Any], default_name: bool) -> Job:
        """Check and resolve a job's inputs and store it: what both APIs do on submission (blocking: call it in
        a thread from a route)."""
        job_id = new_id()
        plan = plan_job(task, params, Resolver(self.config, self.items, user), self.config, job_id, default_name)
        return self.jobs.submit(
            user.name,
            plan.process,
            plan.request,
            output_name=plan.output_name,
            inputs=plan.inputs,
            uses=plan.uses,
            max_attempts=plan.max_attempts,
            job_id=job_id,
        )


def services(request: Request) -> Services:
    return request.app.state.services


async def token_of(request: Request) -> str | None:
    """The token from ``Authorization: Bearer T``, Esri's ``X-Esri-Authorization: Bearer T``, or a ``token``
    parameter (query string or form body)."""
    for header in ("authorization", "x-esri-authorization"):
        scheme, _, token = request.headers.get(header, "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    token = request.query_params.get("token")
    if (
        not token
        and request.method == "POST"
        and "application/x-www-form-urlencoded" in request.headers.get("content-type", "")
    ):
        value = (await request.form()).get("token")
        token = value if isinstance(value, str) else None
    return token or None


async def current_user(request: Request) -> User:
    """The user the request's token belongs to; 401 without a valid one."""
    token = await token_of(request)
    if token is None:
        raise NotAuthorized(
            "token required: send 'Authorization: Bearer TOKEN' (geoclassify users add NAME prints one)"
        )
    user = services(request).users.by_token(token)
    if user is None:
        raise NotAuthorized("invalid token: no user holds it (geoclassify users list shows who may sign in)")
    return user
