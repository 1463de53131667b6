"""Upload validation in separate processes with a memory cap and a time limit, so a hostile file cannot take the API
down.

The API process never parses an uploaded file itself: :class:`Validator` hands the temp file's
path to one of a few *slots*, each a one-process pool (spawned, not forked, on first use) whose
address space is capped (``RLIMIT_AS``). A slot runs one validation at a time, so a file that
crashes its process or runs past the time limit costs only its own upload (the slot is killed and
replaced); neighbours in other slots never see it. One project holds at most all slots but one, so a
tenant uploading slow files cannot starve the others; an upload that finds no slot within the time
limit gets :class:`ValidatorBusy` (the API answers 503 with ``Retry-After``). Each child exits when
the process that started it is gone.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import resource
import threading
import time
from collections import Counter
from typing import Any


def _ready() -> bool:
    import audit  # noqa: F401 - the import is the warm-up: torch and the registry, paid before the first upload

    return True


class ValidationRefused(ValueError):
    """The file was refused, or its validation hit a limit (the message says which, in one line)."""


class ValidatorBusy(RuntimeError):
    """No validation slot came free in time: the upload was not looked at (retry later)."""


def cap_memory(memory_bytes: int) -> None:
    """Cap this process's address space (``RLIMIT_AS``): past it, allocations fail instead of the machine's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _orphan_watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)  # the server is gone: nobody will ask this process anything again


def _child_start(memory_bytes: int, parent: int) -> None:
    """A slot's process: capped, and gone when its server is (killed or not)."""
    cap_memory(memory_bytes)
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True, name="orphan-watch").start()


def _check(kind: str, path: str, allowed_envs: tuple[str, ...]) -> dict[str, Any]:
    try:
        import audit
    except Exception:  # noqa: BLE001 - libraries that cannot map their code: the cap is too low for anything
        raise ValidationRefused(
            "the validator cannot start within its memory cap (IMITAUDIT_VALIDATE_MEMORY_BYTES)"
        ) from None
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
    """Runs :func:`audit.check_imitator` / :func:`audit.check_demonstrations` in capped child processes, one per slot.

    Args:
        memory_bytes: each child's address-space cap.
        seconds: the longest one validation may take (and the longest an upload waits for a slot).
        allowed_envs: env ids enabled besides the built-ins.
        slots: validations that may run at once.
    """

    def __init__(self, *, memory_bytes: int, seconds: float, allowed_envs: tuple[str, ...], slots: int = 2) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.memory_bytes, self.seconds, self.allowed_envs = memory_bytes, seconds, allowed_envs
        self._pools: list[cf.ProcessPoolExecutor | None] = [None] * slots
        self._free = list(range(slots))
        self._holders: Counter = Counter()
        self._per_tenant = max(1, slots - 1)
        self._cond = threading.Condition()

    def _pool(self, slot: int) -> cf.ProcessPoolExecutor:
        pool = self._pools[slot]
        if pool is None:
            pool = self._pools[slot] = cf.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_start,
                initargs=(self.memory_bytes, os.getpid()),
            )
        return pool

    def _replace(self, slot: int) -> None:
        """Kill the slot's process (a stuck or broken validation); the next use spawns a fresh one."""
        pool, self._pools[slot] = self._pools[slot], None
        if pool is None:
            return
        for proc in (getattr(pool, "_processes", None) or {}).values():
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def _acquire(self, tenant: Any) -> int:
        deadline = time.monotonic() + self.seconds
        with self._cond:
            while not self._free or self._holders[tenant] >= self._per_tenant:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ValidatorBusy("every upload validation slot is busy; retry shortly")
                self._cond.wait(left)
            self._holders[tenant] += 1
            return self._free.pop()

    def _release(self, slot: int, tenant: Any) -> None:
        with self._cond:
            self._holders[tenant] -= 1
            self._free.append(slot)
            self._cond.notify_all()

    def warm(self) -> cf.Future:
        """Start the first slot's process and its imports now, without waiting (the future says when it is ready), so
        the
        first upload does not pay for them."""
        with self._cond:
            return self._pool(0).submit(_ready)

    def check(self, kind: str, path: str, tenant: Any = None) -> dict[str, Any]:
        """The file's summary, or :class:`ValidationRefused` with one line (or :class:`ValidatorBusy`)."""
        slot = self._acquire(tenant)
        try:
            return self._check_in(slot, kind, str(path))
        finally:
            self._release(slot, tenant)

    def _submit(self, slot: int, kind: str, path: str) -> cf.Future:
        try:
            return self._pool(slot).submit(_check, kind, path, self.allowed_envs)
        except (
            cf.process.BrokenProcessPool,
            RuntimeError,
        ):  # the slot's process died while idle: not this file's doing
            self._replace(slot)
            return self._pool(slot).submit(_check, kind, path, self.allowed_envs)

    def _check_in(self, slot: int, kind: str, path: str) -> dict[str, Any]:
        future = self._submit(slot, kind, path)
        try:
            return future.result(timeout=self.seconds)
        except cf.TimeoutError:
            self._replace(slot)
            raise ValidationRefused(f"validating this {kind} took longer than {self.seconds:g} s") from None
        except cf.process.BrokenProcessPool:
            self._replace(slot)
            raise ValidationRefused(f"this {kind} crashed its validator (over the memory cap?)") from None
        except cf.CancelledError:  # the pool was shut down under it (the server is stopping)
            raise ValidatorBusy("the validator was restarted while this upload waited; retry shortly") from None

    def close(self) -> None:
        """End every slot's process now (SIGTERM or Ctrl-C of the server alike) and wait for the pools to wind down,
        so that no child and no semaphore outlives the server."""
        with self._cond:
            pools, self._pools = self._pools, [None] * len(self._pools)
        for pool in pools:
            if pool is None:
                continue
            for proc in (getattr(pool, "_processes", None) or {}).values():
                proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
