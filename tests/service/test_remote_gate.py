"""`imitaudit gate --server`: the local gate's artifacts and exit codes, with the audit run by the service."""

from __future__ import annotations

import os
import pickle
import subprocess

import pytest

from .conftest import BIN, free_port

pytestmark = pytest.mark.slow  # real servers and subprocesses; `make test-fast` leaves them to `make test`

FAST_ARGS = ["--episodes", "16", "--folds", "2", "--quiet"]


def gate(*args, env=None, cwd=None):
    return subprocess.run(
        [BIN, "gate", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600, cwd=cwd
    )


def test_remote_gate_pass_fail_and_artifacts_match_the_local_gate(service, inputs, tmp_path):
    token = service["tokens"]["a_submit"]
    common = ["--imitator", str(inputs["second"]), "--demos", str(inputs["demos"]), *FAST_ARGS]
    summary = tmp_path / "step-summary.md"
    failed = gate(
        "--server",
        service["url"],
        "--token",
        token,
        *common,
        "--out",
        str(tmp_path / "remote-fail"),
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert failed.returncode == 1, failed.stderr
    local = gate(*common, "--out", str(tmp_path / "local-fail"))
    assert local.returncode == 1, local.stderr
    names = sorted(p.name for p in (tmp_path / "remote-fail").iterdir())
    assert (
        names
        == sorted(p.name for p in (tmp_path / "local-fail").iterdir())
        == ["junit.xml", "report.html", "report.json", "summary.md"]
    )
    assert "FAIL" in failed.stdout and "imitaudit" in summary.read_text()
    lenient = ["--allow-likely-incorrigible", "--max-unlike-share", "0.99"]
    passed = gate(
        "--server", service["url"], "--token", token, *common, *lenient, "--out", str(tmp_path / "remote-pass")
    )
    assert passed.returncode == 0, passed.stderr
    assert "PASS" in passed.stdout


def test_remote_gate_errors_exit_2_with_one_line(service, inputs, tmp_path):
    common = [
        "--imitator",
        str(inputs["second"]),
        "--demos",
        str(inputs["demos"]),
        *FAST_ARGS,
        "--out",
        str(tmp_path / "o"),
    ]
    cases = {
        "unreachable": (["--server", f"http://127.0.0.1:{free_port()}", "--token", "t"], "server unreachable"),
        "refused token": (["--server", service["url"], "--token", "ia_nope"], "auth refused"),
        "read-only token": (["--server", service["url"], "--token", service["tokens"]["a_read"]], "auth refused"),
        "no token": (["--server", service["url"], "--token", ""], "needs --token"),
        "not a URL": (["--server", "ftp://x", "--token", "t"], "http(s) URL"),
    }
    for name, (args, fragment) in cases.items():
        r = gate(*args, *common, env={"IMITAUDIT_TOKEN": ""})
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.startswith("imitaudit: error")]
        assert len(lines) == 1 and fragment in lines[0], (name, r.stderr)
        assert "Traceback" not in r.stderr
    bad = tmp_path / "pickled.safetensors"
    bad.write_bytes(pickle.dumps({"w": 1}))
    r = gate(
        "--server",
        service["url"],
        "--token",
        service["tokens"]["a_submit"],
        "--imitator",
        str(bad),
        "--demos",
        str(inputs["demos"]),
        *FAST_ARGS,
    )
    assert r.returncode == 2 and "pickle" in r.stderr
