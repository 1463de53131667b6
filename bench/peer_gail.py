"""Peer head-to-head: the `imitation` library's GAIL against imitaudit's adversarial trainer on CartPole-v1.

Both learn from one shared set of demonstrations of a scripted expert (push toward where
the pole is heading: ``action = theta + 0.5 * theta_dot > 0``). With ``--demo-steps K`` each demonstration is cut
after its first K steps (recorded as truncated there): the second row, a task where BC alone stays below the target,
so that imitaudit's adversarial phase (with ``terminal_reward="absorbing"``) is what reaches it. The peer runs in its
own venv under ``bench/.peer-venv`` (created here on first use: torch 2.13.0, then
``imitation==1.0.1`` with its own pins), following the library's documented GAIL example
with a PPO learner. Figure: wall-clock training seconds and environment steps until the
mean return over 50 episodes reaches 475, with evaluation time excluded on both sides; imitaudit's time with its
checks included is reported beside it. With ``--repeats K`` each side runs K times per seed, the two alternating, and
each figure is the run with the median training time (single timings on a shared machine wander; every run's is
listed). Writes its table into BENCHMARKS.md.

    python bench/peer_gail.py --out BENCHMARKS.md
    python bench/peer_gail.py --demo-episodes 1 --demo-steps 25 --peer-budget 1200 --out BENCHMARKS.md
    python bench/peer_gail.py --demo-episodes 1 --demo-steps 25 --peer-budget 1200 --learner replay --seeds 0 1 2 \
        --repeats 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def markers(demo_steps: int, learner: str = "ppo") -> tuple[str, str]:
    """The section's markers: whole demonstrations and cut ones are two sections, and each learner its own."""
    name = (
        "bench/peer_gail.py"
        + (" --demo-steps" if demo_steps else "")
        + (f" --learner {learner}" if learner != "ppo" else "")
    )
    return f"<!-- {name} begin -->", f"<!-- {name} end -->"


LEARNERS = {
    "ppo": "then GAIL-style PPO against a discriminator), checked every 100 steps or iterations of 16 episodes",
    "replay": '200 steps of it, then `learner="replay"`: DAC-style soft Q-learning over every rollout so far against '
    "a 64-wide discriminator, `absorbing_floor=-2`, `replay_target_rate=0.02`, `replay_lr=3e-3`), checked after its "
    "warm start and after every iteration of 2 episodes",
}


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


def run_peer(python: Path, demos_npz: Path, budget: float, target: float, seed: int, demo_batch: int) -> dict:
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
            "--demo-batch-size",
            str(demo_batch),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {"rounds": [r for r in lines if r.get("round")], **[r for r in lines if r.get("final")][0]}


def ours_config(*, steps: int, log_dir: str, seed: int = 0, target: float | None = None, learner: str = "ppo"):
    """imitaudit's side of both rows: an MLP, 2,000 BC steps (the replay learner: 200), then up to ``steps``
    adversarial iterations, evaluated on 50 greedy episodes as the peer is (stopping at ``target`` when given).

    The PPO learner: iterations of 16 episodes, evaluated every 100 steps or iterations. The replay learner: iterations
    of 2 episodes, each evaluated (and its warm start at its end), since each of its iterations moves the imitator
    further (over 48 seeds, 2 episodes reach the target in fewer env steps than 4 or 8, and in less time than 4); an
    absorbing floor of -2 (a -10 cliff at each ending is one its critics fit poorly); a warm start of 200 BC steps and
    a 64-wide discriminator (each cheaper, and together on 48 seeds no worse); target critics that move 0.02 of the way
    at each update instead of SAC's 0.005 (on 48 seeds, no collapse and more seeds reaching the target), and a learning
    rate of 3e-3 for the imitator and the critics (fewer env steps to the target).
    BENCHMARKS.md has the seed studies behind each."""
    from audit.training.config import TrainConfig

    if learner == "replay":
        return replace(
            ours_config(steps=steps, log_dir=log_dir, seed=seed, target=target),
            learner="replay",
            rollout_episodes=2,
            eval_every=1,
            warmup_eval_every=500,
            absorbing_floor=-2.0,
            bc_warmup=200,
            disc_hidden=64,
            replay_target_rate=0.02,
            replay_lr=3e-3,
        )
    return TrainConfig(
        arch="mlp",
        mode="adversarial",
        steps=steps,
        bc_warmup=2000,
        seed=seed,
        hidden=64,
        eval_every=100,
        eval_episodes=50,
        target_return=target,
        log_dir=log_dir,
        progress=False,
        rollout_episodes=16,
        terminal_reward="absorbing",
        eval_greedy=True,
    )


