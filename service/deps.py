"""What every route depends on: the service's shared state (:class:`service.runtime.Service`), the caller (token ->
principal), and the HTTP error type.

``ServiceDep``, ``Reader`` and ``Submitter`` are ``Annotated`` aliases for route signatures.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.auth import Principal, principal_for, request_token
from service.runtime import Service


class ApiError(Exception):
    """A 4xx (or 503) answer with one line."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def principal(request: Request) -> Principal:
    """The caller of a route that needs any token (read or submit)."""
    svc = get_service(request)
    token = request_token(request.headers, request.cookies)
    with svc.sessions() as s:
        who = principal_for(s, token)
    if who is None:
        raise ApiError(
            401,
            "missing or unknown API token" if token else "this route needs an API token (Authorization: Bearer ...)",
        )
    return who


def submitter(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """The caller of a route that writes (uploads, audits, cancellation): a submit token."""
    if not who.can_submit():
        raise ApiError(403, "this token may only read; uploads, audits and cancellation need a submit token")
    return who


Reader = Annotated[Principal, Depends(principal)]
Submitter = Annotated[Principal, Depends(submitter)]
