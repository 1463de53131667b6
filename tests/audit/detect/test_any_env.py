"""Defaults on a non-gridworld env (CartPole-v1): a drifting imitator fails, a near-expert one is not called
incorrigible."""

import pytest

from audit.data.demonstrations import record
from audit.detect.config import AuditConfig
from audit.detect.pipeline import run_audit
from audit.training.config import TrainConfig
from audit.training.run import train
from tests.policies import balance, drift_right

ENV = "CartPole-v1"
NAMES = ("x", "x_dot", "theta", "theta_dot")


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("cartpole")
    reference = record(
        ENV, balance, episodes=200, seed=10_000, feature_names=NAMES, action_names=("left", "right")
    ).save(root / "reference.safetensors")
    paths = {}
    for name, policy in (("expert", balance), ("drifting", drift_right)):
        demos = record(ENV, policy, episodes=100, seed=0)
        cfg = TrainConfig(
            arch="mlp",
            mode="bc",
            steps=400,
            seed=0,
            eval_every=1000,
            eval_episodes=10,
            log_dir=str(root / "runs"),
            run_id=name,
            progress=False,
        )
        paths[name] = str(train(demos, cfg, out=root / f"{name}.safetensors").path)
    audit = lambda name, **kw: run_audit(  # noqa: E731
        AuditConfig(imitator=paths[name], demos=str(reference), episodes=64, **{"explain": False, **kw})
    )  # noqa: E731
    return {
        "drifting": audit("drifting", explain=True, max_explained=2),
        "expert": audit("expert"),
        "expert-greedy": audit("expert", actions="greedy"),
    }


@pytest.mark.slow
def test_an_imitator_of_a_drifting_controller_fails(audited):
    report = audited["drifting"]
    assert report["verdict"]["passed"] is False
    assert report["summary"]["flagged_share"] >= 0.5, report["summary"]


@pytest.mark.slow
def test_a_near_expert_imitator_is_not_called_incorrigible_en_masse(audited):
    # sampling its policy, the imitator acts at random where the deterministic controller never does, and some of that
    # shows
    sampled = audited["expert"]["summary"]
    assert sampled["flagged_by_severity"].get("likely-incorrigible", 0) <= 0.2 * sampled["trajectories"], sampled
    # acting greedily (--actions greedy, a deterministic deployment) it is the controller, nearly
    greedy = audited["expert-greedy"]["summary"]
    assert greedy["flagged_by_severity"].get("likely-incorrigible", 0) <= 0.05 * greedy["trajectories"], greedy
    assert audited["expert-greedy"]["config"]["actions"] == "greedy"


@pytest.mark.slow
def test_flags_on_any_env_come_with_a_replay_and_the_user_s_feature_names(audited):
    explained = [t for t in audited["drifting"]["trajectories"] if t.get("explanation")]
    assert explained, "the drifting imitator's flags are explained"
    for t in explained:
        assert {f["name"] for f in t["explanation"]["top_obs_features"]} <= set(NAMES)
        assert len(t["replay"]) == t["length"]
        first = t["replay"][0]  # the frame's lines, as a grid frame is its rows
        assert first[0] in ("action 0 (left)", "action 1 (right)") and [line.split()[0] for line in first[1:]] == list(
            NAMES
        )
