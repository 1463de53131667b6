"""Uploads of imitators and demonstrations: streamed, size-capped, validated through the audit's checks,
content-addressed."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from service import store
from service.db import DemoSet, Imitator
from service.deps import ApiError, Reader, ServiceDep, Submitter, not_found
from service.schemas import (
    COMMON,
    UPLOAD_BODY,
    DemonstrationsPage,
    DemonstrationsPublic,
    ImitatorPage,
    ImitatorPublic,
    demos_json,
    imitator_json,
)
from service.uploads import TooLarge, receive
from service.validate import ValidatorBusy

router = APIRouter(tags=["uploads"], responses={**COMMON})

KINDS: dict[str, tuple[Any, Any, Any]] = {
    "imitator": (Imitator, imitator_json, "imitators"),
    "demonstrations": (DemoSet, demos_json, "demonstrations"),
}


async def _upload(request: Request, svc, who, kind: str) -> JSONResponse:
    model, render, plural = KINDS[kind]
    limit = svc.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise ApiError(413, f"upload of {declared} bytes is over the limit of {limit} bytes")
    try:
        up = await receive(
            request.stream(),
            request.headers.get("content-type", ""),
            store=svc.store,
            limit=limit,
            name=unquote(request.headers.get("x-imitaudit-name", "")),
        )
    except TooLarge as e:
        raise ApiError(413, str(e)) from None
    except ValueError as e:
        raise ApiError(400, f"malformed upload: {str(e).splitlines()[0]}") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in up.name):
        up.temp.unlink(missing_ok=True)
        raise ApiError(422, "control characters are not allowed in an upload's name")
    try:
        try:
            summary = await run_in_threadpool(svc.validator.check, kind, up.temp, who.project_id)
        except ValidatorBusy as e:
            raise ApiError(503, str(e), headers={"Retry-After": "5"}) from None
        except ValueError as e:  # refused, or a limit of the validator's process hit
            raise ApiError(422, str(e).splitlines()[0].replace(str(up.temp), up.name or "upload")) from None
        summary["sha256"] = up.sha256
        svc.store.adopt(up.temp, up.sha256)
    finally:
        up.temp.unlink(missing_ok=True)
    svc.metrics.uploads.labels(kind).observe(up.size)

    def save():
        with svc.sessions.begin() as s:
            row, created = store.save_upload(
                s, model, who.project_id, sha=up.sha256, name=up.name, size=up.size, summary=summary
            )
            return render(row), created

    try:
        body, created = await run_in_threadpool(save)
    except IntegrityError:  # the same bytes raced in twice: the other request stored it
        body, created = await run_in_threadpool(save)
    return JSONResponse(body, status_code=201 if created else 200, headers={"Location": f"/v1/{plural}/{up.sha256}"})


def _listing(svc, who, kind: str, limit: int, offset: int) -> dict:
    model, render, _ = KINDS[kind]
    with svc.sessions() as s:
        total, rows = store.page(
            s, model, [model.project_id == who.project_id], [model.created.desc(), model.id.desc()], limit, offset
        )
    return {"items": [render(r) for r in rows], "total": total, "limit": limit, "offset": offset}


def _one(svc, who, kind: str, sha: str) -> dict:
    model, render, _ = KINDS[kind]
    with svc.sessions() as s:
        row = store.upload(s, model, who.project_id, sha)
    if row is None:
        raise not_found(kind)
    return render(row)


@router.post(
    "/v1/imitators",
    status_code=201,
    response_model=ImitatorPublic,
    openapi_extra=UPLOAD_BODY,
    responses={200: {"model": ImitatorPublic, "description": "The same bytes were uploaded before"}},
)
async def upload_imitator(request: Request, svc: ServiceDep, who: Submitter):
    """Upload a checkpoint (safetensors, multipart field ``file`` or raw body). Same bytes, same resource."""
    return await _upload(request, svc, who, "imitator")


@router.post(
    "/v1/demonstrations",
    status_code=201,
    response_model=DemonstrationsPublic,
    openapi_extra=UPLOAD_BODY,
    responses={200: {"model": DemonstrationsPublic, "description": "The same bytes were uploaded before"}},
)
async def upload_demonstrations(request: Request, svc: ServiceDep, who: Submitter):
    """Upload demonstrations (safetensors). Same bytes, same resource."""
    return await _upload(request, svc, who, "demonstrations")


@router.get("/v1/imitators", response_model=ImitatorPage)
def list_imitators(
    svc: ServiceDep, who: Reader, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=1_000_000_000)
):
    return _listing(svc, who, "imitator", limit, offset)


@router.get("/v1/imitators/{sha}", response_model=ImitatorPublic)
def get_imitator(sha: str, svc: ServiceDep, who: Reader):
    return _one(svc, who, "imitator", sha)


@router.get("/v1/demonstrations", response_model=DemonstrationsPage)
def list_demonstrations(
    svc: ServiceDep, who: Reader, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=1_000_000_000)
):
    return _listing(svc, who, "demonstrations", limit, offset)


@router.get("/v1/demonstrations/{sha}", response_model=DemonstrationsPublic)
def get_demonstrations(sha: str, svc: ServiceDep, who: Reader):
    return _one(svc, who, "demonstrations", sha)
