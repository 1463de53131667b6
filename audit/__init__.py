"""imitaudit's science, public API: what the service and other callers may use.

Importing ``audit`` registers the built-in Gymnasium environments.
"""

from audit.cluster import Cluster
from audit.data.demonstrations import Demonstrations, record
from audit.detect.calibrate import min_calibration_episodes
from audit.detect.config import AuditConfig
from audit.detect.inputs import (
    check_calibration_size,
    check_demonstrations,
    check_imitator,
    check_null_preconditions,
    check_uploaded_env,
)
from audit.detect.monitor import Monitor
from audit.detect.pipeline import STAGES, check_gate, run_audit
from audit.envs import WORLDS, resolve_env_id
from audit.notebook import AuditResult, audit
from audit.options import api_values, request_model
from audit.report.gate import GatePolicy, verdict
from audit.report.render import (
    report_script_hash,
    svg_heatmap,
    svg_trajectory,
    to_html,
    to_junit,
    to_markdown,
    write_outputs,
)
from audit.report.schema import SCHEMA as REPORT_SCHEMA
from audit.report.schema import to_json, validate
from audit.training.config import TrainConfig
from audit.training.run import train
from models.onnx_imitator import allow_runs as allow_imitator_runs
from models.onnx_imitator import stop_runs as stop_imitator_runs

__all__ = [
    "WORLDS",
    "resolve_env_id",
    "GatePolicy",
    "verdict",
    "STAGES",
    "AuditConfig",
    "check_demonstrations",
    "check_imitator",
    "check_uploaded_env",
    "check_calibration_size",
    "check_null_preconditions",
    "run_audit",
    "REPORT_SCHEMA",
    "to_html",
    "to_json",
    "to_junit",
    "to_markdown",
    "validate",
    "write_outputs",
    "svg_heatmap",
    "svg_trajectory",
    "report_script_hash",
    "min_calibration_episodes",
    "Demonstrations",
    "record",
    "TrainConfig",
    "train",
    "api_values",
    "request_model",
    "Monitor",
    "audit",
    "AuditResult",
    "Cluster",
    "stop_imitator_runs",
    "allow_imitator_runs",
    "check_gate",
]
