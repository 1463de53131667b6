"""Audits as jobs: submit (idempotent), list, read, follow over server-sent events, cancel."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

import audit
from service import store
from service.auth import principal_for, request_token
from service.db import Audit
from service.deps import ApiError, Reader, ServiceDep, Submitter
from service.jobs import TERMINAL, config_of, request_cancel
from service.schemas import COMMON, AuditCreate, AuditPage, AuditPublic, audit_json, errors

router = APIRouter(tags=["audits"], responses={**COMMON, **errors(409)})


def checked(body: AuditCreate) -> tuple[dict[str, Any], dict[str, Any], audit.AuditConfig]:
    """The request's settings and policy as stored (only what was set), and the AuditConfig they make.

    Raises:
        Invalid: settings that bounds alone do not rule out (e.g. fewer episodes than folds).
    """
    settings = body.settings.model_dump(exclude_none=True)  # type: ignore[attr-defined]
    policy = body.policy.model_dump(exclude_none=True)  # type: ignore[attr-defined]
    return settings, policy, config_of(settings, policy)


@router.post("/v1/audits", status_code=202, response_model=AuditPublic)
async def submit_audit(body: AuditCreate, svc: ServiceDep, who: Submitter, idempotency_key: str | None = Header(None)):
    """Queue an audit. ``Idempotency-Key`` makes retries safe: the same key and request give the same audit."""
    settings, policy, config = checked(body)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise ApiError(422, "Idempotency-Key must be 1 to 200 characters")

    def create():
        with svc.sessions.begin() as s:
            return store.create_audit(
                s,
                who.project_id,
                imitator=body.imitator,
                demonstrations=body.demonstrations,
                env=body.env,
                settings=settings,
                policy=policy,
                config=config,
                key=idempotency_key,
            )

    try:
        out, _ = await run_in_threadpool(create)
    except IntegrityError:  # a concurrent retry with the same key won the race
        out, _ = await run_in_threadpool(create)
    return JSONResponse(out, status_code=202, headers={"Location": out["links"]["self"]})


@router.get("/v1/audits", response_model=AuditPage)
def list_audits(
    svc: ServiceDep,
    who: Reader,
    state: str | None = None,
    imitator: str | None = None,
    env: str | None = None,
    verdict: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000_000),
):
    """Audits of the project, newest first; filter by state, imitator, env, verdict (pass/fail)."""
    where = store.matching(Audit, who.project_id, state=state, imitator_sha=imitator, env_id=env)
    if verdict:
        if verdict not in ("pass", "fail"):
            raise ApiError(422, "verdict must be pass or fail")
        where.append(Audit.passed == (verdict == "pass"))
    with svc.sessions() as s:
        total, rows = store.page(s, Audit, where, [Audit.created.desc(), Audit.id], limit, offset)
    return {"items": [audit_json(r) for r in rows], "total": total, "limit": limit, "offset": offset}


def _read(svc, who, audit_id: str) -> Audit:
    with svc.sessions() as s:
        return store.audit_row(s, who.project_id, audit_id)


def _read_while_valid(svc, who, audit_id: str, token: str | None) -> Audit | None:
    """The row, or None once the caller's token no longer names the same project (revoked)."""
    with svc.sessions() as s:
        now = principal_for(s, token)
        if now is None or now.project_id != who.project_id:
            return None
        return store.audit_row(s, who.project_id, audit_id)


@router.get("/v1/audits/{audit_id}", response_model=AuditPublic)
def get_audit(audit_id: str, svc: ServiceDep, who: Reader):
    return audit_json(_read(svc, who, audit_id))


@router.post(
    "/v1/audits/{audit_id}/cancel",
    response_model=AuditPublic,
    responses={202: {"model": AuditPublic, "description": "Cancel requested: the running audit stops shortly"}},
)
def cancel_audit(audit_id: str, svc: ServiceDep, who: Submitter):
    """Cancel: a queued audit at once (200), a running one within a heartbeat (202), an imitator's run in flight
    included."""
    with svc.sessions.begin() as s:
        row = store.audit_row(s, who.project_id, audit_id)
        request_cancel(row)
        s.flush()
        return JSONResponse(audit_json(row), status_code=202)


@router.get(
    "/v1/audits/{audit_id}/events",
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "Server-sent events"}
    },
)
async def audit_events(audit_id: str, request: Request, svc: ServiceDep, who: Reader):
    """Server-sent events: ``progress`` on every change (state, stage, fraction), then ``end``."""
    await run_in_threadpool(_read, svc, who, audit_id)
    token = request_token(request.headers, request.cookies)

    async def stream():
        last, seq, idle = None, 0, time.monotonic()
        while True:
            row = await run_in_threadpool(_read_while_valid, svc, who, audit_id, token)
            if row is None:  # the token was revoked while the stream was open: it reads nothing more
                yield f"id: {seq + 1}\nevent: end\ndata: {json.dumps({'error': 'the token was revoked'})}\n\n"
                return
            now = {
                "state": row.state,
                "stage": row.stage,
                "progress": row.progress,
                "verdict": None if row.passed is None else ("pass" if row.passed else "fail"),
                "error": row.error,
            }
            if now != last:
                seq, last, idle = seq + 1, now, time.monotonic()
                yield f"id: {seq}\nevent: progress\ndata: {json.dumps(now)}\n\n"
            if row.state in TERMINAL:
                yield f"id: {seq + 1}\nevent: end\ndata: {json.dumps(now)}\n\n"
                return
            if time.monotonic() - idle > 10:
                idle = time.monotonic()
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.25)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
