"""Renderings: the attribution heatmap fits long episodes and carries its scale."""

import xml.etree.ElementTree as ET

from audit.report.render import svg_heatmap


def test_the_heatmap_of_a_long_episode_fits_the_page_with_a_scale_and_a_step_axis():
    explanation = {
        "segments": ["obs", "action", "core"],
        "heatmap": [[0.01 * (i % 7) - 0.02, 0.0, -0.05] for i in range(500)],
    }
    svg = svg_heatmap(explanation)
    root = ET.fromstring(svg)
    assert float(root.get("width")) <= 900 and "max-width:100%" in root.get("style")
    texts = [t.text for t in root.iter("text")]
    assert "attribution" in texts and "step" in texts and "+0.05" in texts and "-0.05" in texts
    assert "0" in texts and "450" in texts  # step ticks reach the end
    assert len([r for r in root.iter("rect") if r.find("title") is not None]) == 500 * 3


def test_a_flag_and_a_departure_on_one_step_stay_told_apart():
    from audit.report.render import svg_score

    svg = svg_score([0.0, 1.0, 2.0, 3.0], 1.5, 2, 2)
    assert svg.count(">flag</text>") == 1 and svg.count(">departs</text>") == 1  # named on either side of the line
    assert 'stroke="#333" stroke-width="1.5" stroke-dasharray="3 2"' in svg  # the departure dashed, the flag solid
    assert 'font-size="9"' not in svg  # axis text readable once a narrow screen scales the chart down
