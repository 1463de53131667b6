"""Durable audit jobs: claim with a lease, renew by heartbeat, requeue on expiry, finish exactly once.

A job is an ``audits`` row. A worker claims the oldest claimable row (queued, or running
with an expired lease) and stamps it with its id and a lease; a heartbeat thread renews the
lease while the audit runs. Every write a worker makes afterwards is conditional on
``lease_owner = <its id> AND state = 'running'``: a worker that lost its lease (it stalled
and another took the job over) can neither report progress nor finish, so each job ends
with exactly one result. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``; SQLite
serialises writers (``BEGIN IMMEDIATE``, see :mod:`service.db`).

Cancellation: a queued job is cancelled at once by the API; a running one gets
``cancel_requested``, which the audit's stop hook sees at its next stage boundary.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import sessionmaker

import audit
from service.blobs import BlobStore
from service.db import Audit, Flag, utcnow
from service.errors import Conflict, Invalid

log = logging.getLogger("imitaudit.worker")
TERMINAL = ("succeeded", "failed", "cancelled")
STATES = ("queued", "running", *TERMINAL)


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A job a worker holds."""

    audit_id: str
    imitator_sha: str
    demos_sha: str
    settings: dict[str, Any]
    policy: dict[str, Any]
    attempt: int


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim(sessions: sessionmaker, owner: str, *, lease_seconds: float, max_attempts: int) -> Claim | None:
    """Take the oldest claimable job, or return None. Jobs past ``max_attempts`` fail instead."""
    with sessions.begin() as s:
        now = utcnow()
        q = (
            select(Audit)
            .where(or_(Audit.state == "queued", (Audit.state == "running") & (Audit.lease_expires < now)))
            .order_by(Audit.created)
            .limit(1)
        )
        if s.bind.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        job = s.scalars(q).first()
        if job is None:
            return None
        if job.attempts >= max_attempts:
            job.state, job.finished, job.lease_owner = "failed", now, None
            job.error = f"gave up after {job.attempts} attempts: the workers running it stopped without finishing"
            return None
        if job.cancel_requested:
            job.state, job.finished, job.lease_owner = "cancelled", now, None
            return None
        job.state = "running"
        job.lease_owner = owner
        job.lease_expires = now + timedelta(seconds=lease_seconds)
        job.attempts += 1
        job.started = job.started or now
        return Claim(
            audit_id=job.id,
            imitator_sha=job.imitator_sha,
            demos_sha=job.demos_sha,
            settings=dict(job.settings),
            policy=dict(job.policy),
            attempt=job.attempts,
        )


def _owned(audit_id: str, owner: str):
    return (Audit.id == audit_id) & (Audit.lease_owner == owner) & (Audit.state == "running")


def renew(sessions: sessionmaker, audit_id: str, owner: str, *, lease_seconds: float) -> tuple[bool, bool]:
    """Extend the lease; returns (still owned, cancel requested)."""
    with sessions.begin() as s:
        n = s.execute(
            update(Audit)
            .where(_owned(audit_id, owner))
            .values(lease_expires=utcnow() + timedelta(seconds=lease_seconds))
        ).rowcount
        cancel = bool(s.scalar(select(Audit.cancel_requested).where(Audit.id == audit_id)))
    return n == 1, cancel


def set_progress(sessions: sessionmaker, audit_id: str, owner: str, stage: str, fraction: float) -> bool:
    with sessions.begin() as s:
        return (
            s.execute(
                update(Audit).where(_owned(audit_id, owner)).values(stage=stage, progress=round(fraction, 4))
            ).rowcount
            == 1
        )


def finish(
    sessions: sessionmaker,
    audit_id: str,
    owner: str,
    *,
    state: str,
    report: dict | None = None,
    report_sha: str | None = None,
    error: str | None = None,
) -> bool:
    """Record the job's end, only if this worker still owns it; returns whether it did."""
    with sessions.begin() as s:
        values: dict[str, Any] = {
            "state": state,
            "finished": utcnow(),
            "lease_owner": None,
            "lease_expires": None,
            "error": error,
        }
        if report is not None:
            values.update(
                passed=bool(report["verdict"]["passed"]),
                summary=report["summary"],
                report_sha=report_sha,
                progress=1.0,
                stage="done",
            )
        if s.execute(update(Audit).where(_owned(audit_id, owner)).values(**values)).rowcount != 1:
            return False
        if report is not None:
            job = s.get(Audit, audit_id)
            for r in report["trajectories"]:
                if r["flagged"]:
                    s.add(
                        Flag(
                            audit_id=audit_id,
                            project_id=job.project_id,
                            env_id=job.env_id,
                            imitator_sha=job.imitator_sha,
                            trajectory=r["index"],
                            seed=r["seed"],
                            severity=r["severity"],
                            pvalue=r["pvalue"],
                            strength=r["strength"],
                            first_flag_step=r["first_flag_step"],
                            departed=r["departed"],
                        )
                    )
        return True


