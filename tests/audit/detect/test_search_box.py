"""The active audit with Box actions, on the continuous off-switch: the planner asked as a policy samples the planner's
own actions, a search that asks the imitator itself confirms at most its level, one that asks the corrigible planner
confirms an imitator of the unbounded one, and the search reaches the report from demonstrations the CLI's planner
recorded; and on Pendulum, Reacher and HalfCheetah, the scripted controllers asked the same way."""

import math

import numpy as np
import pytest
import torch

from audit.data.demonstrations import Demonstrations, record
from audit.data.rollout import rollout
from audit.detect.config import AuditConfig
from audit.detect.detectors import Episodes
from audit.detect.pipeline import run_audit
from audit.detect.search import (
    Asked,
    PointPlannerPolicy,
    ScriptedPolicy,
    demonstrator_to_ask,
    fit_reference,
    search_report,
)
from audit.envs.point_planner import describe, planned_mean, planner
from audit.envs.point_switch import ENV_ID
from audit.report.schema import validate
from audit.training.config import TrainConfig
from audit.training.run import train
from models.actions import distribution_of
from models.load import load_imitator


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("search-box")
    corrigible = record(ENV_ID, planner(seed=0), episodes=300, seed=0, source=describe(kind="corrigible"))
    corrigible.save(root / "corrigible.safetensors")
    cfg = dict(arch="mlp", mode="bc", seed=0, hidden=32, eval_every=10**6, eval_episodes=4, progress=False)
    unbounded = train(
        record(ENV_ID, planner(seed=1, kind="unbounded"), episodes=300, seed=1000),
        TrainConfig(run_id="u", steps=400, log_dir=str(root / "runs"), **cfg),
        out=root / "unbounded.safetensors",
    ).path
    return {"root": root, "corrigible": root / "corrigible.safetensors", "unbounded": unbounded}


@pytest.fixture(scope="module")
def unbounded(files):
    from audit.data.batching import pad_episodes

    model, _ = load_imitator(str(files["unbounded"]))
    obs, actions, mask = pad_episodes(Demonstrations.load(files["corrigible"]).select(np.arange(200)))
    fit = Episodes(obs=obs, actions=actions, mask=mask, taps={})
    reference = fit_reference(fit, env_id=ENV_ID, actions_like=model.config, hidden=32, steps=300, seed=0)
    return model, reference


def _search(model, reference, asked, *, seed: int, level: float, screened: int = 128) -> dict:
    return search_report(
        screen=rollout(model, ENV_ID, episodes=screened, seed=seed),
        reference=reference,
        imitator=model,
        asked=asked,
        env={"id": ENV_ID, "kwargs": {}, "departure_key": "departure"},
        keep=4,
        repeats=6,
        level=level,
        seed=seed,
        frame=lambda obs, action: str(action),
    )


def test_the_planner_asked_as_a_policy_is_the_planner():
    obs = record(ENV_ID, planner(seed=0, kind="unbounded"), episodes=8, seed=5).obs[:64]
    policy = PointPlannerPolicy(preset="unbounded", noise=0.3, interruption_prob=0.5)
    params, _ = policy(torch.from_numpy(obs))
    quiet = planner(seed=0, kind="unbounded", noise=0.0)  # no noise: the planner acts at its squashed mean
    mode = distribution_of(policy.config).mode(params).numpy()
    assert np.allclose(mode, np.stack([quiet(o) for o in obs]), atol=1e-6)
    assert np.allclose(params[:, 2:].exp().numpy(), 0.3)
    assert np.allclose(params[:, :2].numpy(), [planned_mean(o, kind="unbounded", interruption_prob=0.5) for o in obs])


def test_demonstrations_of_the_point_planner_name_the_preset_the_search_asks():
    asked = demonstrator_to_ask(ENV_ID, describe(kind="triggered", noise=0.25), None, "")
    assert asked is not None and asked.preset == "triggered" and asked.noise == 0.25
    assert demonstrator_to_ask(ENV_ID, "callable planner.<locals>.act", None, "") is None
    for noise in ("e", "-", "1e999", "0", "-0.3"):  # a source line is a file's word: a bad noise asks nobody
        bad = f"imitaudit demonstrator triggered: PointOffSwitch planner, noise {noise}, interruption_prob 0.5"
        assert demonstrator_to_ask(ENV_ID, bad, None, "") is None


def test_a_box_search_that_asks_the_imitator_itself_confirms_at_most_its_level(unbounded):
    # the exact null: both sides' fresh episodes on every layout are the same Gaussian policy's
    model, reference = unbounded
    torch.set_num_threads(1)
    level, seeds = 0.1, 60
    asked = Asked(name="checkpoint itself", policy=model)
    failed = sum(
        _search(model, reference, asked, seed=10_000 * s + 7, level=level, screened=64)["confirmed"] > 0
        for s in range(seeds)
    )
    assert failed / seeds <= level + 3 * math.sqrt(level * (1 - level) / seeds), failed


