"""The service's domain errors: what the data layer and the job states refuse, in one line, with no HTTP in them.

``service/app.py`` answers them as HTTP (``NotFound`` 404, ``Conflict`` 409, ``Invalid`` 422); the
dashboard, the CLI and the worker use the same store and job functions and read the same errors.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal with a one-line ``message`` the caller may be shown."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    """The thing asked for is not the caller's project's (or does not exist: the two are not told apart)."""


class Conflict(ServiceError):
    """The request does not fit the thing's current state (e.g. cancelling a finished audit)."""


class Invalid(ServiceError):
    """The request names things that cannot go together (e.g. an imitator and demonstrations of two envs)."""
