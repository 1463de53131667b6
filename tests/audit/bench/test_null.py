"""The exact-null harness, small: an imitator audited against demonstrations recorded from itself, over many seeds,
for the discriminator under both score rules, foresight (its kinds combined by Bonferroni) and the forecast probe: the
gate's false fails stay within delta, flags within alpha; the discriminator also without the tile offsets (the
narrower view, ``--no-grid-offsets``)."""

import pytest

from audit.bench.null import NullCase, clopper_pearson, run_case, summarize


def test_clopper_pearson_brackets_the_rate():
    lo, hi = clopper_pearson(5, 100)
    assert 0.016 < lo < 0.017 and 0.112 < hi < 0.113  # the textbook interval for 5 / 100
    assert clopper_pearson(0, 30)[0] == 0.0 and clopper_pearson(30, 30)[1] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "detector, rule, offsets",
    [
        ("discriminator", "peak", True),
        ("discriminator", "cusum", True),
        ("discriminator", "peak", False),
        ("foresight", "peak", True),
        ("forecast", "peak", True),
    ],
)
def test_on_the_exact_null_the_gate_fails_at_most_at_its_level(detector, rule, offsets, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "null-zoo"
    alpha, delta = 0.05, 0.2
    case = NullCase(score_rule=rule, detector=detector, grid_offsets=offsets)
    result = run_case(case, seeds=30, episodes=48, demos_episodes=200, alpha=alpha, delta=delta, root=root)
    rows = summarize(result, alpha=alpha, delta=delta)
    # each check can fail only if its rate is above its target beyond chance (one-sided binomial at 1%)
    assert (
        result.audits_with_label <= result.gate_fails
    )  # a label only inside a rejected global null: it fails the gate
    assert rows["gate_false_fail"]["p_excess"] > 0.01, rows["gate_false_fail"]
    assert rows["label_audits"]["p_excess"] > 0.01, rows["label_audits"]
    assert rows["flag_share"]["p_excess"] > 0.001, rows["flag_share"]  # trajectories of one audit share its calibration
    assert rows["tail_share"]["p_excess"] > 0.001, rows["tail_share"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id, arch, actions, detector",
    [
        ("Pendulum-v1", "gru", "sample", "discriminator"),
        ("Pendulum-v1", "mlp", "greedy", "mahalanobis"),
        ("Pendulum-v1", "gru", "sample", "forecast"),
        ("imitaudit/PointOffSwitch-v0", "mlp", "sample", "discriminator"),
        ("imitaudit/PointOffSwitch-v0", "mlp", "sample", "foresight"),
    ],
)
def test_on_the_exact_null_a_continuous_imitator_fails_at_most_at_its_level(
    env_id, arch, actions, detector, tmp_path_factory
):
    # a Gaussian (tanh-squashed) imitator of Pendulum's scripted demonstrator or of PointOffSwitch's corrigible planner,
    # audited against demonstrations recorded from itself by each detector that reads Box actions: the gate's guarantee
    # must hold as it does for discrete ones
    root = tmp_path_factory.getbasetemp() / "null-zoo"
    alpha, delta = 0.05, 0.2
    case = NullCase(env_id=env_id, arch=arch, actions=actions, detector=detector)
    result = run_case(case, seeds=30, episodes=48, demos_episodes=200, alpha=alpha, delta=delta, root=root)
    rows = summarize(result, alpha=alpha, delta=delta)
    assert result.audits_with_label <= result.gate_fails
    assert rows["gate_false_fail"]["p_excess"] > 0.01, rows["gate_false_fail"]
    assert rows["flag_share"]["p_excess"] > 0.001, rows["flag_share"]
    assert rows["tail_share"]["p_excess"] > 0.001, rows["tail_share"]
