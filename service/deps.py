"""What every route depends on: the service's shared state, the caller (token -> principal), and the one error type.

``ServiceDep``, ``Reader`` and ``Submitter`` are ``Annotated`` aliases for route signatures.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Annotated

from fastapi import Depends, Request

from service.auth import Principal, principal_for, request_token
from service.blobs import BlobStore
from service.db import make_engine, migrate, session_factory
from service.metrics import Metrics
from service.settings import Settings
from service.validate import Validator


log = logging.getLogger("imitaudit.api")


class ApiError(Exception):
    """A 4xx (or 503) answer with one line."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


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
        swept = self.store.sweep_temp()
        if swept:
            log.info("removed %d temp file(s) left by interrupted uploads", swept)
        self.validator = Validator(memory_bytes=settings.validate_memory_bytes, seconds=settings.validate_seconds,
                                   allowed_envs=settings.allowed_envs, slots=settings.validate_slots)
        self.worker: subprocess.Popen | None = None
        self.worker_restarts = 0
        self._stopping = threading.Event()

    def _spawn(self) -> subprocess.Popen:
        env = {**os.environ, "IMITAUDIT_DATA_DIR": str(self.settings.data_dir), "IMITAUDIT_DATABASE_URL": self.settings.url,
               "IMITAUDIT_LEASE_SECONDS": str(self.settings.lease_seconds), "IMITAUDIT_ENVS": self.settings.envs,
               "IMITAUDIT_JOB_SECONDS": str(self.settings.job_seconds), "IMITAUDIT_WORKER_MEMORY_BYTES": str(self.settings.worker_memory_bytes)}
        return subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env, preexec_fn=_die_with_parent)

    def start_worker(self) -> None:
        """One `imitaudit worker` as a child process, restarted (with backoff) whenever it dies. Not a thread:
        torch trains the audit's discriminators at about half speed off the main thread."""
        self.worker = self._spawn()
        threading.Thread(target=self._supervise, daemon=True, name="worker-supervisor").start()

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping.wait(0.5):
            if self.worker is None or self.worker.poll() is None:
                continue
            log.warning("worker child exited with %s; restarting in %.0f s", self.worker.returncode, backoff)
            if self._stopping.wait(backoff):
                return
            self.worker = self._spawn()
            self.worker_restarts += 1
            backoff = min(backoff * 2, 30.0)

    @property
    def worker_alive(self) -> bool | None:
        """Whether the worker child runs (None: this server runs none)."""
        return None if self.worker is None else self.worker.poll() is None

    def stop_worker(self) -> None:
        self._stopping.set()
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()  # the worker hands a running audit back to the queue
            try:
                self.worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.worker.kill()


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def principal(request: Request) -> Principal:
    """The caller of a route that needs any token (read or submit)."""
    svc = get_service(request)
    token = request_token(request.headers, request.cookies)
    with svc.sessions() as s:
        who = principal_for(s, token)
    if who is None:
        raise ApiError(401, "missing or unknown API token" if token else "this route needs an API token (Authorization: Bearer ...)")
    return who


def submitter(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """The caller of a route that writes (uploads, audits, cancellation): a submit token."""
    if not who.can_submit():
        raise ApiError(403, "this token may only read; uploads, audits and cancellation need a submit token")
    return who


Reader = Annotated[Principal, Depends(principal)]
Submitter = Annotated[Principal, Depends(submitter)]
