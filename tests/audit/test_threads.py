"""The thread decision: IMITAUDIT_THREADS wins; otherwise the cores that running processes leave free, at least one,
said in one line when forced; running processes counted from the kernel, not assumed."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.threads import decide, running_elsewhere

BIN = str(Path(sys.executable).with_name("imitaudit"))


def test_the_variable_wins_and_a_bad_one_is_refused():
    assert decide("3", 2, 5) == (3, None)
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match="IMITAUDIT_THREADS must be a positive integer"):
            decide(bad, 2, 0)


def test_the_default_takes_the_cores_left_free_and_says_so_when_forced():
    assert decide("", 2, 0) == (2, None)
    threads, why = decide("", 2, 1)
    assert threads == 1 and "1 torch thread(s): 1 other process(es) running on 2 core(s)" in why
    assert decide("", 8, 3)[0] == 5 and decide("", 2, 7)[0] == 1


@pytest.fixture
def spinner():
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)
    yield proc
    proc.kill()
    proc.wait()


def test_a_busy_process_beside_is_counted_and_the_cli_takes_one_thread_fewer(spinner, monkeypatch):
    assert running_elsewhere() >= 1
    env = {k: v for k, v in os.environ.items() if k != "IMITAUDIT_THREADS"}
    res = subprocess.run([BIN, "plan", "--m", "300"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    cores = len(os.sched_getaffinity(0))
    if cores > 1:  # on one core there is nothing to take away
        assert "torch thread(s): " in res.stderr and "IMITAUDIT_THREADS=N chooses" in res.stderr


def test_a_long_run_counts_other_running_threads_and_says_when_they_outnumber_the_cores(spinner):
    import torch

    from audit.threads import others_running, sharing_note
    from audit.training.progress import PhaseProgress

    assert others_running() >= 1  # the spinner (this process's own running threads are taken off)
    assert sharing_note(2, 2, 0) is None and sharing_note(1, 2, 1) is None
    note = sharing_note(2, 2, 3)
    assert "sharing 2 core(s) with 3 other running thread(s) at 2 torch thread(s)" in note
    assert "IMITAUDIT_THREADS=1" in note

    class Loop:
        total_batch_idx = 9

    class Trainer:
        callback_metrics: dict = {}
        fit_loop = type("F", (), {"epoch_loop": Loop})()

    crowded = PhaseProgress(phase="bc", total=20, unit="steps", others=lambda: 64)
    crowded.start = 1.0
    assert "IMITAUDIT_THREADS=1" in crowded._line(10, Trainer())
    alone = PhaseProgress(phase="bc", total=20, unit="steps", others=lambda: 0)
    alone.start = 1.0
    assert "sharing" not in alone._line(10, Trainer()) or torch.get_num_threads() > len(os.sched_getaffinity(0))
