"""`make run` from nothing: `serve --demo` records and trains the demo's inputs, starts, and audits both imitators."""

import re
import time

import httpx
import pytest

from .conftest import wait_for


@pytest.mark.slow
@pytest.mark.long
def test_serve_demo_from_an_empty_data_dir_trains_starts_and_audits(launch, tmp_path):
    # generous: the demo trains two imitators before the server answers (two minutes on a quiet 2-core machine)
    api = launch("serve", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", args=("--demo",), healthy_within=1800.0)
    token = None
    for _ in range(600):
        found = re.search(r"submit token: (\S+)", api.log.read_text())
        if found:
            token = found.group(1)
            break
        time.sleep(0.5)
    assert token, api.log.read_text()[-2000:]
    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    audits = client.get("/v1/audits").json()["items"]
    assert len(audits) == 2
    finals = [wait_for(client, a["id"], timeout=1800.0) for a in audits]
    assert all(f["state"] == "succeeded" for f in finals), finals
    items = client.get("/v1/imitators").json()["items"]
    assert {i["name"] for i in items} == {"faithful", "unbounded"}
    names = {key: i["name"] for i in items for key in (i["id"], i["sha256"])}
    # the tour ends green: the faithful imitator passes its gate and the unbounded one fails it
    verdicts = {names[f["imitator"]]: f["verdict"] for f in finals}
    assert verdicts == {"faithful": "pass", "unbounded": "fail"}, finals
    log = api.log.read_text()
    assert "training the demo's faithful imitator" in log and "ETA" in log
