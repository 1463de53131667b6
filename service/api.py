"""The HTTP API (FastAPI): uploads, audits as jobs, reports, trajectories, events, health and metrics.

Every route but ``/healthz`` needs a token (see :mod:`service.auth`); everything a route
returns or touches belongs to the token's project, and anything else is a 404, exactly as
if it did not exist. Errors are JSON ``{"error": "<one line>"}`` with a 4xx status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

import audit
from service.auth import Principal, principal_for, request_token
from service.blobs import BlobStore
from service.db import Audit, DemoSet, Imitator, make_engine, migrate, session_factory, utcnow
from service.jobs import TERMINAL, load_report, new_audit_id
from service.metrics import Metrics
from service.settings import Settings
from service.uploads import TooLarge, receive

log = logging.getLogger("imitaudit.api")

#: Audit settings a request may set, with the bounds that keep one audit from taking the service down.
SETTING_BOUNDS: dict[str, tuple[type, Any, Any]] = {
    "episodes": (int, 4, 4096),
    "seed": (int, 0, 2**62),
    "alpha": (float, 1e-4, 0.5),
    "bh": (bool, None, None),
    "folds": (int, 2, 10),
    "taps": (list, None, None),
    "raw_grid": (bool, None, None),
    "disc_hidden": (int, 8, 1024),
    "disc_steps": (int, 1, 5000),
    "calibration_fraction": (float, 0.05, 0.95),
    "drift_quantile": (float, 0.5, 0.9999),
    "score_rule": (str, None, None),
    "sustained_steps": (int, 1, 1000),
    "confident_entropy": (float, 0.0, 10.0),
    "explain": (bool, None, None),
    "max_explained": (int, 0, 500),
}
POLICY_KEYS = {"fail_on_likely_incorrigible": bool, "max_flagged_share": float}


class ApiError(Exception):
    """A 4xx answer with one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def _die_with_parent() -> None:
    """In the worker child: get SIGTERM when the server dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Service:
    """What the routes share: settings, database, blob store, metrics, the server's own worker."""

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.url)
        migrate(self.engine)
        self.sessions = session_factory(self.engine)
        self.store = BlobStore(root=settings.data_dir / "blobs")
        self.metrics = Metrics(sessions=self.sessions)
        self.worker: subprocess.Popen | None = None

    def start_worker(self) -> None:
        """One `imitaudit worker` as a child process. Not a thread: torch trains the audit's
        discriminators at about half speed off the main thread (measured 6.5 s against 3.2 s)."""
        env = {**os.environ, "IMITAUDIT_DATA_DIR": str(self.settings.data_dir), "IMITAUDIT_DATABASE_URL": self.settings.url,
               "IMITAUDIT_LEASE_SECONDS": str(self.settings.lease_seconds)}
        self.worker = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env, preexec_fn=_die_with_parent)

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()  # the worker hands a running audit back to the queue
            try:
                self.worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.worker.kill()


def get_service(request: Request) -> Service:
    return request.app.state.service


def principal(request: Request) -> Principal:
    svc = get_service(request)
    token = request_token(request.headers, request.cookies)
    with svc.sessions() as s:
        who = principal_for(s, token)
    if who is None:
        raise ApiError(401, "missing or unknown API token" if token else "this route needs an API token (Authorization: Bearer ...)")
    return who


def submitter(who: Principal = Depends(principal)) -> Principal:
    if not who.can_submit():
        raise ApiError(403, "this token may only read; uploads, audits and cancellation need a submit token")
    return who


# ----- resources as JSON ------------------------------------------------------------------


def _iso(t) -> str | None:
    return None if t is None else t.isoformat(timespec="seconds")


def imitator_json(row: Imitator) -> dict[str, Any]:
    return {"id": row.sha256, "sha256": row.sha256, "name": row.name, "size": row.size, "env_id": row.env_id,
            "arch": row.arch, "summary": row.summary, "created": _iso(row.created)}


def demos_json(row: DemoSet) -> dict[str, Any]:
    return {"id": row.sha256, "sha256": row.sha256, "name": row.name, "size": row.size, "env_id": row.env_id,
            "summary": row.summary, "created": _iso(row.created)}


