"""The service's settings: one pydantic-settings class, read from ``IMITAUDIT_*`` environment variables and validated;
no default secrets."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the service keeps its state and how it runs jobs.

    Each field is read from ``IMITAUDIT_<FIELD>`` (``IMITAUDIT_DATA_DIR``, ``IMITAUDIT_DATABASE_URL``,
    ``IMITAUDIT_MAX_UPLOAD_BYTES``, ``IMITAUDIT_LEASE_SECONDS``, ``IMITAUDIT_MAX_ATTEMPTS``,
    ``IMITAUDIT_POLL_SECONDS``, ``IMITAUDIT_WORKER_IN_PROCESS``, ``IMITAUDIT_SECURE_COOKIES``,
    ``IMITAUDIT_RAY_ADDRESS``);
    keyword arguments (the command line's flags) win over the environment.
    """

    model_config = SettingsConfigDict(env_prefix="IMITAUDIT_", frozen=True, extra="ignore")

    data_dir: Path = Path("out/service")
    """Blobs (checkpoints, demonstrations, reports) and the default SQLite file live here."""
    database_url: str = ""
    """SQLAlchemy URL; empty = a SQLite file in ``data_dir``. PostgreSQL: ``postgresql+psycopg://...``."""
    max_upload_bytes: int = Field(256 * 1024 * 1024, gt=0)
    """Uploads past this many bytes are refused with 413 (counted while streaming)."""
    validate_memory_bytes: int = Field(2 * 1024**3, ge=512 * 1024**2)
    """Address-space cap of the process that validates uploads (a file needing more is refused)."""
    validate_seconds: float = Field(120.0, gt=0)
    """The longest one upload's validation may take before its process is killed and the upload refused."""
    validate_slots: int = Field(2, ge=1, le=16)
    """Uploads validated at once, each in its own process; one project may hold all but one of them."""
    max_json_bytes: int = Field(1024 * 1024, gt=0)
    """JSON request bodies (``POST /v1/audits``) past this many bytes are refused with 413."""
    envs: str = ""
    """Comma-separated Gymnasium env ids uploads may name besides the built-in envs (each must be installed where
    workers run)."""
    lease_seconds: float = Field(30.0, gt=0)
    """A claimed job whose worker has not renewed its lease for this long is requeued."""
    worker_memory_bytes: int = Field(16 * 1024**3, ge=1024**3)
    """Address-space cap of each worker process: an audit whose settings need more (a lookahead of 32 samples x 64
    steps over 4,096 episodes asks for ~14 GB at once) fails with a line that says so, and the worker lives on."""
    job_seconds: float = Field(3600.0, gt=0)
    """An audit still running after this many seconds fails with a line that says so (checked inside its stages)."""
    max_attempts: int = Field(3, ge=1)
    """A job requeued this many times (its workers kept dying) fails instead."""
    poll_seconds: float = Field(0.5, gt=0)
    """How often an idle worker looks for queued jobs."""
    ray_address: str = ""
    """A Ray head (``HOST:PORT``, or ``auto``) whose cluster runs each audit's tasks (rollout shards, detector fits,
    explanations); the job's lease stays with the worker that claimed it. Empty: audits run inside the worker."""
    worker_in_process: bool = True
    """``imitaudit serve`` also runs one worker (a child process)."""
    docs: bool = True
    """Serve the OpenAPI spec and its pages (``/openapi.json``, ``/docs``, ``/redoc``) without a token; off to hide
    them."""
    secure_cookies: bool = False
    """Mark the dashboard's cookie Secure (behind TLS)."""

    @property
    def allowed_envs(self) -> tuple[str, ...]:
        """The env ids uploads may name besides the built-ins (from ``envs``)."""
        return tuple(e.strip() for e in self.envs.split(",") if e.strip())

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{(Path(self.data_dir) / 'imitaudit.db').resolve()}"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Settings from the environment (``IMITAUDIT_DATA_DIR``, ``IMITAUDIT_DATABASE_URL``,
        ``IMITAUDIT_MAX_UPLOAD_BYTES``,
        ``IMITAUDIT_LEASE_SECONDS``, ``IMITAUDIT_WORKER_IN_PROCESS``, ``IMITAUDIT_SECURE_COOKIES``,
        ``IMITAUDIT_WORKER_MEMORY_BYTES``, ``IMITAUDIT_JOB_SECONDS``, ...), with
        ``overrides`` that are not None on top.

        Raises:
            ValueError: a value out of bounds (one line naming it).
        """
        from pydantic import ValidationError

        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as e:
            first = e.errors()[0]
            raise ValueError(f"setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
