"""Benchmark: the wall time of a default continuous audit on MuJoCo's HalfCheetah-v5 (256 episodes of 1,000 steps).

The demonstrator is an open-loop gait (a 3 Hz sine per joint with fixed phases, Gaussian noise before a tanh): a
timing workload, not a good driver, since HalfCheetah's observation holds no clock and no imitator can follow an
open-loop phase exactly, so the audit fails it. An MLP Gaussian imitator is trained by BC (300 steps) on 64 of its
episodes and audited with the defaults (256 episodes, the discriminator with taps, 2 folds) against 256 held-out
episodes, ``--repeats`` times in one process; the figure is the audit's wall time (best and all), the goal two
minutes.

    python -m bench.cheetah_time --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from audit.bench.sections import publish
from audit.data.demonstrations import record
from audit.detect.config import AuditConfig
from audit.detect.pipeline import run_audit
from audit.training.config import TrainConfig
from audit.training.run import train

ENV = "HalfCheetah-v5"
BEGIN, END = "<!-- bench/cheetah_time.py begin -->", "<!-- bench/cheetah_time.py end -->"
EPISODE = 1000
PHASES = np.array([0.0, 1.5, 3.0, 3.1, 4.6, 6.1])


def gait(seed: int, noise: float = 0.3) -> Callable[[np.ndarray], np.ndarray]:
    """The open-loop gait; its clock counts steps, and every HalfCheetah episode is ``EPISODE`` steps long."""
    rng = np.random.default_rng(seed)
    clock = [0]

    def act(obs: np.ndarray) -> np.ndarray:
        t = clock[0] % EPISODE
        clock[0] += 1
        u = 1.2 * np.sin(2 * np.pi * 3.0 * t * 0.05 + PHASES) + noise * rng.normal(size=6)
        return np.tanh(u).astype(np.float32)

    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        demos = record(ENV, gait(0), episodes=64, seed=0)
        held = record(ENV, gait(1), episodes=256, seed=10_000).save(folder / "held.safetensors")
        recorded = time.perf_counter() - start
        cfg = TrainConfig(
            arch="mlp",
            mode="bc",
            steps=300,
            hidden=64,
            seed=0,
            eval_every=10**6,
            eval_episodes=2,
            progress=False,
            log_dir=str(folder / "runs"),
        )
        imitator = train(demos, cfg, out=folder / "imitator.safetensors")
        seconds, flagged = [], []
        for r in range(args.repeats):
            start = time.perf_counter()
            report = run_audit(AuditConfig(imitator=str(imitator.path), demos=str(held), seed=r))
            seconds.append(time.perf_counter() - start)
            flagged.append(report["summary"]["flagged"])
            print(f"audit {r}: {seconds[-1]:.1f} s, {flagged[-1]} of 256 flagged", flush=True)
    lines = [
        BEGIN,
        "## A default continuous audit on HalfCheetah-v5 (`bench/cheetah_time.py`)",
        "",
        f"Command: `python -m bench.cheetah_time --repeats {args.repeats} --out BENCHMARKS.md` — one run, alone on "
        "the machine, torch 2 threads. 256 audited episodes and 256 held-out demonstrations of 1,000 steps each "
        "(the defaults: discriminator with taps, 2 folds); see the module docstring for the workload.",
        "",
        "| audit wall time, best (s) | all repeats (s) | goal (s) | flagged of 256 | recording 320 demos (s) |",
        "|---:|---|---:|---|---:|",
        f"| {min(seconds):.1f} | {', '.join(f'{s:.1f}' for s in seconds)} | 120 | "
        f"{', '.join(str(f) for f in flagged)} | {recorded:.1f} |",
        END,
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
