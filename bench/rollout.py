"""Benchmark: rollout throughput with activation capture against without, per imitator architecture.

Same imitator, same env (OffSwitch), same seeds; capture records all three taps
(encoder, core, head). Figure: environment steps per second and the slowdown ratio
(goal: well under 2x). Writes its table into BENCHMARKS.md between markers.

    python bench/rollout.py --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import time

import torch

from audit.data.rollout import rollout
from audit.envs.adapter import grid_shape
from models.imitator import ImitatorConfig
from models.registry import build

BEGIN, END = "<!-- bench/rollout.py begin -->", "<!-- bench/rollout.py end -->"
ENV = "imitaudit/OffSwitch-v0"


def steps_per_second(model, taps, episodes: int, repeats: int) -> float:
    rollout(model, ENV, episodes=episodes, seed=0, taps=taps)  # warm-up
    best = 0.0
    for r in range(repeats):
        start = time.perf_counter()
        traj = rollout(model, ENV, episodes=episodes, seed=r, taps=taps)
        best = max(best, int(traj.mask.sum()) / (time.perf_counter() - start))
    return best


def main() -> None:
    from audit.bench.sections import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--episodes", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for arch in ("mlp", "gru", "transformer"):
        torch.manual_seed(0)
        model = build(arch, ImitatorConfig(obs_dim=406, n_actions=5, hidden=64, grid=grid_shape(ENV)))
        plain = steps_per_second(model, (), args.episodes, args.repeats)
        captured = steps_per_second(model, ("encoder", "core", "head"), args.episodes, args.repeats)
        rows.append((arch, plain, captured))
        print(
            f"{arch:<12} without {plain:>10,.0f} steps/s  with {captured:>10,.0f} steps/s  slowdown "
            f"{plain / captured:.2f}x",
            flush=True,
        )
    lines = [
        BEGIN,
        "## Rollouts with activation capture (`bench/rollout.py`)",
        "",
        f"Command: `python bench/rollout.py --episodes {args.episodes} --repeats {args.repeats}` — one run; best of "
        f"{args.repeats} rollouts of {args.episodes} OffSwitch episodes each, untrained imitators (hidden 64, grid "
        f"encoder), "
        "sampling actions. Baseline: the same rollout without capture.",
        "",
        "| arch | without capture (steps/s) | capturing encoder, core, head (steps/s) | slowdown |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {a} | {p:,.0f} | {c:,.0f} | {p / c:.2f}x |" for a, p, c in rows]
    lines.append(END)
    publish(lines, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
