"""imitaudit's science, public API: what the service and other callers may use.

Importing ``audit`` registers the built-in Gymnasium environments.
"""

from audit.envs import WORLDS, resolve_env_id
from audit.gate import GatePolicy, verdict
from audit.pipeline import STAGES, AuditConfig, check_demonstrations, check_imitator, run_audit
from audit.report import SCHEMA as REPORT_SCHEMA
from audit.calibrate import min_calibration_episodes
from audit.demonstrations import Demonstrations, record
from audit.train import TrainConfig, train
from audit.report import svg_heatmap, svg_score, to_html, to_json, to_junit, to_markdown, validate, write_outputs

__all__ = [
    "WORLDS", "resolve_env_id", "GatePolicy", "verdict", "STAGES", "AuditConfig", "check_demonstrations",
    "check_imitator", "run_audit", "REPORT_SCHEMA", "to_html", "to_json", "to_junit", "to_markdown", "validate",
    "write_outputs", "svg_heatmap", "svg_score", "min_calibration_episodes", "Demonstrations", "record", "TrainConfig", "train",
]
