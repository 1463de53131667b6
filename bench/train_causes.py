"""Issue 11's experiments: which training change moves a corrigible GRU imitator's departure rate on OffSwitch.

One row per candidate cause, all from the same demonstrations (1,000 corrigible episodes, seeds 0..), the same
seed and the same BC warm start (300 steps); adversarial rows run 100 iterations. Each imitator is evaluated on
2,000 fresh episodes (seeds 777..): departure rate and return ratio. Writes its table into BENCHMARKS.md.

    python -m bench.train_causes --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from audit.bench.sections import publish
from audit.data.demonstrations import record
from audit.training.config import TrainConfig
from audit.training.evaluate import evaluate
from audit.training.run import train

ENV = "imitaudit/OffSwitch-v0"
# the trainer as it was before issue 11: every later row changes one thing (rows 2-5 cumulatively)
OLD = {"disc_steps": 2, "disc_spectral": True, "every_action_coef": 0.0, "forbid_coef": 0.0, "centred_readout": False}
ADV = {**OLD, "mode": "adversarial", "steps": 100, "bc_warmup": 300}
FIXED = {**ADV, "disc_steps": 10, "disc_spectral": False}
ROWS: list[tuple[str, dict]] = [
    ("BC only, 400 steps", {**OLD, "mode": "bc", "steps": 400}),
    (
        "adversarial, discriminator over raw grid planes (the old view), 2 disc steps, spectral norm",
        {**ADV, "disc_raw_grid": True},
    ),
    ("+ the auditor's step view (tile view, no raw planes)", dict(ADV)),
    ("+ 10 disc steps per iteration", {**ADV, "disc_steps": 10}),
    ("+ no spectral norm", FIXED),
    ("+ unlikelihood on confidently flagged steps", {**FIXED, "unlikelihood_coef": 1.0}),
    ("+ no entropy bonus", {**FIXED, "entropy_coef": 0.0}),
    ("+ BC weight 0.1", {**FIXED, "bc_coef": 0.1}),
    ("+ 256 rollouts per iteration", {**FIXED, "rollout_episodes": 256}),
    (
        "BC only, 400 steps, imitator reads its conv features at the agent's cell",
        {**OLD, "mode": "bc", "steps": 400, "centred_readout": True},
    ),
    (
        "+ no spectral norm, 10 disc steps, imitator reads features at the agent's cell",
        {**FIXED, "centred_readout": True},
    ),
    (
        "+ every action's reward, exactly (every_action_coef 1)",
        {**FIXED, "centred_readout": True, "every_action_coef": 1.0},
    ),
    (
        "+ push down actions the discriminator forbids (forbid_coef 0.1): today's defaults",
        {**FIXED, "centred_readout": True, "every_action_coef": 1.0, "forbid_coef": 0.1},
    ),
    (
        "today's defaults, 300 iterations",
        {**FIXED, "centred_readout": True, "every_action_coef": 1.0, "forbid_coef": 0.1, "steps": 300},
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    demos = record(ENV, "corrigible", episodes=1000, seed=0)
    lines = []
    with tempfile.TemporaryDirectory() as work:
        for label, kw in ROWS:
            start = time.perf_counter()
            res = train(
                demos,
                TrainConfig(
                    arch="gru", seed=0, eval_every=10_000, eval_episodes=50, log_dir=work, progress=False, **kw
                ),
            )
            seconds = time.perf_counter() - start
            ev = evaluate(res.imitator, ENV, episodes=2000, seed=777, demos=demos)
            print(
                json.dumps(
                    {"row": label, "departure": ev["departure_rate"], "ratio": ev["return_ratio"], "train_s": seconds}
                ),
                flush=True,
            )
            lines.append(
                f"| {label} | {100 * ev['departure_rate']:.2f}% (± {100 * ev['departure_rate_se']:.2f}) | "
                f"{ev['return_ratio']:.3f} | {seconds:.0f} |"
            )
    publish(
        [
            "<!-- bench/train_causes.py begin -->",
            "## Adversarial training: candidate causes, one at a time (`bench/train_causes.py`)",
            "",
            f"Command: `python -m bench.train_causes --out BENCHMARKS.md` — one run, {args.threads} torch "
            f"thread(s). OffSwitch, corrigible "
            "demonstrations (1,000 episodes), GRU, seed 0, BC warm start 300 steps, adversarial rows 100 "
            "iterations; each row adds its "
            "change to the row named (rows 2-5 and 11-13 cumulatively, 6-9 each on row 5); 2,000 evaluation "
            "episodes each (departure rate ± its standard error).",
            "",
            "| change | departure rate | return ratio | train s |",
            "|---|---:|---:|---:|",
            *lines,
            "<!-- bench/train_causes.py end -->",
        ],
        args.out,
    )


if __name__ == "__main__":
    main()
