"""Intent evidence: references fitted on fit demonstrations only, and a flag before the departing step where intent
shows first."""

import numpy as np
import pytest
import torch

from audit.detect.calibrate import calibrate
from audit.detect.detectors import Episodes, cross_fit
from audit.detect.discriminate import DiscriminatorDetector
from audit.detect.intent import IntentDetector, fit_reference_policy
from audit.envs.features import StepView

DIM, ACTIONS, T = 4, 3, 8


def demonstrations(rng, n, *, noise=0.1):
    """A demonstrator that takes action 0, with a little noise; obs carry nothing about the action."""
    obs = torch.from_numpy(rng.normal(size=(n, T, DIM)).astype(np.float32))
    actions = torch.from_numpy(np.where(rng.random((n, T)) < noise, rng.integers(0, ACTIONS, (n, T)), 0))
    p = torch.tensor([1 - noise + noise / ACTIONS] + [noise / ACTIONS] * (ACTIONS - 1))
    head = p.log().expand(n, T, ACTIONS).clone()  # an imitator that intends exactly what the demonstrator does
    return Episodes(obs=obs, actions=actions, mask=torch.ones(n, T, dtype=torch.bool), taps={"head": head})


def test_references_learn_from_the_episodes_they_are_given_only():
    rng = np.random.default_rng(0)
    fit = demonstrations(rng, 40)
    # calibration episodes of another behaviour: action 2 everywhere
    cal = Episodes(obs=fit.obs, actions=torch.full((40, T), 2), mask=fit.mask, taps=fit.taps)
    policy = fit_reference_policy(fit, n_actions=ACTIONS, grid=None, hidden=16, steps=150, seed=0)
    with torch.no_grad():
        pred = policy.sequence(cal.obs, cal.mask).argmax(-1)
    assert (pred == 0).float().mean() > 0.9  # what fit taught, not what cal holds
    with pytest.raises(ValueError, match="at least one demonstration step"):
        fit_reference_policy(
            Episodes(obs=fit.obs[:1], actions=fit.actions[:1], mask=torch.zeros(1, T, dtype=torch.bool), taps={}),
            n_actions=ACTIONS,
            grid=None,
            hidden=8,
            steps=1,
            seed=0,
        )


def test_intent_flags_before_the_departing_step_where_behaviour_cannot():
    """Departing trajectories intend action 1 from step 2 but act like the demonstrator until step 5."""
    rng = np.random.default_rng(1)
    fit, cal = demonstrations(rng, 200), demonstrations(rng, 300)
    test = demonstrations(rng, 80)
    departing = np.arange(60, 80)
    head, actions = test.taps["head"].clone(), test.actions.clone()
    head[departing, 2:6] = torch.tensor([0.0, 5.0, 0.0])
    actions[departing, :5] = 0
    actions[departing, 5] = 1
    test = Episodes(obs=test.obs, actions=actions, mask=test.mask, taps={"head": head})
    shared: dict = {}
    makers = {
        "intent": lambda: IntentDetector(n_actions=ACTIONS, grid=None, hidden=16, steps=200, shared=shared),
        "behaviour": lambda: DiscriminatorDetector(
            view=StepView(columns=torch.arange(DIM), grid=None, names=tuple("abcd")),
            n_actions=ACTIONS,
            taps={},
            hidden=16,
            steps=100,
        ),
    }
    first = {}
    for name, make in makers.items():
        fitted = cross_fit(make, fit, cal, test, folds=2, seed=0)
        result = calibrate(fitted.test_evidence, test.mask, fitted.cal_evidence, cal.mask, fitted.fold, alpha=0.05)
        first[name] = np.where(result.flagged[departing], result.first_flag[departing], 99)
        assert result.flagged[:60].mean() <= 0.05 + 4 * np.sqrt(0.05 * 0.95 / 60), name
    assert (first["intent"] < 5).mean() >= 0.9  # flagged on the approach
    assert (first["behaviour"] < 5).mean() == 0.0  # nothing to see before the divergent action


def gaussian_demonstrations(rng, n, *, std=0.3):
    """A ``Box`` demonstrator whose 2-D action is drawn around 0 whatever it sees; its imitator's head says so."""
    obs = torch.from_numpy(rng.normal(size=(n, T, DIM)).astype(np.float32))
    actions = torch.from_numpy((std * rng.normal(size=(n, T, 2))).astype(np.float32))
    head = torch.cat([torch.zeros(n, T, 2), torch.full((n, T, 2), float(np.log(std)))], dim=-1)
    return Episodes(obs=obs, actions=actions, mask=torch.ones(n, T, dtype=torch.bool), taps={"head": head})


def test_intent_of_a_gaussian_imitator_flags_before_its_actions_diverge():
    """Box actions: departing trajectories intend a mean of 1.5 from step 2 but act like the demonstrator until step
    5; the references are unbounded Gaussians, and the KL is the Gaussians'."""
    from models.imitator import ImitatorConfig

    rng = np.random.default_rng(2)
    fit, cal, test = (
        gaussian_demonstrations(rng, 200),
        gaussian_demonstrations(rng, 300),
        gaussian_demonstrations(rng, 80),
    )
    departing = np.arange(60, 80)
    head, actions = test.taps["head"].clone(), test.actions.clone()
    head[departing, 2:, :2] = 1.5
    actions[departing, 5:] += 1.5
    test = Episodes(obs=test.obs, actions=actions, mask=test.mask, taps={"head": head})
    like = ImitatorConfig(obs_dim=DIM, n_actions=2, continuous=True)
    shared: dict = {}
    make = lambda: IntentDetector(n_actions=2, grid=None, hidden=16, steps=300, shared=shared, actions_like=like)  # noqa: E731
    fitted = cross_fit(make, fit, cal, test, folds=2, seed=0)
    result = calibrate(fitted.test_evidence, test.mask, fitted.cal_evidence, cal.mask, fitted.fold, alpha=0.05)
    assert result.flagged[:60].mean() <= 0.05 + 4 * np.sqrt(0.05 * 0.95 / 60)
    first = np.where(result.flagged[departing], result.first_flag[departing], 99)
    assert (first < 5).mean() >= 0.9
    detector = make()
    detector.fit(fit, test, seed=0)
    step = detector.explain(test, int(departing[0]), fit)["top_steps"][0]
    assert step["step"] >= 2 and step["imitator_action"] == [1.5, 1.5] and max(map(abs, step["reference_action"])) < 0.3
