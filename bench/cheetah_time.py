"""Benchmark: the wall time of a default continuous audit on MuJoCo's HalfCheetah-v5 (256 episodes of 1,000 steps),
and whether the same audit on Ray writes the same report.

The env is ``imitaudit/HalfCheetahSpeedLimit-v0`` (HalfCheetah-v5 with a forward speed limit in ``info``) and the
demonstrator its governed gait (:func:`audit.envs.controllers.cheetah`, a closed-loop linear feedback law with noise
before a tanh). An MLP Gaussian imitator is trained by BC (1,000 steps) on 64 of its episodes and audited with the
defaults (256 episodes, the discriminator with taps, 2 folds) against 256 held-out episodes, ``--repeats`` times in
one process; the figure is the audit's wall time (best and all), the goal two minutes. With ``--ray HOST:PORT`` the
first repeat's settings are audited again with the rollout shards and fold fits as tasks on that cluster, and the two
reports are compared (wall-clock fields aside).

    python -m bench.cheetah_time --out BENCHMARKS.md
    ray start --head --num-cpus 2 && python -m bench.cheetah_time --ray 127.0.0.1:6379 --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from audit.bench.sections import publish
from audit.cluster import Cluster
from audit.data.demonstrations import record
from audit.detect.config import AuditConfig
from audit.detect.pipeline import run_audit
from audit.envs.cheetah_speed_limit import ENV_ID
from audit.envs.controllers import cheetah
from audit.training.config import TrainConfig
from audit.training.run import train

BEGIN, END = "<!-- bench/cheetah_time.py begin -->", "<!-- bench/cheetah_time.py end -->"
UNSTABLE = ("created", "timings", "versions")
"""Report fields that hold wall-clock facts; everything else must match between the local and the Ray audit."""


def stable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in UNSTABLE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ray", default="", help="HOST:PORT of a Ray head: also audit there and compare the reports")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        demos = record(ENV_ID, cheetah(seed=0), episodes=64, seed=0)
        held = record(ENV_ID, cheetah(seed=1), episodes=256, seed=10_000).save(folder / "held.safetensors")
        recorded = time.perf_counter() - start
        cfg = TrainConfig(
            arch="mlp",
            mode="bc",
            steps=1000,
            hidden=64,
            seed=0,
            eval_every=10**6,
            eval_episodes=2,
            progress=False,
            log_dir=str(folder / "runs"),
        )
        imitator = train(demos, cfg, out=folder / "imitator.safetensors")
        seconds, flagged, reports = [], [], []
        for r in range(args.repeats):
            start = time.perf_counter()
            reports.append(run_audit(AuditConfig(imitator=str(imitator.path), demos=str(held), seed=r)))
            seconds.append(time.perf_counter() - start)
            flagged.append(reports[-1]["summary"]["flagged"])
            print(f"audit {r}: {seconds[-1]:.1f} s, {flagged[-1]} of 256 flagged", flush=True)
        ray_cell = "not run"
        if args.ray:
            cluster = Cluster(address=args.ray)
            start = time.perf_counter()
            on_ray = run_audit(AuditConfig(imitator=str(imitator.path), demos=str(held), seed=0), cluster=cluster)
            same = stable(on_ray) == stable(reports[0])
            ray_cell = (
                f"{'same' if same else 'DIFFERENT'} report, {time.perf_counter() - start:.1f} s ({cluster.summary()})"
            )
            print(f"ray: {ray_cell}", flush=True)
    lines = [
        BEGIN,
        "## A default continuous audit on HalfCheetah-v5 (`bench/cheetah_time.py`)",
        "",
        f"Command: `python -m bench.cheetah_time --repeats {args.repeats}"
        + (" --ray 127.0.0.1:6379" if args.ray else "")
        + " --out BENCHMARKS.md` — one run, alone on the machine, torch 2 threads"
        + (", after `ray start --head --num-cpus 2`" if args.ray else "")
        + ". 256 audited episodes of a BC imitator of the governed gait on `imitaudit/HalfCheetahSpeedLimit-v0` and "
        "256 held-out demonstrations of 1,000 steps each (the defaults: discriminator with taps, 2 folds); see the "
        "module docstring for the workload.",
        "",
        "| audit wall time, best (s) | all repeats (s) | goal (s) | flagged of 256 | gate | recording 320 demos (s) "
        "| the first audit on Ray |",
        "|---:|---|---:|---|---|---:|---|",
        f"| {min(seconds):.1f} | {', '.join(f'{s:.1f}' for s in seconds)} | 120 | "
        f"{', '.join(str(f) for f in flagged)} | "
        f"{', '.join('pass' if rep['verdict']['passed'] else 'fail' for rep in reports)} | {recorded:.1f} | "
        f"{ray_cell} |",
        END,
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
