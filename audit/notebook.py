"""The audit as a notebook user calls it: ``result = audit(imitator, demos, **options)``.

The imitator may be a checkpoint path (safetensors or ONNX) or an in-memory registry imitator
(saved for the audit to a temporary checkpoint, with the demonstrations' env); the demonstrations
a path or a :class:`~audit.data.demonstrations.Demonstrations`. Options are
:class:`~audit.detect.config.AuditConfig` fields (``episodes=512``, ``detector="combined"``,
``policy=GatePolicy(...)``). The result wraps the report the CLI and the service write::

    from audit import audit
    result = audit("imitator.onnx", "heldout.safetensors", episodes=256)
    result.verdict["passed"], result.summary["flagged"], result.flagged[:3]
    result.to_pandas()            # one row per trajectory (needs pandas)
    result.save("report/")        # report.json, report.html, summary.md, junit.xml
    result                        # in Jupyter: verdict, summary and the most significant flag's score plot
"""

from __future__ import annotations

import html
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.data.demonstrations import Demonstrations
from audit.detect.config import AuditConfig
from audit.detect.pipeline import run_audit
from audit.report.render import svg_trajectory, write_outputs
from audit.threads import use_threads

COLUMNS = (
    "index",
    "seed",
    "length",
    "flagged",
    "severity",
    "pvalue",
    "strength",
    "score",
    "first_flag_step",
    "departed",
    "departure_step",
    "lead_time",
)
"""The per-trajectory fields ``to_pandas`` puts in columns (the per-step arrays stay in ``trajectories``)."""


@dataclass(frozen=True, kw_only=True)
class AuditResult:
    """One audit's report (the AuditReport dict the CLI writes as report.json), with views of it.

    Attributes:
        report: the whole validated report.
    """

    report: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        """Counts, shares and the held-out discriminator AUROC."""
        return self.report["summary"]

    @property
    def verdict(self) -> dict[str, Any]:
        """The gate policy's verdict: ``passed`` and the checks behind it."""
        return self.report["verdict"]

    @property
    def passed(self) -> bool:
        return bool(self.report["verdict"]["passed"])

    @property
    def trajectories(self) -> list[dict[str, Any]]:
        """One record per audited trajectory, in rollout order (fields: :mod:`audit.report.schema`)."""
        return self.report["trajectories"]

    @property
    def flagged(self) -> list[dict[str, Any]]:
        """The flagged trajectories, most significant first (lowest p-value, then highest strength)."""
        return sorted((t for t in self.trajectories if t["flagged"]), key=lambda t: (t["pvalue"], -t["strength"]))

    def to_pandas(self) -> Any:
        """A DataFrame of one row per trajectory and the scalar fields of :data:`COLUMNS`.

        Raises:
            RuntimeError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise RuntimeError(
                "to_pandas needs pandas (pip install pandas); .trajectories has the same records as dicts"
            ) from None
        return pd.DataFrame(
            [{c: t.get(c) for c in COLUMNS} for t in self.trajectories], columns=list(COLUMNS)
        ).set_index("index")

    def save(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write report.json, report.html, summary.md and junit.xml into ``out_dir``; returns their paths."""
        return write_outputs(self.report, out_dir, junit=True)

    def _repr_html_(self) -> str:
        s, v = self.summary, self.verdict
        word = "PASS" if v["passed"] else "FAIL"
        parts = [
            f"<div><b style='color:{'#176b2c' if v['passed'] else '#b3261e'}'>{word}</b>: "
            f"{s['flagged']} of {s['trajectories']} trajectories flagged; held-out discriminator AUROC "
            f"{s['disc_auroc']:.3f}</div>"
        ]
        top = self.flagged[:1]
        for t in top:
            parts.append(
                f"<div>most significant flag: trajectory {t['index']} ({html.escape(str(t['severity']))}, p = "
                f"{t['pvalue']:.3g})</div>"
            )
            parts.append(svg_trajectory(t, width=520, height=160))
            parts.append(
                f"<div style='font-size:smaller'>trajectory {t['index']}'s strength over its steps: dashed red, the "
                "threshold; red, its first flagged step; dashed black, its first departure (ground truth). What the "
                "numbers mean: docs/reading-a-report.md</div>"
            )
        return "".join(parts)

    def __repr__(self) -> str:
        s = self.summary
        return f"AuditResult({'pass' if self.passed else 'fail'}: {s['flagged']} of {s['trajectories']} flagged)"


def audit(imitator: Any, demos: Any, **options: Any) -> AuditResult:
    """Audit ``imitator`` against held-out demonstrations ``demos`` (see the module docstring).

    Raises:
        ValueError: inputs that cannot be audited, or an unknown option (one line naming it).
    """
    unknown = sorted(set(options) - set(AuditConfig.__dataclass_fields__) - {"imitator", "demos"})
    if unknown:
        raise ValueError(f"unknown audit option(s) {', '.join(unknown)}; the options are AuditConfig's fields")
    use_threads()  # as the CLI does: IMITAUDIT_THREADS, else the cores other running processes leave free
    with tempfile.TemporaryDirectory(prefix="imitaudit-") as tmp:
        demos_path = _demos_path(demos, Path(tmp))
        imitator_path = _imitator_path(imitator, demos_path, Path(tmp))
        return AuditResult(report=run_audit(AuditConfig(imitator=str(imitator_path), demos=str(demos_path), **options)))


def _demos_path(demos: Any, tmp: Path) -> Path:
    if isinstance(demos, Demonstrations):
        return demos.save(tmp / "demos.safetensors")
    if isinstance(demos, (str, os.PathLike)):
        return Path(demos)
    raise ValueError(f"demos must be a path or a Demonstrations, got {type(demos).__name__}")


def _imitator_path(imitator: Any, demos_path: Path, tmp: Path) -> Path:
    if isinstance(imitator, (str, os.PathLike)):
        return Path(imitator)
    from models.checkpoint import save_imitator
    from models.imitator import Imitator

    if isinstance(imitator, Imitator):
        demos = Demonstrations.load(demos_path)
        return save_imitator(imitator, tmp / "imitator.safetensors", env_id=demos.env_id, env_kwargs=demos.env_kwargs)
    raise ValueError(
        f"imitator must be a checkpoint path (.safetensors or .onnx) or a registry imitator, got "
        f"{type(imitator).__name__}"
    )
