"""Issue 28's goal: corrigible adversarial imitators that do not depart at all, with demonstrator queries, per env.

For each built-in env: 1,000 demonstrations of the corrigible and of the unbounded preset (seeds 0..), a GRU imitator
trained at the default budget (1,500 BC steps, 300 adversarial iterations) with ``--query-demonstrator auto`` and,
for the corrigible demonstrations, without it (today's pure adversarial trainer) from the same seed; each imitator
evaluated on 10,000 fresh episodes (seeds 777..). Departures come with their count and a one-sided 95% upper bound
(Clopper-Pearson), return ratios with their standard error. Writes its table into BENCHMARKS.md.

    python -m bench.train_queries --out BENCHMARKS.md

``--runs corrigible:auto`` trains only the rows named (demonstrations:queries); ``--plan-iterations N`` gives every
imitator the encoder's value-iteration layer; ``--query-anywhere N`` adds N queried episodes per iteration started on a
random free cell (queried rows only).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from audit.bench.null import clopper_pearson
from audit.bench.sections import publish
from audit.data.demonstrations import record
from audit.training.config import TrainConfig
from audit.training.evaluate import evaluate
from audit.training.run import train

ENVS = ("OffSwitch", "AbsentSupervisor", "PowerSeeking")
RUNS = "corrigible:none,corrigible:auto,unbounded:auto"


def row(env: str, preset: str, queries: str, args: argparse.Namespace, work: str) -> dict:
    env_id = f"imitaudit/{env}-v0"
    demos = record(env_id, preset, episodes=args.demo_episodes, seed=0)
    start = time.perf_counter()
    cfg = TrainConfig(
        arch="gru",
        mode="adversarial",
        seed=0,
        query_demonstrator=queries,
        plan_iterations=args.plan_iterations,
        query_anywhere=args.query_anywhere if queries else 0,
        log_dir=work,
        progress=False,
    )
    result = train(demos, cfg)
    seconds = time.perf_counter() - start
    ev = evaluate(result.imitator, env_id, episodes=args.eval_episodes, seed=777, demos=demos)
    departed = round(ev["departure_rate"] * args.eval_episodes)
    return {
        "env": env,
        "demos": preset,
        "queries": queries or "none",
        "demo_departure": float(demos.episode_departed().mean()),  # type: ignore[union-attr]
        "departed": departed,
        "upper": clopper_pearson(departed, args.eval_episodes, confidence=0.90)[1],
        "ratio": ev["return_ratio"],
        "ratio_se": ev["mean_return_se"] / abs(ev["demos"]["mean_return"]),
        "train_s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--demo-episodes", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=10_000)
    parser.add_argument("--runs", default=RUNS, help="comma-separated demonstrations:queries rows")
    parser.add_argument("--plan-iterations", type=int, default=0)
    parser.add_argument(
        "--query-anywhere", type=int, default=0, help="queried episodes started anywhere, per iteration"
    )
    args = parser.parse_args()
    runs = [tuple(r.split(":")) for r in args.runs.split(",")]
    lines = []
    with tempfile.TemporaryDirectory() as work:
        for env in args.envs.split(","):
            for preset, queries in runs:
                r = row(env, preset, "" if queries == "none" else queries, args, work)
                print(json.dumps(r), flush=True)
                lines.append(
                    f"| {r['env']} | {r['demos']} | {r['queries']} | {100 * r['demo_departure']:.1f}% | "
                    f"{r['departed']} ({100 * r['departed'] / args.eval_episodes:.2f}%, <= {100 * r['upper']:.3f}%) | "
                    f"{r['ratio']:.3f} ± {r['ratio_se']:.3f} | {r['train_s']:.0f} |"
                )
    publish(
        [
            "<!-- bench/train_queries.py begin -->",
            "## Imitators that do not depart: demonstrator queries (`bench/train_queries.py`)",
            "",
            "Command: `python -m bench.train_queries --out BENCHMARKS.md"
            + (f" --plan-iterations {args.plan_iterations}" if args.plan_iterations else "")
            + (f" --query-anywhere {args.query_anywhere}" if args.query_anywhere else "")
            + f"` — one run, {torch.get_num_threads()} torch thread(s). GRU, {args.demo_episodes} demonstrations "
            "per row (seeds 0..), the default budget (1,500 BC steps, 300 adversarial iterations), seed 0; queries "
            "`auto` asks the preset that recorded the "
            f"demonstrations at every state of each iteration's rollouts. {args.eval_episodes:,} evaluation episodes "
            "(seeds 777..): departing episodes, their share and its one-sided 95% upper bound (Clopper-Pearson); "
            "return ratio ± its standard error.",
            "",
            "| env | demos | queries | demo departures | imitator departures | return ratio | train s |",
            "|---|---|---|---:|---:|---:|---:|",
            *lines,
            "<!-- bench/train_queries.py end -->",
        ],
        args.out,
    )


if __name__ == "__main__":
    main()
