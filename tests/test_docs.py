"""docs/interop.md's commands run as written, in order, in a fresh folder (SB3 -> audit, imitation BC -> audit,
a torch module -> torch.onnx.export -> audit, a recurrent cell -> convert, Box actions from a controller and from SB3
SAC, the notebook API), exit codes included."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.long
def test_the_interop_guide_runs(tmp_path):
    text = (ROOT / "docs" / "interop.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    script = "set -euo pipefail\n" + "\n".join(blocks)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "IMITAUDIT_THREADS": "1"}
    res = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    for report in ("report-ppo", "gate-bc", "report-actor", "report-pendulum", "report-sac", "report-notebook"):
        assert (tmp_path / report / "report.json").exists(), report
    assert (tmp_path / "gate-bc" / "junit.xml").exists()
    assert "AuditResult(" in res.stdout and "arch: onnx" in res.stdout
    # the recurrent cell: its default core tap is the next state (the state input is no tap), and an ONNX imitator's
    # config shows only what the audit reads of it
    assert "'core': 'h_next'" in res.stdout and "'recurrent': True" in res.stdout and "max_len" not in res.stdout
