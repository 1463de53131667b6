"""How many torch threads this process uses: one decision, taken where work starts (the CLI and the service's processes,
the notebook API; Ray tasks run at their driver's count).

Threads that outnumber the free cores do not add up, they collapse: two audits at two threads each on two cores took
four times as long as one alone, two at one thread each 1.6 times (BENCHMARKS.md, ``bench/threads.py``). So the default
counts the cores this process may run on and the processes already running on the machine, and takes the cores left
over, at least one. Running processes are counted from ``/proc/stat``'s ``procs_running`` (the instantaneous count, not
the load average, which lags a minute behind: two audits started together would each see an idle machine), its
smallest of a few samples, so that a passing shell does not count. ``IMITAUDIT_THREADS`` overrides all of it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

ENV = "IMITAUDIT_THREADS"


def _least_running(samples: int, interval: float, own: Callable[[], int]) -> int:
    """The smallest of ``samples`` readings of ``procs_running`` less ``own()`` each time, at least 0 (0 where
    /proc/stat cannot be read)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat") as f:
                line = next((x for x in f if x.startswith("procs_running")), "")
        except OSError:
            return 0
        if not line:
            return 0
        counts.append(int(line.split()[1]) - own())
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, min(counts))


def running_elsewhere(samples: int = 5, interval: float = 0.02) -> int:
    """Runnable processes besides this one: the smallest of ``samples`` readings of ``procs_running`` less one (0
    where /proc/stat cannot be read)."""
    return _least_running(samples, interval, lambda: 1)


def _own_running() -> int:
    """This process's threads that are running or runnable now (``R`` in ``/proc/self/task/*/stat``), at least 1."""
    n = 0
    try:
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as f:
                    n += f.read().rsplit(")", 1)[-1].split()[0] == "R"
            except (OSError, IndexError):
                continue
    except OSError:
        return 1
    return max(n, 1)


def others_running(samples: int = 3, interval: float = 0.02) -> int:
    """Runnable threads of other processes: the smallest of ``samples`` readings of ``procs_running`` less this
    process's own runnable threads (0 where /proc cannot be read). Unlike :func:`running_elsewhere`, right while this
    process computes on several threads."""
    return _least_running(samples, interval, _own_running)


def sharing_note(threads: int, cores: int, others: int) -> str | None:
    """The words a long run adds to its progress line when its ``threads`` and ``others`` runnable threads elsewhere
    outnumber the ``cores``: it then runs far slower than alone, and what to set; None when they fit."""
    if threads + others <= cores:
        return None
    return (
        f"sharing {cores} core(s) with {others} other running thread(s) at {threads} torch thread(s) here, so slower "
        f"than alone: {ENV}=1 in each process, or fewer at once"
    )


def decide(env: str, cores: int, others: int) -> tuple[int, str | None]:
    """(threads, why): ``env`` (``IMITAUDIT_THREADS``) if set, else the ``cores`` not taken by ``others`` running
    processes, at least 1; ``why`` is a line to print when the choice is fewer threads than cores, else None.

    Raises:
        ValueError: ``env`` set to anything but a positive integer.
    """
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"{ENV} must be a positive integer, got {env!r}")
        return int(env), None
    threads = max(1, cores - others)
    if threads == cores:
        return threads, None
    return threads, (
        f"imitaudit: {threads} torch thread(s): {others} other process(es) running on {cores} core(s) ({ENV}=N chooses)"
    )


def use_threads(*, say: bool = True) -> int:
    """Decide (:func:`decide`) and set torch's threads for this process; print why to stderr when forced. Returns
    the count.

    Raises:
        ValueError: a bad ``IMITAUDIT_THREADS``.
    """
    import torch

    env = os.environ.get(ENV, "")
    cores = max(1, len(os.sched_getaffinity(0)))
    threads, why = decide(env, cores, 0 if env else running_elsewhere())
    torch.set_num_threads(threads)
    if why and say:
        print(why, file=sys.stderr, flush=True)
    return threads
