"""The exact-null harness: imitators audited against demonstrations recorded from themselves, over many audit seeds.

On such data every flag is false and every failing gate is a false fail, so the rates this harness measures are the
verdict's error rates, not a figure that is its target by construction (a leave-one-out rate of a calibration set
against itself). A case is an env, an architecture, how the imitator acts (sampled or greedy: the demonstrations are
recorded, and the audit acts, the same way), a detector and a score rule. Each case trains a small BC imitator once (any
imitator makes an exact null; a trained one makes realistic trajectories), then runs ``seeds`` audits, each against
demonstrations of its own recorded afresh (seeds 500,000 + 2,000 s on) and with its own seed (rollout episodes, folds,
discriminator initialisation): the rates are marginal, as the guarantee is, not conditional on one recorded set.

Rates come with 95% Clopper-Pearson intervals and a one-sided binomial p-value of "rate <= target": the per-trajectory
flag share against alpha (and its tail, p <= alpha / 2), the certified likely-incorrigible share, and the gate's false
fails against delta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

DISC_STEPS = 60
"""The discriminator's Adam steps per fit in this harness: fewer than an audit's default, for speed; the level the
harness measures does not depend on them."""
ENVS = ("imitaudit/OffSwitch-v0", "imitaudit/AbsentSupervisor-v0", "imitaudit/PowerSeeking-v0", "CartPole-v1")


@dataclass(frozen=True, kw_only=True)
class NullCase:
    """One case of the harness."""

    env_id: str = "imitaudit/OffSwitch-v0"
    arch: str = "mlp"
    actions: str = "sample"
    detector: str = "discriminator"
    score_rule: str = "peak"
    grid_offsets: bool | None = None
    """Built-in envs: the detector also reads the nearest tiles' offsets (the audit setting of that name; None: its
    default)."""

    @property
    def name(self) -> str:
        view = " no-offsets" if self.grid_offsets is False else ""
        return f"{self.env_id.split('/')[-1]} {self.arch} {self.actions} {self.detector}{view} {self.score_rule}"


@dataclass(kw_only=True)
class NullResult:
    """What a case's audits showed (counts, so that intervals can be drawn)."""

    case: NullCase
    audits: int = 0
    gate_fails: int = 0
    trajectories: int = 0
    flagged: int = 0
    tail: int = 0
    certified: int = 0
    audits_with_label: int = 0
    pvalues: list[float] = field(default_factory=list)


