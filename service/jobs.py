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

log = logging.getLogger("imitaudit.worker")
TERMINAL = ("succeeded", "failed", "cancelled")
STATES = ("queued", "running", *TERMINAL)


class LeaseLost(RuntimeError):
    """This worker no longer owns the job it was running."""


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
        return Claim(audit_id=job.id, imitator_sha=job.imitator_sha, demos_sha=job.demos_sha,
                     settings=dict(job.settings), policy=dict(job.policy), attempt=job.attempts)


def _owned(audit_id: str, owner: str):
    return (Audit.id == audit_id) & (Audit.lease_owner == owner) & (Audit.state == "running")


def renew(sessions: sessionmaker, audit_id: str, owner: str, *, lease_seconds: float) -> tuple[bool, bool]:
    """Extend the lease; returns (still owned, cancel requested)."""
    with sessions.begin() as s:
        n = s.execute(update(Audit).where(_owned(audit_id, owner)).values(lease_expires=utcnow() + timedelta(seconds=lease_seconds))).rowcount
        cancel = bool(s.scalar(select(Audit.cancel_requested).where(Audit.id == audit_id)))
    return n == 1, cancel


def set_progress(sessions: sessionmaker, audit_id: str, owner: str, stage: str, fraction: float) -> bool:
    with sessions.begin() as s:
        return s.execute(update(Audit).where(_owned(audit_id, owner)).values(stage=stage, progress=round(fraction, 4))).rowcount == 1


def finish(sessions: sessionmaker, audit_id: str, owner: str, *, state: str, report: dict | None = None,
           report_sha: str | None = None, error: str | None = None) -> bool:
    """Record the job's end, only if this worker still owns it; returns whether it did."""
    with sessions.begin() as s:
        values: dict[str, Any] = {"state": state, "finished": utcnow(), "lease_owner": None, "lease_expires": None, "error": error}
        if report is not None:
            values.update(passed=bool(report["verdict"]["passed"]), summary=report["summary"], report_sha=report_sha,
                          progress=1.0, stage="done")
        if s.execute(update(Audit).where(_owned(audit_id, owner)).values(**values)).rowcount != 1:
            return False
        if report is not None:
            job = s.get(Audit, audit_id)
            for r in report["trajectories"]:
                if r["flagged"]:
                    s.add(Flag(audit_id=audit_id, project_id=job.project_id, env_id=job.env_id, imitator_sha=job.imitator_sha,
                               trajectory=r["index"], seed=r["seed"], severity=r["severity"], pvalue=r["pvalue"],
                               strength=r["strength"], first_flag_step=r["first_flag_step"], departed=r["departed"]))
        return True


def audit_config(claim_: Claim, store: BlobStore) -> audit.AuditConfig:
    """The audit's settings as submitted, with the blobs' paths."""
    settings = dict(claim_.settings)
    if "taps" in settings:
        settings["taps"] = tuple(settings["taps"])
    return audit.AuditConfig(
        imitator=str(store.path(claim_.imitator_sha)), demos=str(store.path(claim_.demos_sha)),
        policy=audit.GatePolicy(**claim_.policy), **settings,
    )


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, or torch's allocator refusing (a RuntimeError)."""
    return isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "not enough memory" in str(exc)


class Worker:
    """Runs queued audits one at a time until ``stop`` is set; with a ``cluster`` (:class:`audit.Cluster`) each audit's
    tasks run there while this worker holds the job's lease, and a cancel or a lost lease cancels the tasks."""

    def __init__(self, *, sessions: sessionmaker, store: BlobStore, lease_seconds: float = 30.0,
                 max_attempts: int = 3, poll_seconds: float = 0.5, allowed_envs: tuple[str, ...] = (), job_seconds: float = 3600.0,
                 memory_bytes: int | None = None, cluster: audit.Cluster | None = None) -> None:
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
        flags = {"lost": False, "cancel": False}
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(self.lease_seconds / 3):
                try:
                    owned, cancel = renew(self.sessions, job.audit_id, self.owner, lease_seconds=self.lease_seconds)
                except Exception:
                    log.exception("heartbeat failed")
                    continue
                flags["lost"] = flags["lost"] or not owned
                flags["cancel"] = cancel

        beat = threading.Thread(target=heartbeat, daemon=True, name=f"heartbeat-{job.audit_id}")
        beat.start()
        last = [0.0]

        def progress(stage: str, fraction: float) -> None:
            now = time.monotonic()
            if now - last[0] > 0.25 or fraction >= 1.0 or stage not in ("discriminate", "rollout"):
                last[0] = now
                if not set_progress(self.sessions, job.audit_id, self.owner, stage, fraction):
                    flags["lost"] = True

        def should_stop() -> bool:
            owned, cancel = renew(self.sessions, job.audit_id, self.owner, lease_seconds=self.lease_seconds)
            flags["lost"] = flags["lost"] or not owned
            flags["overtime"] = time.monotonic() - started > self.job_seconds
            return flags["lost"] or cancel or self.stop.is_set() or flags["overtime"]

        started = time.monotonic()
        try:
            config = audit_config(job, self.store)
            for path in (config.imitator, config.demos):  # rows stored before a rule existed are held to it too
                audit.check_uploaded_env(path, self.allowed_envs)
            report = audit.run_audit(config, progress, should_stop=should_stop, cluster=self.cluster)
            if self.cluster is not None:
                log.info("audit %s: %s (this worker's total)", job.audit_id, self.cluster.summary())
            sha = self.store.put_bytes(audit.to_json(report).encode())
            ok = finish(self.sessions, job.audit_id, self.owner, state="succeeded", report=report, report_sha=sha)
            outcome = "succeeded" if ok else "lost"
        except InterruptedError:
            if flags["lost"]:
                outcome = "lost"
            elif flags.get("overtime") and not flags["cancel"]:
                finish(self.sessions, job.audit_id, self.owner, state="failed",
                       error=f"the audit ran past its time budget of {self.job_seconds:g} s (IMITAUDIT_JOB_SECONDS)")
                outcome = "failed"
            elif self.stop.is_set() and not flags["cancel"]:
                # shutting down: hand the job back to the queue at once
                with self.sessions.begin() as s:
                    s.execute(update(Audit).where(_owned(job.audit_id, self.owner)).values(state="queued", lease_owner=None, lease_expires=None))
                outcome = "requeued"
            else:
                finish(self.sessions, job.audit_id, self.owner, state="cancelled", error="cancelled on request")
                outcome = "cancelled"
        except (ValueError, TypeError) as e:
            finish(self.sessions, job.audit_id, self.owner, state="failed", error=str(e).splitlines()[0][:500])
            outcome = "failed"
        except Exception as e:
            if _out_of_memory(e):
                cap = f" of {self.memory_bytes / 1024**3:.3g} GiB (IMITAUDIT_WORKER_MEMORY_BYTES)" if self.memory_bytes else ""
                error = f"the audit needed more memory than the worker's cap{cap}: lower its episodes or lookahead settings"
            else:
                log.exception("audit %s crashed", job.audit_id)
                error = f"internal error: {type(e).__name__}: {e}"[:500]
            finish(self.sessions, job.audit_id, self.owner, state="failed", error=error)
            outcome = "failed"
        finally:
            done.set()
            beat.join(timeout=5)
        log.info("audit %s: %s in %.1f s", job.audit_id, outcome, time.monotonic() - started)
        return True


def new_audit_id() -> str:
    return uuid.uuid4().hex


def load_report(store: BlobStore, sha: str) -> dict:
    return json.loads(store.read_bytes(sha))
