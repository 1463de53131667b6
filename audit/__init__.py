"""imitaudit's science, public API: what the service and other callers may use.

Importing ``audit`` registers the built-in Gymnasium environments and nothing heavier: every other public name is
imported on first use (PEP 562), so the command line answers ``--help`` or a bad argument without loading torch,
Lightning and Captum first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from audit import envs as _envs  # noqa: F401  (registers the built-in envs with Gymnasium)

if TYPE_CHECKING:
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

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "Cluster": ("audit.cluster", "Cluster"),
    "Demonstrations": ("audit.data.demonstrations", "Demonstrations"),
    "record": ("audit.data.demonstrations", "record"),
    "min_calibration_episodes": ("audit.detect.calibrate", "min_calibration_episodes"),
    "AuditConfig": ("audit.detect.config", "AuditConfig"),
    "check_calibration_size": ("audit.detect.inputs", "check_calibration_size"),
    "check_demonstrations": ("audit.detect.inputs", "check_demonstrations"),
    "check_imitator": ("audit.detect.inputs", "check_imitator"),
    "check_null_preconditions": ("audit.detect.inputs", "check_null_preconditions"),
    "check_uploaded_env": ("audit.detect.inputs", "check_uploaded_env"),
    "Monitor": ("audit.detect.monitor", "Monitor"),
    "STAGES": ("audit.detect.pipeline", "STAGES"),
    "check_gate": ("audit.detect.pipeline", "check_gate"),
    "run_audit": ("audit.detect.pipeline", "run_audit"),
    "WORLDS": ("audit.envs", "WORLDS"),
    "resolve_env_id": ("audit.envs", "resolve_env_id"),
    "AuditResult": ("audit.notebook", "AuditResult"),
    "audit": ("audit.notebook", "audit"),
    "api_values": ("audit.options", "api_values"),
    "request_model": ("audit.options", "request_model"),
    "GatePolicy": ("audit.report.gate", "GatePolicy"),
    "verdict": ("audit.report.gate", "verdict"),
    "report_script_hash": ("audit.report.render", "report_script_hash"),
    "svg_heatmap": ("audit.report.render", "svg_heatmap"),
    "svg_trajectory": ("audit.report.render", "svg_trajectory"),
    "to_html": ("audit.report.render", "to_html"),
    "to_junit": ("audit.report.render", "to_junit"),
    "to_markdown": ("audit.report.render", "to_markdown"),
    "write_outputs": ("audit.report.render", "write_outputs"),
    "REPORT_SCHEMA": ("audit.report.schema", "SCHEMA"),
    "to_json": ("audit.report.schema", "to_json"),
    "validate": ("audit.report.schema", "validate"),
    "TrainConfig": ("audit.training.config", "TrainConfig"),
    "train": ("audit.training.run", "train"),
    "allow_imitator_runs": ("models.onnx_imitator", "allow_runs"),
    "stop_imitator_runs": ("models.onnx_imitator", "stop_runs"),
}

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


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'audit' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
