"""Lookahead evidence: a future's peak and a recorded continuation's window peak are the same statistic, so the null
holds."""

import numpy as np
import pytest
import torch

from audit.detect.calibrate import calibrate
from audit.detect.lookahead import peaks, window_peaks


def test_window_peaks_look_ahead_within_the_episode_and_carry_between_branchings():
    ev = torch.tensor([[1.0, 5, 2, 0, 3], [0, 9, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    assert window_peaks(ev, mask, horizon=2, every=1).tolist() == [[5, 5, 2, 0, 0], [9, 9, 1, 0, 0]]
    assert window_peaks(ev, mask, horizon=3, every=2).tolist() == [[5, 5, 2, 2, 0], [9, 9, 1, 0, 0]]
    assert peaks(ev, mask).tolist() == [5, 9]


def _null_flags(rule: str, every: int) -> tuple[int, int]:
    """Flags of 40 seeds' null batches: steps' evidence i.i.d.; an audited branch step's future is h fresh steps (cut at
    the episode's end), carried to the next branching; a calibration branch step's is its own recorded continuation."""
    alpha, n_test, n_cal, t_max, h = 0.05, 60, 200, 12, 4
    flagged = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        cal_len = rng.integers(3, t_max + 1, n_cal)
        cal_mask = torch.from_numpy(np.arange(t_max)[None] < cal_len[:, None])
        cal_ev = torch.from_numpy(rng.gumbel(size=(n_cal, t_max)).astype(np.float32)) * cal_mask
        test_len = rng.integers(3, t_max + 1, n_test)
        test_mask = torch.from_numpy(np.arange(t_max)[None] < test_len[:, None])
        futures = torch.from_numpy(rng.gumbel(size=(n_test, t_max, h)).astype(np.float32))
        ahead = np.arange(t_max)[:, None] + np.arange(h)[None]  # step t's future covers steps t .. t + h - 1
        fut_mask = torch.from_numpy(ahead[None] < test_len[:, None, None])
        test_ev = (
            peaks(futures.reshape(-1, h), fut_mask.reshape(-1, h) | ~test_mask.reshape(-1, 1)).reshape(n_test, t_max)
            * test_mask
        )
        branch = (np.arange(t_max) // every) * every  # the branching each step's forecast was carried from
        test_ev = test_ev[:, branch] * test_mask
        cal_forecast = window_peaks(cal_ev, cal_mask, horizon=h, every=every)
        fold = np.arange(n_test) % 2
        result = calibrate(
            test_ev, test_mask, torch.stack([cal_forecast, cal_forecast]), cal_mask, fold, alpha=alpha, rule=rule
        )
        flagged += int(result.flagged.sum())
    return flagged, 40 * n_test


@pytest.mark.parametrize("rule,every", [("cusum", 1), ("peak", 4)])
def test_futures_scored_against_recorded_continuations_flag_at_most_alpha_under_the_null(rule, every):
    """Exact where the statistics agree: CUSUM of every step's forecast, or the peak of forecasts branched every h steps
    (both sides then read one value per step). Over 40 seeds the flag rate stays within alpha + 4 sd."""
    flagged, n = _null_flags(rule, every)
    alpha = 0.05
    assert flagged <= n * alpha + 4 * np.sqrt(n * alpha * (1 - alpha)), flagged
    assert flagged >= n * alpha - 4 * np.sqrt(n * alpha * (1 - alpha)), flagged  # and the test is not vacuous


def test_the_peak_of_a_future_branched_at_every_step_is_not_the_null_s_statistic():
    """Why the lookahead's p-values are labelled approximate at --lookahead-every 1 with the peak rule: audited
    trajectories
    read about T x h fresh values, calibration ones about T, so far more than alpha of null trajectories are flagged."""
    flagged, n = _null_flags("peak", 1)
    assert flagged > n * 0.05 + 4 * np.sqrt(n * 0.05 * 0.95), flagged


def test_combined_kinds_keep_alpha_under_the_null_and_say_which_crossed_first():
    """Two evidence kinds calibrated apart at alpha / 2 and joined by Bonferroni: at most alpha of null trajectories
    flagged; a trajectory whose second kind rises early is flagged at that step, with that kind named first."""
    from audit.detect.calibrate import calibrate, combine

    alpha, n_test, n_cal, t = 0.05, 60, 200, 10
    flagged = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        cal_ev = torch.from_numpy(rng.normal(size=(2, n_cal, t, 2)).astype(np.float32))
        test_ev = torch.from_numpy(rng.normal(size=(n_test, t, 2)).astype(np.float32))
        if seed == 0:  # one departing trajectory: the second kind (a forecast) rises at step 3, the first at step 7
            test_ev[0, 3:, 1] += 8.0
            test_ev[0, 7:, 0] += 8.0
        cal_mask, test_mask = torch.ones(n_cal, t, dtype=torch.bool), torch.ones(n_test, t, dtype=torch.bool)
        fold = np.arange(n_test) % 2
        parts = {
            kind: calibrate(test_ev[..., i], test_mask, cal_ev[..., i], cal_mask, fold, alpha=alpha / 2, rule="peak")
            for i, kind in enumerate(("discriminator", "lookahead"))
        }
        cal, combined = combine(parts, test_ev, test_mask, fold, alpha=alpha, bh=False)
        np.testing.assert_array_equal(
            cal.pvalue, np.minimum(1, 2 * np.minimum(parts["discriminator"].pvalue, parts["lookahead"].pvalue))
        )
        np.testing.assert_array_equal(cal.flagged, cal.pvalue <= alpha)
        crossed = cal.path.numpy() > 1.0
        assert ((cal.first_flag >= 0) == cal.flagged).all()
        for i in np.flatnonzero(cal.flagged):
            assert (
                cal.first_flag[i]
                == crossed[i].argmax()
                == min(f[i] for f in combined.first_crossing.values() if f[i] >= 0)
            )
        if seed == 0:
            assert cal.flagged[0] and cal.first_flag[0] == 3 and combined.fired_first[0] == "lookahead"
            assert combined.first_crossing["discriminator"][0] == 7
            flagged -= 1
        flagged += int(cal.flagged.sum())
        assert 0.0 <= cal.calibration_flag_rate <= alpha + 4 * np.sqrt(alpha * (1 - alpha) / n_cal)
    n = 30 * n_test - 1
    assert 0 < flagged <= n * alpha + 4 * np.sqrt(n * alpha * (1 - alpha)), flagged
