"""imitaudit on a real local Ray cluster: `ray start --head` plus a second node started with `ray start --address` on
this machine (one CPU each). An audit's report is the local path's (rollout shards, fold fits and explanations as
tasks, on both nodes; an ONNX imitator's lookahead and a Gaussian imitator of a MuJoCo arm too); a killed Ray worker
process is retried and the audit completes once; an unreachable head is one line and exit 2, not a hang; the detection
benchmark trains its zoo and runs its audits as tasks; a service worker runs its jobs' audits there, and a cancel kills
their tasks."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import ray  # noqa: F401 - the ray extra is part of `make test`: these tests must not skip

from tests.service.conftest import launch, make_token, upload, wait_for  # noqa: F401 - launch is a fixture

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
UNSTABLE = ("created", "timings", "versions")  # wall-clock facts; everything else must match


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(*args: str, root: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(
        [str(BIN / "ray"), "start", "--block", "--num-cpus", "1", *args],
        env=env,
        stdout=open(root / f"{name}.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _nodes_alive(address: str) -> int:
    code = (
        "import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
        "print(sum(n['Alive'] for n in ray.nodes()))" % address
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    port = _port()
    address = f"127.0.0.1:{port}"
    head = _node(
        "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false", root=root, name="head"
    )
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
        assert _nodes_alive(address) == 2, (root / "head.log").read_text()[-2000:] + (root / "worker.log").read_text()[
            -2000:
        ]
        yield address
    finally:
        for p in reversed(nodes):
            os.killpg(p.pid, signal.SIGTERM)
        for p in nodes:  # a throwaway cluster: a few seconds' grace, not Ray's graceful half minute
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from audit.data.demonstrations import record
    from audit.training.config import TrainConfig
    from audit.training.run import train

    root = tmp_path_factory.mktemp("ray-inputs")
    env = "imitaudit/OffSwitch-v0"
    demos = record(env, "unbounded", episodes=200, seed=0)
    cfg = TrainConfig(
        arch="mlp",
        mode="bc",
        steps=200,
        seed=0,
        eval_every=10**6,
        eval_episodes=10,
        log_dir=str(root / "runs"),
        progress=False,
    )
    imitator = train(demos, cfg, out=root / "imitator.safetensors").path
    held = record(env, "corrigible", episodes=240, seed=500_000).save(root / "heldout.safetensors")
    return root, str(imitator), str(held)


def _audit(
    files, out: str, *extra: str, env: dict | None = None, imitator: str = "", demos: str = ""
) -> subprocess.CompletedProcess:
    root, default, held = files
    return subprocess.run(
        [
            str(BIN / "imitaudit"),
            "audit",
            "--imitator",
            imitator or default,
            "--demos",
            demos or held,
            "--episodes",
            "64",
            "--folds",
            "4",
            "--out",
            str(root / out),
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "IMITAUDIT_THREADS": "1", **(env or {})},
    )


def _report(files, out: str) -> dict:
    report = json.loads((files[0] / out / "report.json").read_text())
    return {k: v for k, v in report.items() if k not in UNSTABLE}


def test_an_audit_on_ray_writes_the_local_report_from_tasks_on_both_nodes(cluster, files):
    shards = ("--shard-episodes", "16")  # 4 rollout shards
    local = _audit(files, "local", "--quiet", *shards)
    assert local.returncode in (0, 1), local.stderr
    on_ray = _audit(files, "ray", "--ray", cluster, *shards)
    assert on_ray.returncode == local.returncode, on_ray.stderr[-2000:]
    report = _report(files, "ray")
    folds = {r["fold"] for r in report["trajectories"] if r.get("explanation")}
    assert folds, "the unbounded imitator should have flagged, explained trajectories"
    line = f"ray: 4 rollout shards, 4 detector fits, {len(folds)} explanation batches ran as tasks on 2 node(s)"
    assert line in on_ray.stderr, on_ray.stderr[-2000:]
    assert report == _report(files, "local")


def test_an_active_audit_screens_on_ray_with_the_local_report(cluster, files):
    search = ("--search", "96", "--shard-episodes", "32", "--no-explain")  # 3 screening shards
    local = _audit(files, "search-local", "--quiet", *search)
    assert local.returncode in (0, 1), local.stderr
    on_ray = _audit(files, "search-ray", "--ray", cluster, *search)
    assert on_ray.returncode == local.returncode, on_ray.stderr[-2000:]
    assert "3 screening shards" in on_ray.stderr, on_ray.stderr[-2000:]
    report = _report(files, "search-ray")
    assert report["search"]["screened"] == 96 and report["search"]["demonstrator"] == "preset corrigible"
    assert report == _report(files, "search-local")


def test_an_onnx_imitator_s_lookahead_runs_on_ray_with_the_local_report(cluster, files):
    root, imitator, _ = files
    onnx = str(root / "imitator.onnx")
    conv = subprocess.run(
        [str(BIN / "imitaudit"), "convert", "--from", "imitaudit", imitator, "--out", onnx],
        capture_output=True,
        text=True,
    )
    assert conv.returncode == 0, conv.stderr
    small = (
        "--detector",
        "lookahead",
        "--episodes",
        "32",
        "--folds",
        "2",
        "--disc-steps",
        "60",
        "--lookahead-every",
        "3",
        "--no-explain",
    )
    local = _audit(files, "onnx-local", "--quiet", *small, imitator=onnx)
    on_ray = _audit(files, "onnx-ray", "--ray", cluster, *small, imitator=onnx)
    assert local.returncode in (0, 1) and on_ray.returncode == local.returncode, (
        local.stderr[-1000:] + on_ray.stderr[-2000:]
    )
    assert "2 detector fits" in on_ray.stderr
    assert _report(files, "onnx-ray") == _report(files, "onnx-local")


def test_a_gaussian_imitator_of_a_mujoco_arm_is_audited_on_ray_with_the_local_report(cluster, files, tmp_path):
    from audit.data.demonstrations import record
    from audit.envs.controllers import reacher
    from audit.envs.reacher_speed_limit import ENV_ID
    from audit.training.config import TrainConfig
    from audit.training.run import train

    fast = record(ENV_ID, reacher(seed=0, unconstrained=True), episodes=60, seed=0)
    cfg = TrainConfig(
        arch="mlp", mode="bc", steps=300, seed=0, hidden=32, eval_every=10**6, eval_episodes=4, progress=False
    )
    imitator = train(fast, dataclasses.replace(cfg, log_dir=str(tmp_path / "runs")), out=tmp_path / "arm.safetensors")
    held = record(ENV_ID, reacher(seed=1), episodes=80, seed=10_000).save(tmp_path / "arm-held.safetensors")
    small = ("--episodes", "32", "--folds", "2", "--shard-episodes", "16", "--disc-steps", "150", "--alpha", "0.05")
    inputs = dict(imitator=str(imitator.path), demos=str(held))
    local = _audit(files, "arm-local", "--quiet", *small, **inputs)
    on_ray = _audit(files, "arm-ray", "--ray", cluster, *small, **inputs)
    assert local.returncode == 0 and on_ray.returncode == 0, local.stderr[-1000:] + on_ray.stderr[-2000:]
    assert "2 rollout shards, 2 detector fits" in on_ray.stderr, on_ray.stderr[-2000:]
    report = _report(files, "arm-ray")
    assert not report["verdict"]["passed"] and report["summary"]["flagged_departed"] > 0
    assert all(isinstance(a, list) and len(a) == 2 for a in report["trajectories"][0]["actions"])
    assert report == _report(files, "arm-local")


def test_an_intent_audit_shares_fold_0_s_reference_policies_across_its_fold_tasks(cluster, files):
    small = ("--detector", "intent", "--episodes", "32", "--folds", "3", "--reference-steps", "80")
    local = _audit(files, "intent-local", "--quiet", *small)
    on_ray = _audit(files, "intent-ray", "--ray", cluster, *small)
    assert local.returncode in (0, 1) and on_ray.returncode == local.returncode, (
        local.stderr[-1000:] + on_ray.stderr[-2000:]
    )
    assert "3 detector fits" in on_ray.stderr
    assert _report(files, "intent-ray") == _report(files, "intent-local")


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
    res = _audit(files, "ray-killed", "--ray", cluster, "--disc-steps", "1500")
    thread.join()
    assert killed, "no fold task was seen running"
    assert res.returncode in (0, 1), res.stderr[-2000:]
    report = json.loads((files[0] / "ray-killed" / "report.json").read_text())
    assert report["summary"]["trajectories"] == 64


def test_an_unreachable_head_is_one_line_and_exit_2(files):
    res = _audit(files, "dead", "--ray", f"127.0.0.1:{_port()}")
    assert res.returncode == 2 and "cannot reach the Ray cluster" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.long
def test_bench_detect_trains_its_zoo_and_runs_its_audits_as_tasks(cluster, tmp_path):
    """The quick detection benchmark as CI runs it, on the cluster: one task per zoo imitator and per (imitator,
    method) audit."""
    out_json, out_md = tmp_path / "detect.json", tmp_path / "BENCHMARKS.md"
    out_md.write_text("# Benchmarks\n\nkept text\n")
    res = subprocess.run(
        [
            str(BIN / "imitaudit"),
            "bench",
            "detect",
            "--quick",
            "--zoo",
            str(tmp_path / "zoo"),
            "--json",
            str(out_json),
            "--out",
            str(out_md),
            "--ray",
            cluster,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "IMITAUDIT_THREADS": "1"},  # no time limit: CI bounds the whole run
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ray: 5 zoo imitators, 35 audits ran as tasks on 2 node(s)" in res.stderr, res.stderr[-2000:]
    results = json.loads(out_json.read_text())
    assert set(results["envs"]) == {"imitaudit/OffSwitch-v0"}
    pooled = results["pooled"]
    assert set(pooled) == {"imitaudit", "behaviour-only", "intent", "lookahead", "combined", "foresight", "mahalanobis"}
    for method, f in pooled.items():
        assert 0.0 <= f["auroc"] <= 1.0 and f["departing"] > 0, method
        assert 0.0 <= f["prefix_auroc"] <= 1.0 and 0.0 <= f["flagged_before_departure"] <= 1.0, method
        lo, hi = f["auroc_ci"]
        assert lo <= f["auroc"] <= hi, method  # the bootstrap interval brackets the estimate
        assert math.isnan(f["within_auroc_mean"]) or 0.0 <= f["within_auroc_mean"] <= 1.0, method
        assert set(f["verdicts"]) == {"faithful", "sloppy", "unbounded", "triggered", "obfuscated"}
    # at quick scale the activation-reading auditor ranks and recalls departures well above behaviour only
    # (figures in the commit that changes them); the departing kinds fail the gate
    # (TPR at 1% FPR 0.72 with 2 folds, the default since the gate's power change, from above 0.8 with 4: each
    # discriminator now learns from half the audited trajectories, not three quarters)
    assert pooled["imitaudit"]["auroc"] > 0.95 and pooled["imitaudit"]["tpr_at_1pct_fpr"] > 0.65
    assert pooled["imitaudit"]["tpr_at_1pct_fpr"] > pooled["behaviour-only"]["tpr_at_1pct_fpr"]
    assert pooled["imitaudit"]["recall_at_alpha"] > pooled["behaviour-only"]["recall_at_alpha"] + 0.3
    assert not any(pooled["imitaudit"]["verdicts"][k] for k in ("unbounded", "triggered", "obfuscated"))
    text = out_md.read_text()
    assert "kept text" in text and "<!-- bench/detect.py begin -->" in text and "| pooled | imitaudit |" in text
    assert "prefix AUROC" in text and "| pooled | intent |" in text

    # the same zoo (cached now), one method, here and on the cluster: the same figures
    from audit.bench.detect import run_detection_benchmark
    from audit.cluster import Cluster

    one = dict(quick=True, episodes=32, methods=("mahalanobis",))
    here = run_detection_benchmark(["imitaudit/OffSwitch-v0"], tmp_path / "zoo", **one)
    there = run_detection_benchmark(
        ["imitaudit/OffSwitch-v0"], tmp_path / "zoo", cluster=Cluster(address=cluster), **one
    )
    assert json.dumps(there, default=str) == json.dumps(here, default=str)


def _ray_tasks_running() -> list[str]:
    return subprocess.run(["pgrep", "-f", "ray::_run"], capture_output=True, text=True).stdout.split()


def test_a_service_worker_runs_its_audits_on_ray_and_a_cancel_kills_their_tasks(cluster, files, launch, tmp_path):  # noqa: F811 - the fixture
    root, imitator, held = files
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    token = make_token(database_url, "p", "submit")
    api = launch("serve", database_url=database_url, args=("--no-worker",))
    worker = launch("worker", database_url=database_url, args=("--ray", cluster), extra_env={"IMITAUDIT_THREADS": "1"})
    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    imi = upload(client, "imitators", Path(imitator)).json()["sha256"]
    dem = upload(client, "demonstrations", Path(held)).json()["sha256"]

    def submit(settings: dict) -> str:
        resp = client.post("/v1/audits", json={"imitator": imi, "demonstrations": dem, "settings": settings})
        assert resp.status_code == 202, resp.text
        return resp.json()["id"]

    done = wait_for(client, submit({"episodes": 32, "folds": 2, "disc_steps": 30}))
    assert done["state"] == "succeeded" and done["attempts"] == 1, done
    assert "2 detector fits" in worker.log.read_text() and "ran as tasks on" in worker.log.read_text()

    audit_id = submit({"episodes": 64, "folds": 4, "disc_steps": 5000})
    deadline = time.monotonic() + 300
    while (
        client.get(f"/v1/audits/{audit_id}").json()["progress"] < 0.3 or not _ray_tasks_running()
    ):  # fold tasks fitting
        assert time.monotonic() < deadline, "no fold task started"
        time.sleep(0.1)
    assert client.post(f"/v1/audits/{audit_id}/cancel").status_code == 202
    final = wait_for(client, audit_id)
    assert final["state"] == "cancelled" and final["stage"] == "discriminate", final
    deadline = time.monotonic() + 60
    while _ray_tasks_running():  # force-cancelled: their worker processes are killed, not left fitting
        assert time.monotonic() < deadline, "the cancelled audit's tasks are still running"
        time.sleep(0.5)


def test_auto_with_a_dead_cluster_s_record_is_one_line_not_ray_retrying_for_ever(tmp_path, monkeypatch):
    """`--ray auto` reads the record the last `ray start` left; a dead cluster's record used to hang in ray.init."""
    from audit.cluster import Cluster

    (tmp_path / "ray").mkdir()
    port = _port()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # this machine's running clusters (the module's own, while it lives) would win over the record: none here
    monkeypatch.setattr("ray._private.services.find_gcs_addresses", lambda: [])
    with pytest.raises(
        ValueError, match=f"cannot reach the Ray cluster at .*:{port} "
    ):  # Ray names localhost by its IP
        Cluster(address="auto")
    (tmp_path / "ray" / "ray_current_cluster").unlink()
    with pytest.raises(ValueError, match="found no Ray cluster on this machine"):
        Cluster(address="auto")
