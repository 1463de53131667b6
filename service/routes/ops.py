"""Health and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import select

from service.deps import Reader, ServiceDep

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz(svc: ServiceDep):
    """Liveness and database reachability (no token needed)."""
    try:
        with svc.sessions() as s:
            s.execute(select(1))
    except Exception as e:
        return JSONResponse({"status": "unhealthy", "database": type(e).__name__}, status_code=503)
    return {"status": "ok", "database": svc.engine.dialect.name}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(svc: ServiceDep, who: Reader):
    """Prometheus metrics (any token)."""
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")
