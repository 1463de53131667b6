"""Lookahead evidence: a future's peak and a recorded continuation's window peak are the same statistic, so the null holds."""

import numpy as np
import torch

from audit.detect.calibrate import calibrate
from audit.detect.lookahead import peaks, window_peaks


def test_window_peaks_look_ahead_within_the_episode_and_carry_between_branchings():
    ev = torch.tensor([[1.0, 5, 2, 0, 3], [0, 9, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    assert window_peaks(ev, mask, horizon=2, every=1).tolist() == [[5, 5, 2, 0, 0], [9, 9, 1, 0, 0]]
    assert window_peaks(ev, mask, horizon=3, every=2).tolist() == [[5, 5, 2, 2, 0], [9, 9, 1, 0, 0]]
    assert peaks(ev, mask).tolist() == [5, 9]


def test_futures_scored_against_recorded_continuations_flag_at_most_alpha_under_the_null():
    """Steps' evidence i.i.d. under the null: an audited step's future is h fresh steps (cut at the episode's end),
    a calibration step's is its own recorded continuation. Over 40 seeds the flag rate stays within alpha + 4 sd."""
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
        test_ev = peaks(futures.reshape(-1, h), fut_mask.reshape(-1, h) | ~test_mask.reshape(-1, 1)).reshape(n_test, t_max) * test_mask
        cal_forecast = window_peaks(cal_ev, cal_mask, horizon=h, every=1)
        fold = np.arange(n_test) % 2
        result = calibrate(test_ev, test_mask, torch.stack([cal_forecast, cal_forecast]), cal_mask, fold, alpha=alpha)
        flagged += int(result.flagged.sum())
    n = 40 * n_test
    assert flagged <= n * alpha + 4 * np.sqrt(n * alpha * (1 - alpha)), flagged
    assert flagged >= n * alpha - 4 * np.sqrt(n * alpha * (1 - alpha)), flagged  # and the test is not vacuous
