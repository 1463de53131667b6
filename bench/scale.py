"""Benchmark: imitaudit on Ray at 1, 2 and 4 worker processes against the local path, and a projection to 8 x 16 cores.

    python -m bench.scale --out BENCHMARKS.md

Workloads, each run here (one process, one torch thread: the local baseline) and on a local Ray cluster whose head
offers W task slots (W worker processes, one thread per task), in this one run:

- a large audit: 4,096 episodes of a BC transformer imitator on OffSwitch (rollout shards, fold fits, explanations);
- ``bench detect --quick``'s audits: 5 zoo imitators x 6 methods, 96 episodes each (the quick zoo built and cached
  first, not timed).

Every Ray run's result is checked against the local one (the report without its timings, the benchmark's figures).
The projection reads the measured per-task seconds and object-store bytes of the 1-worker run (see ``project``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from audit.bench.sections import publish
from bench.service import inputs

BEGIN, END = "<!-- bench/scale.py begin -->", "<!-- bench/scale.py end -->"
ENV = "imitaudit/OffSwitch-v0"
MACHINES, CORES = 8, 16
BANDWIDTH = 1.25e9
"""Bytes/s between machines assumed by the projection (10 Gbit/s Ethernet)."""


class LocalCluster:
    """``ray start --head`` on this machine with ``slots`` task slots, stopped on exit."""

    def __init__(self, slots: int, root: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        ray = str(Path(sys.executable).with_name("ray"))
        self.proc = subprocess.Popen(
            [
                ray,
                "start",
                "--head",
                "--block",
                f"--port={self.port}",
                "--node-ip-address=127.0.0.1",
                "--include-dashboard=false",
                f"--num-cpus={slots}",
            ],
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
            stdout=open(root / f"ray-{slots}.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def __enter__(self) -> "LocalCluster":
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("the Ray head exited; see its log")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                return self
            except OSError:
                time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def large_audit(imi: Path, held: Path) -> Any:
    """The workload ``cluster -> (seconds, result to compare)`` of one 4,096-episode audit."""
    from audit.detect.config import AuditConfig
    from audit.detect.pipeline import run_audit

    config = AuditConfig(imitator=str(imi), demos=str(held), episodes=4096)

    def run(cluster: Any) -> tuple[float, Any]:
        start = time.perf_counter()
        report = run_audit(config, cluster=cluster)
        seconds = time.perf_counter() - start
        return seconds, {k: v for k, v in report.items() if k not in ("created", "timings", "versions")}

    return run


def quick_detect(zoo: Path) -> Any:
    """The workload of ``bench detect --quick``'s 30 audits on the cached quick zoo."""
    from audit.bench.detect import run_detection_benchmark

    def run(cluster: Any) -> tuple[float, Any]:
        start = time.perf_counter()
        results = run_detection_benchmark([ENV], zoo, quick=True, episodes=96, cluster=cluster)
        return time.perf_counter() - start, json.dumps(results, default=str)

    return run


def measure(name: str, work: Any, slots: tuple[int, ...], root: Path) -> dict[str, Any]:
    """The workload locally, then on a fresh cluster of each size; the 1-slot run's per-task figures."""
    from audit.cluster import Cluster

    local, want = work(None)
    row: dict[str, Any] = {"name": name, "local": local, "ray": {}}
    print(f"{name}: local {local:.1f} s", flush=True)
    for w in slots:
        with LocalCluster(w, root) as head:
            cluster = Cluster(address=head.address)
            row.setdefault("warm", {})[w] = cluster.warm()
            seconds, got = work(cluster)
            cluster.close()
        if got != want:
            raise RuntimeError(f"{name}: the result on {w} Ray worker(s) differs from the local one")
        row["ray"][w] = seconds
        if w == 1:
            row["tasks"] = {
                k: {"n": cluster.tasks[k], "mean": sum(s) / len(s), "max": max(s), **cluster.bytes[k]}
                for k, s in cluster.seconds.items()
            }
        print(f"{name}: {w} worker(s) {seconds:.1f} s (warm-up {row['warm'][w]:.1f} s, not counted)", flush=True)
    return row


def resharded(row: dict[str, Any], shards: int) -> dict[str, Any]:
    """``row`` as if its rollout had been cut into ``shards`` shards: each shard's seconds and bytes scaled by its share
    of the episodes (a rollout's cost is linear in its episodes; an assumption, not a measurement)."""
    tasks = dict(row["tasks"])
    if "rollout shards" in tasks:
        t = tasks["rollout shards"]
        scale = t["n"] / shards
        tasks["rollout shards"] = {**t, "n": shards, "mean": t["mean"] * scale, "max": t["max"] * scale}
    return {**row, "tasks": tasks}