def audit_json(row: Audit) -> dict[str, Any]:
    base = f"/v1/audits/{row.id}"
    out = {
        "id": row.id, "state": row.state, "stage": row.stage, "progress": row.progress, "imitator": row.imitator_sha,
        "demonstrations": row.demos_sha, "env": row.env_id, "settings": row.settings, "policy": row.policy,
        "verdict": None if row.passed is None else ("pass" if row.passed else "fail"), "passed": row.passed,
        "summary": row.summary, "error": row.error, "attempts": row.attempts, "cancel_requested": row.cancel_requested,
        "created": _iso(row.created), "started": _iso(row.started), "finished": _iso(row.finished),
        "links": {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel"},
    }
    if row.state == "succeeded":
        out["links"].update(report=f"{base}/report", html=f"{base}/report.html", junit=f"{base}/junit.xml",
                            markdown=f"{base}/summary.md", trajectories=f"{base}/trajectories")
    return out


def check_settings(settings: Any, policy: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a request's audit settings and gate policy (bounds, types, then AuditConfig's own checks)."""
    if not isinstance(settings, dict) or not isinstance(policy, dict):
        raise ApiError(422, "settings and policy must be JSON objects")
    unknown = sorted(set(settings) - set(SETTING_BOUNDS))
    if unknown:
        raise ApiError(422, f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTING_BOUNDS)}")
    clean: dict[str, Any] = {}
    for key, value in settings.items():
        kind, low, high = SETTING_BOUNDS[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ApiError(422, f"setting {key} must be {kind.__name__}, got {json.dumps(value)}")
        if low is not None and not low <= value <= high:
            raise ApiError(422, f"setting {key} must be in [{low}, {high}], got {value}")
        if key == "taps" and not all(isinstance(t, str) for t in value):
            raise ApiError(422, "setting taps must be a list of tap names")
        clean[key] = value
    unknown = sorted(set(policy) - set(POLICY_KEYS))
    if unknown:
        raise ApiError(422, f"unknown policy field(s) {', '.join(unknown)}; known: {', '.join(POLICY_KEYS)}")
    for key, value in policy.items():
        if POLICY_KEYS[key] is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            continue
        if not isinstance(value, POLICY_KEYS[key]):
            raise ApiError(422, f"policy {key} must be {POLICY_KEYS[key].__name__}")
    try:
        audit.AuditConfig(imitator="", demos="", policy=audit.GatePolicy(**policy), **{k: tuple(v) if k == "taps" else v for k, v in clean.items()})
    except (TypeError, ValueError) as e:
        raise ApiError(422, str(e).splitlines()[0]) from None
    return clean, dict(policy)


# ----- the app ----------------------------------------------------------------------------


def create_app(settings: Settings | None = None, *, start_worker: bool | None = None) -> FastAPI:
    """The service as an ASGI app. Migrates the database; runs a worker thread unless told not to."""
    settings = settings or Settings.from_env()
    run_worker = settings.worker_in_process if start_worker is None else start_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if run_worker:
            app.state.service.start_worker()
        yield
        app.state.service.stop_worker()

    app = FastAPI(
        title="imitaudit", version="1", lifespan=lifespan,
        description="Audit imitators for incorrigible departures: upload a checkpoint and demonstrations, submit an audit, read the verdict.",
    )
    app.state.service = Service(settings=settings)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{where}: {first.get('msg')}" if where else str(first.get("msg"))}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"error": "internal error"}, status_code=500)

    @app.middleware("http")
    async def _timing(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        app.state.service.metrics.requests.labels(request.method, path, str(response.status_code)).observe(time.perf_counter() - start)
        return response

    # ----- health and metrics -----

    @app.get("/healthz", tags=["ops"])
    def healthz(svc: Service = Depends(get_service)):
        """Liveness and database reachability (no token needed)."""
        try:
            with svc.sessions() as s:
                s.execute(select(1))
        except Exception as e:
            return JSONResponse({"status": "unhealthy", "database": type(e).__name__}, status_code=503)
        return {"status": "ok", "database": svc.engine.dialect.name}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics(svc: Service = Depends(get_service), who: Principal = Depends(principal)):
        """Prometheus metrics (any token)."""
        return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")

    # ----- uploads -----

    async def _upload(request: Request, who: Principal, kind: str):
        svc: Service = request.app.state.service
        limit = svc.settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
            raise ApiError(413, f"upload of {declared} bytes is over the limit of {limit} bytes")
        try:
            up = await receive(request.stream(), request.headers.get("content-type", ""), store=svc.store, limit=limit,
                               name=request.headers.get("x-imitaudit-name", ""))
        except TooLarge as e:
            raise ApiError(413, str(e)) from None
        except ValueError as e:
            raise ApiError(400, f"malformed upload: {str(e).splitlines()[0]}") from None
        try:
            check = audit.check_imitator if kind == "imitator" else audit.check_demonstrations
            try:
                summary = await run_in_threadpool(check, up.temp)
            except ValueError as e:
                raise ApiError(422, str(e).splitlines()[0].replace(str(up.temp), up.name or "upload")) from None
            except Exception as e:  # a file the readers did not foresee: still the uploader's problem
                raise ApiError(422, f"{up.name or 'upload'}: unreadable {kind}: {type(e).__name__}") from None
            summary["sha256"] = up.sha256
            svc.store.adopt(up.temp, up.sha256)
        finally:
            up.temp.unlink(missing_ok=True)
        svc.metrics.uploads.labels(kind).observe(up.size)
        model = Imitator if kind == "imitator" else DemoSet
        render = imitator_json if kind == "imitator" else demos_json

        def save():
            with svc.sessions.begin() as s:
                row = s.scalar(select(model).where(model.project_id == who.project_id, model.sha256 == up.sha256))
                if row is not None:
                    return render(row), False
                extra = {"arch": summary["arch"]} if kind == "imitator" else {}
                row = model(project_id=who.project_id, sha256=up.sha256, name=up.name, size=up.size, env_id=summary["env_id"],
                            summary=summary, **extra)
                s.add(row)
                s.flush()
                return render(row), True

        try:
            body, created = await run_in_threadpool(save)
        except IntegrityError:  # the same bytes raced in twice: the other request stored it
            body, created = await run_in_threadpool(save)
        path = f"/v1/{'imitators' if kind == 'imitator' else 'demonstrations'}/{up.sha256}"
        return JSONResponse(body, status_code=201 if created else 200, headers={"Location": path})

    @app.post("/v1/imitators", status_code=201, tags=["uploads"])
    async def upload_imitator(request: Request, who: Principal = Depends(submitter)):
        """Upload a checkpoint (safetensors, multipart field ``file`` or raw body). Same bytes, same resource."""
        return await _upload(request, who, "imitator")

    @app.post("/v1/demonstrations", status_code=201, tags=["uploads"])
    async def upload_demonstrations(request: Request, who: Principal = Depends(submitter)):
        """Upload demonstrations (safetensors). Same bytes, same resource."""
        return await _upload(request, who, "demonstrations")

    def _listing(model, render, who: Principal, svc: Service, limit: int, offset: int):
        with svc.sessions() as s:
            where = model.project_id == who.project_id
            total = s.scalar(select(func.count()).select_from(model).where(where))
            rows = s.scalars(select(model).where(where).order_by(model.created.desc(), model.id.desc()).limit(limit).offset(offset)).all()
        return {"items": [render(r) for r in rows], "total": total, "limit": limit, "offset": offset}

    def _one(model, render, sha: str, who: Principal, svc: Service, what: str):
        with svc.sessions() as s:
            row = s.scalar(select(model).where(model.project_id == who.project_id, model.sha256 == sha))
        if row is None:
            raise not_found(what)
        return render(row)

    @app.get("/v1/imitators", tags=["uploads"])
    def list_imitators(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0), who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        return _listing(Imitator, imitator_json, who, svc, limit, offset)

    @app.get("/v1/imitators/{sha}", tags=["uploads"])
    def get_imitator(sha: str, who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        return _one(Imitator, imitator_json, sha, who, svc, "imitator")

    @app.get("/v1/demonstrations", tags=["uploads"])
    def list_demonstrations(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0), who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        return _listing(DemoSet, demos_json, who, svc, limit, offset)

    @app.get("/v1/demonstrations/{sha}", tags=["uploads"])
    def get_demonstrations(sha: str, who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        return _one(DemoSet, demos_json, sha, who, svc, "demonstrations")

    # ----- audits -----

    @app.post("/v1/audits", status_code=202, tags=["audits"])
    async def submit_audit(request: Request, who: Principal = Depends(submitter), svc: Service = Depends(get_service)):
        """Queue an audit: ``{"imitator", "demonstrations", "env"?, "settings"?, "policy"?}``. ``Idempotency-Key`` makes retries safe."""
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise ApiError(422, "the body must be a JSON object with imitator and demonstrations")
        unknown = sorted(set(body) - {"imitator", "demonstrations", "env", "settings", "policy"})
        if unknown:
            raise ApiError(422, f"unknown field(s) {', '.join(unknown)}")
        for key in ("imitator", "demonstrations"):
            if not isinstance(body.get(key), str):
                raise ApiError(422, f"{key} must be the sha256 of an upload of this project")
        settings, policy = check_settings(body.get("settings") or {}, body.get("policy") or {})
        key = request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 200:
            raise ApiError(422, "Idempotency-Key must be 1 to 200 characters")

        def create():
            with svc.sessions.begin() as s:
                if key is not None:
                    old = s.scalar(select(Audit).where(Audit.project_id == who.project_id, Audit.idempotency_key == key))
                    if old is not None:
                        same = (old.imitator_sha, old.demos_sha, old.settings, old.policy) == (body["imitator"], body["demonstrations"], settings, policy)
                        if not same:
                            raise ApiError(422, "Idempotency-Key was used before with a different request")
                        return audit_json(old), False
                imi = s.scalar(select(Imitator).where(Imitator.project_id == who.project_id, Imitator.sha256 == body["imitator"]))
                if imi is None:
                    raise ApiError(422, f"no imitator {body['imitator'][:64]!r} in this project: upload it first")
                dem = s.scalar(select(DemoSet).where(DemoSet.project_id == who.project_id, DemoSet.sha256 == body["demonstrations"]))
                if dem is None:
                    raise ApiError(422, f"no demonstrations {body['demonstrations'][:64]!r} in this project: upload them first")
                env = body.get("env") or imi.env_id
                if env != imi.env_id:
                    raise ApiError(422, f"the imitator is for {imi.env_id}, not {env}")
                if dem.env_id != imi.env_id:
                    raise ApiError(422, f"the imitator is for {imi.env_id}, the demonstrations were recorded in {dem.env_id}")
                alpha = settings.get("alpha", 0.01)
                need = audit.min_calibration_episodes(alpha)
                held = int(round(settings.get("calibration_fraction", 0.5) * dem.summary["episodes"]))
                if held < need:
                    raise ApiError(422, f"alpha={alpha:g} needs at least {need} held-out demonstration episodes; these demonstrations hold out {held}")
                row = Audit(id=new_audit_id(), project_id=who.project_id, imitator_sha=imi.sha256, demos_sha=dem.sha256, env_id=env,
                            settings=settings, policy=policy, idempotency_key=key, state="queued", stage="", progress=0.0,
                            cancel_requested=False, attempts=0, created=utcnow())
                s.add(row)
                s.flush()
                return audit_json(row), True

        try:
            out, _ = await run_in_threadpool(create)
        except IntegrityError:  # a concurrent retry with the same key won the race
            out, _ = await run_in_threadpool(create)
        return JSONResponse(out, status_code=202, headers={"Location": out["links"]["self"]})

    def _audit(svc: Service, who: Principal, audit_id: str) -> Audit:
        with svc.sessions() as s:
            row = s.scalar(select(Audit).where(Audit.id == audit_id, Audit.project_id == who.project_id))
        if row is None:
            raise not_found("audit")
        return row

    @app.get("/v1/audits", tags=["audits"])
    def list_audits(
        state: str | None = None, imitator: str | None = None, env: str | None = None, verdict: str | None = None,
        limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
        who: Principal = Depends(principal), svc: Service = Depends(get_service),
    ):
        """Audits of the project, newest first; filter by state, imitator, env, verdict (pass/fail)."""
        where = [Audit.project_id == who.project_id]
        if state:
            where.append(Audit.state == state)
        if imitator:
            where.append(Audit.imitator_sha == imitator)
        if env:
            where.append(Audit.env_id == env)
        if verdict:
            if verdict not in ("pass", "fail"):
                raise ApiError(422, "verdict must be pass or fail")
            where.append(Audit.passed == (verdict == "pass"))
        with svc.sessions() as s:
            total = s.scalar(select(func.count()).select_from(Audit).where(*where))
            rows = s.scalars(select(Audit).where(*where).order_by(Audit.created.desc(), Audit.id).limit(limit).offset(offset)).all()
        return {"items": [audit_json(r) for r in rows], "total": total, "limit": limit, "offset": offset}

    @app.get("/v1/audits/{audit_id}", tags=["audits"])
    def get_audit(audit_id: str, who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        return audit_json(_audit(svc, who, audit_id))

    @app.post("/v1/audits/{audit_id}/cancel", tags=["audits"])
    def cancel_audit(audit_id: str, who: Principal = Depends(submitter), svc: Service = Depends(get_service)):
        """Cancel: a queued audit at once, a running one at its next stage boundary."""
        with svc.sessions.begin() as s:
            row = s.scalar(select(Audit).where(Audit.id == audit_id, Audit.project_id == who.project_id))
            if row is None:
                raise not_found("audit")
            if row.state in TERMINAL:
                raise ApiError(409, f"audit already {row.state}")
            row.cancel_requested = True
            if row.state == "queued":
                row.state, row.finished, row.error = "cancelled", utcnow(), "cancelled on request"
            s.flush()
            return JSONResponse(audit_json(row), status_code=202)

    @app.get("/v1/audits/{audit_id}/events", tags=["audits"])
    async def audit_events(audit_id: str, request: Request, who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        """Server-sent events: ``progress`` on every change (state, stage, fraction), then ``end``."""
        await run_in_threadpool(_audit, svc, who, audit_id)

        async def stream():
            last = None
            seq = 0
            idle = time.monotonic()
            while True:
                row = await run_in_threadpool(_audit, svc, who, audit_id)
                now = {"state": row.state, "stage": row.stage, "progress": row.progress, "verdict": None if row.passed is None else ("pass" if row.passed else "fail"), "error": row.error}
                if now != last:
                    seq += 1
                    last = now
                    idle = time.monotonic()
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

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _report_sha(svc: Service, who: Principal, audit_id: str) -> str:
        row = _audit(svc, who, audit_id)
        if row.state != "succeeded":
            raise ApiError(409, f"audit is {row.state}; the report exists once it has succeeded")
        return row.report_sha

    @app.get("/v1/audits/{audit_id}/report", tags=["reports"])
    def get_report(audit_id: str, who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        """The AuditReport JSON (schema ``imitaudit.report/1``)."""
        return Response(svc.store.read_bytes(_report_sha(svc, who, audit_id)), media_type="application/json")

    @app.get("/v1/audits/{audit_id}/report.html", tags=["reports"])
    def get_report_html(audit_id: str, who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        return Response(audit.to_html(load_report(svc.store, _report_sha(svc, who, audit_id))), media_type="text/html")

    @app.get("/v1/audits/{audit_id}/junit.xml", tags=["reports"])
    def get_junit(audit_id: str, who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        return Response(audit.to_junit(load_report(svc.store, _report_sha(svc, who, audit_id))), media_type="application/xml")

    @app.get("/v1/audits/{audit_id}/summary.md", tags=["reports"])
    def get_markdown(audit_id: str, who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        return Response(audit.to_markdown(load_report(svc.store, _report_sha(svc, who, audit_id))), media_type="text/markdown")

    @app.get("/v1/audits/{audit_id}/trajectories", tags=["reports"])
    def list_trajectories(
        audit_id: str, flagged: bool | None = None, severity: str | None = None, departed: bool | None = None,
        limit: int = Query(100, ge=1, le=5000), offset: int = Query(0, ge=0),
        who: Principal = Depends(principal), svc: Service = Depends(get_service),
    ):
        """Trajectory records without their per-step arrays; filter by flagged, severity, departed."""
        if severity is not None and severity not in ("likely-incorrigible", "distinguishable"):
            raise ApiError(422, "severity must be likely-incorrigible or distinguishable")
        report = load_report(svc.store, _report_sha(svc, who, audit_id))
        rows = [
            r for r in report["trajectories"]
            if (flagged is None or r["flagged"] == flagged) and (severity is None or r["severity"] == severity)
            and (departed is None or r["departed"] == departed)
        ]
        heavy = {"step_scores", "score_path", "entropy", "actions", "explanation", "replay"}
        items = [{k: v for k, v in r.items() if k not in heavy} for r in rows[offset: offset + limit]]
        return {"items": items, "total": len(rows), "limit": limit, "offset": offset}

    @app.get("/v1/audits/{audit_id}/trajectories/{n}", tags=["reports"])
    def get_trajectory(audit_id: str, n: int, who: Principal = Depends(principal), svc: Service = Depends(get_service)):
        report = load_report(svc.store, _report_sha(svc, who, audit_id))
        if not 0 <= n < len(report["trajectories"]):
            raise not_found("trajectory")
        return report["trajectories"][n]

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