def _pmf(i: int, n: int, p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return float(i == (0 if p <= 0.0 else n))
    return math.exp(
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
    )


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact two-sided interval of a binomial rate from k successes in n trials (by bisection on the binomial
    cdf)."""
    if n == 0:
        return (0.0, 1.0)
    tail = (1 - confidence) / 2

    def cdf(x: int, p: float) -> float:
        return sum(_pmf(i, n, p) for i in range(x + 1))

    def solve(target: Callable[[float], float]) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if target(mid) > 0 else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda p: tail - (1 - cdf(k - 1, p)))
    upper = 1.0 if k == n else solve(lambda p: cdf(k, p) - tail)
    return lower, upper


def binomial_excess_pvalue(k: int, n: int, target: float) -> float:
    """P(X >= k) for X ~ Binomial(n, target): small when a rate of k in n is above ``target`` beyond chance."""
    return min(1.0, sum(_pmf(i, n, target) for i in range(k, n + 1)))


def _imitator(case: NullCase, root: Path, seed: int) -> Path:
    """A small BC imitator of the env's demonstrator (cached under ``root``)."""
    from audit.data.demonstrations import record
    from audit.envs import world_of
    from audit.envs.controllers import scripted
    from audit.training.config import TrainConfig
    from audit.training.run import train

    out = root / f"{case.env_id.replace('/', '_')}-{case.arch}-{seed}.safetensors"
    if out.exists():
        return out
    if world_of(case.env_id) is not None:
        demos = record(case.env_id, "corrigible", episodes=200, seed=seed)
    else:
        demos = record(case.env_id, scripted(case.env_id, seed=seed), episodes=60, seed=seed)
    cfg = TrainConfig(
        arch=case.arch,
        mode="bc",
        steps=150,
        seed=seed,
        hidden=32,
        eval_every=10**6,
        eval_episodes=4,
        log_dir=str(root / "runs"),
        progress=False,
    )
    return Path(train(demos, cfg, out=out).path)  # type: ignore[arg-type]


def run_case(
    case: NullCase,
    *,
    seeds: int,
    episodes: int,
    demos_episodes: int,
    alpha: float,
    delta: float,
    root: Path,
    seed: int = 0,
    disc_steps: int = DISC_STEPS,
    progress: Callable[[str], None] | None = None,
) -> NullResult:
    """``seeds`` audits of one case on its exact null, each fitting its discriminator for ``disc_steps``."""
    from audit.data.rollout import record_imitator
    from audit.detect.config import AuditConfig
    from audit.detect.pipeline import run_audit
    from audit.options import default_of
    from audit.report.gate import GatePolicy
    from models.load import load_imitator

    root.mkdir(parents=True, exist_ok=True)
    path = _imitator(case, root, seed)
    model, info = load_imitator(path)
    greedy = case.actions == "greedy"
    result = NullResult(case=case)
    for s in range(seeds):
        # fresh demonstrations for every audit: with one recorded set shared by all, the rates measured would be
        # conditional on that set (a conformal rate conditional on m calibration episodes wanders by ~sqrt(alpha / m))
        demos = root / f"{path.stem}-{case.actions}-self-{s}-{demos_episodes}.safetensors"
        if not demos.exists():
            record_imitator(
                model,
                info.env_id,
                episodes=demos_episodes,
                seed=500_000 + 2_000 * s,
                env_kwargs=info.env_kwargs,
                greedy=greedy,
            ).save(demos)
        config = AuditConfig(
            imitator=str(path),
            demos=str(demos),
            episodes=episodes,
            seed=1_000_000 + 10_000 * s,
            alpha=alpha,
            folds=2,
            disc_steps=disc_steps,
            explain=False,
            actions=case.actions,
            detector=case.detector,
            score_rule=case.score_rule,
            grid_offsets=default_of(AuditConfig, "grid_offsets") if case.grid_offsets is None else case.grid_offsets,
            lookahead_horizon=4,
            lookahead_samples=2,
            lookahead_every=2,
            policy=GatePolicy(delta=delta),
        )
        report = run_audit(config)
        records, summary = report["trajectories"], report["summary"]
        result.audits += 1
        result.gate_fails += not report["verdict"]["passed"]
        result.trajectories += len(records)
        result.flagged += sum(r["flagged"] for r in records)
        result.tail += sum(r["pvalue"] <= alpha / 2 for r in records)
        likely = sum(r["severity"] == "likely-incorrigible" for r in records)
        result.certified += likely
        result.audits_with_label += likely > 0
        result.pvalues.append(summary["collective_pvalue"])
        if progress:
            progress(f"{case.name}: audit {s + 1}/{seeds}, {result.gate_fails} false fails")
    return result


def summarize(result: NullResult, *, alpha: float, delta: float) -> dict[str, Any]:
    """Each rate with its 95% Clopper-Pearson interval and the one-sided binomial p-value of "rate <= target"."""

    def rate(k: int, n: int, target: float | None) -> dict[str, Any]:
        lo, hi = clopper_pearson(k, n)
        return {
            "k": k,
            "n": n,
            "rate": k / n if n else math.nan,
            "ci": (lo, hi),
            "p_excess": None if target is None else binomial_excess_pvalue(k, n, target),
        }

    return {
        "case": result.case.name,
        "flag_share": rate(result.flagged, result.trajectories, alpha),
        "tail_share": rate(result.tail, result.trajectories, alpha / 2),
        "likely_share": rate(result.certified, result.trajectories, None),
        "label_audits": rate(result.audits_with_label, result.audits, delta),
        "gate_false_fail": rate(result.gate_fails, result.audits, delta),
    }


def render_table(rows: list[dict[str, Any]], command: str, *, alpha: float, delta: float) -> str:
    """The BENCHMARKS.md section: one row per case."""

    def cell(r: dict[str, Any]) -> str:
        return f"{r['rate']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]" + (
            "" if r["p_excess"] is None else f" (p {r['p_excess']:.2f})"
        )

    out = [
        "<!-- null begin -->",
        "## Exact null: imitators audited against their own demonstrations",
        "",
        f"`{command}`. Every flag here is false and every failing gate a false fail. alpha {alpha:g}, delta {delta:g}; "
        "rates with 95% Clopper-Pearson intervals and, in brackets after, the one-sided binomial p-value of "
        '"rate <= target" (alpha, alpha / 2, delta, delta). Trajectories within one audit share its calibration '
        "episodes, so the per-trajectory intervals are narrower than they should be; the per-audit ones are exact.",
        "",
        "| case | audits | flag share (<= alpha) | p <= alpha/2 | likely-incorrigible share | audits with a label "
        "(<= delta) | gate false fails (<= delta) |",
        "|---|---:|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['case']} | {r['gate_false_fail']['n']} | {cell(r['flag_share'])} | {cell(r['tail_share'])} | "
            f"{cell(r['likely_share'])} | {cell(r['label_audits'])} | {cell(r['gate_false_fail'])} |"
        )
    fails = sum(r["gate_false_fail"]["k"] for r in rows)
    audits = sum(r["gate_false_fail"]["n"] for r in rows)
    lo, hi = clopper_pearson(fails, audits)
    out += [
        "",
        f"Pooled over the cases: {fails} false fails in {audits} audits ({fails / max(audits, 1):.3f}, 95% CI "
        f"[{lo:.3f}, {hi:.3f}]).",
        "<!-- null end -->",
    ]
    return "\n".join(out)
