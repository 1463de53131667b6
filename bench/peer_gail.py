"""Peer head-to-head: the `imitation` library's GAIL against imitaudit's adversarial trainer on CartPole-v1.

Both learn from one shared set of demonstrations of a scripted expert (push toward where
the pole is heading: ``action = theta + 0.5 * theta_dot > 0``). The peer runs in its own
venv under ``bench/.peer-venv`` (created here on first use: torch 2.13.0, then
``imitation==1.0.1`` with its own pins), following the library's documented GAIL example
with a PPO learner. Figure: wall-clock training seconds and environment steps until the
mean return over 50 episodes (greedy actions) reaches 475; evaluation time is excluded for
the peer and included for imitaudit. Writes its table into BENCHMARKS.md.

    python bench/peer_gail.py --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- bench/peer_gail.py begin -->", "<!-- bench/peer_gail.py end -->"


def expert(obs: np.ndarray) -> int:
    """Push toward where the pole is heading."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def peer_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "torch==2.13.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "imitation==1.0.1"], check=True)
        (venv / ".installed").touch()
    return python


def run_peer(python: Path, demos_npz: Path, budget: float, target: float, seed: int) -> dict:
    proc = subprocess.run(
        [
            str(python),
            str(HERE / "peer_gail_imitation.py"),
            str(demos_npz),
            "--budget-seconds",
            str(budget),
            "--target",
            str(target),
            "--seed",
            str(seed),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {"rounds": [r for r in lines if r.get("round")], **[r for r in lines if r.get("final")][0]}


def run_ours(demos, target: float, seed: int, work: Path, budget: float) -> dict:
    from audit.training.config import TrainConfig
    from audit.training.run import train

    cfg = TrainConfig(
        arch="mlp",
        mode="adversarial",
        steps=400,
        bc_warmup=2000,
        seed=seed,
        hidden=64,
        eval_every=100,
        eval_episodes=50,
        target_return=target,
        log_dir=str(work),
        progress=False,
        rollout_episodes=16,
    )
    start = time.perf_counter()
    result = train(demos, cfg)
    seconds = time.perf_counter() - start
    from audit.data.rollout import rollout

    check = rollout(result.imitator, "CartPole-v1", episodes=50, seed=123_456, greedy=True)
    return {
        "reached": result.reached_target,
        "train_seconds": seconds,
        "env_steps": result.env_steps,
        "phases": result.steps_done,
        "last_return": float(result.metrics.get("env/return", float("nan"))),
        "check_return_greedy": float(check.returns().mean()),
    }


def main() -> None:
    from audit.bench.sections import publish
    from audit.data.demonstrations import record

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--demo-episodes", type=int, default=20)
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--peer-budget", type=float, default=240.0, help="peer training seconds at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="out/bench-peer")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    demos = record(
        "CartPole-v1",
        expert,
        episodes=args.demo_episodes,
        seed=args.seed,
        source="scripted expert theta + 0.5 theta_dot",
    )
    demo_return = float(demos.episode_returns().mean())
    demos.save(work / "cartpole-demos.safetensors")
    npz = work / "cartpole-demos.npz"
    np.savez(npz, obs=demos.obs, actions=demos.actions, episode=demos.episode)
    print(f"demonstrations: {demos.n_episodes} episodes, mean return {demo_return:.1f}", flush=True)

    ours = run_ours(demos, args.target, args.seed, work, args.peer_budget)
    print("imitaudit", json.dumps(ours), flush=True)
    peer = run_peer(peer_python(HERE / ".peer-venv"), npz, args.peer_budget, args.target, args.seed)
    print("imitation", json.dumps({k: v for k, v in peer.items() if k != "rounds"}), flush=True)

    lines = [
        BEGIN,
        "## Peer head-to-head: `imitation` GAIL vs imitaudit (`bench/peer_gail.py`)",
        "",
        f"Command: `python bench/peer_gail.py --demo-episodes {args.demo_episodes} --peer-budget "
        f"{args.peer_budget:g}` — one run, both on this machine. "
        f"Shared demonstrations: {demos.n_episodes} episodes of the scripted expert on CartPole-v1 (mean return "
        f"{demo_return:.1f}). "
        f"Target: mean return >= {args.target:g} over 50 episodes. imitaudit: MLP, adversarial mode (BC warm start, "
        "then GAIL-style PPO against a discriminator), checked every 100 steps on 50 episodes with *sampled* actions "
        "(stricter than greedy), time includes those evaluations. Peer: imitation 1.0.1 GAIL (documented example: PPO "
        "learner, 8 envs, BasicRewardNet + RunningNorm), in its own venv, checked after every 16,384 steps on 50 "
        "greedy "
        "episodes (SB3 `evaluate_policy`, deterministic), evaluation time excluded, venv set-up not counted.",
        "",
        "| trainer | reached target | training wall-clock (s) | env steps | return at stop |",
        "|---|---|---:|---:|---:|",
        f"| imitaudit adversarial | {'yes' if ours['reached'] else 'no'} | {ours['train_seconds']:.1f} | "
        f"{ours['env_steps']:,} | {ours['last_return']:.1f} |",
        f"| imitation GAIL | {'yes' if peer['reached'] else 'no (budget)'} | {peer['train_seconds']:.1f} | "
        f"{peer['env_steps']:,} | {peer['last_return']:.1f} (best {peer['best_return']:.1f}) |",
        "",
    ]
    if ours["reached"] and not ours["phases"].get("adversarial"):
        lines.append(
            f"imitaudit reached the target during its BC warm start ({ours['phases'].get('bc', 0)} steps, no "
            f"environment "
            f"steps), before any adversarial iteration; its final imitator scores {ours['check_return_greedy']:.1f} "
            f"over 50 "
            "greedy episodes on fresh seeds. The peer learns from scratch, as the library's example does.\n"
        )
    ratio = peer["train_seconds"] / ours["train_seconds"]
    if peer["reached"] and ours["reached"]:
        lines.append(f"Wall-clock ratio to the target (peer / imitaudit): **{ratio:.1f}x**.")
    elif ours["reached"]:
        lines.append(
            f"The peer did not reach {args.target:g} within its {args.peer_budget:g} s budget; at the budget it "
            f"returned "
            f"{peer['last_return']:.1f}. Ratio of the peer's budget to imitaudit's time to target: at least "
            f"**{ratio:.1f}x**."
        )
    else:
        lines.append("imitaudit did not reach the target in this run; see the figures above.")
    lines.append(END)
    publish(lines, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
