"""Health and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import select

from service.deps import Reader, ServiceDep
from service.schemas import COMMON

router = APIRouter(tags=["ops"], responses={**COMMON})


@router.get("/healthz")
def healthz(svc: ServiceDep):
    """Liveness, database reachability and, where this server runs one, its worker child (no token needed)."""
    try:
        with svc.sessions() as s:
            s.execute(select(1))
    except Exception as e:
        return JSONResponse({"status": "unhealthy", "database": type(e).__name__}, status_code=503)
    if svc.worker_alive is False:  # this server runs a worker and it is down (the supervisor restarts it)
        return JSONResponse(
            {
                "status": "unhealthy",
                "database": svc.engine.dialect.name,
                "worker": "down",
                "worker_restarts": svc.worker_restarts,
            },
            status_code=503,
        )
    out = {"status": "ok", "database": svc.engine.dialect.name}
    if svc.worker_alive:
        out.update(worker="up", worker_restarts=svc.worker_restarts)  # type: ignore[call-overload]
    return out


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(svc: ServiceDep, who: Reader):
    """Prometheus metrics (any token): the server's request figures and the token's project's jobs, no other
    project's."""
    return Response(svc.metrics.render(who.project_id), media_type="text/plain; version=0.0.4")
