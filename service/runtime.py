"""The running service: its shared state (settings, database, blob store, validator, metrics) and the worker child it
supervises. Nothing here knows HTTP; :mod:`service.deps` hands it to the routes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

from service.blobs import BlobStore
from service.db import make_engine, migrate, session_factory
from service.metrics import Metrics
from service.settings import Settings
from service.validate import Validator

log = logging.getLogger("imitaudit.api")


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
        self.validator = Validator(
            memory_bytes=settings.validate_memory_bytes,
            seconds=settings.validate_seconds,
            allowed_envs=settings.allowed_envs,
            slots=settings.validate_slots,
        )
        self.worker: subprocess.Popen | None = None
        self.worker_restarts = 0
        self._stopping = threading.Event()

    def _spawn(self) -> subprocess.Popen:
        env = {
            **os.environ,
            "IMITAUDIT_DATA_DIR": str(self.settings.data_dir),
            "IMITAUDIT_DATABASE_URL": self.settings.url,
            "IMITAUDIT_LEASE_SECONDS": str(self.settings.lease_seconds),
            "IMITAUDIT_ENVS": self.settings.envs,
            "IMITAUDIT_JOB_SECONDS": str(self.settings.job_seconds),
            "IMITAUDIT_WORKER_MEMORY_BYTES": str(self.settings.worker_memory_bytes),
        }
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
