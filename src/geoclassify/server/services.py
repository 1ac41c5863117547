"""What every route needs, made once per server: the settings and the stores over the one database."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from .config import ServerConfig
from .db import Database
from .errors import NotAuthorized
from .items import ItemStore
from .jobs import JobStore
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
