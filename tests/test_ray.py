"""Audits on a real local Ray cluster: `ray start --head` plus a second node started with `ray start --address` on this
machine (one CPU each). The report is the local path's; the fold tasks ran on both nodes; a killed worker process is
retried by Ray and the audit completes once; an unreachable head is one line and exit 2, not a hang."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray  # noqa: F401 - the ray extra is part of `make test`: these tests must not skip

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
UNSTABLE = ("created", "timings", "versions")  # wall-clock facts; everything else must match


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(*args: str, root: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([str(BIN / "ray"), "start", "--block", "--num-cpus", "1", *args],
                            env=env, stdout=open(root / f"{name}.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def _nodes_alive(address: str) -> int:
    code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))" % address)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    port = _port()
    address = f"127.0.0.1:{port}"
    head = _node("--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false", root=root, name="head")
    nodes = [head]
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and head.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                time.sleep(1)
        nodes.append(_node(f"--address={address}", "--node-ip-address=127.0.0.1", root=root, name="worker"))
        while time.monotonic() < deadline and all(p.poll() is None for p in nodes) and _nodes_alive(address) < 2:
            time.sleep(2)
        assert _nodes_alive(address) == 2, (root / "head.log").read_text()[-2000:] + (root / "worker.log").read_text()[-2000:]
        yield address
    finally:
        for p in reversed(nodes):
            os.killpg(p.pid, signal.SIGTERM)
        for p in nodes:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from audit.data.demonstrations import record
    from audit.training.config import TrainConfig
    from audit.training.run import train

    root = tmp_path_factory.mktemp("ray-inputs")
    env = "imitaudit/OffSwitch-v0"
    demos = record(env, "unbounded", episodes=200, seed=0)
    cfg = TrainConfig(arch="mlp", mode="bc", steps=200, seed=0, eval_every=10**6, eval_episodes=10, log_dir=str(root / "runs"), progress=False)
    imitator = train(demos, cfg, out=root / "imitator.safetensors").path
    held = record(env, "corrigible", episodes=240, seed=500_000).save(root / "heldout.safetensors")
    return root, str(imitator), str(held)


def _audit(files, out: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    root, imitator, held = files
    return subprocess.run([str(BIN / "imitaudit"), "audit", "--imitator", imitator, "--demos", held, "--episodes", "64",
                           "--folds", "4", "--out", str(root / out), *extra], capture_output=True, text=True,
                          env={**os.environ, "IMITAUDIT_THREADS": "1", **(env or {})})


def _report(files, out: str) -> dict:
    report = json.loads((files[0] / out / "report.json").read_text())
    return {k: v for k, v in report.items() if k not in UNSTABLE}


def test_an_audit_on_ray_writes_the_local_report_from_tasks_on_both_nodes(cluster, files):
    local = _audit(files, "local", "--quiet")
    assert local.returncode in (0, 1), local.stderr
    on_ray = _audit(files, "ray", "--ray", cluster)
    assert on_ray.returncode == local.returncode, on_ray.stderr[-2000:]
    assert "ran as tasks on 2 node(s)" in on_ray.stderr, on_ray.stderr[-2000:]
    assert _report(files, "ray") == _report(files, "local")


def test_a_killed_ray_worker_is_retried_and_the_audit_completes_once(cluster, files):
    killed: list[int] = []

    def kill_a_fold_task():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            found = subprocess.run(["pgrep", "-f", "ray::_run"], capture_output=True, text=True).stdout.split()
            if found:
                os.kill(int(found[0]), signal.SIGKILL)
                killed.append(int(found[0]))
            time.sleep(0.05)

    thread = threading.Thread(target=kill_a_fold_task)
    thread.start()
    res = _audit(files, "ray-killed", "--ray", cluster, "--disc-steps", "3000")
    thread.join()
    assert killed, "no fold task was seen running"
    assert res.returncode in (0, 1), res.stderr[-2000:]
    report = json.loads((files[0] / "ray-killed" / "report.json").read_text())
    assert report["summary"]["trajectories"] == 64


def test_an_unreachable_head_is_one_line_and_exit_2(files):
    res = _audit(files, "dead", "--ray", f"127.0.0.1:{_port()}")
    assert res.returncode == 2 and "cannot reach the Ray cluster" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