def run_ours(demos, target: float, seed: int, work: Path, learner: str = "ppo") -> dict:
    from audit.training.run import train

    cfg = ours_config(steps=400, log_dir=str(work), seed=seed, target=target, learner=learner)
    start = time.perf_counter()
    result = train(demos, cfg)
    seconds = time.perf_counter() - start
    from audit.data.rollout import rollout

    check = rollout(result.imitator, "CartPole-v1", episodes=50, seed=123_456, greedy=True)
    return {
        "reached": result.reached_target,
        "train_seconds": seconds - result.eval_seconds,
        "total_seconds": seconds,
        "env_steps": result.env_steps,
        "phases": result.steps_done,
        "last_return": float(result.metrics.get("env/return", float("nan"))),
        "check_return_greedy": float(check.returns().mean()),
    }


def cut(demos, steps: int):
    """Each demonstration's first ``steps`` steps, recorded as truncated after them (the rest of the record kept)."""

    keep = np.zeros(demos.n_steps, dtype=bool)
    after = []
    for a, b in demos.episode_bounds():
        if b - a <= steps:
            raise ValueError(f"--demo-steps {steps}: a demonstration has only {b - a} steps")
        keep[a : a + steps] = True
        after.append(demos.obs[a + steps])
    per_step = ("obs", "actions", "rewards", "episode") + (("departure",) if demos.departure is not None else ())
    return replace(
        demos,
        **{name: getattr(demos, name)[keep] for name in per_step},
        source=f"{demos.source}, first {steps} steps",
        last_obs=np.stack(after),
        terminated=np.zeros(demos.n_episodes, dtype=bool),
    )


def bc_return(demos, seed: int, work: Path, steps: int) -> float:
    """The mean return over 50 greedy episodes (fresh seeds) of imitaudit's BC warm start alone (``steps`` BC
    steps)."""
    from audit.data.rollout import rollout
    from audit.training.config import TrainConfig
    from audit.training.run import train

    cfg = TrainConfig(
        arch="mlp", mode="bc", steps=steps, seed=seed, hidden=64, eval_every=100_000, log_dir=str(work), progress=False
    )
    imitator = train(demos, cfg).imitator
    return float(rollout(imitator, "CartPole-v1", episodes=50, seed=123_456, greedy=True).returns().mean())


def run_seed(args: argparse.Namespace, seed: int, work: Path) -> dict:
    """Both sides on one seed's demonstrations (recorded with ``seed``); the figures of each."""
    from audit.data.demonstrations import record

    demos = record(
        "CartPole-v1",
        expert,
        episodes=args.demo_episodes,
        seed=seed,
        source="scripted expert theta + 0.5 theta_dot",
    )
    demo_return = float(demos.episode_returns().mean())
    if args.demo_steps:
        demos = cut(demos, args.demo_steps)
    demos.save(work / "cartpole-demos.safetensors")
    npz = work / "cartpole-demos.npz"
    np.savez(npz, obs=demos.obs, actions=demos.actions, episode=demos.episode, terminated=demos.terminated)
    print(f"seed {seed} demonstrations: {demos.n_episodes} episodes, {demos.n_steps} steps", flush=True)
    warm = ours_config(steps=1, log_dir=str(work), learner=args.learner).bc_warmup
    bc = bc_return(demos, seed, work, warm) if args.demo_steps else None
    python = peer_python(HERE / ".peer-venv")
    ours_runs, peer_runs = [], []
    for _ in range(args.repeats):  # alternating, so that a slow spell of the machine falls on both sides
        ours_runs.append(run_ours(demos, args.target, seed, work, args.learner))
        print("imitaudit", json.dumps(ours_runs[-1]), flush=True)
        peer_runs.append(run_peer(python, npz, args.peer_budget, args.target, seed, min(1024, demos.n_steps)))
        print("imitation", json.dumps({k: v for k, v in peer_runs[-1].items() if k != "rounds"}), flush=True)
    ours, peer = median_run(ours_runs), median_run(peer_runs)
    return {
        "seed": seed,
        "episodes": demos.n_episodes,
        "steps": demos.n_steps,
        "demo_return": demo_return,
        "bc": bc,
        "ours": ours,
        "peer": peer,
    }