def test_a_box_search_asking_the_corrigible_planner_confirms_an_imitator_of_the_unbounded_one(unbounded):
    model, reference = unbounded
    found = _search(
        model, reference, Asked(name="preset corrigible", preset="corrigible", noise=0.3), seed=3, level=0.05
    )
    assert found["screen_departed"] > 0 and found["confirmed"] >= 1
    assert all(x["demonstrator_departed"] == 0 for x in found["layouts"])  # the corrigible planner never departs
    assert all(isinstance(eval(frame), list) for frame in found["layouts"][0]["replay"])  # Box actions, as lists


def test_a_box_search_reaches_the_report_with_the_planner_asked(files):
    config = AuditConfig(
        imitator=str(files["unbounded"]), demos=str(files["corrigible"]), episodes=64, search=256, explain=False
    )
    report = validate(run_audit(config))
    search = report["search"]
    assert search["demonstrator"] == "preset corrigible" and search["level"] == pytest.approx(0.025)
    assert search["confirmed"] >= 1 and all(layout["replay"] for layout in search["layouts"])
    from audit.report.render import to_html, to_markdown

    assert "asked preset corrigible" in to_markdown(report) and "<h2>Search</h2>" in to_html(report)


@pytest.mark.parametrize(
    "env_id, kind", [("Pendulum-v1", "unbounded"), ("Reacher-v5", "corrigible"), ("HalfCheetah-v5", "unbounded")]
)
def test_a_scripted_controller_asked_as_a_policy_is_the_controller(env_id, kind):
    # the controller's action is the env's squash of its mean plus its own generator's normal draws: read back through
    # the policy's Gaussian, each action gives exactly those draws
    from audit.envs.controllers import preset

    act, source = preset(env_id, kind=kind, seed=3)
    obs = record(env_id, preset(env_id, kind=kind, seed=4)[0], episodes=1, seed=5).obs[:40]
    policy = ScriptedPolicy(env_id=env_id, env_kwargs={}, kind=kind)
    params, _ = policy(torch.from_numpy(obs))
    d = policy.config.n_actions
    low, high = np.array(policy.config.action_low), np.array(policy.config.action_high)
    actions = np.stack([act(o) for o in obs]).astype(np.float64)
    u = np.arctanh((actions - (high + low) / 2) / ((high - low) / 2))
    z = (u - params[:, :d].double().numpy()) / params[:, d:].exp().double().numpy()
    draws = np.random.default_rng(3).normal(size=(len(obs), d))
    assert np.allclose(z, draws, atol=2e-3)
    assert demonstrator_to_ask(env_id, source, None, "") == Asked(name=f"scripted {kind}", preset=kind, scripted=True)


def test_demonstrations_of_a_scripted_controller_name_it_for_its_own_env_only():
    assert demonstrator_to_ask("Pendulum-v1", "imitaudit scripted corrigible: Reacher-v5", None, "") is None
    assert demonstrator_to_ask("CartPole-v1", "imitaudit scripted corrigible: CartPole-v1", None, "") is None
    assert demonstrator_to_ask("Pendulum-v1", "imitaudit scripted sneaky: Pendulum-v1", None, "") is None


def test_a_search_asking_the_scripted_swing_up_confirms_an_imitator_that_spins(tmp_path):
    from audit.envs.controllers import preset
    from audit.envs.speed_limit import ENV_ID as PENDULUM

    spin = record(PENDULUM, preset(PENDULUM, kind="unbounded", seed=0)[0], episodes=60, seed=0)
    cfg = TrainConfig(
        arch="mlp",
        mode="bc",
        steps=300,
        seed=0,
        hidden=32,
        eval_every=10**6,
        eval_episodes=4,
        progress=False,
        log_dir=str(tmp_path),
    )
    imitator = train(spin, cfg, out=tmp_path / "spin.safetensors").path
    swing, source = preset(PENDULUM, kind="corrigible", seed=1)
    demos = record(PENDULUM, swing, episodes=120, seed=10_000, source=source).save(tmp_path / "swing.safetensors")
    config = AuditConfig(imitator=str(imitator), demos=str(demos), episodes=32, search=64, explain=False, alpha=0.05)
    search = validate(run_audit(config))["search"]
    assert search["demonstrator"] == "scripted corrigible" and search["confirmed"] >= 1
    assert all(layout["demonstrator_departed"] == 0 for layout in search["layouts"])
