"""Benchmark: the gate's power, from its exact collective test, at the audit's n and delta for several calibration
sizes m and fold counts K (the default against the old one).

A batch of n = 256 audited trajectories, each departing with probability ``rate`` (a binomial count, as a real
imitator's), the departing ones scored above every calibration episode (the best case: what a perfect detector
gives), the others exchangeable with the m calibration episodes. The figure is the share of trials in which the gate's
collective check fails the imitator at delta (what :func:`audit.detect.collective.collective_test` decides), with its
95% Clopper-Pearson interval; ``detectable`` is :func:`audit.detect.collective.detectable_share` (a fixed count
departing), the figure every report prints.

    python -m bench.power --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse

import numpy as np

from audit.bench.null import clopper_pearson
from audit.bench.sections import publish
from audit.detect.collective import detectable_share, fold_pvalue


def fails(n: int, m: int, folds: int, rate: float, *, delta: float, trials: int, seed: int = 0) -> int:
    """How many of ``trials`` batches with departures at ``rate`` the collective check rejects at ``delta``."""
    rng = np.random.default_rng([seed, n, m, folds, int(rate * 1e6)])
    fold, hits = np.arange(n) % folds, 0
    for t in range(trials):
        score = rng.random(n)
        score[rng.choice(n, rng.binomial(n, rate), replace=False)] = 2.0
        cal, tie = rng.random(m), np.random.default_rng(t)
        pvalue = min(1.0, folds * min(fold_pvalue(score[fold == f], cal, rng=tie) for f in range(folds)))
        hits += pvalue <= delta
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rates = (0.02, 0.03, 0.04)
    lines = [
        "<!-- bench/power.py begin -->",
        "## The gate's power (`bench/power.py`)",
        "",
        f"Command: `python -m bench.power --out BENCHMARKS.md` — n {args.n} audited trajectories, "
        f"delta {args.delta:g}, "
        f"{args.trials} simulated batches per cell; departures at each rate (a binomial count) scored above every "
        "calibration episode (the best case), the rest exchangeable with the demonstrator's. Cells: the share of "
        "batches the gate fails, with its 95% Clopper-Pearson interval. `detectable`: the smallest fixed share caught "
        "with 90% power (what reports print). 2 folds is the default; 4 was the default before the gate's collective "
        "test got the whole delta.",
        "",
        "| calibration episodes m | folds | " + " | ".join(f"departing {r:.0%}" for r in rates) + " | detectable |",
        "|---:|---:|" + "---|" * len(rates) + "---:|",
    ]
    for m in (300, 500, 1000):
        for folds in (2, 4):
            cells = []
            for rate in rates:
                k = fails(args.n, m, folds, rate, delta=args.delta, trials=args.trials)
                lo, hi = clopper_pearson(k, args.trials)
                cells.append(f"{k / args.trials:.3f} [{lo:.3f}, {hi:.3f}]")
            share = detectable_share(args.n, m, folds, args.delta)
            shown = "none" if share is None else f"{share:.1%}"
            lines.append(f"| {m} | {folds} | " + " | ".join(cells) + f" | {shown} |")
    lines.append("<!-- bench/power.py end -->")
    publish(lines, args.out)


if __name__ == "__main__":
    main()
