"""The API's shapes: request models generated from the audit's settings, response models, and rows rendered as them.

Input, stored and output shapes are separate: ``AuditCreate`` is what a client sends
(its ``settings`` and ``policy`` models are generated from :class:`audit.AuditConfig` and
:class:`audit.GatePolicy`, so a setting is defined once), a row is what the database holds,
and ``*Public`` is what a client reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import audit
from service.db import Audit, DemoSet, Imitator

AuditSettings = audit.request_model(audit.AuditConfig, "AuditSettings")
PolicySettings = audit.request_model(audit.GatePolicy, "PolicySettings")


class AuditCreate(BaseModel):
    """``POST /v1/audits``: what to audit, and how."""

    model_config = ConfigDict(extra="forbid", strict=True)

    imitator: str = Field(max_length=64, description="sha256 of an imitator uploaded to this project")
    demonstrations: str = Field(max_length=64, description="sha256 of demonstrations uploaded to this project")
    env: str | None = Field(default=None, max_length=200, description="the imitator's env (checked, optional)")
    settings: AuditSettings = Field(  # type: ignore[valid-type]
        default_factory=AuditSettings, description="audit settings (unset ones keep their defaults)"
    )
    policy: PolicySettings = Field(default_factory=PolicySettings, description="the gate's pass/fail policy")  # type: ignore[valid-type]


class UploadPublic(BaseModel):
    id: str
    sha256: str
    name: str
    size: int
    env_id: str
    summary: dict[str, Any]
    created: str | None


class ImitatorPublic(UploadPublic):
    arch: str


class DemonstrationsPublic(UploadPublic):
    pass


class AuditPublic(BaseModel):
    id: str
    state: str
    stage: str
    progress: float
    imitator: str
    demonstrations: str
    env: str
    settings: dict[str, Any]
    policy: dict[str, Any]
    verdict: str | None
    passed: bool | None
    summary: dict[str, Any] | None
    error: str | None
    attempts: int
    cancel_requested: bool
    created: str | None
    started: str | None
    finished: str | None
    links: dict[str, str]


class Page(BaseModel):
    total: int
    limit: int
    offset: int


class ImitatorPage(Page):
    items: list[ImitatorPublic]


class DemonstrationsPage(Page):
    items: list[DemonstrationsPublic]


class AuditPage(Page):
    items: list[AuditPublic]


def _iso(t) -> str | None:
    return None if t is None else t.isoformat(timespec="seconds")


def imitator_json(row: Imitator) -> dict[str, Any]:
    return {
        "id": row.sha256,
        "sha256": row.sha256,
        "name": row.name,
        "size": row.size,
        "env_id": row.env_id,
        "arch": row.arch,
        "summary": row.summary,
        "created": _iso(row.created),
    }


def demos_json(row: DemoSet) -> dict[str, Any]:
    return {
        "id": row.sha256,
        "sha256": row.sha256,
        "name": row.name,
        "size": row.size,
        "env_id": row.env_id,
        "summary": row.summary,
        "created": _iso(row.created),
    }


def audit_json(row: Audit) -> dict[str, Any]:
    base = f"/v1/audits/{row.id}"
    out: dict[str, Any] = {
        "id": row.id,
        "state": row.state,
        "stage": row.stage,
        "progress": row.progress,
        "imitator": row.imitator_sha,
        "demonstrations": row.demos_sha,
        "env": row.env_id,
        "settings": row.settings,
        "policy": row.policy,
        "verdict": None if row.passed is None else ("pass" if row.passed else "fail"),
        "passed": row.passed,
        "summary": row.summary,
        "error": row.error,
        "attempts": row.attempts,
        "cancel_requested": row.cancel_requested,
        "created": _iso(row.created),
        "started": _iso(row.started),
        "finished": _iso(row.finished),
        "links": {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel"},
    }
    if row.state == "succeeded":
        out["links"].update(
            report=f"{base}/report",
            html=f"{base}/report.html",
            junit=f"{base}/junit.xml",
            markdown=f"{base}/summary.md",
            trajectories=f"{base}/trajectories",
        )
    return out


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: one line."""

    error: str


def errors(*codes: int) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for the error statuses a route may answer, each an :class:`ErrorBody`."""
    meaning = {
        400: "Malformed request",
        401: "No valid token in the Authorization header",
        403: "The token may not do this",
        404: "Not found in the token's project",
        409: "Not in a state that allows this",
        413: "Body over the size limit",
        415: "Wrong content type",
        422: "Refused input (the message names the problem)",
        503: "Database unavailable, or every upload validation slot busy (Retry-After)",
        507: "Disk full",
    }
    return {code: {"model": ErrorBody, "description": meaning[code]} for code in codes}


COMMON = errors(400, 401, 403, 404, 413, 415, 422, 503, 507)
"""What any route may answer before or besides its own logic (the guard, auth, validation, resources)."""

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "the .safetensors file"},
                        "name": {
                            "type": "string",
                            "maxLength": 200,
                            "description": "a name for the file (versions share it)",
                        },
                    },
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
"""The OpenAPI request body of an upload (the route streams it itself)."""
