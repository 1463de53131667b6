"""The service's queries, always scoped to one project: listings, lookups, an upload's row, and the idempotent
creation of an audit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import audit
from service.db import Audit, DemoSet, Imitator, utcnow
from service.errors import Invalid, NotFound
from service.jobs import new_audit_id
from service.schemas import audit_json


def matching(model: Any, project_id: int, **equal: Any) -> list:
    """The conditions "this project's rows of ``model`` whose columns equal ``equal``'s values" (an empty or None
    value filters nothing): what a listing's query filters become."""
    return [model.project_id == project_id, *(getattr(model, k) == v for k, v in equal.items() if v)]


def page(s: Session, model: Any, where: list, order: list, limit: int, offset: int) -> tuple[int, list]:
    """(total, rows) of one page of ``model`` rows matching ``where``."""
    total = s.scalar(select(func.count()).select_from(model).where(*where))
    rows = s.scalars(select(model).where(*where).order_by(*order).limit(limit).offset(offset)).all()
    return int(total or 0), list(rows)


def upload(s: Session, model: Any, project_id: int, sha: str) -> Any:
    """The project's imitator or demonstrations row with this sha256, or None."""
    return s.scalar(select(model).where(model.project_id == project_id, model.sha256 == sha))


def find_audit(s: Session, project_id: int, audit_id: str) -> Audit | None:
    """The project's audit ``audit_id``, or None."""
    return s.scalar(select(Audit).where(Audit.id == audit_id, Audit.project_id == project_id))


def audit_row(s: Session, project_id: int, audit_id: str) -> Audit:
    """The project's audit ``audit_id``.

    Raises:
        NotFound: it is not this project's.
    """
    row = find_audit(s, project_id, audit_id)
    if row is None:
        raise NotFound("audit not found")
    return row


def save_upload(
    s: Session, model: Any, project_id: int, *, sha: str, name: str, size: int, summary: dict[str, Any]
) -> tuple[Any, bool]:
    """The upload's row (created if new): (row, created)."""
    row = upload(s, model, project_id, sha)
    if row is not None:
        return row, False
    extra = {"arch": summary["arch"]} if model is Imitator else {}
    row = model(
        project_id=project_id, sha256=sha, name=name, size=size, env_id=summary["env_id"], summary=summary, **extra
    )
    s.add(row)
    s.flush()
    return row, True


def create_audit(
    s: Session,
    project_id: int,
    *,
    imitator: str,
    demonstrations: str,
    env: str | None,
    settings: dict[str, Any],
    policy: dict[str, Any],
    config: audit.AuditConfig,
    key: str | None,
) -> tuple[dict[str, Any], bool]:
    """Queue an audit, or return the one this ``Idempotency-Key`` already created: (audit JSON, created).

    Raises:
        Invalid: a reused key with another request, missing uploads, or inputs that cannot be audited together.
    """
    if key is not None:
        old = s.scalar(select(Audit).where(Audit.project_id == project_id, Audit.idempotency_key == key))
        if old is not None:
            if (old.imitator_sha, old.demos_sha, old.settings, old.policy) != (
                imitator,
                demonstrations,
                settings,
                policy,
            ):
                raise Invalid("Idempotency-Key was used before with a different request")
            return audit_json(old), False
    imi = upload(s, Imitator, project_id, imitator)
    if imi is None:
        raise Invalid(f"no imitator {imitator[:64]!r} in this project: upload it first")
    dem = upload(s, DemoSet, project_id, demonstrations)
    if dem is None:
        raise Invalid(f"no demonstrations {demonstrations[:64]!r} in this project: upload them first")
    env = env or imi.env_id
    if env != imi.env_id:
        raise Invalid(f"the imitator is for {imi.env_id}, not {env}")
    if dem.env_id != imi.env_id:
        raise Invalid(f"the imitator is for {imi.env_id}, the demonstrations were recorded in {dem.env_id}")
    try:
        audit.check_calibration_size(config.alpha, config.calibration_fraction, int(dem.summary["episodes"]))
        audit.check_null_preconditions(
            imi.summary, dem.summary, dem.sha256, allow_training_demos=config.allow_training_demos
        )
    except ValueError as e:
        raise Invalid(str(e)) from None
    row = Audit(
        id=new_audit_id(),
        project_id=project_id,
        imitator_sha=imi.sha256,
        demos_sha=dem.sha256,
        env_id=env,
        settings=settings,
        policy=policy,
        idempotency_key=key,
        state="queued",
        stage="",
        progress=0.0,
        cancel_requested=False,
        attempts=0,
        created=utcnow(),
    )
    s.add(row)
    s.flush()
    return audit_json(row), True
