"""Benchmark: batched rollouts of the same network in torch and in onnxruntime (an ONNX imitator), in one run.

    python -m bench.onnx --out BENCHMARKS.md

Each network is a freshly initialised registry imitator and its ONNX export (``imitaudit convert --from imitaudit``),
rolled out for the same episodes with its three taps captured, as an audit does. Steps/s counts env steps taken.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from audit.bench.sections import publish
from audit.data.rollout import rollout
from audit.envs.adapter import agent_plane, env_signature, grid_shape
from models.imitator import ImitatorConfig
from models.load import load_imitator
from models.onnx_export import export_imitator
from models.registry import build

BEGIN, END = "<!-- bench/onnx.py begin -->", "<!-- bench/onnx.py end -->"
TAPS = ("encoder", "core", "head")


def timed(model, env_id: str, episodes: int, repeats: int) -> float:
    """Median env steps per second of ``repeats`` rollouts of ``episodes`` episodes."""
    rates = []
    for r in range(repeats):
        start = time.perf_counter()
        traj = rollout(model, env_id, episodes=episodes, seed=r, taps=TAPS)
        rates.append(float(traj.mask.sum()) / (time.perf_counter() - start))
    return sorted(rates)[len(rates) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--episodes", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    root = Path(tempfile.mkdtemp(prefix="imitaudit-onnx-"))
    for env_id in ("CartPole-v1", "imitaudit/OffSwitch-v0"):
        obs_dim, space = env_signature(env_id)
        n_actions = space.n
        for arch in ("mlp", "gru"):
            torch.manual_seed(0)
            config = ImitatorConfig(
                obs_dim=obs_dim, n_actions=n_actions, grid=grid_shape(env_id), agent_plane=agent_plane(env_id)
            )
            model = build(arch, config).eval()
            onnx_model, _ = load_imitator(export_imitator(model, root / f"{arch}.onnx", env_id=env_id))
            t, o = (
                timed(model, env_id, args.episodes, args.repeats),
                timed(onnx_model, env_id, args.episodes, args.repeats),
            )
            rows.append((env_id, arch, t, o))
            print(rows[-1], flush=True)
    lines = [
        BEGIN,
        "## ONNX imitators: rollout speed against torch (`bench/onnx.py`)",
        "",
        f"Command: `python -m bench.onnx --out BENCHMARKS.md` — {args.episodes} episodes at once, taps "
        f"encoder/core/head captured, "
        f"{args.threads} threads (torch and onnxruntime), median of {args.repeats} rollouts; env steps per second "
        f"(env stepping included).",
        "",
        "| env | network | torch steps/s | ONNX steps/s | ONNX / torch time |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {e} | {a} (hidden 64) | {t:,.0f} | {o:,.0f} | {t / o:.2f}x |" for e, a, t, o in rows]
    lines += ["", "Goal: within 2x of torch at batch 1,024.", END]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
