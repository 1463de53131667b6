"""Benchmark: the service on loopback — request throughput and latency under 50 concurrent clients,
and submit-to-verdict time of the default audit through the API against the same audit by the CLI.

    python -m bench.service --out BENCHMARKS.md [--postgres postgresql+psycopg://postgres@127.0.0.1:5432]

Bounded in count and time: each load phase stops after ``--requests`` requests or
``--seconds`` seconds, whichever comes first. The server is `imitaudit serve` as a separate
process (SQLite by default); the load generator is httpx's async client in this process.
"""

from __future__ import annotations

import argparse
import asyncio
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
import numpy as np

BEGIN, END = "<!-- bench/service.py begin -->", "<!-- bench/service.py end -->"
PG_BEGIN, PG_END = "<!-- bench/service.py postgresql begin -->", "<!-- bench/service.py postgresql end -->"
ENV = "imitaudit/OffSwitch-v0"
BIN = str(Path(sys.executable).with_name("imitaudit"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inputs(folder: Path, *, arch: str = "gru", steps: int = 400) -> tuple[Path, Path]:
    """A BC imitator (GRU by default) of corrigible OffSwitch demonstrations and held-out demonstrations (cached)."""
    from audit.data.demonstrations import Demonstrations, record
    from audit.training.config import TrainConfig
    from audit.training.run import train

    folder.mkdir(parents=True, exist_ok=True)
    demos, held = folder / "train.safetensors", folder / "heldout.safetensors"
    imi = folder / ("imitator.safetensors" if arch == "gru" else f"{arch}.safetensors")
    if not demos.exists():
        record(ENV, "corrigible", episodes=1000, seed=0).save(demos)
    if not held.exists():
        record(ENV, "corrigible", episodes=600, seed=500_000).save(held)
    if not imi.exists():
        cfg = TrainConfig(
            arch=arch,
            mode="bc",
            steps=steps,
            seed=0,
            eval_every=10_000,
            eval_episodes=20,
            log_dir=str(folder / "runs"),
            progress=False,
        )
        train(Demonstrations.load(demos), cfg, out=imi)
    return imi, held


class Server:
    def __init__(self, data: Path, database_url: str, worker: bool) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "IMITAUDIT_DATA_DIR": str(data), "IMITAUDIT_DATABASE_URL": database_url}
        args = [BIN, "serve", "--port", str(self.port)] + ([] if worker else ["--no-worker"])
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(data.parent / f"serve-{self.port}.log", "wb"),
            start_new_session=True,
        )
        for _ in range(300):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


