"""Service fixtures: small real inputs, a real PostgreSQL on loopback, and `imitaudit serve` / `imitaudit worker`
processes.

PostgreSQL comes from Debian's package (``make test`` installs it); its absence is a test
failure, never a skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from audit.data.demonstrations import record
from audit.training.config import TrainConfig
from audit.training.run import train
from models.checkpoint import save_imitator
from models.imitator import ImitatorConfig
from models.registry import build

ENV = "imitaudit/OffSwitch-v0"
BIN = str(Path(sys.executable).with_name("imitaudit"))
#: Small audits: the service's behaviour, not the auditor's power, is under test here.
FAST = {"episodes": 16, "folds": 2, "disc_steps": 30}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """Real checkpoints and demonstrations: corrigible demos, an unbounded imitator, a second imitator, another env's
    imitator."""
    root = tmp_path_factory.mktemp("inputs")
    demos = record(ENV, "corrigible", episodes=240, seed=0).save(root / "corrigible.safetensors")
    cfg = dict(
        arch="mlp",
        mode="bc",
        steps=150,
        seed=0,
        hidden=32,
        eval_every=1000,
        eval_episodes=10,
        log_dir=str(root / "runs"),
        progress=False,
    )
    unbounded = train(
        record(ENV, "unbounded", episodes=200, seed=1000),
        TrainConfig(run_id="u", **cfg),
        out=root / "unbounded.safetensors",
    ).path
    second = save_imitator(
        build("gru", ImitatorConfig(obs_dim=406, n_actions=5, hidden=16)), root / "second.safetensors", env_id=ENV
    )
    power = save_imitator(
        build("mlp", ImitatorConfig(obs_dim=325, n_actions=5, hidden=8)),
        root / "power.safetensors",
        env_id="imitaudit/PowerSeeking-v0",
    )
    return {
        "root": root,
        "demos": Path(demos),
        "unbounded": Path(unbounded),
        "second": Path(second),
        "power": Path(power),
    }


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server on 127.0.0.1 for this test session (trust auth, throwaway data dir)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.fail("PostgreSQL is not installed (apt-get install postgresql; `make test` does this)")
    root = Path(tempfile.mkdtemp(prefix="imitaudit-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(root, 0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return f"{server_url}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'imitaudit.db'}"
    return fresh_database(request.getfixturevalue("postgres"))


def in_process(settings, *, role: str = "submit", **client_options):
    """The app in-process (no worker) with a fresh token of ``role``: (TestClient carrying the token, the token, the
    app)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.auth import create_token

    app = create_app(settings, start_worker=False)
    with app.state.service.sessions.begin() as s:
        token = create_token(s, project="p", role=role)
    client = TestClient(app, **client_options)
    client.headers["Authorization"] = f"Bearer {token}"
    return client, token, app


def make_token(database_url: str, project: str, role: str) -> str:
    from service.auth import create_token
    from service.db import make_engine, migrate, session_factory

    engine = make_engine(database_url)
    migrate(engine)
    with session_factory(engine).begin() as s:
        token = create_token(s, project=project, role=role)
    engine.dispose()
    return token


class Proc:
    """A started `imitaudit serve` or `imitaudit worker` process."""

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, url: str | None = None, cwd: Path | None = None
    ) -> None:
        self.log = log
        self.url = url
        self.popen = subprocess.Popen(
            [BIN, *args], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
        )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not healthy in {timeout} s: {self.log.read_text()[-2000:]}")

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def launch(tmp_path):
    """Start service processes; all are stopped at the end of the test."""
    procs: list[Proc] = []

    def start(
        kind: str,
        *,
        database_url: str,
        data_dir: Path | None = None,
        extra_env: dict | None = None,
        args: tuple = (),
        healthy_within: float = 60.0,
    ) -> Proc:
        data_dir = data_dir or tmp_path / "data"
        env = {
            **os.environ,
            "IMITAUDIT_DATA_DIR": str(data_dir),
            "IMITAUDIT_DATABASE_URL": database_url,
            "OMP_NUM_THREADS": "1",
            **(extra_env or {}),
        }
        log = tmp_path / f"{kind}-{len(procs)}.log"
        if kind == "serve":
            port = free_port()
            proc = Proc(["serve", "--port", str(port), *args], env, log, url=f"http://127.0.0.1:{port}")
            procs.append(proc)
            proc.wait_healthy(healthy_within)
        else:
            proc = Proc(["worker", *args], env, log)
            procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.stop()


def upload(client: httpx.Client, kind: str, path: Path, name: str = "") -> httpx.Response:
    return client.post(
        f"/v1/{kind}",
        files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        data={"name": name or path.stem},
    )


