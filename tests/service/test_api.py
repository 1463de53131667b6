"""The HTTP API as a client uses it: uploads, audits, events, reports, tokens per project, malformed uploads,
metrics."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from audit.report.schema import validate
from models.safetensors_io import read_safetensors

from .conftest import FAST, upload

pytestmark = pytest.mark.slow  # real servers and subprocesses; `make test-fast` leaves them to `make test`


def test_health_needs_no_token_and_everything_else_does(service):
    assert httpx.get(f"{service['url']}/healthz").json()["status"] == "ok"
    for path in ("/v1/imitators", "/v1/audits", "/metrics", f"/v1/audits/{service['audit']}"):
        r = httpx.get(f"{service['url']}{path}")
        assert r.status_code == 401 and "token" in r.json()["error"]
    r = httpx.get(f"{service['url']}/v1/audits", headers={"Authorization": "Bearer ia_forged"})
    assert r.status_code == 401


def test_uploads_are_content_addressed(service, inputs):
    a = service["clients"]["a_submit"]
    again = upload(a, "imitators", inputs["unbounded"], "unbounded")
    assert again.status_code == 200 and again.json()["sha256"] == service["imitator"]["sha256"]
    raw = a.post(
        "/v1/imitators", content=inputs["unbounded"].read_bytes(), headers={"Content-Type": "application/octet-stream"}
    )
    assert raw.status_code == 200 and raw.json()["id"] == service["imitator"]["id"]
    listed = a.get("/v1/imitators").json()
    assert [i["sha256"] for i in listed["items"]].count(service["imitator"]["sha256"]) == 1
    got = a.get(f"/v1/imitators/{service['imitator']['sha256']}").json()
    assert got["env_id"] == "imitaudit/OffSwitch-v0" and got["arch"] == "mlp"
    assert a.get(f"/v1/demonstrations/{service['demos']['sha256']}").json()["summary"]["episodes"] == 240


def test_a_read_token_cannot_write(service, inputs):
    r = service["clients"]["a_read"]
    assert upload(r, "imitators", inputs["second"]).status_code == 403
    assert r.post("/v1/audits", json={}).status_code == 403
    assert r.post(f"/v1/audits/{service['audit']}/cancel").status_code == 403
    assert r.get(f"/v1/audits/{service['audit']}").status_code == 200


def test_another_project_cannot_see_anything(service):
    """Every route, with project B's tokens on project A's resources: 404, and lists without A's items."""
    aid, imi, dem = service["audit"], service["imitator"]["sha256"], service["demos"]["sha256"]
    reads = [
        f"/v1/imitators/{imi}",
        f"/v1/demonstrations/{dem}",
        f"/v1/audits/{aid}",
        f"/v1/audits/{aid}/events",
        f"/v1/audits/{aid}/report",
        f"/v1/audits/{aid}/report.html",
        f"/v1/audits/{aid}/junit.xml",
        f"/v1/audits/{aid}/summary.md",
        f"/v1/audits/{aid}/trajectories",
        f"/v1/audits/{aid}/trajectories/0",
        f"/dashboard/audits/{aid}",
        f"/dashboard/audits/{aid}/trajectories/0",
        f"/dashboard/imitators/{imi}",
    ]
    for key in ("b_read", "b_submit"):
        b = service["clients"][key]
        for path in reads:
            assert b.get(path).status_code == 404, (key, path)
        for path in ("/v1/imitators", "/v1/demonstrations", "/v1/audits"):
            assert b.get(path).json()["total"] == 0, path
        assert aid not in b.get("/dashboard").text and aid not in b.get("/dashboard/flagged").text
    b = service["clients"]["b_submit"]
    assert b.post(f"/v1/audits/{aid}/cancel").status_code == 404
    # B cannot use A's uploads by hash either (it must upload them itself)
    r = b.post("/v1/audits", json={"imitator": imi, "demonstrations": dem})
    assert r.status_code == 422 and "no imitator" in r.json()["error"]
    # the same 404 as for something that never existed
    assert b.get("/v1/audits/" + "0" * 32).json() == b.get(f"/v1/audits/{aid}").json()


