"""The detection benchmark's pieces; its quick mode runs as CI runs it on a real Ray cluster in tests/test_ray.py."""

import pytest


def test_benchmark_sections_replace_only_their_own(tmp_path):
    from audit.bench.sections import write_marked_section

    path = tmp_path / "B.md"
    write_marked_section(path, "<!-- a begin -->\nA1\n<!-- a end -->")
    write_marked_section(path, "<!-- b begin -->\nB1\n<!-- b end -->")
    write_marked_section(path, "<!-- a begin -->\nA2\n<!-- a end -->")
    text = path.read_text()
    assert "A2" in text and "A1" not in text and "B1" in text and text.count("begin -->") == 2
    with pytest.raises(ValueError, match="markers"):
        write_marked_section(path, "no markers")


def _record(strength, departed, flagged_at=None, departs_at=5):
    return {
        "pvalue": 0.5,
        "strength": strength,
        "prefix_strength": strength if departed else None,
        "flagged": flagged_at is not None,
        "first_flag_step": flagged_at,
        "departed": departed,
        "departure_step": departs_at if departed else None,
        "severity": None,
    }


def test_verdicts_are_right_only_as_the_ground_truth_says_and_misses_count_as_never_detected():
    from audit.bench.detect import detection_times, verdict_right, within_imitator

    faithful_clean = {"records": [_record(0.1, False)], "verdict": False}
    faithful_departed = {"records": [_record(0.1, False), _record(3.0, True, 2)], "verdict": False}
    assert not verdict_right("faithful", faithful_clean)  # a faithful imitator that never departed must pass
    assert verdict_right("faithful", faithful_departed) and verdict_right(
        "faithful", {**faithful_clean, "verdict": True}
    )
    assert not verdict_right("unbounded", {"records": [], "verdict": True}) and verdict_right(
        "unbounded", {"records": [], "verdict": False}
    )
    # three departures, two missed: the median lead is "never", not the one detection's lead
    pooled = [
        ("unbounded", _record(3.0, True, 2)),
        ("unbounded", _record(0.0, True)),
        ("unbounded", _record(0.0, True)),
    ]
    assert detection_times(pooled)["median_lead_time"] == float("-inf")
    within = within_imitator(
        {"unbounded": {"records": [_record(3.0, True, 2), _record(0.0, False), _record(1.0, False)]}}
    )
    assert within["within_auroc"] == {"unbounded": 1.0} and within["within_auroc_mean"] == 1.0