def median_run(runs: list[dict]) -> dict:
    """The run with the median training time (the lower middle one of an even count), with every run's training
    seconds and env steps beside it (``all_seconds``, ``all_env_steps``)."""
    ordered = sorted(runs, key=lambda run: run["train_seconds"])
    middle = ordered[(len(ordered) - 1) // 2]
    return {
        **middle,
        "all_seconds": [run["train_seconds"] for run in runs],
        "all_env_steps": [run["env_steps"] for run in runs],
    }


def describe(args: argparse.Namespace, runs: list[dict]) -> str:
    """The section's paragraph: the command, the shared demonstrations and how each side is run and checked."""
    seeds = " ".join(str(s) for s in args.seeds)
    first = runs[0]
    n = first["episodes"]
    shared = (
        f"Shared demonstrations: {n} episode{'s' if n != 1 else ''} of the scripted expert on CartPole-v1 per seed "
        f"(recorded with that seed; mean return {first['demo_return']:.1f} on seed {first['seed']})"
    )
    if args.demo_steps:
        bcs = ", ".join(f"{run['bc']:.1f}" for run in runs)
        shared += (
            f", each cut after its first {args.demo_steps} steps ({first['steps']} steps in all). imitaudit's BC "
            f"warm start alone returns {bcs} over 50 greedy episodes on fresh seeds, below the target, so the "
            'adversarial phase (`terminal_reward="absorbing"`) is what has to reach it'
        )
    return (
        f"Command: `python bench/peer_gail.py --demo-episodes {args.demo_episodes} "
        + (f"--demo-steps {args.demo_steps} " if args.demo_steps else "")
        + f"--peer-budget {args.peer_budget:g}"
        + (f" --learner {args.learner}" if args.learner != "ppo" else "")
        + (f" --seeds {seeds}" if args.seeds != [0] else "")
        + (f" --repeats {args.repeats}" if args.repeats > 1 else "")
        + "` — one run, both sides on each seed in turn, on this machine"
        + (
            f"; each side {args.repeats} times per seed, the two alternating, and each row the run with the median "
            "training time (every run's in the last columns). "
            if args.repeats > 1
            else ". "
        )
        + f"{shared}. "
        f"Target: mean return >= {args.target:g} over 50 episodes. imitaudit: MLP, adversarial mode (BC warm start, "
        + LEARNERS[args.learner]
        + " on 50 greedy episodes, as the peer's; its training time excludes those checks, "
        "and its time with them is the column 'with checks'. "
        "Peer: imitation 1.0.1 GAIL (documented example: PPO learner, 8 envs, BasicRewardNet + RunningNorm; its "
        "demonstration batch is the whole set when that is smaller "
        "than 1,024 steps), in its own venv, checked after every 16,384 steps on 50 "
        "greedy "
        "episodes (SB3 `evaluate_policy`, deterministic), evaluation time excluded, venv set-up not counted."
    )


def table(runs: list[dict]) -> list[str]:
    """One row per seed and side (its median run), and every run's training seconds and env steps when repeated."""
    repeated = len(runs[0]["ours"]["all_seconds"]) > 1
    lines = [
        "| seed | trainer | reached target | training wall-clock (s) | env steps | return at stop | with checks (s) |"
        + (" every run's training s | every run's env steps |" if repeated else ""),
        "|---:|---|---|---:|---:|---:|---:|" + ("---|---|" if repeated else ""),
    ]
    for run in runs:
        ours, peer = run["ours"], run["peer"]
        each = {
            side: (
                " "
                + ", ".join(f"{s:.1f}" for s in r["all_seconds"])
                + " | "
                + ", ".join(f"{n:,}" for n in r["all_env_steps"])
                + " |"
                if repeated
                else ""
            )
            for side, r in (("ours", ours), ("peer", peer))
        }
        lines += [
            f"| {run['seed']} | imitaudit adversarial | {'yes' if ours['reached'] else 'no'} | "
            f"{ours['train_seconds']:.1f} | {ours['env_steps']:,} | {ours['last_return']:.1f} | "
            f"{ours['total_seconds']:.1f} |" + each["ours"],
            f"| {run['seed']} | imitation GAIL | {'yes' if peer['reached'] else 'no (budget)'} | "
            f"{peer['train_seconds']:.1f} | {peer['env_steps']:,} | {peer['last_return']:.1f} (best "
            f"{peer['best_return']:.1f}) | - |" + each["peer"],
        ]
    return lines + [""]


def reading(args: argparse.Namespace, runs: list[dict]) -> list[str]:
    """What the runs say: a warm start that already reached the target, and the ratio per seed."""
    lines = []
    for run in runs:
        ours, peer, seed = run["ours"], run["peer"], run["seed"]
        if ours["reached"] and not ours["phases"].get("adversarial"):
            lines.append(
                f"Seed {seed}: imitaudit reached the target during its BC warm start ({ours['phases'].get('bc', 0)} "
                f"steps, no environment steps), before any adversarial iteration; its final imitator scores "
                f"{ours['check_return_greedy']:.1f} over 50 greedy episodes on fresh seeds. The peer learns from "
                "scratch, as the library's example does.\n"
            )
        ratio = peer["train_seconds"] / ours["train_seconds"]
        if peer["reached"] and ours["reached"]:
            lines.append(
                f"Seed {seed}: wall-clock ratio to the target (peer / imitaudit, training alone on both sides): "
                f"**{ratio:.1f}x**; {peer['train_seconds'] / ours['total_seconds']:.1f}x with imitaudit's checks "
                "counted against it.\n"
            )
        elif ours["reached"]:
            lines.append(
                f"Seed {seed}: the peer did not reach {args.target:g} within its {args.peer_budget:g} s budget; at "
                f"the budget it returned {peer['last_return']:.1f}. Ratio of the peer's budget to imitaudit's time "
                f"to target: at least **{ratio:.1f}x**.\n"
            )
        else:
            lines.append(f"Seed {seed}: imitaudit did not reach the target in this run; see the figures above.\n")
    return lines


def main() -> None:
    from audit.bench.sections import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--demo-episodes", type=int, default=20)
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--peer-budget", type=float, default=240.0, help="peer training seconds at most")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run of both sides per seed")
    parser.add_argument("--work", default="out/bench-peer")
    parser.add_argument("--demo-steps", type=int, default=0, help="keep each demonstration's first K steps (0: all)")
    parser.add_argument("--learner", choices=("ppo", "replay"), default="ppo", help="imitaudit's adversarial learner")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side per seed, alternating (median)")
    args = parser.parse_args()
    if args.demo_steps < 0:
        parser.error("--demo-steps must be 0 or more")
    if args.repeats < 1:
        parser.error("--repeats must be 1 or more")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runs = [run_seed(args, seed, work) for seed in args.seeds]

    begin, end = markers(args.demo_steps, args.learner)
    heading = (
        "## Peer head-to-head: `imitation` GAIL vs imitaudit (`bench/peer_gail.py"
        + (" --demo-steps" if args.demo_steps else "")
        + (f" --learner {args.learner}`)" if args.learner != "ppo" else "`)")
    )
    lines = [begin, heading, "", describe(args, runs), "", *table(runs), *reading(args, runs), end]
    publish(lines, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
