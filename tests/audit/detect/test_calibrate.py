"""Calibration: conformal p-values keep the false-flag rate at alpha on null data; CUSUM favours sustained
departures."""

import math

import numpy as np
import pytest
import torch

from audit.detect.calibrate import (
    RULES,
    auroc,
    benjamini_hochberg,
    calibrate,
    conformal_pvalues,
    cusum,
    min_calibration_episodes,
    score_threshold,
)
from audit.detect.detectors import Episodes, MahalanobisDetector, assign_folds, cross_fit
from audit.detect.discriminate import DiscriminatorDetector
from audit.envs.features import StepView


def binomial_upper(n: int, p: float, sd: float = 4.0) -> float:
    return n * p + sd * math.sqrt(n * p * (1 - p))


def null_steps(rng, episodes, dim=4):
    """Episodes whose obs, actions and one tap all come from the same law: every class is the null."""
    lengths = rng.integers(3, 15, size=episodes)
    t = int(lengths.max())
    mask = torch.from_numpy(np.arange(t)[None, :] < lengths[:, None])
    obs = torch.from_numpy(rng.normal(size=(episodes, t, dim)).astype(np.float32)) * mask[..., None]
    actions = torch.from_numpy(rng.integers(0, 2, size=(episodes, t))) * mask
    core = torch.from_numpy(rng.normal(size=(episodes, t, 3)).astype(np.float32)) * mask[..., None]
    return Episodes(obs=obs, actions=actions, mask=mask, taps={"core": core})


def discriminators(hidden=16, steps=30):
    view = StepView(columns=torch.arange(4), grid=None, names=tuple("abcd"))
    return lambda: DiscriminatorDetector(view=view, n_actions=2, taps={"core": 3}, hidden=hidden, steps=steps)


@pytest.mark.parametrize("detector", ["discriminator", "mahalanobis"])
@pytest.mark.parametrize("rule", RULES)
def test_flagged_share_is_at_most_alpha_on_null_data_over_many_seeds(rule, detector):
    """Every score rule and every evidence kind: calibration and audited trajectories go through one scoring path."""
    alpha, seeds, n_test = 0.05, 40, 60
    make = discriminators() if detector == "discriminator" else (lambda: MahalanobisDetector(tap="core"))
    flagged = total = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        fit, cal, test = null_steps(rng, 60), null_steps(rng, 120), null_steps(rng, n_test)
        fitted = cross_fit(make, fit, cal, test, folds=3, seed=seed)
        result = calibrate(
            fitted.test_evidence, test.mask, fitted.cal_evidence, cal.mask, fitted.fold, alpha=alpha, rule=rule
        )
        flagged += int(result.flagged.sum())
        total += n_test
    assert flagged <= binomial_upper(total, alpha), (flagged, total)
    assert flagged > 0  # the bound is not met by never flagging


def test_conformal_pvalues_are_uniform_under_exchangeability():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        cal = rng.normal(size=99)
        hits += int(conformal_pvalues(rng.normal(size=1), cal)[0] <= 0.05)
    assert hits <= binomial_upper(2000, 0.05)
    assert hits >= 2000 * 0.05 - 4 * math.sqrt(2000 * 0.05 * 0.95)


def test_threshold_agrees_with_pvalues():
    rng = np.random.default_rng(1)
    cal = rng.exponential(size=199)
    tau = score_threshold(cal, 0.01)
    scores = np.linspace(0, cal.max() + 1, 500)
    p = conformal_pvalues(scores, cal)
    np.testing.assert_array_equal(p <= 0.01, scores > tau)
    assert score_threshold(cal[:50], 0.01) == math.inf  # too few to ever reach 0.01
    assert min_calibration_episodes(0.01) == 99 and min_calibration_episodes(0.05) == 19


def test_cusum_weighs_a_sustained_departure_over_a_slip():
    mask = torch.ones(2, 10, dtype=torch.bool)
    evidence = torch.zeros(2, 10)
    evidence[0, 4] = 3.0  # one slip
    evidence[1, 4:8] = 1.5  # sustained, smaller per step
    path = cusum(evidence, mask, torch.full((2,), 0.5))
    assert path[1].max() > path[0].max()
    assert evidence[0].max() > evidence[1].max()  # the max-step score would rank them the other way