def test_audit_lifecycle_events_report_and_trajectories(service):
    a = service["clients"]["a_submit"]
    body = {
        "imitator": service["imitator"]["sha256"],
        "demonstrations": service["demos"]["sha256"],
        "settings": {**FAST, "seed": 2_000_000},
    }
    r1 = a.post("/v1/audits", json=body, headers={"Idempotency-Key": "ci-run-17"})
    assert r1.status_code == 202 and r1.headers["location"] == f"/v1/audits/{r1.json()['id']}"
    r2 = a.post("/v1/audits", json=body, headers={"Idempotency-Key": "ci-run-17"})
    assert r2.status_code == 202 and r2.json()["id"] == r1.json()["id"]
    r3 = a.post("/v1/audits", json={**body, "settings": {**FAST, "seed": 5}}, headers={"Idempotency-Key": "ci-run-17"})
    assert r3.status_code == 422 and "Idempotency-Key" in r3.json()["error"]
    events = []
    with a.stream("GET", f"/v1/audits/{r1.json()['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line[5:])))
                if kind == "end":
                    break
    progress = [e["progress"] for k, e in events if k == "progress"]
    assert events[-1][0] == "end" and events[-1][1]["state"] == "succeeded"
    # the stream samples stored progress, so a fast job may show only its first and last values (CI saw [0.0, 1.0])
    assert progress == sorted(progress) and progress[0] < 1.0 and progress[-1] == 1.0
    report = validate(a.get(f"/v1/audits/{r1.json()['id']}/report").json())
    assert report["summary"]["trajectories"] == 16
    flagged = a.get(f"/v1/audits/{r1.json()['id']}/trajectories", params={"flagged": "true"}).json()
    assert flagged["total"] == report["summary"]["flagged"] and all(t["flagged"] for t in flagged["items"])
    sev = a.get(f"/v1/audits/{r1.json()['id']}/trajectories", params={"severity": "likely-incorrigible"}).json()
    assert sev["total"] == report["summary"]["flagged_by_severity"]["likely-incorrigible"]
    one = a.get(f"/v1/audits/{r1.json()['id']}/trajectories/3").json()
    assert one["index"] == 3 and len(one["step_scores"]) == one["length"]
    assert a.get(f"/v1/audits/{r1.json()['id']}/trajectories/99").status_code == 404
    assert "<testsuite" in a.get(f"/v1/audits/{r1.json()['id']}/junit.xml").text
    listed = a.get("/v1/audits", params={"state": "succeeded", "limit": 1}).json()
    assert (
        listed["total"] >= 2 and len(listed["items"]) == 1 and listed["items"][0]["id"] == r1.json()["id"]
    )  # newest first
    assert a.post(f"/v1/audits/{r1.json()['id']}/cancel").status_code == 409


def test_bad_audit_requests_are_4xx_with_one_line(service, inputs):
    a = service["clients"]["a_submit"]
    imi, dem = service["imitator"]["sha256"], service["demos"]["sha256"]
    power = upload(a, "imitators", inputs["power"]).json()["sha256"]
    cases = [
        (b"not json", 400, "JSON"),
        (json.dumps([1, 2]).encode(), 422, "JSON object"),
        (json.dumps({"imitator": imi}).encode(), 422, "demonstrations"),
        (json.dumps({"imitator": imi, "demonstrations": dem, "evil": 1}).encode(), 422, "unknown field"),
        (
            json.dumps({"imitator": imi, "demonstrations": dem, "settings": {"episodes": 10**9}}).encode(),
            422,
            "episodes",
        ),
        (json.dumps({"imitator": imi, "demonstrations": dem, "settings": {"alpha": "high"}}).encode(), 422, "alpha"),
        (
            json.dumps({"imitator": imi, "demonstrations": dem, "settings": {"exec": "rm -rf"}}).encode(),
            422,
            "unknown setting",
        ),
        (
            json.dumps({"imitator": imi, "demonstrations": dem, "settings": {"score_rule": "mean"}}).encode(),
            422,
            "score_rule",
        ),
        (
            json.dumps({"imitator": imi, "demonstrations": dem, "policy": {"max_unlike_share": 3}}).encode(),
            422,
            "max_unlike_share",
        ),
        (json.dumps({"imitator": imi, "demonstrations": dem, "settings": {"alpha": 0.0005}}).encode(), 422, "held-out"),
        (json.dumps({"imitator": power, "demonstrations": dem}).encode(), 422, "PowerSeeking"),
        (
            json.dumps({"imitator": imi, "demonstrations": dem, "env": "imitaudit/PowerSeeking-v0"}).encode(),
            422,
            "not imitaudit/PowerSeeking",
        ),
    ]
    for body, status, fragment in cases:
        r = a.post("/v1/audits", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == status and fragment in r.json()["error"] and "\n" not in r.json()["error"], (
            body,
            r.text,
        )


def _misfit(tmp_path) -> bytes:
    from models.checkpoint import save_imitator
    from models.imitator import ImitatorConfig
    from models.registry import build

    return save_imitator(
        build("mlp", ImitatorConfig(obs_dim=12, n_actions=5, hidden=8)),
        tmp_path / "misfit.safetensors",
        env_id="imitaudit/OffSwitch-v0",
    ).read_bytes()


def _corpus(inputs, tmp_path):
    """At least 30 malformed uploads: (kind, body bytes or None, content type, expected status)."""
    tensors, meta = read_safetensors(inputs["second"])
    good = inputs["second"].read_bytes()

    def st(t, m):
        p = tmp_path / "x.safetensors"
        save_file(t, str(p), metadata=m)
        return p.read_bytes()

    def header(h: dict, payload: bytes = b"\0" * 16) -> bytes:
        raw = json.dumps(h).encode()
        return len(raw).to_bytes(8, "little") + raw + payload

    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    cfg = json.loads(meta["config"])
    drop = dict(tensors)
    drop.pop(next(iter(drop)))
    first = next(iter(tensors))
    demos_t, demos_m = read_safetensors(inputs["demos"])
    cases = {
        "empty": b"",
        "one byte": b"\x00",
        "seven bytes": b"\x01" * 7,
        "lying header length": (2**40).to_bytes(8, "little") + b"{}",
        "header longer than file": (5000).to_bytes(8, "little") + b'{"a":1}',
        "header not JSON": (9).to_bytes(8, "little") + b"{not json",
        "header a list": (6).to_bytes(8, "little") + b"[1,2]x",
        "overlapping offsets": header(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            }
        ),
        "offsets past the end": header({"a": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}}),
        "unknown dtype": header({"a": {"dtype": "Q99", "shape": [2], "data_offsets": [0, 8]}}),
        "shape disagrees with offsets": header({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}),
        "metadata not strings": header({"__metadata__": {"arch": 3}}),
        "pickle": pickle.dumps({"state_dict": {"w": [1.0]}}, protocol=4),
        "zip (torch.save)": zipped.getvalue(),
        "truncated checkpoint": good[: len(good) // 2],
        "random bytes": np.random.default_rng(0).bytes(4096),
        "html page": b"<!doctype html><html><body>hi</body></html>",
        "no metadata": st(tensors, None),
        "unknown schema": st(tensors, {**meta, "imitaudit.schema": "imitaudit.imitator/9"}),
        "unknown arch": st(tensors, {**meta, "arch": "evil"}),
        "missing arch": st(tensors, {k: v for k, v in meta.items() if k != "arch"}),
        "config not JSON": st(tensors, {**meta, "config": "{nope"}),
        "config unknown field": st(tensors, {**meta, "config": json.dumps({**cfg, "exec": "rm"})}),
        "obs shape does not fit the env": st(
            tensors, {**meta, "config": json.dumps({**cfg, "obs_dim": 12}), "obs_shape": "[12]"}
        ),
        "a consistent checkpoint whose obs do not fit its env": _misfit(tmp_path),
        "n_actions does not fit the metadata": st(tensors, {**meta, "n_actions": "4"}),
        "env not installed": st(tensors, {**meta, "env_id": "nowhere/Nope-v0"}),
        "missing tensor": st(drop, meta),
        "unexpected tensor": st({**tensors, "backdoor.weight": np.zeros(3, dtype=np.float32)}, meta),
        "wrong tensor shape": st({**tensors, first: np.zeros((3, 3), dtype=np.float32)}, meta),
        "integer weights": st({**tensors, first: tensors[first].astype(np.int64)}, meta),
        "NaN weights": st({**tensors, first: np.full_like(tensors[first], np.nan)}, meta),
    }
    out = [("imitators", body, "application/octet-stream") for body in cases.values()]
    names = list(cases)
    demo_cases = {
        "a checkpoint as demonstrations": good,
        "demonstrations truncated": inputs["demos"].read_bytes()[:5000],
        "demonstrations with float actions": st({**demos_t, "actions": demos_t["actions"].astype(np.float32)}, demos_m),
        "demonstrations missing rewards": st({k: v for k, v in demos_t.items() if k != "rewards"}, demos_m),
        "demonstrations of an unknown schema": st(demos_t, {**demos_m, "imitaudit.schema": "other/1"}),
    }
    out += [("demonstrations", body, "application/octet-stream") for body in demo_cases.values()]
    names += list(demo_cases)
    protocol = {
        "text/plain body": ("imitators", b"hello", "text/plain"),
        "multipart without a file part": (
            "imitators",
            b'--xx\r\nContent-Disposition: form-data; name="other"\r\n\r\nhi\r\n--xx--\r\n',
            "multipart/form-data; boundary=xx",
        ),
        "multipart without a boundary": ("imitators", b"--xx\r\n", "multipart/form-data"),
        "multipart garbage": ("imitators", b"\x00\x01garbage" * 10, "multipart/form-data; boundary=xx"),
    }
    out += list(protocol.values())
    names += list(protocol)
    return names, out


def test_thirty_plus_malformed_uploads_are_all_4xx_and_the_server_stays_healthy(service, inputs, tmp_path):
    a = service["clients"]["a_submit"]
    before = a.get("/v1/imitators").json()["total"]
    names, corpus = _corpus(inputs, tmp_path)
    assert len(corpus) >= 30
    for name, (kind, body, ctype) in zip(names, corpus, strict=True):
        r = a.post(f"/v1/{kind}", content=body, headers={"Content-Type": ctype, "X-Imitaudit-Name": "bad.safetensors"})
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        error = r.json()["error"]
        assert error and "\n" not in error and "Traceback" not in error, (name, error)
    assert httpx.get(f"{service['url']}/healthz").json()["status"] == "ok"
    assert a.get("/v1/imitators").json()["total"] == before  # nothing stored, nothing lost
    assert a.get(f"/v1/audits/{service['audit']}/report").status_code == 200
    metrics = a.get("/metrics").text
    assert 'status="500"' not in metrics


def test_oversized_uploads_get_413_while_streaming(service):
    a = service["clients"]["a_submit"]
    big = b"\0" * (13 * 1024 * 1024)
    assert a.post("/v1/imitators", content=big, headers={"Content-Type": "application/octet-stream"}).status_code == 413

    def chunks():  # no Content-Length: the byte counter has to catch it
        for _ in range(14):
            yield b"\0" * (1024 * 1024)

    r = a.post("/v1/imitators", content=chunks(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert httpx.get(f"{service['url']}/healthz").status_code == 200


def test_metrics_count_jobs_uploads_and_requests(service):
    text = service["clients"]["a_read"].get("/metrics").text
    assert 'imitaudit_jobs{state="succeeded"}' in text
    assert "imitaudit_upload_bytes_count" in text and 'imitaudit_http_request_seconds_count{method="GET"' in text
    assert "imitaudit_audit_wall_seconds_count" in text
    # project beta has run no audit: it sees no job of alpha's
    other = service["clients"]["b_read"].get("/metrics").text
    assert 'imitaudit_jobs{state="succeeded"} 0.0' in other and "imitaudit_audit_wall_seconds_count 0.0" in other


def test_openapi_documents_the_routes(service):
    spec = httpx.get(f"{service['url']}/openapi.json").json()
    for path in (
        "/v1/imitators",
        "/v1/audits",
        "/v1/audits/{audit_id}/events",
        "/v1/audits/{audit_id}/cancel",
        "/healthz",
    ):
        assert path in spec["paths"]


def test_cancel_a_queued_audit_at_once_and_a_running_one_at_a_stage_boundary(service):
    import time

    from .conftest import wait_for

    a = service["clients"]["a_submit"]
    body = {
        "imitator": service["imitator"]["sha256"],
        "demonstrations": service["demos"]["sha256"],
        "settings": {"episodes": 256, "folds": 4, "disc_steps": 600},
    }
    running = a.post("/v1/audits", json=body).json()["id"]
    queued = a.post("/v1/audits", json={**body, "settings": {**body["settings"], "seed": 7_000_000}}).json()["id"]
    deadline = time.monotonic() + 120
    while a.get(f"/v1/audits/{running}").json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = a.post(f"/v1/audits/{queued}/cancel")
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    r = a.post(f"/v1/audits/{running}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"]
    final = wait_for(a, running, timeout=120)
    assert final["state"] == "cancelled" and final["passed"] is None
    assert a.get(f"/v1/audits/{running}/report").status_code == 409
    assert a.get(f"/v1/audits/{queued}").json()["attempts"] == 0  # never ran
