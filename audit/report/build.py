"""From an audit's stage outputs to the AuditReport: per-trajectory records, the summary, the verdict, the whole
document."""

from __future__ import annotations

import math
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from torch import Tensor

from audit.report.gate import GatePolicy, verdict
from audit.report.schema import SCHEMA, SEVERITIES, validate
from models.actions import plain


def versions() -> dict[str, str]:
    """Versions of Python and the packages a report's figures depend on."""
    out = {"python": platform.python_version()}
    for pkg in ("imitaudit", "torch", "numpy", "gymnasium", "captum"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _rounded(values: Tensor) -> list[float]:
    return [round(float(x), 4) for x in values]


def trajectory_records(
    traj: Any,
    fold: np.ndarray,
    evidence: Tensor,
    cal: Any,
    severity: list[str | None],
    entropy: Tensor,
    explanations: dict[int, dict],
    replays: dict[int, list],
    *,
    combined: Any | None = None,
) -> list[dict[str, Any]]:
    """One record per audited trajectory (see :mod:`audit.report.schema`).

    Args:
        traj: the audited :class:`~audit.data.rollout.Trajectories` (E episodes).
        fold: [E] fold of each.
        evidence: [E, T] per-step evidence ([E, T, kinds] with ``combined``).
        cal: the :class:`~audit.detect.calibrate.Calibration`.
        severity: [E] severities (None where not flagged).
        entropy: [E, T] policy entropy.
        explanations, replays: by trajectory index, for the explained flags.
        combined: the :class:`~audit.detect.calibrate.Combined` of several evidence kinds, or None.
    """
    lengths = traj.lengths().numpy()
    steps = evidence if combined is None else combined.step_scores
    records = []
    for i in range(traj.n_episodes):
        length = int(lengths[i])
        dep_steps = [] if traj.departure is None else np.flatnonzero(traj.departure[i, :length].numpy()).tolist()
        first_dep = dep_steps[0] if dep_steps else None
        first_flag = int(cal.first_flag[i]) if cal.flagged[i] and cal.first_flag[i] >= 0 else None
        mid, top = cal.scale[i]
        prefix = None
        if first_dep is None or traj.departure is None:
            prefix = None if traj.departure is None else float(cal.strength[i])
        elif first_dep > 0:
            prefix = (float(cal.path[i, first_dep - 1]) - mid) / max(top - mid, 1e-6)
        records.append(
            {
                "index": i,
                "seed": int(traj.seeds[i]),
                "fold": int(fold[i]),
                "length": length,
                "score": float(cal.score[i]),
                "pvalue": float(cal.pvalue[i]),
                "strength": round(float(cal.strength[i]), 4),
                "prefix_strength": None if prefix is None else round(prefix, 4),
                "flagged": bool(cal.flagged[i]),
                "severity": severity[i],
                "first_flag_step": first_flag,
                "threshold": float(cal.threshold[i]),
                "step_scores": _rounded(steps[i, :length]),
                "score_path": _rounded(cal.path[i, :length]),
                "strength_path": _rounded((cal.path[i, :length] - mid) / max(top - mid, 1e-6)),
                "strength_threshold": _strength_threshold(float(cal.threshold[i]), mid, top),
                "entropy": _rounded(entropy[i, :length]),
                "actions": [plain(a) for a in traj.actions[i, :length]],
                "departed": None if traj.departure is None else bool(dep_steps),
                "departure_step": first_dep,
                "lead_time": first_dep - first_flag if (first_dep is not None and first_flag is not None) else None,
                "explanation": explanations.get(i),
                "replay": replays.get(i),
            }
        )
        if combined is not None:
            records[-1]["evidence"] = {
                kind: {
                    "step_scores": _rounded(evidence[i, :length, k]),
                    "first_crossing": int(combined.first_crossing[kind][i])
                    if combined.first_crossing[kind][i] >= 0
                    else None,
                }
                for k, kind in enumerate(combined.kinds)
            }
            records[-1]["fired_first"] = combined.fired_first[i]
    return records


def summarize(
    records: list[dict[str, Any]], cal: Any, *, alpha: float, bh: bool, batch: dict[str, Any]
) -> dict[str, Any]:
    """The report's summary of its records, calibration and the batch's collective test (``batch``)."""
    n = len(records)
    flagged = sum(r["flagged"] for r in records)
    known = [r for r in records if r["departed"] is not None]
    leads = [r["lead_time"] for r in records if r["lead_time"] is not None]
    departing = [r for r in known if r["departed"]]
    return {
        "trajectories": n,
        "flagged": flagged,
        "flagged_share": flagged / n,
        "flagged_by_severity": {s: sum(1 for r in records if r["severity"] == s) for s in SEVERITIES},
        "disc_auroc": cal.auroc,
        "alpha": alpha,
        "level": cal.level,
        "bh": bh,
        "departure_rate": None if not known else float(np.mean([r["departed"] for r in known])),
        "departed": None if not known else sum(r["departed"] for r in known),
        "flagged_departed": None if not known else sum(r["departed"] and r["flagged"] for r in known),
        "median_lead_time": float(np.median(leads)) if leads else None,
        "flagged_before_departure": None
        if not known
        else sum(1 for r in departing if r["lead_time"] is not None and r["lead_time"] > 0),
        "calibration_flag_rate": cal.calibration_flag_rate,
        **batch,
    }


def assemble(
    *,
    settings: dict[str, Any],
    policy: GatePolicy,
    imitator: dict[str, Any],
    demonstrations: dict[str, Any],
    env: dict[str, Any],
    timings: dict[str, float],
    summary: dict[str, Any],
    records: list[dict[str, Any]],
    search: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The validated AuditReport."""
    return validate(
        {
            "schema": SCHEMA,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(),
            "imitator": imitator,
            "demonstrations": demonstrations,
            "env": env,
            "config": settings,
            "timings": timings,
            "summary": summary,
            "trajectories": records,
            "search": search,
            "verdict": verdict(summary, policy, search),
        }
    )


def _strength_threshold(threshold: float, mid: float, top: float) -> float | None:
    """The flag threshold on the strength scale (1 at the alpha cut; elsewhere with Benjamini-Hochberg), or None where
    no score can be flagged."""
    if not math.isfinite(threshold):
        return None
    return round((threshold - mid) / max(top - mid, 1e-6), 4)
