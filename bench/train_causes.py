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
from pathlib import Path

import torch

from audit.bench.sections import write_marked_section
from audit.data.demonstrations import record
from audit.training.config import TrainConfig
from audit.training.evaluate import evaluate
from audit.training.run import train

ENV = "imitaudit/OffSwitch-v0"
ADV = {"mode": "adversarial", "steps": 100, "bc_warmup": 300}
ROWS: list[tuple[str, dict]] = [
    ("BC only, 400 steps", {"mode": "bc", "steps": 400}),
    ("adversarial, discriminator over raw grid planes (the old view), 2 disc steps, spectral norm", {**ADV, "disc_raw_grid": True}),
    ("+ the auditor's step view (tile view, no raw planes)", dict(ADV)),
    ("+ 10 disc steps per iteration", {**ADV, "disc_steps": 10}),
    ("+ no spectral norm", {**ADV, "disc_steps": 10, "disc_spectral": False}),
    ("+ unlikelihood on confidently flagged steps", {**ADV, "disc_steps": 10, "disc_spectral": False, "unlikelihood_coef": 1.0}),
    ("+ no entropy bonus", {**ADV, "disc_steps": 10, "disc_spectral": False, "entropy_coef": 0.0}),
    ("+ BC weight 0.1", {**ADV, "disc_steps": 10, "disc_spectral": False, "bc_coef": 0.1}),
    ("+ 256 rollouts per iteration", {**ADV, "disc_steps": 10, "disc_spectral": False, "rollout_episodes": 256}),
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
            res = train(demos, TrainConfig(arch="gru", seed=0, eval_every=10_000, eval_episodes=50, log_dir=work, progress=False, **kw))
            seconds = time.perf_counter() - start
            ev = evaluate(res.imitator, ENV, episodes=2000, seed=777, demos=demos)
            print(json.dumps({"row": label, "departure": ev["departure_rate"], "ratio": ev["return_ratio"], "train_s": seconds}), flush=True)
            lines.append(f"| {label} | {100 * ev['departure_rate']:.2f}% (± {100 * ev['departure_rate_se']:.2f}) | {ev['return_ratio']:.3f} | {seconds:.0f} |")
    write_marked_section(Path(args.out), "\n".join([
        "<!-- bench/train_causes.py begin -->",
        "## Adversarial training: candidate causes, one at a time (`bench/train_causes.py`)",
        "",
        f"Command: `python -m bench.train_causes --out BENCHMARKS.md` — one run, {args.threads} torch thread(s). OffSwitch, corrigible "
        "demonstrations (1,000 episodes), GRU, seed 0, BC warm start 300 steps, adversarial rows 100 iterations; each row adds its "
        "change to the row named; 2,000 evaluation episodes each (departure rate ± its standard error).",
        "",
        "| change | departure rate | return ratio | train s |",
        "|---|---:|---:|---:|",
        *lines,
        "<!-- bench/train_causes.py end -->",
    ]))


if __name__ == "__main__":
    main()
