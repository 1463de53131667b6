"""Upload validation in a separate process with a memory cap and a time limit, so a hostile file cannot take the API down.

The API process never parses an uploaded file itself: :class:`Validator` hands the temp file's
path to a one-process pool (spawned, not forked, on first use) whose address space is capped
(``RLIMIT_AS``). A file that needs more memory gets ``MemoryError`` there; one that crashes the
process breaks only the pool, which is replaced; one that runs past the time limit has its
process killed and replaced. Each case is a one-line refusal for the uploader.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import resource
import threading
from typing import Any


def _ready() -> bool:
    import audit  # noqa: F401 - the import is the warm-up: torch and the registry, paid before the first upload

    return True


class ValidationRefused(ValueError):
    """The file was refused, or its validation hit a limit (the message says which, in one line)."""


def cap_memory(memory_bytes: int) -> None:
    """Cap this process's address space (``RLIMIT_AS``): past it, allocations fail instead of the machine's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _check(kind: str, path: str, allowed_envs: tuple[str, ...]) -> dict[str, Any]:
    try:
        import audit
    except Exception:  # noqa: BLE001 - libraries that cannot map their code: the cap is too low for anything
        raise ValidationRefused("the validator cannot start within its memory cap (IMITAUDIT_VALIDATE_MEMORY_BYTES)") from None
    check = audit.check_imitator if kind == "imitator" else audit.check_demonstrations
    try:
        return check(path, allow_imports=False, allowed_envs=allowed_envs)
    except ValueError as exc:
        raise ValidationRefused(str(exc).splitlines()[0]) from None
    except MemoryError:
        raise ValidationRefused("validating this file needed more memory than the service allows") from None
    except Exception as exc:  # noqa: BLE001 - a file the readers did not foresee is still the uploader's problem
        raise ValidationRefused(f"unreadable {kind}: {type(exc).__name__}") from None


class Validator:
    """Runs :func:`audit.check_imitator` / :func:`audit.check_demonstrations` in a capped child process.

    Args:
        memory_bytes: the child's address-space cap.
        seconds: the longest one validation may take.
        allowed_envs: env ids enabled besides the built-ins.
    """

    def __init__(self, *, memory_bytes: int, seconds: float, allowed_envs: tuple[str, ...]) -> None:
        self.memory_bytes, self.seconds, self.allowed_envs = memory_bytes, seconds, allowed_envs
        self._pool: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> cf.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=cap_memory, initargs=(self.memory_bytes,))
            return self._pool

    def _replace(self, pool: cf.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        for proc in list(getattr(pool, "_processes", {}).values()):  # a stuck validation: kill it
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def warm(self) -> cf.Future:
        """Start the validator process and its imports now, without waiting (the future says when it is ready), so the
        first upload does not pay for them."""
        return self._executor().submit(_ready)

    def check(self, kind: str, path: str) -> dict[str, Any]:
        """The file's summary, or :class:`ValidationRefused` with one line."""
        pool = self._executor()
        future = pool.submit(_check, kind, str(path), self.allowed_envs)
        try:
            return future.result(timeout=self.seconds)
        except cf.TimeoutError:
            self._replace(pool)
            raise ValidationRefused(f"validating this {kind} took longer than {self.seconds:g} s") from None
        except cf.process.BrokenProcessPool:
            self._replace(pool)
            raise ValidationRefused(f"this {kind} crashed its validator (over the memory cap?)") from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
