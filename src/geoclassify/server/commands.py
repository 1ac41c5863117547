"""``geoclassify serve`` and ``geoclassify users``: the server's command line. FastAPI and uvicorn are imported
only when ``serve`` runs, so the rest of the command line works (and starts fast) without the ``serve`` extra."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from geoclassify.errors import MissingExtraError

if TYPE_CHECKING:
    from .users import Users

STATE_HELP = "Folder of the job store, the content and the results (default: under the user's data directory)."


# The server's own modules are imported by the commands that use them: every other command (a classify run) starts
# without them.


def _state(value: str | None) -> Path:
    from .config import default_state

    return Path(value).expanduser().resolve() if value else default_state()


def _users(state: str | None) -> Users:
    from .db import Database
    from .users import Users

    return Users(Database(_state(state)))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--state", metavar="DIR", help=STATE_HELP)
@click.option(
    "--data-root",
    "data_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help='A folder whose files jobs may name as {"uri": PATH}. Repeatable; without one, only uploaded items are read.',
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256), help="Jobs run at once.")
@click.option("--scheduler", metavar="ADDRESS", help="Run every job's batches on this Dask scheduler.")
@click.option("--trust-code", is_flag=True, help="Allow packages with Python inference functions (they are code).")
@click.option(
    "--allow-remote", is_flag=True, help='Allow {"url": URL} inputs (public http(s) addresses only, read by GDAL).'
)
def serve(
    host: str,
    port: int,
    state: str | None,
    data_roots: tuple[str, ...],
    workers: int,
    scheduler: str | None,
    trust_code: bool,
    allow_remote: bool,
) -> None:
    """Serve Esri's raster-analysis GP REST API and OGC API - Processes (needs geoclassify[serve]).

    Jobs are durable: Ctrl-C or SIGTERM stops the server cleanly, and jobs that were queued or running go on
    when it starts again on the same --state.
    """
    try:
        import uvicorn

        from .app import create_app
        from .config import ServerConfig
        from .errors import Conflict
    except ImportError as exc:
        raise MissingExtraError(
            f"geoclassify serve needs the serve extra ({exc.name} is missing): pip install 'geoclassify[serve]'"
        ) from None
    config = ServerConfig(
        state=_state(state),
        data_roots=tuple(Path(r).resolve() for r in data_roots),
        workers=workers,
        scheduler=scheduler,
        trust_code=trust_code,
        allow_remote=allow_remote,
    )
    config.state.mkdir(parents=True, exist_ok=True)
    lock = os.open(config.state / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Conflict(f"another geoclassify server uses --state {os.fspath(config.state)}; stop it first") from None
    app = create_app(config)
    click.echo(
        f"geoclassify: serving on http://{host}:{port} (state {os.fspath(config.state)}, {workers} worker"
        f"{'s' * (workers > 1)}); Ctrl-C stops",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    os.close(lock)


@click.group()
def users() -> None:
    """Add, list and remove the server's users (each signs in with an API token)."""


@users.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="The user sees and manages every user's items and jobs.")
@click.option("--state", metavar="DIR", help=STATE_HELP)
def add_user(name: str, admin: bool, state: str | None) -> None:
    """Add user NAME and print its API token (shown once; only its hash is kept)."""
    token = _users(state).add(name, admin)
    click.echo(token)


@users.command("list")
@click.option("--state", metavar="DIR", help=STATE_HELP)
def list_users(state: str | None) -> None:
    """List the users."""
    for user in _users(state).all():
        click.echo(f"{user.name}{' (admin)' if user.admin else ''}")


@users.command("remove")
@click.argument("name")
@click.option("--state", metavar="DIR", help=STATE_HELP)
def remove_user(name: str, state: str | None) -> None:
    """Remove user NAME: its token stops working (its items and jobs stay, for an admin)."""
    _users(state).remove(name)
    click.echo(f"removed {name}")
