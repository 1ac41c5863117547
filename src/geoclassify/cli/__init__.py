"""The ``geoclassify`` command: a thin shell over :mod:`geoclassify.api`.

Every error a user can cause ends as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from typing import Any

import click

from ..errors import GeoclassifyError, GeoclassifyWarning, RunInterrupted, render

# The server's commands import FastAPI only when `serve` runs, so `geoclassify --help` does not need the serve extra.
from ..server.commands import serve, users
from .classify import classify, classify_request
from .group import cli
from .models import convert, inspect, package
from .tools import evaluate_command, layers_command, sample

__all__ = [
    "classify",
    "classify_request",
    "cli",
    "cli_words",
    "convert",
    "evaluate_command",
    "inspect",
    "layers_command",
    "main",
    "package",
    "sample",
]

EXIT_ERROR = 1
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    text = message.render(cli_words()) if isinstance(message, GeoclassifyWarning) else message
    click.echo(f"geoclassify: warning: {text}", err=True)


def cli_words() -> dict[str, str]:
    """Each run setting by the ``classify`` option that sets it, for messages: ``«cell_size»`` is ``--cell-size``
    (then ``evaluate``'s own, such as ``«layer_name»``, ``--layer``)."""
    from ..request import KEYWORD_SETTINGS  # only when there is a message to word: `--help` stays light

    evaluate_words = {str(o.name): o.opts[0] for o in evaluate_command.params if isinstance(o, click.Option)}
    return {
        **evaluate_words,
        **{
            KEYWORD_SETTINGS.get(str(option.name), str(option.name)): option.opts[0]
            for option in classify.params
            if isinstance(option, click.Option)
        },
    }


cli.add_command(serve)
cli.add_command(users)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command and turn every expected failure into one line and an exit code."""
    warnings.showwarning = _show_warning
    # Users see geoclassify's own warnings, once each; libraries' deprecation notes are for developers.
    warnings.simplefilter("ignore")
    warnings.simplefilter("default", GeoclassifyWarning)
    _stop_on_sigterm()
    try:
        cli.main(args=argv, prog_name="geoclassify", standalone_mode=False)
    except GeoclassifyError as exc:
        click.echo(f"geoclassify: error: {exc.render(cli_words())}", err=True)
        return EXIT_ERROR
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # click turns Ctrl-C into Abort; the run's own message, if any, rides along as its cause.
        cause = exc if isinstance(exc, RunInterrupted) else exc.__cause__ or exc.__context__
        if isinstance(cause, RunInterrupted):
            click.echo(f"geoclassify: {render(str(cause), cli_words())}; no output was written yet", err=True)
        else:
            click.echo("geoclassify: interrupted; no output was written", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Exception as exc:
        if os.environ.get("GEOCLASSIFY_DEBUG"):
            raise
        click.echo(
            f"geoclassify: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in geoclassify; run again with GEOCLASSIFY_DEBUG=1 for the traceback and report it.",
            err=True,
        )
        return EXIT_INTERNAL
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, a service manager) stops a run as Ctrl-C does: results so far are saved, worker
    processes are shut down, and the message says how to resume. Python's default would end the process on the
    spot, skipping all of that."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (an embedding program): keep its handler
        signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    sys.exit(main())