def token(data: Path, database_url: str, project: str = "bench") -> str:
    env = {**os.environ, "IMITAUDIT_DATA_DIR": str(data), "IMITAUDIT_DATABASE_URL": database_url}
    return subprocess.run(
        [BIN, "token", "create", "--project", project, "--role", "submit"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


async def load(url: str, tok: str, make_request, *, clients: int, requests: int, seconds: float) -> dict:
    """``clients`` concurrent loops issuing ``make_request(client, i)`` until ``requests`` or ``seconds``."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds

    async def loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            try:
                failed = (await make_request(client, i)).status_code >= 400
            except httpx.TransportError:  # a dropped connection is an error of the run, counted, not its end
                failed = True
            latencies.append(time.perf_counter() - t0)
            errors += failed

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {tok}"}, timeout=60, limits=limits
    ) as client:
        start = time.perf_counter()
        await asyncio.gather(*(loop(client) for _ in range(clients)))
        wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "requests": len(lat),
        "errors": errors,
        "rps": len(lat) / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "wall_s": wall,
    }


def main() -> None:
    from audit.bench.sections import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument(
        "--postgres",
        default="",
        help="a PostgreSQL server URL (postgresql+psycopg://user@host:port): "
        "each phase gets a fresh database on it; default: SQLite files in a temp folder",
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cache", default="out/bench-service")
    args = parser.parse_args()

    imi, held = inputs(Path(args.cache))
    root = Path(tempfile.mkdtemp(prefix="imitaudit-bench-"))
    results: dict[str, dict] = {}
    db_kind = "PostgreSQL" if args.postgres else "SQLite"

    def fresh(name: str) -> str:
        if not args.postgres:
            return f"sqlite:///{root / (name + '.db')}"
        import psycopg

        db = f"bench_{name}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(
            args.postgres.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True
        ) as c:
            c.execute(f"CREATE DATABASE {db}")
        return f"{args.postgres}/{db}"

    try:
        # 1. load on a server without a worker (submitted audits stay queued: the API alone is measured)
        data = root / "load"
        db = fresh("load")
        tok = token(data, db)
        server = Server(data, db, worker=False)
        try:
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tok}"}, timeout=120) as c:
                imi_sha = c.post("/v1/imitators", files={"file": (imi.name, imi.read_bytes())}).json()["sha256"]
                dem_sha = c.post("/v1/demonstrations", files={"file": (held.name, held.read_bytes())}).json()["sha256"]
            # a finished audit to read: run it on a worker process, then stop the worker
            env = {**os.environ, "IMITAUDIT_DATA_DIR": str(data), "IMITAUDIT_DATABASE_URL": db}
            worker = subprocess.Popen(
                [BIN, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tok}"}, timeout=120) as c:
                aid = c.post("/v1/audits", json={"imitator": imi_sha, "demonstrations": dem_sha}).json()["id"]
                while c.get(f"/v1/audits/{aid}").json()["state"] not in ("succeeded", "failed", "cancelled"):
                    time.sleep(0.5)
                report_bytes = len(c.get(f"/v1/audits/{aid}/report").content)
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)

            async def get_report(client, i):
                return await client.get(f"/v1/audits/{aid}/report")

            async def post_audit(client, i):
                return await client.post(
                    "/v1/audits",
                    json={"imitator": imi_sha, "demonstrations": dem_sha, "settings": {"seed": 10_000_000 + i}},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )

            results["GET /v1/audits/{id}/report"] = asyncio.run(
                load(server.url, tok, get_report, clients=args.clients, requests=args.requests, seconds=args.seconds)
            )
            results["POST /v1/audits"] = asyncio.run(
                load(
                    server.url, tok, post_audit, clients=args.clients, requests=args.requests // 2, seconds=args.seconds
                )
            )
        finally:
            server.stop()

        # 2. submit-to-verdict: the default audit through the API (in-process worker) against the CLI, same inputs
        data = root / "verdict"
        db = fresh("verdict")
        tok = token(data, db, project="verdict")
        server = Server(data, db, worker=True)
        try:
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tok}"}, timeout=300) as c:
                t0 = time.perf_counter()
                imi_sha = c.post("/v1/imitators", files={"file": (imi.name, imi.read_bytes())}).json()["sha256"]
                dem_sha = c.post("/v1/demonstrations", files={"file": (held.name, held.read_bytes())}).json()["sha256"]
                aid = c.post(
                    "/v1/audits", json={"imitator": imi_sha, "demonstrations": dem_sha, "settings": {"seed": 1_000_000}}
                ).json()["id"]
                with c.stream("GET", f"/v1/audits/{aid}/events", timeout=httpx.Timeout(300)) as events:
                    for line in events.iter_lines():
                        if line.startswith("event: end"):
                            break
                api_s = time.perf_counter() - t0
                api_verdict = c.get(f"/v1/audits/{aid}").json()["verdict"]
                api_audit_s = c.get(f"/v1/audits/{aid}/report").json()["timings"]["total"]
        finally:
            server.stop()
        t0 = time.perf_counter()
        cli = subprocess.run(
            [BIN, "audit", "--imitator", str(imi), "--demos", str(held), "--out", str(root / "cli"), "--quiet"],
            capture_output=True,
            text=True,
        )
        cli_s = time.perf_counter() - t0
        if cli.returncode != 0:
            raise RuntimeError(cli.stderr)
        import json

        cli_report = json.loads((root / "cli" / "report.json").read_text())
        cli_verdict = "pass" if cli_report["verdict"]["passed"] else "fail"
    except BaseException:
        for log in sorted(root.glob("*.log")):  # the server's side of a failed run
            sys.stderr.write(
                f"--- {log.name} (last lines)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]) + "\n"
            )
        raise
    finally:
        shutil.rmtree(root, ignore_errors=True)

    lines = [
        PG_BEGIN if db_kind == "PostgreSQL" else BEGIN,
        f"## Service (`bench/service.py`, {db_kind})",
        "",
        "Command: `python -m bench.service --out BENCHMARKS.md"
        f"{' --postgres postgresql+psycopg://postgres@127.0.0.1:PORT' if db_kind == 'PostgreSQL' else ''}` "
        f"— one run on loopback, {db_kind}, `imitaudit serve` as its own process "
        f"(one uvicorn worker), {args.clients} concurrent httpx clients, at most {args.requests} GETs / "
        f"{args.requests // 2} POSTs or "
        f"{args.seconds:.0f} s per phase. The report read is the default audit's (256 trajectories, "
        f"{report_bytes / 1e6:.2f} MB of JSON).",
        "",
        "| request | requests | errors | requests/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| `{name}` | {r['requests']} | {r['errors']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        )
    lines += [
        "",
        "| default audit (256 episodes, OffSwitch, GRU) | wall s | verdict |",
        "|---|---:|---|",
        f"| through the API: upload both files, submit, follow events to the verdict | {api_s:.1f} | {api_verdict} |",
        f"| in the service's worker, the audit itself (report timings total) | {api_audit_s:.1f} | |",
        f"| `imitaudit audit` CLI (process start and torch import included) | {cli_s:.1f} | {cli_verdict} |",
        f"| in the CLI, the audit itself (report timings total) | {cli_report['timings']['total']:.1f} | |",
        "",
        f"Service overhead: API submit-to-verdict / CLI wall = **{api_s / cli_s:.2f}x**; "
        f"/ CLI in-process audit = {api_s / cli_report['timings']['total']:.2f}x.",
        PG_END if db_kind == "PostgreSQL" else END,
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
