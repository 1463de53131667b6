"""Prometheus metrics: request latencies, upload sizes, and, read from the database, the caller's project's jobs by
state and audit durations.

Jobs by state and audit durations are read from the database at scrape time, so they are
right whichever worker process ran the audits.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from service.db import Audit
from service.jobs import STATES


class _JobCollector:
    """Jobs by state and audit durations of one project (a token sees its own project's work only)."""

    def __init__(self, sessions: sessionmaker, project_id: int) -> None:
        self.sessions, self.project_id = sessions, project_id

    def collect(self):
        jobs = GaugeMetricFamily("imitaudit_jobs", "Audit jobs of the token's project by state", labels=["state"])
        mine = Audit.project_id == self.project_id
        with self.sessions() as s:
            counts = dict(s.execute(select(Audit.state, func.count()).where(mine).group_by(Audit.state)).all())
            rows = s.execute(select(Audit.started, Audit.finished).where(mine, Audit.state == "succeeded")).all()
        for state in STATES:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        total = sum((f - st).total_seconds() for st, f in rows if st and f)
        dur = SummaryMetricFamily("imitaudit_audit_wall_seconds", "Claim-to-finish time of succeeded audits")
        dur.add_metric([], count_value=len(rows), sum_value=total)
        yield dur


class Metrics:
    """The app's own registry (no global state, so several apps can live in one process)."""

    def __init__(self, *, sessions: sessionmaker) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "imitaudit_http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.uploads = Histogram(
            "imitaudit_upload_bytes",
            "Accepted upload sizes",
            ["kind"],
            registry=self.registry,
            buckets=tuple(2**k for k in range(10, 31, 2)),
        )
        self.sessions = sessions

    def render(self, project_id: int) -> bytes:
        """The server's request and upload figures, and the jobs of project ``project_id``."""
        jobs = CollectorRegistry()
        jobs.register(_JobCollector(self.sessions, project_id))
        return generate_latest(self.registry) + generate_latest(jobs)
