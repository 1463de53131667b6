"""The remote CI gate: upload, submit, follow progress over server-sent events, write the local gate's artifacts.

Exit codes match the local gate: 0 pass, 1 fail, 2 error (server unreachable, token
refused, a rejected upload, an audit that failed or was cancelled).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx


class GateError(ValueError):
    """The remote gate could not reach a verdict (one line)."""


def _error(resp: httpx.Response, what: str) -> GateError:
    try:
        detail = resp.json().get("error", resp.text)
    except (json.JSONDecodeError, AttributeError):
        detail = resp.text[:200]
    if resp.status_code in (401, 403):
        return GateError(f"auth refused by the server ({resp.status_code}) while {what}: {detail}")
    return GateError(f"{what}: server said {resp.status_code}: {detail}")


class RemoteGate:
    """One gate run against ``server`` with ``token``."""

    def __init__(self, *, server: str, token: str, timeout: float = 60.0) -> None:
        if not server.startswith(("http://", "https://")):
            raise GateError(f"--server must be an http(s) URL, got {server!r}")
        self.server = server.rstrip("/")
        self.client = httpx.Client(base_url=self.server, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def _call(self, method: str, path: str, what: str, retries: int = 3, **kw) -> httpx.Response:
        for attempt in range(retries):
            try:
                resp = self.client.request(method, path, **kw)
            except httpx.TransportError as e:
                if attempt == retries - 1:
                    raise GateError(f"server unreachable at {self.server} while {what}: {type(e).__name__}") from None
                time.sleep(0.5 * (attempt + 1))
                continue
            if resp.status_code >= 500 and attempt < retries - 1:
                time.sleep(0.5 * (attempt + 1))
                continue
            if resp.status_code >= 400:
                raise _error(resp, what)
            return resp
        raise GateError(f"{what}: no answer")

    def upload(self, kind: str, path: str | Path) -> str:
        path = Path(path)
        if not path.is_file():
            raise GateError(f"{path}: no such file")
        with open(path, "rb") as f:
            resp = self._call(
                "POST",
                f"/v1/{kind}",
                f"uploading {path.name}",
                files={"file": (path.name, f, "application/octet-stream")},
                data={"name": path.stem},
            )
        return resp.json()["sha256"]

    def submit(self, imitator: str, demos: str, settings: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
        key = uuid.uuid4().hex  # the same key on every retry of this POST: at most one audit
        body = {"imitator": imitator, "demonstrations": demos, "settings": settings, "policy": policy}
        return self._call(
            "POST", "/v1/audits", "submitting the audit", json=body, headers={"Idempotency-Key": key}
        ).json()

    def follow(self, audit_id: str, progress=None, timeout: float = 3600.0) -> dict[str, Any]:
        """Follow the audit's events until it ends; returns its final state (falls back to polling)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.client.stream(
                    "GET", f"/v1/audits/{audit_id}/events", timeout=httpx.Timeout(30.0, read=60.0)
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        raise _error(resp, "following the audit")
                    event = None
                    for line in resp.iter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            data = json.loads(line[5:])
                            if progress:
                                progress(data.get("stage") or data["state"], float(data.get("progress") or 0.0))
                            if event == "end":
                                return self._call("GET", f"/v1/audits/{audit_id}", "reading the audit").json()
            except httpx.TransportError:
                time.sleep(1.0)  # the stream broke (server restart): reconnect
            state = self._call("GET", f"/v1/audits/{audit_id}", "reading the audit").json()
            if state["state"] in ("succeeded", "failed", "cancelled"):
                return state
        raise GateError(f"audit {audit_id} did not finish within {timeout:.0f} s")

    def report(self, audit_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/audits/{audit_id}/report", "downloading the report").json()


def run_remote_gate(args) -> int:
    """``imitaudit gate --server URL --token T ...``: the local gate's artifacts and exit codes, audited by the
    service."""
    from tqdm import tqdm

    from audit import api_values, check_gate
    from audit.cli import audit_config, finish_gate

    token = args.token
    if not token:
        raise GateError("--server needs --token (or IMITAUDIT_TOKEN)")
    gate = RemoteGate(server=args.server, token=token)
    gate._call("GET", "/healthz", "checking the server")
    config = audit_config(args)  # the local gate's reading of the same flags
    check_gate(config)
    settings, policy = (
        api_values(config),
        api_values(config.policy),
    )  # every API field: the server audits exactly this config
    imitator = gate.upload("imitators", args.imitator)
    demos = gate.upload("demonstrations", args.demos)
    job = gate.submit(imitator, demos, settings, policy)
    print(f"audit {job['id']} submitted to {gate.server}", file=sys.stderr)
    with tqdm(total=100, desc="audit", unit="%", disable=args.quiet, file=sys.stderr, leave=False) as bar:

        def progress(stage: str, fraction: float) -> None:
            bar.set_description(f"audit: {stage}")
            bar.update(max(0, round(fraction * 100) - bar.n))

        final = gate.follow(job["id"], progress)
    if final["state"] != "succeeded":
        raise GateError(f"audit {job['id']} {final['state']}: {final.get('error') or 'no reason given'}")
    return finish_gate(gate.report(job["id"]), args.out)