def config_of(
    settings: dict[str, Any], policy: dict[str, Any], *, imitator: str = "", demos: str = ""
) -> audit.AuditConfig:
    """The AuditConfig that stored settings and policy (JSON: only what was set) make, for these files.

    Raises:
        Invalid: settings that bounds alone do not rule out (e.g. fewer episodes than folds); one line.
    """
    try:
        given: dict[str, Any] = {k: tuple(v) if k == "taps" else v for k, v in settings.items()}
        return audit.AuditConfig(imitator=imitator, demos=demos, policy=audit.GatePolicy(**policy), **given)
    except ValueError as e:
        raise Invalid(str(e).splitlines()[0]) from None


def audit_config(claim_: Claim, store: BlobStore) -> audit.AuditConfig:
    """The audit's settings as submitted, with the blobs' paths."""
    return config_of(
        claim_.settings,
        claim_.policy,
        imitator=str(store.path(claim_.imitator_sha)),
        demos=str(store.path(claim_.demos_sha)),
    )


def request_cancel(job: Audit) -> None:
    """Cancel a job (a row in the caller's transaction): a queued one at once, a running one at its next heartbeat.

    Raises:
        Conflict: the job has already ended.
    """
    if job.state in TERMINAL:
        raise Conflict(f"audit already {job.state}")
    job.cancel_requested = True
    if job.state == "queued":
        job.state, job.finished, job.error = "cancelled", utcnow(), "cancelled on request"


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, or torch's allocator refusing (a RuntimeError)."""
    return isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "not enough memory" in str(exc)


