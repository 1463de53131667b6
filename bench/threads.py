"""Benchmark: the default audit's time alone and with a second audit beside it, by torch thread count per process.

    python -m bench.threads --out BENCHMARKS.md

Each audit is `imitaudit audit` as its own process (as the CLI and the service's workers run it) on the
bench/service.py inputs (a BC GRU OffSwitch imitator, 600 held-out demonstrations). ``IMITAUDIT_THREADS``
unset is the default (:mod:`audit.threads`: the cores left free by the processes already running, at least one).
Wall time includes starting Python.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from audit.bench.sections import publish
from bench.service import inputs

BEGIN, END = "<!-- bench/threads.py begin -->", "<!-- bench/threads.py end -->"
BIN = str(Path(sys.executable).with_name("imitaudit"))


def run_side_by_side(imi: Path, held: Path, *, copies: int, threads: str, root: Path) -> list[tuple[float, float]]:
    """(wall s, in-process audit s) of each of ``copies`` audits started together with ``IMITAUDIT_THREADS=threads``
    ('' = default)."""
    env = {k: v for k, v in os.environ.items() if k not in ("IMITAUDIT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:
        env["IMITAUDIT_THREADS"] = threads
    outs = [Path(tempfile.mkdtemp(dir=root)) for _ in range(copies)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [BIN, "audit", "--imitator", str(imi), "--demos", str(held), "--out", str(o), "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for o in outs
    ]
    walls = []
    for p in procs:
        _, err = p.communicate()
        walls.append(time.perf_counter() - start)
        if p.returncode not in (0, 1):  # 1 is a failed verdict, not a failed run
            raise RuntimeError(err.decode(errors="replace"))
    return [(w, json.loads((o / "report.json").read_text())["timings"]["total"]) for w, o in zip(walls, outs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each row; the table gives medians")
    parser.add_argument("--cache", default="out/bench-service")
    args = parser.parse_args()
    imi, held = inputs(Path(args.cache))
    cores = len(os.sched_getaffinity(0))
    root = Path(tempfile.mkdtemp(prefix="imitaudit-threads-"))
    rows = []
    for copies, threads in ((1, ""), (1, "1"), (2, ""), (2, "1")):
        runs = [
            r
            for _ in range(args.repeats)
            for r in run_side_by_side(imi, held, copies=copies, threads=threads, root=root)
        ]
        label = "default" if not threads else threads
        rows.append((copies, label, statistics.median(w for w, _ in runs), statistics.median(a for _, a in runs)))
        print(rows[-1], flush=True)
    alone = rows[0][3]
    lines = [
        BEGIN,
        "## Torch threads: one audit alone and two side by side (`bench/threads.py`)",
        "",
        f"Command: `python -m bench.threads --out BENCHMARKS.md` — the default audit (256 episodes, OffSwitch, GRU) as "
        f"`imitaudit audit` processes on this {cores}-core machine, medians of {args.repeats} runs per row (each "
        f"audit of a pair "
        "counted); `IMITAUDIT_THREADS` per process.",
        "",
        "| audits at once | torch threads each | wall s (process) | audit s (report timings) | audit time / alone at "
        "default |",
        "|---:|---|---:|---:|---:|",
    ]
    lines += [f"| {c} | {t} | {w:.1f} | {a:.1f} | {a / alone:.2f}x |" for c, t, w, a in rows]
    lines += [END]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
