"""The daemon's exceptions: one root, and request errors that become 4xx answers."""

from __future__ import annotations


class DaemonError(Exception):
    """Root of every error the daemon raises on purpose."""


class RequestError(DaemonError):
    """A request the daemon refuses; the API answers `status` with the one-line message."""

    status = 422
    code = "invalid"

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class RunNotFound(RequestError):
    status = 404
    code = "run_not_found"


class ProjectNotFound(RequestError):
    status = 404
    code = "project_not_found"


class Conflict(RequestError):
    """The run is in a state where this cannot be done (cancel a finished run, …)."""

    status = 409
    code = "conflict"
