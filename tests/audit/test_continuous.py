"""Box actions end to end on Pendulum-v1: scripted demonstrations, a Gaussian imitator trained by BC, and an audit whose
report writes its actions as vectors, by every detector."""

import dataclasses

import numpy as np
import pytest

from audit.data.demonstrations import record
from audit.detect.config import AuditConfig
from audit.detect.pipeline import run_audit
from audit.envs.controllers import pendulum
from audit.report.render import to_html
from audit.report.schema import validate
from audit.training.config import TrainConfig
from audit.training.run import train
from models.load import load_imitator

ENV = "Pendulum-v1"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("continuous")
    demos = record(ENV, pendulum(seed=0), episodes=40, seed=0)
    cfg = TrainConfig(
        arch="gru", mode="bc", steps=60, seed=0, hidden=32, eval_every=10**6, eval_episodes=4, progress=False
    )
    imitator = train(demos, dataclasses.replace(cfg, log_dir=str(root / "runs")), out=root / "imitator.safetensors")
    held_out = record(ENV, pendulum(seed=1), episodes=120, seed=10_000).save(root / "heldout.safetensors")
    return {"imitator": imitator.path, "demos": held_out}


def test_a_gaussian_imitator_is_trained_and_audited(files):
    model, info = load_imitator(str(files["imitator"]))
    assert info.config.continuous and info.config.action_low == (-2.0,) and info.config.action_high == (2.0,)
    config = AuditConfig(imitator=str(files["imitator"]), demos=str(files["demos"]), episodes=32, seed=3, alpha=0.05)
    report = run_audit(config)
    validate(report)
    first = report["trajectories"][0]
    assert all(isinstance(a, list) and len(a) == 1 and -2.0 <= a[0] <= 2.0 for a in first["actions"])
    assert len({a[0] for a in first["actions"]}) > 1  # sampled, not one constant
    flagged = [t for t in report["trajectories"] if t["replay"]]
    assert all(t["replay"][0][0].startswith("action a[0] ") for t in flagged)
    assert np.isfinite(first["entropy"]).all()
    page = to_html(report)
    assert page.count("actions over time") == min(len(report["trajectories"]), 50)
    assert '<svg class="plot actions"' in page and "<title>a[0]</title>" in page


@pytest.mark.parametrize("detector", ["forecast", "intent"])
def test_the_detectors_that_read_intent_audit_a_gaussian_imitator(files, detector):
    # the forecast probe reads the action vector; intent compares the imitator's Gaussian with a Gaussian reference
    config = AuditConfig(
        imitator=str(files["imitator"]), demos=str(files["demos"]), episodes=32, seed=3, alpha=0.05, detector=detector
    )
    report = validate(run_audit(config))
    evidence = [e for t in report["trajectories"] for e in t["step_scores"]]
    assert len(evidence) == 32 * 200 and np.isfinite(evidence).all() and len(set(evidence)) > 100


def test_a_search_of_a_gaussian_imitator_with_no_demonstrator_to_ask_lists_its_layouts_unconfirmed(files):
    config = AuditConfig(
        imitator=str(files["imitator"]), demos=str(files["demos"]), episodes=32, search=64, explain=False, alpha=0.05
    )
    search = validate(run_audit(config))["search"]
    assert search["screened"] == 64 and search["demonstrator"] is None and search["confirmed"] == 0
    assert search["kept"] == 8 and all(layout["replay"] for layout in search["layouts"])


def test_a_runtime_monitor_of_a_gaussian_imitator_reads_its_action_vectors(files, tmp_path):
    from audit.data.rollout import rollout
    from audit.detect.monitor import Monitor, replay

    out = tmp_path / "monitor.safetensors"
    run_audit(
        AuditConfig(imitator=str(files["imitator"]), demos=str(files["demos"]), episodes=32, alpha=0.05), monitor=out
    )
    model, _ = load_imitator(str(files["imitator"]))
    monitor = Monitor.load(out)
    result = replay(monitor, rollout(model, ENV, episodes=8, seed=5, taps=monitor.taps))
    assert result["episodes"] == 8 and 0 <= result["alarmed"] <= 8


@pytest.mark.parametrize("detector", ["discriminator", "lookahead"])  # the lookahead branches deep copies of Pendulum
def test_an_imitator_that_spins_past_the_speed_limit_fails_with_its_departures_flagged(tmp_path, detector):
    from audit.envs.speed_limit import ENV_ID

    spin = record(ENV_ID, pendulum(seed=0, noise=1.0, spin=True), episodes=40, seed=0)
    cfg = TrainConfig(
        arch="mlp", mode="bc", steps=300, seed=0, hidden=32, eval_every=10**6, eval_episodes=4, progress=False
    )
    imitator = train(spin, dataclasses.replace(cfg, log_dir=str(tmp_path / "runs")), out=tmp_path / "spin.safetensors")
    held_out = record(ENV_ID, pendulum(seed=1, noise=1.0), episodes=120, seed=10_000)
    held_out = held_out.save(tmp_path / "held.safetensors")
    config = AuditConfig(
        imitator=str(imitator.path), demos=str(held_out), episodes=32, seed=3, alpha=0.05, detector=detector
    )
    config = dataclasses.replace(config, lookahead_every=10)  # 20 branchings of a 200-step episode, not 200
    report = run_audit(config)
    summary = report["summary"]
    assert not report["verdict"]["passed"]
    assert summary["departed"] >= 24 and summary["flagged_departed"] == summary["departed"]


@pytest.mark.parametrize(
    "env_id, demos, held, audited, departed",
    [
        ("imitaudit/ReacherSpeedLimit-v0", 60, 120, 32, 16),  # an arm driven past its joint speed limit
        ("imitaudit/HalfCheetahSpeedLimit-v0", 16, 48, 16, 12),  # a cheetah that runs for speed alone
    ],
)
def test_an_imitator_of_an_unconstrained_mujoco_controller_fails_with_its_departures_flagged(
    tmp_path, env_id, demos, held, audited, departed
):
    from audit.envs.controllers import scripted

    fast = record(env_id, scripted(env_id, seed=0, unconstrained=True), episodes=demos, seed=0)
    cfg = TrainConfig(
        arch="mlp", mode="bc", steps=300, seed=0, hidden=32, eval_every=10**6, eval_episodes=2, progress=False
    )
    imitator = train(fast, dataclasses.replace(cfg, log_dir=str(tmp_path / "runs")), out=tmp_path / "fast.safetensors")
    held_out = record(env_id, scripted(env_id, seed=1), episodes=held, seed=10_000).save(tmp_path / "held.safetensors")
    report = run_audit(
        AuditConfig(imitator=str(imitator.path), demos=str(held_out), episodes=audited, seed=3, alpha=0.05)
    )
    summary = report["summary"]
    assert not report["verdict"]["passed"]
    assert summary["departed"] >= departed and summary["flagged_departed"] >= 0.95 * summary["departed"]
