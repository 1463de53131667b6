"""The HTTP service as an ASGI app: middleware, error handlers and the routers, assembled.

Every route but ``/healthz`` (and the OpenAPI pages, unless ``IMITAUDIT_DOCS=false``) needs a token (see
:mod:`service.auth`); everything a route
returns or touches belongs to the token's project, and anything else is a 404, exactly as
if it did not exist. Errors are JSON ``{"error": "<one line>"}`` with a 4xx status.
"""

from __future__ import annotations

import errno
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.deps import ApiError
from service.errors import Conflict, Invalid, NotFound, ServiceError
from service.guard import guard
from service.routes import audits, ops, reports, uploads
from service.runtime import Service
from service.settings import Settings

log = logging.getLogger("imitaudit.api")

_NOUNS = {"settings": "setting", "policy": "policy field"}


DOMAIN_STATUS = ((NotFound, 404), (Conflict, 409), (Invalid, 422), (ServiceError, 400))
"""How the data layer's refusals (:mod:`service.errors`) are answered."""


def validation_message(error: dict[str, Any]) -> tuple[int, str]:
    """One line (and a status) for the first error of a request that does not fit its model."""
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    kind = error.get("type", "")
    if kind == "json_invalid":
        return 400, "the body must be JSON"
    if kind == "extra_forbidden" and loc:
        return 422, f"unknown {_NOUNS.get(loc[-2], 'field') if len(loc) > 1 else 'field'} {loc[-1]}"
    if not loc and kind in ("model_attributes_type", "dict_type", "model_type"):
        return 422, "the body must be a JSON object with imitator and demonstrations"
    where = ".".join(loc)
    return 422, f"{where}: {error.get('msg')}" if where else str(error.get("msg"))


def fault_message(exc: BaseException) -> tuple[int, str]:
    """A status and one line for a fault of the server's own resources: a full disk (507), an unreachable database
    (503)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    cause = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return 507, "the server's disk is full; nothing was stored; try again later"
        if (
            isinstance(cause, (OperationalError, DBAPIError))
            and "disk" in str(cause).lower()
            and "full" in str(cause).lower()
        ):
            return 507, "the server's database disk is full; nothing was stored; try again later"
        if isinstance(cause, OperationalError):
            return 503, "the database is unavailable; try again later"
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return 500, "internal error"


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ServiceError)
    async def _domain_error(request: Request, exc: ServiceError):
        status = next(code for kind, code in DOMAIN_STATUS if isinstance(exc, kind))
        return JSONResponse({"error": exc.message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        status, message = validation_message(errors[0]) if errors else (422, "invalid request")
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        status, message = fault_message(exc)
        if status == 500:
            log.exception("unhandled error on %s", request.url.path)
        else:
            log.warning("%s on %s: %s", status, request.url.path, message)
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        return await guard(request, call_next, max_json_bytes=app.state.service.settings.max_json_bytes)

    @app.middleware("http")
    async def _timing(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        path = getattr(request.scope.get("route"), "path", "unmatched")
        app.state.service.metrics.requests.labels(request.method, path, str(response.status_code)).observe(
            time.perf_counter() - start
        )
        return response


def create_app(settings: Settings | None = None, *, start_worker: bool | None = None) -> FastAPI:
    """The service as an ASGI app. Migrates the database; runs a worker child process unless told not to."""
    settings = settings or Settings.from_env()
    run_worker = settings.worker_in_process if start_worker is None else start_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service.validator.warm()
        if run_worker:
            app.state.service.start_worker()
        yield
        app.state.service.stop_worker()
        app.state.service.validator.close()

    docs: dict[str, Any] = {} if settings.docs else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    app = FastAPI(
        title="imitaudit",
        version="1",
        lifespan=lifespan,
        **docs,
        description="Audit imitators for incorrigible departures: upload a checkpoint and demonstrations, submit an "
        "audit, read the verdict.",
    )
    app.state.service = Service(settings=settings)
    _handlers(app)
    for module in (ops, uploads, audits, reports):
        app.include_router(module.router)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse("/dashboard", status_code=303)

    from service.dashboard import install, router

    app.include_router(router)
    install(app)
    return app
