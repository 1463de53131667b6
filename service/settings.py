"""The service's settings, read once from the environment (``IMITAUDIT_*``); no default secrets."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Where the service keeps its state and how it runs jobs."""

    data_dir: Path = Path("out/service")
    """Blobs (checkpoints, demonstrations, reports) and the default SQLite file live here."""
    database_url: str = ""
    """SQLAlchemy URL; empty = a SQLite file in ``data_dir``. PostgreSQL: ``postgresql+psycopg://...``."""
    max_upload_bytes: int = 256 * 1024 * 1024
    """Uploads past this many bytes are refused with 413 (counted while streaming)."""
    lease_seconds: float = 30.0
    """A claimed job whose worker has not renewed its lease for this long is requeued."""
    max_attempts: int = 3
    """A job requeued this many times (its workers kept dying) fails instead."""
    poll_seconds: float = 0.5
    """How often an idle worker looks for queued jobs."""
    worker_in_process: bool = True
    """``imitaudit serve`` also runs one worker (a child process)."""
    secure_cookies: bool = False
    """Mark the dashboard's cookie Secure (behind TLS)."""

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {self.lease_seconds}")

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{(Path(self.data_dir) / 'imitaudit.db').resolve()}"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Settings from ``IMITAUDIT_DATA_DIR``, ``IMITAUDIT_DATABASE_URL``, ``IMITAUDIT_MAX_UPLOAD_BYTES``,
        ``IMITAUDIT_LEASE_SECONDS``, ``IMITAUDIT_WORKER_IN_PROCESS`` (0/1), ``IMITAUDIT_SECURE_COOKIES`` (0/1)."""
        env = os.environ
        out = cls(
            data_dir=Path(env.get("IMITAUDIT_DATA_DIR", "out/service")),
            database_url=env.get("IMITAUDIT_DATABASE_URL", ""),
            max_upload_bytes=int(env.get("IMITAUDIT_MAX_UPLOAD_BYTES", 256 * 1024 * 1024)),
            lease_seconds=float(env.get("IMITAUDIT_LEASE_SECONDS", 30.0)),
            worker_in_process=env.get("IMITAUDIT_WORKER_IN_PROCESS", "1") not in ("0", "false", "no"),
            secure_cookies=env.get("IMITAUDIT_SECURE_COOKIES", "0") in ("1", "true", "yes"),
        )
        return replace(out, **{k: v for k, v in overrides.items() if v is not None})
