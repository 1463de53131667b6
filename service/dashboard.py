"""The dashboard of flagged behaviours: server-rendered pages over the same data as the API, no CDN.

Pages: sign-in (token -> HttpOnly, SameSite=Strict cookie), audits (newest first) with each
imitator's history, flagged behaviours across audits (filter by env, severity, imitator),
one audit (checks, live progress, flagged trajectories, artifact links) and one trajectory
(replay with a step slider, score over time with the threshold, attribution heatmap, the
departure event where known). Anything of another project is a 404, as in the API.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import select

import audit
from service import store
from service.auth import COOKIE, Principal, principal_for, request_token
from service.db import Audit, Flag, Imitator
from service.deps import ApiError
from service.guard import LOGIN_MAX_BYTES
from service.jobs import load_report

HERE = Path(__file__).parent
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
router = APIRouter(include_in_schema=False)


class SignIn(Exception):
    """No valid token: send the browser to the sign-in page."""


def _who(request: Request) -> Principal:
    svc = request.app.state.service
    with svc.sessions() as s:
        who = principal_for(s, request_token(request.headers, request.cookies))
    if who is None:
        raise SignIn()
    return who


def page(name: str, status: int = 200, **context) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status)


def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


templates.filters["fmt"] = _fmt


def sparkline(values: list[float | None], *, width: int = 160, height: int = 36, top: float = 1.0) -> Markup:
    """A tiny inline SVG line of values in [0, top] (None = gap)."""
    pts = [(i, v) for i, v in enumerate(values) if v is not None]
    if not pts:
        return Markup("<span class='muted'>no audits</span>")
    if len(values) == 1:  # one version: its figure, not a lone dot on an empty chart
        return Markup(f"<span class='spark-one'>{pts[0][1]:.3f} <span class='muted'>(one version)</span></span>")
    n = max(len(values) - 1, 1)
    coords = " ".join(
        f"{4 + i * (width - 8) / n:.1f},{height - 4 - min(v, top) / top * (height - 8):.1f}" for i, v in pts
    )
    dots = "".join(
        f"<circle cx='{4 + i * (width - 8) / n:.1f}' cy='{height - 4 - min(v, top) / top * (height - 8):.1f}' r='2.5'/>"
        for i, v in pts
    )
    return Markup(
        f"<svg class='spark' width='{width}' height='{height}'><polyline points='{coords}' fill='none' "
        f"stroke='#1e5adc'/>{dots}</svg>"
    )


def _lineages(svc, who: Principal) -> list[dict]:
    """Imitators grouped by upload name (the versions of one imitator), each with its audits' figures."""
    with svc.sessions() as s:
        imitators = s.scalars(
            select(Imitator).where(Imitator.project_id == who.project_id).order_by(Imitator.created, Imitator.id)
        ).all()
        audits = s.scalars(
            select(Audit).where(Audit.project_id == who.project_id, Audit.state == "succeeded").order_by(Audit.created)
        ).all()
    latest = {}
    for a in audits:
        latest[a.imitator_sha] = a
    groups: dict[str, list] = {}
    for imi in imitators:
        groups.setdefault(imi.name or imi.sha256[:12], []).append(imi)
    out = []
    for name, versions in groups.items():
        rows = []
        for v in versions:
            a = latest.get(v.sha256)
            rows.append(
                {
                    "imitator": v,
                    "audit": a,
                    "auroc": a.summary["disc_auroc"] if a else None,
                    "flagged_share": a.summary["flagged_share"] if a else None,
                    "passed": a.passed if a else None,
                }
            )
        out.append(
            {
                "name": name,
                "versions": rows,
                "auroc_line": sparkline([r["auroc"] for r in rows]),
                "share_line": sparkline([r["flagged_share"] for r in rows]),
            }
        )
    return out


@router.get("/login")
def login_form(request: Request, error: str = ""):
    return page("login.html", error=error)


