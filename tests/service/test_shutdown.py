"""`kill -TERM` of the server alone (not its process group, as a user or a supervisor sends it): the server, its
worker child and its upload validator's process all end, and nothing leaks."""

import os
import signal
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def test_sigterm_to_the_server_alone_ends_its_children(tmp_path, launch):
    api = launch("serve", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")  # with its in-process worker child
    pid = api.popen.pid
    deadline = time.monotonic() + 120
    while len(kids := _children(pid)) < 3:  # the worker, the validator's slot process and its resource tracker
        assert time.monotonic() < deadline, (kids, api.log.read_text()[-2000:])
        time.sleep(0.2)
    os.kill(pid, signal.SIGTERM)
    api.popen.wait(timeout=120)
    deadline = time.monotonic() + 120
    while any(_alive(k) for k in kids):
        assert time.monotonic() < deadline, [k for k in kids if _alive(k)]
        time.sleep(0.2)
    assert "leaked" not in api.log.read_text(), api.log.read_text()[-2000:]
