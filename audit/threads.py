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

ENV = "IMITAUDIT_THREADS"


def running_elsewhere(samples: int = 5, interval: float = 0.02) -> int:
    """Runnable processes besides this one: the smallest of ``samples`` readings of ``procs_running`` less one (0
    where /proc/stat cannot be read)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat") as f:
                line = next((x for x in f if x.startswith("procs_running")), "")
        except OSError:
            return 0
        if not line:
            return 0
        counts.append(int(line.split()[1]))
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, min(counts) - 1)


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