async def _login_token(request: Request) -> str:
    """The form's token, read from at most :data:`LOGIN_MAX_BYTES` of a URL-encoded body (never spooled to disk)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise ApiError(415, "sign in with a URL-encoded form (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LOGIN_MAX_BYTES:
            raise ApiError(413, f"a sign-in form is at most {LOGIN_MAX_BYTES} bytes")
    try:
        values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8).get("token", [""])
    except ValueError:
        raise ApiError(400, "a sign-in form has one field, token") from None
    return values[0].strip()


@router.post("/login")
async def login(request: Request):
    token = await _login_token(request)
    svc = request.app.state.service
    with svc.sessions() as s:
        who = principal_for(s, token)
    if who is None:
        return page("login.html", status=401, error="That token is not valid.")
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="strict", secure=svc.settings.secure_cookies, max_age=7 * 86400
    )
    return response


@router.post("/logout")
def logout():
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/dashboard")
def audits_page(request: Request, who: Principal = Depends(_who)):
    svc = request.app.state.service
    with svc.sessions() as s:
        audits = s.scalars(
            select(Audit).where(Audit.project_id == who.project_id).order_by(Audit.created.desc(), Audit.id).limit(200)
        ).all()
        names = {i.sha256: i.name for i in s.scalars(select(Imitator).where(Imitator.project_id == who.project_id))}
    return page("audits.html", who=who, audits=audits, names=names, lineages=_lineages(svc, who))


@router.get("/dashboard/imitators/{sha}")
def imitator_page(sha: str, request: Request, who: Principal = Depends(_who)):
    svc = request.app.state.service
    with svc.sessions() as s:
        imi = s.scalar(select(Imitator).where(Imitator.project_id == who.project_id, Imitator.sha256 == sha))
        if imi is None:
            return page("missing.html", status=404, who=who, what="imitator")
        audits = s.scalars(
            select(Audit)
            .where(Audit.project_id == who.project_id, Audit.imitator_sha == sha)
            .order_by(Audit.created.desc())
        ).all()
    lineage = next((g for g in _lineages(svc, who) if g["name"] == (imi.name or imi.sha256[:12])), None)
    return page("imitator.html", who=who, imi=imi, audits=audits, lineage=lineage)


@router.get("/dashboard/flagged")
def flagged_page(
    request: Request, env: str = "", severity: str = "", imitator: str = "", who: Principal = Depends(_who)
):
    svc = request.app.state.service
    where = store.matching(Flag, who.project_id, env_id=env, severity=severity, imitator_sha=imitator)
    with svc.sessions() as s:
        flags = s.scalars(
            select(Flag).where(*where).order_by(Flag.created.desc(), Flag.pvalue, Flag.strength.desc()).limit(500)
        ).all()
        envs = sorted(set(s.scalars(select(Flag.env_id).where(Flag.project_id == who.project_id)).all()))
        imitators = s.scalars(select(Imitator).where(Imitator.project_id == who.project_id)).all()
    names = {i.sha256: i.name or i.sha256[:12] for i in imitators}
    return page(
        "flagged.html", who=who, flags=flags, envs=envs, names=names, env=env, severity=severity, imitator=imitator
    )


def _audit_row(svc, who: Principal, audit_id: str):
    with svc.sessions() as s:
        return store.find_audit(s, who.project_id, audit_id)


@router.get("/dashboard/audits/{audit_id}")
def audit_page(audit_id: str, request: Request, who: Principal = Depends(_who)):
    svc = request.app.state.service
    row = _audit_row(svc, who, audit_id)
    if row is None:
        return page("missing.html", status=404, who=who, what="audit")
    report = load_report(svc.store, row.report_sha) if row.state == "succeeded" else None
    flagged = (
        sorted((r for r in report["trajectories"] if r["flagged"]), key=lambda r: (r["pvalue"], -r["strength"]))
        if report
        else []
    )
    with svc.sessions() as s:
        uploaded = store.upload(s, Imitator, who.project_id, row.imitator_sha)
    return page(
        "audit.html",
        who=who,
        audit=row,
        report=report,
        flagged=flagged,
        imitator_name=uploaded.name if uploaded else "",
    )


@router.get("/dashboard/audits/{audit_id}/trajectories/{n}")
def trajectory_page(audit_id: str, n: int, request: Request, who: Principal = Depends(_who)):
    svc = request.app.state.service
    row = _audit_row(svc, who, audit_id)
    if row is None or row.state != "succeeded":
        return page("missing.html", status=404, who=who, what="audit")
    report = load_report(svc.store, row.report_sha)
    if not 0 <= n < len(report["trajectories"]):
        return page("missing.html", status=404, who=who, what="trajectory")
    r = report["trajectories"][n]
    score = Markup(audit.svg_trajectory(r, width=640, height=180))
    heat = Markup(audit.svg_heatmap(r["explanation"])) if r.get("explanation") else None
    world = audit.WORLDS.get(report["env"]["id"])
    legend = world.legend() if world is not None else []
    return page(
        "trajectory.html", who=who, audit=row, r=r, score=score, heat=heat, frames=r.get("replay"), legend=legend
    )


def install(app) -> None:
    """Mount the dashboard's static files and the sign-in redirect on ``app``."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(SignIn)
    async def _sign_in(request: Request, exc: SignIn) -> Response:
        return RedirectResponse("/login", status_code=303)
