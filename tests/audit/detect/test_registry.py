"""The detector registry: docs/detectors.md's example registers and audits as written; names are checked in one
place."""

import re
from pathlib import Path

import pytest

from audit.detect.config import AuditConfig
from audit.detect.pipeline import run_audit
from audit.detect.registry import REGISTRY, detector_class, register

ROOT = Path(__file__).resolve().parents[3]


def test_the_documented_detector_registers_and_audits(tmp_path):
    from audit.data.demonstrations import record
    from models.checkpoint import save_imitator
    from models.imitator import ImitatorConfig
    from models.registry import build

    block = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "detectors.md").read_text(), flags=re.S).group(1)
    assert len(block.strip().splitlines()) <= 16
    namespace: dict = {}
    exec(compile(block, "docs/detectors.md", "exec"), namespace)  # our own documentation, not an uploaded file
    try:
        assert detector_class("action-rarity") is namespace["ActionRarity"]
        env = "imitaudit/OffSwitch-v0"
        demos = record(env, "corrigible", episodes=120, seed=0).save(tmp_path / "demos.safetensors")
        imitator = save_imitator(
            build("mlp", ImitatorConfig(obs_dim=406, n_actions=5, hidden=8)), tmp_path / "imi.safetensors", env_id=env
        )
        report = run_audit(
            AuditConfig(
                imitator=str(imitator),
                demos=str(demos),
                episodes=16,
                alpha=0.05,
                detector="action-rarity",
                explain=False,
            )
        )
        assert report["config"]["detector"] == "action-rarity" and len(report["trajectories"]) == 16
        # an untrained imitator acts nothing like the planner: the batch as a whole is shown unlike the demonstrator's
        assert report["summary"]["collective_pvalue"] <= 0.05 and not report["verdict"]["passed"]
    finally:
        REGISTRY.pop("action-rarity", None)


def test_unknown_and_clashing_names_are_refused_with_one_line():
    with pytest.raises(ValueError, match="unknown detector 'nope'; known: combined, discriminator"):
        detector_class("nope")
    with pytest.raises(ValueError, match="detector must be one of"):
        AuditConfig(imitator="a", demos="b", detector="nope")

    class Impostor(REGISTRY["discriminator"]):
        name = "discriminator"

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
