"""AuditReport: the versioned JSON an audit produces, its validation, reading and writing as JSON.

Schema ``imitaudit.report/1`` (every key always present; ``null`` where a figure does not apply):

- ``schema``, ``created`` (ISO 8601 UTC), ``versions`` (imitaudit, python, torch, numpy, gymnasium, captum)
- ``imitator``: ``sha256``, ``arch``, ``env_id``, ``parameters``, ``provenance``
- ``demonstrations``: ``sha256``, ``source``, ``episodes``, ``fit_episodes``, ``calibration_episodes``
- ``env``: ``id``, ``kwargs``
- ``config``: the audit's settings
- ``timings``: stage -> seconds (``load``, ``rollout``, ``reference``, ``discriminate``, ``calibrate``, ``explain``,
``total``)
- ``summary``: ``trajectories``, ``flagged``, ``flagged_share``, ``flagged_by_severity``
  (``likely-incorrigible``, ``distinguishable``), ``disc_auroc`` (held-out trajectory AUROC,
  imitator against demonstrator: how distinguishable it is; 0.5 = not at all), ``alpha``,
  ``level`` (p-value cut-off used), ``bh``, ``departure_rate`` and ``departed`` (ground truth
  where the env records it, never shown to a discriminator), ``flagged_departed``,
  ``median_lead_time``, ``flagged_before_departure`` (departing trajectories flagged strictly before their first
  departure step; added in 0.2, absent from older reports), ``calibration_flag_rate`` (leave-one-out share of held-out
  demonstrator episodes that would be flagged: by construction about alpha, so no evidence of anything), and, added
  in 0.4 (absent from older reports): ``delta`` (the gate's level), ``collective_pvalue`` (the batch's collective test
  of "exchangeable with the demonstrator's", at delta), ``unlike_lower_bound`` (at least this many trajectories are
  unlike the demonstrator's, confidence 1 - delta), ``certified`` (flags Benjamini-Hochberg certifies, FDR delta,
  counted only when the collective test rejects), ``exact_null`` (false: the detector's p-values are approximate),
  ``detectable_share`` (the smallest
  share of departing trajectories the gate catches with 90% power at this n, m and delta; null: none),
  ``labels_possible`` (whether this many calibration episodes can certify any label at all)
- ``trajectories``: one record each: ``index``, ``seed``, ``fold``, ``length``, ``score``,
  ``pvalue``, ``strength`` (score on its fold's calibration scale: 0 = median demonstrator
  episode, 1 = the alpha cut; ranks what p-values tie), ``prefix_strength`` (the same, of the score
  path just before the first departure step: what was known before departing; the whole strength for
  trajectories that do not depart, null where no departures are recorded or the first step departs; added in 0.2),
  ``flagged``, ``severity`` (``likely-incorrigible``, ``distinguishable`` or null),
  ``first_flag_step``, ``threshold``, ``step_scores`` (per-step evidence), ``score_path`` (the
  trajectory score so far at each step: running peak or CUSUM, per ``config.score_rule``), ``strength_path`` and
  ``strength_threshold`` (the score path and the flag threshold on the strength scale, what charts draw; added in 0.6,
  absent from older reports),
  ``entropy`` (imitator policy entropy per step), ``actions``, ``departed``,
  ``departure_step``, ``lead_time`` (departure step minus first flag step), ``explanation``
  (flagged only: top steps, observation features, activation units, heatmap), ``replay``
  (flagged and explained only: one text frame per step, a grid for built-in envs, the action and named features for
  others); with several evidence kinds (``config.detector`` =
  ``combined``, added in 0.3) also ``evidence`` (kind -> ``step_scores``, ``first_crossing``: the first step that
  kind's score path crosses its own threshold, or null) and ``fired_first`` (the kind that crossed first, or null);
  ``step_scores`` and ``score_path`` are then on the combined scale, where 1 is the flag threshold
- ``search`` (added in 0.5; absent from older reports, null when ``config.search`` is 0): the active audit's
  ``screened``, ``kept``, ``repeats``, ``demonstrator`` (whom it asked, or null: the layouts are then unconfirmed),
  ``level`` (its share of delta, null when unconfirmed), ``screen_departed`` (ground truth among the screened
  episodes), ``confirmed``, and ``layouts``: per kept layout ``seed``, ``screen_divergence``, ``screen_departed``,
  ``imitator_surprise`` and ``demonstrator_surprise`` (means over the fresh episodes), ``imitator_departed`` and
  ``demonstrator_departed`` (of the fresh episodes), ``pvalue``, ``adjusted_pvalue`` (Bonferroni), ``confirmed``,
  ``replay`` (the first fresh imitator episode)
- ``verdict``: ``passed``, ``checks`` (name, passed, detail), ``policy``
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

SCHEMA = "imitaudit.report/1"
TOP_KEYS = (
    "schema",
    "created",
    "versions",
    "imitator",
    "demonstrations",
    "env",
    "config",
    "timings",
    "summary",
    "trajectories",
    "verdict",
)
SUMMARY_KEYS = (
    "trajectories",
    "flagged",
    "flagged_share",
    "flagged_by_severity",
    "disc_auroc",
    "alpha",
    "level",
    "bh",
    "departure_rate",
    "departed",
    "flagged_departed",
    "median_lead_time",
    "calibration_flag_rate",
)
RECORD_KEYS = (
    "index",
    "seed",
    "fold",
    "length",
    "score",
    "pvalue",
    "strength",
    "flagged",
    "severity",
    "first_flag_step",
    "threshold",
    "step_scores",
    "score_path",
    "entropy",
    "actions",
    "departed",
    "departure_step",
    "lead_time",
    "explanation",
    "replay",
)
SEVERITIES = ("likely-incorrigible", "distinguishable")


def _validate_record(rec: dict[str, Any]) -> None:
    """One trajectory record: every key, a known severity that agrees with the flag, a p-value in (0, 1]."""
    for key in RECORD_KEYS:
        if key not in rec:
            raise ValueError(f"trajectory record {rec.get('index')} lacks {key!r}")
    if rec["severity"] not in (None, *SEVERITIES):
        raise ValueError(f"trajectory {rec['index']}: unknown severity {rec['severity']!r}")
    if bool(rec["flagged"]) != (rec["severity"] is not None):
        raise ValueError(f"trajectory {rec['index']}: flagged and severity disagree")
    if not 0.0 < rec["pvalue"] <= 1.0:
        raise ValueError(f"trajectory {rec['index']}: p-value {rec['pvalue']} outside (0, 1]")


def validate(report: dict[str, Any]) -> dict[str, Any]:
    """Check a report against the schema; returns it.

    Raises:
        ValueError: naming the first missing key or wrong value.
    """
    if not isinstance(report, dict):
        raise ValueError("a report is a JSON object")
    if report.get("schema") != SCHEMA:
        raise ValueError(f"unknown report schema {report.get('schema')!r}; this imitaudit reads {SCHEMA!r}")
    for key in TOP_KEYS:
        if key not in report:
            raise ValueError(f"report lacks {key!r}")
    for key in SUMMARY_KEYS:
        if key not in report["summary"]:
            raise ValueError(f"report summary lacks {key!r}")
    if not isinstance(report["trajectories"], list):
        raise ValueError("report trajectories must be a list")
    for rec in report["trajectories"]:
        _validate_record(rec)
    if report["summary"]["flagged"] != sum(1 for r in report["trajectories"] if r["flagged"]):
        raise ValueError("summary flagged count does not match the records")
    if not isinstance(report["verdict"].get("passed"), bool):
        raise ValueError("verdict.passed must be a boolean")
    return report


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(_clean(report), indent=1, sort_keys=False, allow_nan=False)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a report.json."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    return validate(data)