def project(row: dict[str, Any], workers: int, machines: int) -> tuple[float, float]:
    """Projected seconds on ``workers`` slots over ``machines`` machines, and the driver's serial part.

    T(W) = S + sum_k ceil(n_k / W) * t_k + sum_k (m_k * shared_k + results_k) / bandwidth, where for each task kind k
    (rollout shards, detector fits, explanation batches, audits) n_k tasks took t_k seconds each (their mean; their max
    when one wave holds them all), shared_k bytes of shared inputs travel to m_k = min(machines, n_k) machines and
    results_k bytes of results travel once; S is the 1-worker run's wall time less its tasks' seconds (loading, teacher
    forcing, calibration, the report, and Ray's scheduling), which does not shrink with W.
    """
    tasks = row["tasks"]
    serial = row["ray"][1] - sum(t["n"] * t["mean"] for t in tasks.values())
    compute = sum(math.ceil(t["n"] / workers) * (t["max"] if t["n"] <= workers else t["mean"]) for t in tasks.values())
    moved = sum(min(machines, t["n"]) * t["shared"] + t["results"] for t in tasks.values())
    return serial + compute + moved / BANDWIDTH, serial


def render(rows: list[dict[str, Any]], slots: tuple[int, ...]) -> list[str]:
    cores = len(os.sched_getaffinity(0))
    lines = [
        BEGIN,
        "## Scale-out on Ray (`bench/scale.py`)",
        "",
        f"Command: `python -m bench.scale --out BENCHMARKS.md` — on this {cores}-core machine, one torch thread per "
        f"process "
        "and per task; a fresh local Ray head with W task slots per column, warmed first (each worker process imports "
        "imitaudit once: "
        + ", ".join(f"{rows[0]['warm'][w]:.1f} s at {w}" for w in slots)
        + ", not counted); every Ray "
        f"result checked identical to the local one. With {cores} cores the curve must flatten at {cores} workers.",
        "",
        "| workload | local s | "
        + " | ".join(f"Ray {w} worker{'s' if w > 1 else ''} s (speedup)" for w in slots)
        + " | Ray overhead at 1 worker |",
        "|---|---:|" + "---:|" * len(slots) + "---:|",
    ]
    for r in rows:
        cells = " | ".join(f"{r['ray'][w]:.1f} ({r['local'] / r['ray'][w]:.2f}x)" for w in slots)
        lines.append(f"| {r['name']} | {r['local']:.1f} | {cells} | {r['ray'][1] / r['local'] - 1:+.0%} |")
    lines += [
        "",
        f"### Per-task costs (1-worker run) and a projection to {MACHINES} machines x {CORES} cores",
        "",
        "| workload | task kind | tasks | mean s | max s | shared inputs MB | results MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for kind, t in r["tasks"].items():
            lines.append(
                f"| {r['name']} | {kind} | {t['n']} | {t['mean']:.2f} | {t['max']:.2f} | {t['shared'] / 1e6:.1f} | "
                f"{t['results'] / 1e6:.1f} |"
            )
    lines += [
        "",
        "| workload | driver serial s (S) | projected at 2 workers s (measured) | projected at "
        f"{MACHINES * CORES} workers on {MACHINES} machines s | projected speedup vs local |",
        "|---|---:|---:|---:|---:|",
    ]
    slots = MACHINES * CORES
    for r in rows:
        two, serial = project(r, 2, 1)
        big, _ = project(r, slots, MACHINES)
        measured = f" ({r['ray'][2]:.1f})" if 2 in r["ray"] else ""
        lines.append(f"| {r['name']} | {serial:.1f} | {two:.1f}{measured} | {big:.1f} | {r['local'] / big:.1f}x |")
        if "rollout shards" in r["tasks"]:
            wide, _ = project(resharded(r, slots), slots, MACHINES)
            lines.append(
                f"| {r['name']}, `--shard-episodes {4096 // slots}` ({slots} shards, cost scaled by episodes) | "
                f"{serial:.1f} | | "
                f"{wide:.1f} | {r['local'] / wide:.1f}x |"
            )
    lines += [
        "",
        "Formula (`bench/scale.py: project`): "
        + " ".join(project.__doc__.split("\n\n")[1].split())
        + f" Bandwidth assumed {BANDWIDTH * 8 / 1e9:.0f} Gbit/s; no stragglers, no GPU.",
        END,
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--cache", default="out/bench-scale")
    parser.add_argument("--zoo", default="out/zoo", help="the quick zoo's cache (built here if missing, not timed)")
    parser.add_argument("--workers", default="1,2,4", help="Ray worker counts to run")
    parser.add_argument(
        "--rendered-from", default="", help="write the section from this run's saved scale.json instead of running"
    )
    args = parser.parse_args()
    slots = tuple(int(w) for w in args.workers.split(","))
    if args.rendered_from:
        rows = json.loads(
            Path(args.rendered_from).read_text(),
            object_hook=lambda d: {int(k) if k.isdigit() else k: v for k, v in d.items()},
        )
        publish(render(rows, slots), args.out)
        return
    from audit.bench.zoo import QUICK, build_zoos

    torch.set_num_threads(1)
    root = Path(args.cache)
    imi, held = inputs(root, arch="transformer", steps=300)  # the same demonstrations as bench/service.py's
    build_zoos([ENV], args.zoo, scale=QUICK)
    rows = [
        measure("audit, 4,096 episodes, transformer", large_audit(imi, held), slots, root),
        measure("bench detect --quick (30 audits)", quick_detect(Path(args.zoo)), slots, root),
    ]
    (root / "scale.json").write_text(json.dumps(rows, indent=1))
    publish(render(rows, slots), args.out)


if __name__ == "__main__":
    main()
