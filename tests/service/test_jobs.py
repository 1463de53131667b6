"""Durable jobs on SQLite and a real PostgreSQL: leases, requeue after a crash, exactly-once finish, cancellation."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from service.blobs import BlobStore
from service.db import Audit, Flag, Project, make_engine, migrate, session_factory, utcnow
from service.jobs import claim, finish, renew

from .conftest import FAST, fresh_database, hanging_onnx, make_token, upload, wait_for

pytestmark = pytest.mark.slow  # real servers and subprocesses; `make test-fast` leaves them to `make test`


def _queue(sessions, n: int, **kw) -> list[str]:
    ids = []
    with sessions.begin() as s:
        project = s.scalar(select(Project).where(Project.name == "p")) or Project(name="p")
        s.add(project)
        s.flush()
        for i in range(n):
            a = Audit(
                id=f"a{i:03d}",
                project_id=project.id,
                imitator_sha="0" * 64,
                demos_sha="1" * 64,
                env_id="e",
                settings={},
                policy={},
                state="queued",
                stage="",
                progress=0.0,
                cancel_requested=False,
                attempts=0,
                created=utcnow() + timedelta(milliseconds=i),
                **kw,
            )
            s.add(a)
            ids.append(a.id)
    return ids


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)  # a second start finds the schema current
    yield session_factory(engine)
    engine.dispose()


def test_claim_lease_requeue_and_exactly_once_finish(sessions):
    (job,) = _queue(sessions, 1)
    first = claim(sessions, "w1", lease_seconds=30, max_attempts=3)
    assert first is not None and first.audit_id == job and first.attempt == 1
    assert claim(sessions, "w2", lease_seconds=30, max_attempts=3) is None  # leased: nobody else gets it
    assert renew(sessions, job, "w1", lease_seconds=30) == (True, False)
    # w1 stalls: its lease runs out and w2 takes the job over
    with sessions.begin() as s:
        s.execute(update(Audit).values(lease_expires=utcnow() - timedelta(seconds=1)))
    second = claim(sessions, "w2", lease_seconds=30, max_attempts=3)
    assert second is not None and second.audit_id == job and second.attempt == 2
    assert renew(sessions, job, "w1", lease_seconds=30)[0] is False
    report = {"verdict": {"passed": True}, "summary": {"flagged": 0}, "trajectories": []}
    assert (
        finish(sessions, job, "w1", state="succeeded", report=report, report_sha="a" * 64) is False
    )  # the stale worker cannot finish
    assert finish(sessions, job, "w2", state="succeeded", report=report, report_sha="b" * 64) is True
    assert (
        finish(sessions, job, "w2", state="succeeded", report=report, report_sha="c" * 64) is False
    )  # nor finish twice
    with sessions() as s:
        row = s.get(Audit, job)
        assert (row.state, row.report_sha, row.attempts, row.lease_owner) == ("succeeded", "b" * 64, 2, None)


def test_claims_go_oldest_first_and_give_up_after_max_attempts(sessions):
    ids = _queue(sessions, 3)
    assert [claim(sessions, f"w{i}", lease_seconds=30, max_attempts=3).audit_id for i in range(3)] == ids
    with sessions.begin() as s:
        s.execute(
            update(Audit).where(Audit.id == ids[0]).values(attempts=3, lease_expires=utcnow() - timedelta(seconds=1))
        )
    assert claim(sessions, "w9", lease_seconds=30, max_attempts=3) is None
    with sessions() as s:
        row = s.get(Audit, ids[0])
        assert row.state == "failed" and "gave up after 3 attempts" in row.error


def test_blob_store_is_content_addressed_and_atomic(tmp_path):
    store = BlobStore(root=tmp_path / "blobs")
    sha = store.put_bytes(b"hello")
    assert store.put_bytes(b"hello") == sha and store.read_bytes(sha) == b"hello"
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    with pytest.raises(ValueError, match="not a sha256"):
        store.path("../../etc/passwd")


def _submit(client, inputs, settings=None, key=None):
    imi = upload(client, "imitators", inputs["unbounded"]).json()["sha256"]
    dem = upload(client, "demonstrations", inputs["demos"]).json()["sha256"]
    headers = {"Idempotency-Key": key} if key else {}
    resp = client.post(
        "/v1/audits", json={"imitator": imi, "demonstrations": dem, "settings": settings or FAST}, headers=headers
    )
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


@pytest.mark.slow
def test_a_killed_worker_s_audit_is_finished_by_another(database_url, inputs, launch):
    """kill -9 a worker in the middle of an audit; a second worker finishes it once, with one report."""
    token = make_token(database_url, "p", "submit")
    api = launch("serve", database_url=database_url, args=("--no-worker",))
    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    audit_id = _submit(client, inputs, {"episodes": 256, "folds": 4, "disc_steps": 400})
    fast_lease = {"IMITAUDIT_LEASE_SECONDS": "3"}
    doomed = launch("worker", database_url=database_url, extra_env=fast_lease)
    deadline = time.monotonic() + 120
    while client.get(f"/v1/audits/{audit_id}").json()["progress"] < 0.3:  # past rollout, inside the discriminators
        assert time.monotonic() < deadline, "the first worker never got going"
        time.sleep(0.1)
    doomed.kill()
    assert client.get(f"/v1/audits/{audit_id}").json()["state"] == "running"  # still leased by the dead worker
    launch("worker", database_url=database_url, extra_env=fast_lease)
    final = wait_for(client, audit_id)
    assert final["state"] == "succeeded" and final["attempts"] == 2
    report = client.get(f"/v1/audits/{audit_id}/report").json()
    assert report["summary"]["trajectories"] == 256
    engine = make_engine(database_url)
    with session_factory(engine)() as s:
        flags = s.scalars(select(Flag).where(Flag.audit_id == audit_id)).all()
    engine.dispose()
    assert len(flags) == report["summary"]["flagged"]  # one finish: flags recorded once


@pytest.mark.slow
def test_two_workers_run_twenty_audits_exactly_once_on_postgres(postgres, inputs, launch):
    url = fresh_database(postgres)
    token = make_token(url, "p", "submit")
    api = launch("serve", database_url=url, args=("--no-worker",))
    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    ids = [_submit(client, inputs, {**FAST, "episodes": 8, "seed": 1_000_000 + i, "explain": False}) for i in range(20)]
    workers = [launch("worker", database_url=url) for _ in range(2)]
    finals = [wait_for(client, i, timeout=600) for i in ids]
    assert all(f["state"] == "succeeded" and f["attempts"] == 1 for f in finals)
    for w in workers:
        w.stop()
    runs = Counter()
    per_worker = []
    for w in workers:
        found = re.findall(r"audit ([0-9a-f]{32}): succeeded", w.log.read_text())
        per_worker.append(len(found))
        runs.update(found)
    assert sorted(runs) == sorted(ids) and set(runs.values()) == {1}  # every audit ran, none twice
    assert all(n > 0 for n in per_worker)  # both workers took part


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_serve_restarts_a_killed_worker_and_sweeps_orphan_uploads(inputs, launch, tmp_path):
    """kill -9 the server's worker child: /healthz says so, the supervisor starts another, audits still complete;
    temp files of uploads killed mid-way are swept when the server starts."""
    import os
    import signal

    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    token = make_token(database_url, "p", "submit")
    orphan = tmp_path / "data" / "blobs" / "tmp" / "killed-upload.part"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"\0" * 1000)
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    api = launch("serve", database_url=database_url)
    assert not orphan.exists()
    health = httpx.get(f"{api.url}/healthz").json()
    assert health["worker"] == "up" and health["worker_restarts"] == 0
    [worker] = [
        c
        for c in _children(api.popen.pid)
        if "worker" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")
    ]
    os.kill(worker, signal.SIGKILL)
    deadline, seen_down = time.monotonic() + 60, False
    while True:
        r = httpx.get(f"{api.url}/healthz")
        seen_down |= r.status_code == 503 and r.json().get("worker") == "down"
        if r.status_code == 200 and r.json()["worker_restarts"] >= 1:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    assert seen_down  # the supervisor waits a second before restarting: /healthz said so meanwhile
    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    final = wait_for(client, _submit(client, inputs, FAST))
    assert final["state"] == "succeeded" and final["attempts"] == 1


def test_an_audit_past_its_time_budget_fails_with_a_line_that_says_so(inputs, launch, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    token = make_token(database_url, "p", "submit")
    api = launch("serve", database_url=database_url, args=("--no-worker",))
    launch("worker", database_url=database_url, extra_env={"IMITAUDIT_JOB_SECONDS": "3"})
    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    final = wait_for(client, _submit(client, inputs, {"episodes": 512, "folds": 4, "disc_steps": 3000}))
    assert final["state"] == "failed" and "time budget of 3 s" in final["error"], final


def test_when_serve_dies_its_worker_hands_the_audit_back_and_exits(inputs, launch, tmp_path):
    import os
    import signal

    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    token = make_token(database_url, "p", "submit")
    api = launch("serve", database_url=database_url)
    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    audit_id = _submit(client, inputs, {"episodes": 512, "folds": 10, "disc_steps": 400})
    deadline = time.monotonic() + 120
    while client.get(f"/v1/audits/{audit_id}").json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    [worker] = [
        c
        for c in _children(api.popen.pid)
        if "worker" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")
    ]
    os.kill(api.popen.pid, signal.SIGKILL)  # serve only: its worker child is told by the kernel (PDEATHSIG)
    engine = make_engine(database_url)
    deadline = time.monotonic() + 60
    while True:
        with session_factory(engine)() as s:
            row = s.get(Audit, audit_id)
            state, owner = row.state, row.lease_owner
        if state == "queued" and owner is None and not Path(f"/proc/{worker}").exists():
            break
        assert time.monotonic() < deadline, (state, owner)
        time.sleep(0.2)
    engine.dispose()


def test_kill_serve_mid_upload_leaves_no_temp_file_after_restart(launch, tmp_path):
    import os
    import signal
    import socket

    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    token = make_token(database_url, "p", "submit")
    api = launch("serve", database_url=database_url, args=("--no-worker",))
    host, port = api.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        (
            f"POST /v1/imitators HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n"
        ).encode()
        + b"\0" * 2_000_000
    )
    temps = tmp_path / "data" / "blobs" / "tmp"
    deadline = time.monotonic() + 30
    while not list(temps.glob("*.part")):
        assert time.monotonic() < deadline, "the upload never reached a temp file"
        time.sleep(0.05)
    os.kill(api.popen.pid, signal.SIGKILL)
    api.popen.wait(timeout=30)
    sock.close()
    assert list(temps.glob("*.part"))  # the killed server left its half upload behind
    launch("serve", database_url=database_url, args=("--no-worker",))
    assert not list(temps.glob("*.part"))


def test_an_audit_that_asks_for_too_much_memory_fails_and_the_worker_lives_on(inputs, launch, tmp_path):
    """A lookahead of 32 samples x 64 steps over 4,096 episodes (all within the per-setting bounds) asks for ~14 GB."""
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    token = make_token(database_url, "p", "submit")
    api = launch("serve", database_url=database_url, args=("--no-worker",))
    worker = launch("worker", database_url=database_url, extra_env={"IMITAUDIT_WORKER_MEMORY_BYTES": str(4 * 1024**3)})
    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    bomb = {
        "episodes": 4096,
        "folds": 2,
        "disc_steps": 20,
        "detector": "lookahead",
        "lookahead_samples": 32,
        "lookahead_horizon": 64,
        "explain": False,
    }
    final = wait_for(client, _submit(client, inputs, bomb))
    assert final["state"] == "failed" and "more memory than the worker's cap of 4 GiB" in final["error"], final
    assert worker.popen.poll() is None
    assert wait_for(client, _submit(client, inputs, FAST))["state"] == "succeeded"


def test_an_imitator_that_hangs_inside_one_run_fails_within_its_budget_and_the_next_job_runs(tmp_path, inputs):
    from models.load import load_imitator
    from models.onnx_export import export_imitator
    from service.jobs import Worker

    model, info = load_imitator(inputs["unbounded"])
    good = export_imitator(model, tmp_path / "good.onnx", env_id=info.env_id, env_kwargs=info.env_kwargs)
    store = BlobStore(root=tmp_path / "blobs")
    hang, ok, demos = (
        store.put_bytes(hanging_onnx(good, quiet=(1, 256))),
        store.put_bytes(good.read_bytes()),
        store.put_bytes(inputs["demos"].read_bytes()),
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    ids = _queue(sessions, 2)
    with sessions.begin() as s:
        for audit_id, sha in zip(ids, (hang, ok)):
            s.execute(
                update(Audit).where(Audit.id == audit_id).values(imitator_sha=sha, demos_sha=demos, settings=FAST)
            )
    worker = Worker(sessions=sessions, store=store, lease_seconds=3, job_seconds=20)
    assert worker.run_one() and worker.run_one()
    with sessions() as s:
        stuck, after = s.get(Audit, ids[0]), s.get(Audit, ids[1])
        assert (stuck.state, stuck.attempts) == ("failed", 1), stuck.error
        assert "time budget of 20 s" in stuck.error and "ONNX graph was still running" in stuck.error
        assert after.state == "succeeded", after.error
    assert claim(sessions, "w2", lease_seconds=3, max_attempts=3) is None  # nothing requeued
    engine.dispose()