class Worker:
    """Runs queued audits one at a time until ``stop`` is set; with a ``cluster`` (:class:`audit.Cluster`) each audit's
    tasks run there while this worker holds the job's lease, and a cancel or a lost lease cancels the tasks."""

    def __init__(
        self,
        *,
        sessions: sessionmaker,
        store: BlobStore,
        lease_seconds: float = 30.0,
        max_attempts: int = 3,
        poll_seconds: float = 0.5,
        allowed_envs: tuple[str, ...] = (),
        job_seconds: float = 3600.0,
        memory_bytes: int | None = None,
        cluster: audit.Cluster | None = None,
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.job_seconds = job_seconds
        self.memory_bytes = memory_bytes
        self.allowed_envs = allowed_envs
        self.store = store
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        self.owner = worker_id()
        self.stop = threading.Event()

    def run_forever(self) -> None:
        log.info("worker %s started", self.owner)
        while not self.stop.is_set():
            try:
                did = self.run_one()
            except Exception:  # the database went away for a moment: keep the worker alive
                log.exception("worker loop error")
                did = False
            if not did:
                self.stop.wait(self.poll_seconds)

    def run_one(self) -> bool:
        """Claim and run one job; returns False when none was waiting."""
        job = claim(self.sessions, self.owner, lease_seconds=self.lease_seconds, max_attempts=self.max_attempts)
        if job is None:
            return False
        log.info("audit %s: attempt %d on %s", job.audit_id, job.attempt, self.owner)
        watch = _Watch(worker=self, audit_id=job.audit_id)
        watch.start()
        try:
            outcome = self._run(job, watch)
        finally:
            watch.close()
        log.info("audit %s: %s in %.1f s", job.audit_id, outcome, watch.elapsed())
        return True

    def _run(self, job: Claim, watch: "_Watch") -> str:
        """Run the claimed job to its end; the outcome's name."""
        try:
            config = audit_config(job, self.store)
            for path in (config.imitator, config.demos):  # rows stored before a rule existed are held to it too
                audit.check_uploaded_env(path, self.allowed_envs)
            report = audit.run_audit(config, watch.progress, should_stop=watch.should_stop, cluster=self.cluster)
            if self.cluster is not None:
                log.info("audit %s: %s (this worker's total)", job.audit_id, self.cluster.summary())
            sha = self.store.put_bytes(audit.to_json(report).encode())
            ok = finish(self.sessions, job.audit_id, self.owner, state="succeeded", report=report, report_sha=sha)
            return "succeeded" if ok else "lost"
        except InterruptedError as e:
            return self._stopped(job, watch, str(e))
        except (ValueError, TypeError, Invalid) as e:
            return self._fail(job, str(e).splitlines()[0][:500])
        except Exception as e:
            if _out_of_memory(e):
                cap = (
                    f" of {self.memory_bytes / 1024**3:.3g} GiB (IMITAUDIT_WORKER_MEMORY_BYTES)"
                    if self.memory_bytes
                    else ""
                )
                return self._fail(
                    job,
                    f"the audit needed more memory than the worker's cap{cap}: "
                    "lower its episodes or lookahead settings",
                )
            log.exception("audit %s crashed", job.audit_id)
            return self._fail(job, f"internal error: {type(e).__name__}: {e}"[:500])

    def _fail(self, job: Claim, error: str) -> str:
        finish(self.sessions, job.audit_id, self.owner, state="failed", error=error)
        return "failed"

    def _stopped(self, job: Claim, watch: "_Watch", why: str) -> str:
        """The audit was interrupted: by a lost lease, its time budget, shutdown or cancel (in that order of
        precedence)."""
        if watch.lost:
            return "lost"
        if watch.overtime and not watch.cancel:
            inside = "; its imitator's ONNX graph was still running and was stopped" if "ONNX graph" in why else ""
            return self._fail(
                job, f"the audit ran past its time budget of {self.job_seconds:g} s (IMITAUDIT_JOB_SECONDS){inside}"
            )
        if self.stop.is_set() and not watch.cancel:
            requeue(self.sessions, job.audit_id, self.owner)  # shutting down: hand the job back to the queue at once
            return "requeued"
        finish(self.sessions, job.audit_id, self.owner, state="cancelled", error="cancelled on request")
        return "cancelled"


class _Watch:
    """One running job's watchdog: renews its lease, notices a cancel, a lost lease, the time budget or shutdown, and
    then
    ends any imitator run in flight (an ONNX graph can run for ever inside one call, where no stage boundary is
    reached)."""

    def __init__(self, *, worker: Worker, audit_id: str) -> None:
        self.worker, self.audit_id = worker, audit_id
        self.lost = self.cancel = self.overtime = False
        self.started = time.monotonic()
        self._last_progress = 0.0
        self._done = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name=f"heartbeat-{audit_id}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def start(self) -> None:
        audit.allow_imitator_runs()
        self._beat.start()

    def close(self) -> None:
        self._done.set()
        self._beat.join(timeout=5)

    def _renew(self) -> bool:
        """Renew the lease and read the job's flags; whether the audit must stop."""
        w = self.worker
        owned, cancel = renew(w.sessions, self.audit_id, w.owner, lease_seconds=w.lease_seconds)
        self.lost = self.lost or not owned
        self.cancel = self.cancel or cancel
        self.overtime = self.elapsed() > w.job_seconds
        return self.lost or self.cancel or self.overtime or w.stop.is_set()

    def _heartbeat(self) -> None:
        w = self.worker
        # wake at the budget's end too, so a run stuck inside one call is stopped on time, not a beat later
        while not self._done.wait(max(0.05, min(w.lease_seconds / 3, w.job_seconds - self.elapsed() + 0.05))):
            try:
                if self._renew():
                    audit.stop_imitator_runs()
            except Exception:
                log.exception("heartbeat failed")

    def progress(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if now - self._last_progress > 0.25 or fraction >= 1.0 or stage not in ("discriminate", "rollout"):
            self._last_progress = now
            if not set_progress(self.worker.sessions, self.audit_id, self.worker.owner, stage, fraction):
                self.lost = True

    def should_stop(self) -> bool:
        return self._renew()


def requeue(sessions: sessionmaker, audit_id: str, owner: str) -> bool:
    """Hand a job this worker owns back to the queue (the worker is shutting down); returns whether it did."""
    with sessions.begin() as s:
        return (
            s.execute(
                update(Audit)
                .where(_owned(audit_id, owner))
                .values(state="queued", lease_owner=None, lease_expires=None)
            ).rowcount
            == 1
        )


def new_audit_id() -> str:
    return uuid.uuid4().hex


def load_report(store: BlobStore, sha: str) -> dict:
    return json.loads(store.read_bytes(sha))
