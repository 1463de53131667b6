"""A succeeded audit's report: JSON, HTML, JUnit, Markdown, and its trajectory records."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

import audit
from service import store
from service.deps import ApiError, Reader, ServiceDep, not_found
from service.jobs import load_report
from service.schemas import COMMON, errors

router = APIRouter(tags=["reports"], responses={**COMMON, **errors(409)})

HEAVY = {"step_scores", "score_path", "entropy", "actions", "explanation", "replay"}


def _report_sha(svc, who, audit_id: str) -> str:
    with svc.sessions() as s:
        row = store.audit_row(s, who.project_id, audit_id)
    if row.state != "succeeded":
        raise ApiError(409, f"audit is {row.state}; the report exists once it has succeeded")
    return row.report_sha  # type: ignore[return-value]


@router.get(
    "/v1/audits/{audit_id}/report",
    responses={
        200: {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "The AuditReport"}
    },
)
def get_report(audit_id: str, svc: ServiceDep, who: Reader):
    """The AuditReport JSON (schema ``imitaudit.report/1``)."""
    return Response(svc.store.read_bytes(_report_sha(svc, who, audit_id)), media_type="application/json")


REPORT_CSP = (
    f"default-src 'none'; script-src '{audit.report_script_hash()}'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@router.get(
    "/v1/audits/{audit_id}/report.html",
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The report as one HTML file"}
    },
)
def get_report_html(audit_id: str, svc: ServiceDep, who: Reader):
    # the report is one self-contained file with one inline script: allowed by its hash, nothing else inline
    return HTMLResponse(
        audit.to_html(load_report(svc.store, _report_sha(svc, who, audit_id))),
        headers={"Content-Security-Policy": REPORT_CSP},
    )


@router.get(
    "/v1/audits/{audit_id}/junit.xml",
    responses={200: {"content": {"application/xml": {"schema": {"type": "string"}}}, "description": "JUnit XML"}},
)
def get_junit(audit_id: str, svc: ServiceDep, who: Reader):
    return Response(
        audit.to_junit(load_report(svc.store, _report_sha(svc, who, audit_id))), media_type="application/xml"
    )


@router.get(
    "/v1/audits/{audit_id}/summary.md",
    responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}}, "description": "Markdown summary"}},
)
def get_markdown(audit_id: str, svc: ServiceDep, who: Reader):
    return Response(
        audit.to_markdown(load_report(svc.store, _report_sha(svc, who, audit_id))), media_type="text/markdown"
    )


@router.get("/v1/audits/{audit_id}/trajectories")
def list_trajectories(
    audit_id: str,
    svc: ServiceDep,
    who: Reader,
    flagged: bool | None = None,
    severity: str | None = None,
    departed: bool | None = None,
    limit: int = Query(100, ge=1, le=5000),
    offset: int = Query(0, ge=0, le=1_000_000_000),
):
    """Trajectory records without their per-step arrays; filter by flagged, severity, departed."""
    if severity is not None and severity not in ("likely-incorrigible", "distinguishable"):
        raise ApiError(422, "severity must be likely-incorrigible or distinguishable")
    report = load_report(svc.store, _report_sha(svc, who, audit_id))
    rows = [
        r
        for r in report["trajectories"]
        if (flagged is None or r["flagged"] == flagged)
        and (severity is None or r["severity"] == severity)
        and (departed is None or r["departed"] == departed)
    ]
    items = [{k: v for k, v in r.items() if k not in HEAVY} for r in rows[offset : offset + limit]]
    return {"items": items, "total": len(rows), "limit": limit, "offset": offset}


@router.get("/v1/audits/{audit_id}/trajectories/{n}")
def get_trajectory(audit_id: str, n: int, svc: ServiceDep, who: Reader):
    report = load_report(svc.store, _report_sha(svc, who, audit_id))
    if not 0 <= n < len(report["trajectories"]):
        raise not_found("trajectory")
    return report["trajectories"][n]