def wait_for(
    client: httpx.Client, audit_id: str, states=("succeeded", "failed", "cancelled"), timeout: float = 300.0
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/audits/{audit_id}").json()
        if body["state"] in states:
            return body
        time.sleep(0.2)
    raise AssertionError(f"audit {audit_id} still {body['state']} after {timeout} s")


def hanging_onnx(good: Path, *, quiet: tuple[int, ...]) -> bytes:
    """The good graph behind a Loop of 10^9 x prod |B - q| iterations over the batch sizes ``quiet``: instant at those,
    endless at any other. Its output is obs + 0, so the policy is otherwise the same."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper

    model = onnx.load_model(str(good))
    obs = model.graph.input[0].name
    for node in model.graph.node:
        node.input[:] = ["obs_h" if i == obs else i for i in node.input]
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["x_in", "zero"], ["x_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", T.INT64, []),
            helper.make_tensor_value_info("c_in", T.BOOL, []),
            helper.make_tensor_value_info("x_in", T.FLOAT, []),
        ],
        [helper.make_tensor_value_info("c_out", T.BOOL, []), helper.make_tensor_value_info("x_out", T.FLOAT, [])],
        initializer=[helper.make_tensor("zero", T.FLOAT, [], [0.0])],
    )
    front = [helper.make_node("Shape", [obs], ["shp"], end=1), helper.make_node("Squeeze", ["shp"], ["B"])]
    inits = [
        helper.make_tensor("k", T.INT64, [], [10**9]),
        helper.make_tensor("yes", T.BOOL, [], [True]),
        helper.make_tensor("z", T.FLOAT, [], [0.0]),
    ]
    factor = "k"
    for i, q in enumerate(quiet):
        inits.append(helper.make_tensor(f"q{i}", T.INT64, [], [q]))
        front += [
            helper.make_node("Sub", ["B", f"q{i}"], [f"d{i}"]),
            helper.make_node("Abs", [f"d{i}"], [f"a{i}"]),
            helper.make_node("Mul", [factor, f"a{i}"], [f"f{i}"]),
        ]
        factor = f"f{i}"
    front += [
        helper.make_node("Loop", [factor, "yes", "z"], ["xf"], body=body),
        helper.make_node("Add", [obs, "xf"], ["obs_h"]),
    ]
    model.graph.initializer.extend(inits)
    nodes = front + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model.SerializeToString()


@pytest.fixture(scope="session")
def service(tmp_path_factory, inputs):
    """One `imitaudit serve` (SQLite, in-process worker) with two projects; A has a finished audit. It runs in a folder
    that holds a secret file, as `make run` runs in the checkout (an upload must never read it)."""
    root = tmp_path_factory.mktemp("service")
    (root / "secret.txt").write_bytes(b"TOPSECRET")
    url_db = f"sqlite:///{root / 'imitaudit.db'}"
    tokens = {
        "a_submit": make_token(url_db, "alpha", "submit"),
        "a_read": make_token(url_db, "alpha", "read"),
        "b_submit": make_token(url_db, "beta", "submit"),
        "b_read": make_token(url_db, "beta", "read"),
    }
    port = free_port()
    env = {
        **os.environ,
        "IMITAUDIT_DATA_DIR": str(root / "data"),
        "IMITAUDIT_DATABASE_URL": url_db,
        "IMITAUDIT_MAX_UPLOAD_BYTES": str(12 * 1024 * 1024),
        "OMP_NUM_THREADS": "1",
    }
    proc = Proc(["serve", "--port", str(port)], env, root / "serve.log", url=f"http://127.0.0.1:{port}", cwd=root)
    try:
        proc.wait_healthy()
        clients = {
            k: httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {t}"}, timeout=120)
            for k, t in tokens.items()
        }
        a = clients["a_submit"]
        imi = upload(a, "imitators", inputs["unbounded"], "unbounded").json()
        dem = upload(a, "demonstrations", inputs["demos"], "corrigible").json()
        resp = a.post(
            "/v1/audits",
            json={"imitator": imi["sha256"], "demonstrations": dem["sha256"], "settings": {**FAST, "episodes": 32}},
        )
        audit_id = resp.json()["id"]
        final = wait_for(a, audit_id)
        assert final["state"] == "succeeded", final
        yield {
            "url": proc.url,
            "clients": clients,
            "tokens": tokens,
            "imitator": imi,
            "demos": dem,
            "audit": audit_id,
            "proc": proc,
        }
    finally:
        proc.stop()
