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
