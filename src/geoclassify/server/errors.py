"""What a server user can get wrong, as classes of geoclassify's error tree, so every API turns them into its own
error document (Esri's ``error`` JSON, an OGC exception, a problem document) with the same one-line message."""

from __future__ import annotations

from geoclassify.errors import GeoclassifyError


class ServerError(GeoclassifyError):
    """Base of the service's own errors; ``status`` is the HTTP status it answers with."""

    status = 400


class InputError(ServerError, ValueError):
    """A job parameter, an input reference or an upload is unusable; the message names it."""


class NotAuthorized(ServerError, PermissionError):
    """No token, or a token no user holds."""

    status = 401


class Forbidden(ServerError, PermissionError):
    """The user is known but may not do this (an admin's command, a path outside the data roots)."""

    status = 403


class NotFound(ServerError, LookupError):
    """No such item or job, or one that belongs to another user (which is not told apart, on purpose)."""

    status = 404


class Conflict(ServerError):
    """The name is taken, or the item is in use by a job that has not ended."""

    status = 409


class NotInstalled(ServerError):
    """What was asked needs an extra the server's installation lacks (the administrator can add it)."""

    status = 501


class TooLarge(ServerError):
    """An upload over the server's size cap."""

    status = 413


OGC_EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"


class NoSuchProcess(NotFound):
    ogc_type = OGC_EXCEPTIONS + "no-such-process"


class NoSuchJob(NotFound):
    ogc_type = OGC_EXCEPTIONS + "no-such-job"


class ResultNotReady(NotFound):
    ogc_type = OGC_EXCEPTIONS + "result-not-ready"


class JobFailed(ServerError):
    """The results of a job that failed: the job's own error, answered as OGC's results of a failed job are."""

    status = 500
    ogc_type = OGC_EXCEPTIONS + "job-failed"
