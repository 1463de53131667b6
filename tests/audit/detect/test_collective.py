"""The batch's collective test on synthetic scores: its level on exchangeable scores over many seeds (ties and several
folds included), the coverage of its lower bound with known outliers, certification's level, and power's floor."""

import numpy as np
import pytest

from audit.detect.calibrate import conformal_pvalues
from audit.detect.collective import certify, collective_test, detectable_share, fold_pvalue


def _null_batch(rng, n=64, m=100, folds=2, tied=False):
    """Audited and calibration scores from one distribution; every fold's calibration episodes are the same episodes."""
    draw = (lambda size: rng.integers(0, 5, size).astype(float)) if tied else (lambda size: rng.normal(size=size))
    cal = np.tile(draw(m), (folds, 1))
    return draw(n), cal, np.arange(n) % folds


@pytest.mark.parametrize(
    "tied,folds", [(False, 1), (False, 3), (True, 2)], ids=["continuous-1-fold", "continuous-3-folds", "ties-2-folds"]
)
def test_the_collective_test_rejects_exchangeable_batches_at_most_at_its_level(tied, folds):
    rng = np.random.default_rng(1)
    runs, level = 600, 0.1
    rejected = 0
    for s in range(runs):
        score, cal, fold = _null_batch(rng, folds=folds, tied=tied)
        rejected += collective_test(score, cal, fold, level=level, seed=s).lower_bound > 0
    # one-sided binomial bound: 600 runs at 0.1 exceed 0.1 + 3 sd (0.137) with probability ~0.001
    assert rejected / runs <= level + 3 * np.sqrt(level * (1 - level) / runs), rejected


def test_one_fold_s_pvalue_is_uniform_on_exchangeable_scores():
    rng = np.random.default_rng(2)
    p = np.array([fold_pvalue(rng.normal(size=20), rng.normal(size=50), rng=rng) for _ in range(1500)])
    for q in (0.02, 0.05, 0.2, 0.5):
        assert (p <= q).mean() <= q + 3 * np.sqrt(q * (1 - q) / len(p)), q


def test_the_lower_bound_covers_the_true_number_of_outliers():
    rng = np.random.default_rng(3)
    level, runs, covered, found = 0.1, 300, 0, []
    for s in range(runs):
        score, cal, fold = _null_batch(rng, n=64, m=100, folds=2)
        out = rng.choice(64, 12, replace=False)
        score[out] += rng.uniform(0.0, 6.0, size=12)  # 12 unlike trajectories, some barely so
        bound = collective_test(score, cal, fold, level=level, seed=s).lower_bound
        covered += bound <= 12
        found.append(bound)
    assert covered / runs >= 1 - level - 3 * np.sqrt(level * (1 - level) / runs)
    assert np.mean(found) >= 3  # and it is not vacuous


def test_certification_on_exchangeable_batches_happens_at_most_at_its_level():
    rng = np.random.default_rng(4)
    runs, level, any_cert = 800, 0.1, 0
    for _ in range(runs):
        score, cal, fold = _null_batch(rng, n=40, m=200, folds=2)
        p = np.concatenate([conformal_pvalues(score[fold == j], cal[j]) for j in range(2)])
        any_cert += certify(p, np.sort(fold), level).any()
    assert any_cert / runs <= level + 3 * np.sqrt(level * (1 - level) / runs)


def test_detectable_share_falls_with_more_calibration_and_is_none_when_nothing_can_be_shown():
    few, many = detectable_share(64, 40, 2, 0.05, trials=60), detectable_share(64, 400, 2, 0.05, trials=60)
    assert few is not None and many is not None and many <= few
    assert detectable_share(64, 2, 2, 0.01, trials=20) is None  # 2 calibration episodes can never show anything at 1%


def test_bad_levels_and_shapes_are_refused():
    with pytest.raises(ValueError, match="level must be in"):
        collective_test(np.zeros(3), np.zeros((1, 5)), np.zeros(3, dtype=int), level=0.0, seed=0)
    with pytest.raises(ValueError, match="calibration sets"):
        collective_test(np.zeros(3), np.zeros((1, 5)), np.array([0, 1, 2]), level=0.1, seed=0)