def test_too_few_calibration_episodes_is_refused():
    ev = torch.zeros(2, 50, 4)
    with pytest.raises(ValueError, match="needs at least 99 held-out demonstration episodes, got 50"):
        calibrate(
            torch.zeros(10, 4),
            torch.ones(10, 4, dtype=torch.bool),
            ev,
            torch.ones(50, 4, dtype=torch.bool),
            np.zeros(10, dtype=np.int64),
            alpha=0.01,
        )


def test_cross_fitting_never_scores_a_trajectory_with_a_detector_that_saw_it():
    rng = np.random.default_rng(3)
    fit, cal, test = null_steps(rng, 20), null_steps(rng, 30), null_steps(rng, 25)
    fitted = cross_fit(discriminators(hidden=8, steps=5), fit, cal, test, folds=5, seed=0)
    for k, trained in enumerate(fitted.trained_on):
        scored = np.flatnonzero(fitted.fold == k)
        assert len(scored) == 5 and not set(trained) & set(scored)
        assert set(trained) | set(scored) == set(range(25))
        # the stored evidence of fold k is exactly detector k's
        torch.testing.assert_close(fitted.test_evidence[scored], fitted.detectors[k].evidence(test.subset(scored)))
    assert np.bincount(assign_folds(25, 5, 0)).tolist() == [5] * 5
    with pytest.raises(ValueError, match="at least 5 trajectories"):
        assign_folds(3, 5, 0)


def test_a_detector_refuses_to_score_before_it_is_fitted():
    rng = np.random.default_rng(4)
    for make in (discriminators(), lambda: MahalanobisDetector(tap="core")):
        with pytest.raises(RuntimeError, match="fit"):
            make().evidence(null_steps(rng, 3))


def test_benjamini_hochberg_and_auroc():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    flags, cutoff = benjamini_hochberg(p, 0.05)
    assert flags.tolist() == [True, True] + [False] * 8 and cutoff == 0.008
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([1.0])) == 0.5


def test_strength_is_on_the_calibration_scale_and_ranks_what_pvalues_tie():
    from audit.detect.calibrate import strength

    cal = np.random.default_rng(3).exponential(size=999)
    s = strength(np.array([np.median(cal), np.quantile(cal, 0.99), 50.0, 80.0]), cal, 0.01)
    assert abs(s[0]) < 1e-9 and abs(s[1] - 1.0) < 1e-9
    p = conformal_pvalues(np.array([50.0, 80.0]), cal)
    assert p[0] == p[1] and s[3] > s[2] > 1.0


def test_peak_rule_scores_the_strongest_step_and_respects_padding():
    from audit.detect.calibrate import paths

    evidence = torch.tensor([[0.1, 3.0, 0.2, 9.0], [0.5, 0.4, 0.3, 0.2]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    path = paths(evidence, mask, torch.zeros(2), "peak")
    assert torch.allclose(path[0, :3], torch.tensor([0.1, 3.0, 3.0])) and path[0, 3] == -math.inf
    assert path[1].max().item() == 0.5
    with pytest.raises(ValueError, match="unknown score rule"):
        paths(evidence, mask, torch.zeros(2), "mean")


def test_padding_never_changes_a_peak_score_nor_hosts_a_flag():
    """Evidence N(-3, 0.5): calibration episodes of 10 steps, audited episodes of 11 in a batch padded to 12. Padding
    once scored 0 (above every live step), and 19 of 20 audited trajectories were flagged."""
    gen = torch.Generator().manual_seed(0)
    cal_ev = torch.randn(1, 400, 10, generator=gen) * 0.5 - 3.0
    test_ev = torch.randn(20, 12, generator=gen) * 0.5 - 3.0
    test_mask = torch.zeros(20, 12, dtype=torch.bool)
    test_mask[:, :11] = True
    c = calibrate(
        test_ev,
        test_mask,
        cal_ev,
        torch.ones(400, 10, dtype=torch.bool),
        np.zeros(20, dtype=np.int64),
        alpha=0.05,
        rule="peak",
    )
    assert c.flagged.sum() <= 4  # exchangeable up to one step of length: about alpha, never nearly all
    assert np.allclose(c.score, test_ev[:, :11].max(dim=1).values.numpy())
    assert all(f < 11 for f in c.first_flag)
