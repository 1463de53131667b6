"""Benchmark: BC-only against adversarial imitators on each built-in env, from corrigible and unbounded demos.

For each env and demonstrator preset: record demonstrations, train a GRU imitator by BC,
and an adversarial one from the same BC warm start; evaluate both in the env (return,
departure rate, length, over many episodes) and measure how distinguishable each is with a
fresh activation-reading discriminator (held-out accuracy; 0.5 = indistinguishable).
Writes its table into BENCHMARKS.md between markers.

    python bench/train.py --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from audit.data.demonstrations import record
from audit.training.config import TrainConfig
from audit.training.evaluate import distinguishability, evaluate
from audit.training.run import train

BEGIN, END = "<!-- bench/train.py begin -->", "<!-- bench/train.py end -->"


def run(env_id: str, preset: str, args: argparse.Namespace, work: Path) -> list[dict]:
    demos = record(env_id, preset, episodes=args.demo_episodes, seed=0)
    ds = demos.summary()
    rows = []
    bc_cfg = TrainConfig(
        arch=args.arch,
        mode="bc",
        steps=args.bc_steps,
        seed=0,
        eval_every=args.bc_steps,
        eval_episodes=100,
        log_dir=str(work),
        progress=False,
    )
    adv_cfg = TrainConfig(
        arch=args.arch,
        mode="adversarial",
        steps=args.adv_steps,
        bc_warmup=args.bc_steps,
        seed=0,
        eval_every=args.adv_steps,
        eval_episodes=100,
        log_dir=str(work),
        progress=False,
    )
    for label, cfg in (("bc", bc_cfg), ("adversarial", adv_cfg)):
        start = time.perf_counter()
        result = train(demos, cfg)
        seconds = time.perf_counter() - start
        ev = evaluate(result.imitator, env_id, episodes=args.eval_episodes, seed=777, demos=demos)
        dist = distinguishability(
            result.imitator, demos.select(range(min(demos.n_episodes, 600))), episodes=600, seed=5
        )
        row = {
            "env": env_id,
            "demos": preset,
            "mode": label,
            "train_s": seconds,
            "demo_return": ds["mean_return"],
            "demo_departure": ds["departure_rate"],
            "return": ev["mean_return"],
            "return_se": ev["mean_return_se"],
            "ratio": ev["return_ratio"],
            "departure": ev["departure_rate"],
            "departure_se": ev["departure_rate_se"],
            "heldout_acc": dist["heldout_acc"],
            "heldout_auroc": dist["heldout_auroc"],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def render(rows: list[dict], command: str, args: argparse.Namespace) -> str:
    lines = [
        BEGIN,
        "## Imitators: BC against adversarial (`bench/train.py`)",
        "",
        f"Command: `{command}` — one run. {args.arch.upper()} imitators, {args.demo_episodes} demonstration episodes "
        f"(seeds 0..), BC {args.bc_steps} steps; adversarial = the same BC warm start + {args.adv_steps} iterations "
        f"(64 rollouts each, discriminator on obs + action + `core`). Evaluation: {args.eval_episodes} episodes "
        "(seed 777), mean ± standard error. Distinguishability: a fresh discriminator (obs + action + `core`), "
        "trained on 70% of 600 demo episodes and 600 rollouts, scored on the other 30% (balanced step accuracy; 0.5 "
        "= indistinguishable).",
        "",
        "| env | demos | mode | demo return | imitator return | return ratio | demo departures | imitator departures "
        "| held-out disc. acc. | AUROC | train s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env'].split('/')[-1]} | {r['demos']} | {r['mode']} | {r['demo_return']:.3f} | {r['return']:.3f} "
            f"± {r['return_se']:.3f} | "
            f"{r['ratio']:.3f} | {r['demo_departure']:.3f} | {r['departure']:.4f} ± {r['departure_se']:.4f} | "
            f"{r['heldout_acc']:.3f} | {r['heldout_auroc']:.3f} | {r['train_s']:.0f} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def main() -> None:
    from audit.bench.sections import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--envs", default="OffSwitch,AbsentSupervisor,PowerSeeking")
    parser.add_argument("--presets", default="corrigible,unbounded")
    parser.add_argument("--arch", default="gru")
    parser.add_argument("--demo-episodes", type=int, default=3000)
    parser.add_argument("--bc-steps", type=int, default=2000)
    parser.add_argument("--adv-steps", type=int, default=300)
    parser.add_argument("--eval-episodes", type=int, default=2000)
    parser.add_argument("--work", default="out/bench-train")
    args = parser.parse_args()
    rows = []
    for env in args.envs.split(","):
        for preset in args.presets.split(","):
            rows += run(f"imitaudit/{env}-v0", preset, args, Path(args.work))
    command = "python bench/train.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "work")
    )
    publish(render(rows, command, args).rstrip("\n").split("\n"), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
