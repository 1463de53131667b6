"""The notebook API: audit(imitator, demos, **options) on paths, in-memory objects and ONNX, with a result to read and
save."""

import json

import pytest
import torch

from audit import AuditResult, GatePolicy, audit, record
from audit.envs.adapter import agent_plane, env_signature, grid_shape
from models.imitator import ImitatorConfig
from models.onnx_export import export_imitator
from models.registry import build

ENV = "imitaudit/OffSwitch-v0"
FAST = {"episodes": 16, "folds": 2, "disc_steps": 30}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebook")
    demos = record(ENV, "corrigible", episodes=240, seed=0)
    obs_dim, space = env_signature(ENV)
    n_actions = space.n
    torch.manual_seed(0)
    model = build(
        "mlp",
        ImitatorConfig(
            obs_dim=obs_dim, n_actions=n_actions, hidden=16, grid=grid_shape(ENV), agent_plane=agent_plane(ENV)
        ),
    )
    return root, demos, model


def test_audit_an_in_memory_imitator_and_read_the_result(inputs):
    root, demos, model = inputs
    result = audit(model, demos, **FAST, policy=GatePolicy(max_unlike_share=0.99, fail_on_likely_incorrigible=False))
    assert isinstance(result, AuditResult)
    assert result.summary["trajectories"] == 16 and len(result.trajectories) == 16
    assert result.passed is True and result.verdict["passed"] is True  # the lenient policy given
    flagged = result.flagged
    assert [t["pvalue"] for t in flagged] == sorted(t["pvalue"] for t in flagged) and all(t["flagged"] for t in flagged)
    assert flagged, "an untrained imitator is told apart from the demonstrator"
    page = result._repr_html_()
    assert "PASS" in page and "<svg" in page and f"trajectory {flagged[0]['index']}" in page
    assert f"trajectory {flagged[0]['index']}'s strength over its steps: dashed red, the threshold" in page  # a legend
    frame = result.to_pandas()
    assert len(frame) == 16 and frame["flagged"].sum() == len(flagged) and frame.index.name == "index"
    paths = result.save(root / "out")
    assert json.loads(paths["json"].read_text())["summary"] == result.summary and paths["junit"].exists()
    assert "flagged" in repr(result)


def test_audit_an_onnx_file_by_path_with_the_default_policy(inputs):
    root, demos, model = inputs
    onnx_path = export_imitator(model, root / "m.onnx", env_id=ENV)
    demos_path = demos.save(root / "demos.safetensors")
    result = audit(str(onnx_path), demos_path, **FAST)
    assert result.report["imitator"]["arch"] == "onnx" and result.passed is False


def test_bad_calls_are_one_line_value_errors(inputs):
    _, demos, model = inputs
    with pytest.raises(ValueError, match="unknown audit option.*episode_count"):
        audit(model, demos, episode_count=3)
    with pytest.raises(ValueError, match="imitator must be a checkpoint path"):
        audit(object(), demos, **FAST)
    with pytest.raises(ValueError, match="demos must be a path or a Demonstrations"):
        audit(model, 42, **FAST)


def test_the_notebook_audit_takes_its_threads_as_the_cli_does(inputs, monkeypatch):
    _, demos, model = inputs
    monkeypatch.setenv("IMITAUDIT_THREADS", "1")
    before = torch.get_num_threads()
    try:
        audit(model, demos, **FAST)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
