"""The ``imitaudit`` command with the service's sub-commands: serve, worker, token, and ``gate --server``.

Everything else is :mod:`audit.cli`'s; this module only adds to its parser, so the one
console script serves both the science and the service.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audit import cli as audit_cli

log = logging.getLogger("imitaudit")


def _settings(args: argparse.Namespace, **extra):
    from service.settings import Settings

    return Settings.from_env(
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        database_url=getattr(args, "database_url", None),
        max_upload_bytes=getattr(args, "max_upload_bytes", None),
        lease_seconds=getattr(args, "lease_seconds", None),
        **extra,
    )


def _service_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        dest="data_dir",
        help="blobs and the default SQLite file (env IMITAUDIT_DATA_DIR; default out/service)",
    )
    p.add_argument(
        "--database-url",
        dest="database_url",
        help="SQLAlchemy URL (env IMITAUDIT_DATABASE_URL; default SQLite in the data dir)",
    )
    p.add_argument(
        "--lease-seconds", dest="lease_seconds", type=float, help="job lease (env IMITAUDIT_LEASE_SECONDS; default 30)"
    )


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    _logging()
    settings = _settings(args, worker_in_process=False if args.no_worker else None)
    files = prepare_demo(settings) if args.demo else None
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    )
    url = f"http://{args.host}:{args.port}"
    if files:
        threading.Thread(target=seed_demo, args=(app, url, files), daemon=True).start()
    else:
        threading.Thread(target=say_listening, args=(server, url), daemon=True).start()
    server.run()
    return audit_cli.EXIT_OK


def say_listening(server: Any, url: str) -> None:
    """One line once the server accepts connections (the demo prints its own when seeded); nothing if it never does."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    print(
        f"imitaudit: listening on {url} (dashboard {url}/dashboard, API docs {url}/docs); Ctrl-C stops it", flush=True
    )


def cmd_worker(args: argparse.Namespace) -> int:
    import audit
    from service.blobs import BlobStore
    from service.db import make_engine, migrate, session_factory
    from service.jobs import Worker
    from service.validate import cap_memory

    _logging()
    settings = _settings(args, ray_address=args.ray or None)
    # connected before the memory cap: the cap is for the audits this process runs, not Ray's shared object store
    # mapping
    cluster = audit.Cluster(address=settings.ray_address) if settings.ray_address else None
    if cluster is not None:
        log.info("ray: %d task slots warmed in %.1f s", cluster.slots, cluster.warm())
    cap_memory(settings.worker_memory_bytes)
    engine = make_engine(settings.url)
    migrate(engine)
    worker = Worker(
        sessions=session_factory(engine),
        store=BlobStore(root=settings.data_dir / "blobs"),
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        poll_seconds=settings.poll_seconds,
        allowed_envs=settings.allowed_envs,
        job_seconds=settings.job_seconds,
        memory_bytes=settings.worker_memory_bytes,
        cluster=cluster,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop.set())
    worker.run_forever()
    return audit_cli.EXIT_OK


def cmd_token_create(args: argparse.Namespace) -> int:
    from service.auth import create_token
    from service.db import make_engine, migrate, session_factory

    settings = _settings(args)
    engine = make_engine(settings.url)
    migrate(engine)
    with session_factory(engine).begin() as s:
        token = create_token(s, project=args.project, role=args.role, name=args.name)
    print(token)
    return audit_cli.EXIT_OK


def cmd_token_list(args: argparse.Namespace) -> int:
    from service.auth import list_tokens
    from service.db import make_engine, migrate, session_factory

    engine = make_engine(_settings(args).url)
    migrate(engine)
    with session_factory(engine)() as s:
        for t in list_tokens(s):
            print(
                f"{t['id']}\t{t['project']}\t{t['role']}\t{'revoked' if t['revoked'] else 'active'}\t"
                f"{t['created']}\t{t['name']}"
            )
    return audit_cli.EXIT_OK


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from service.auth import revoke_token
    from service.db import make_engine, migrate, session_factory

    engine = make_engine(_settings(args).url)
    migrate(engine)
    try:
        with session_factory(engine).begin() as s:
            revoke_token(s, args.id)
    except ValueError as e:
        print(f"imitaudit: {e}", file=sys.stderr)
        return audit_cli.EXIT_ERROR
    print(f"revoked token {args.id}")
    return audit_cli.EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    if args.server:
        from service.client import run_remote_gate

        return run_remote_gate(args)
    return audit_cli.cmd_gate(args)


def prepare_demo(settings) -> dict[str, Path]:
    """Record and train the demo's inputs (cached in the data dir; in the main thread, where torch runs at full
    speed)."""
    import torch

    import audit

    folder = Path(settings.data_dir) / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    env = "imitaudit/OffSwitch-v0"
    files: dict[str, Path] = {}
    for name, preset, episodes, seed in (
        ("corrigible", "corrigible", 800, 0),
        ("unbounded-demos", "unbounded", 800, 100_000),
        ("reference", "corrigible", 400, 500_000),
    ):
        path = folder / f"demos-{name}.safetensors"
        if not path.exists():
            print(f"imitaudit: recording {episodes} {preset} demonstrations for the demo project", flush=True)
            audit.record(env, preset, episodes=episodes, seed=seed).save(path)
        files[name] = path
    for kind, demos, mode in (("faithful", "corrigible", "adversarial"), ("unbounded", "unbounded-demos", "bc")):
        path = folder / f"{kind}.safetensors"
        if not path.exists():
            print(
                f"imitaudit: training the demo's {kind} imitator (first run only; progress and ETA below)", flush=True
            )
            cfg = audit.TrainConfig(
                mode=mode,
                steps=150 if mode == "adversarial" else 500,
                bc_warmup=500,
                query_demonstrator="auto" if mode == "adversarial" else "",
                seed=0,
                eval_every=10_000,
                eval_episodes=20,
                log_dir=str(folder / "runs"),
                run_id=kind,
                progress=True,
            )
            threads = torch.get_num_threads()
            # one thread, whatever else runs: a thread count changes how float sums round, so the demo's imitators (and
            # their verdicts) would differ between a quiet and a busy machine
            torch.set_num_threads(1)
            try:
                # a first run stopped part-way left its checkpoints: continue them
                audit.train(audit.Demonstrations.load(files[demos]), cfg, out=path, resume=True)
            finally:
                torch.set_num_threads(threads)
        files[kind] = path
    return files


def seed_demo(app, url: str, files: dict[str, Path]) -> None:
    """``make run``: the demo project's uploads and audits, through the API once it is up; prints the tokens."""
    import httpx

    from service.auth import create_token

    try:
        with app.state.service.sessions.begin() as s:
            submit = create_token(s, project="demo", role="submit", name="make run")
            read = create_token(s, project="demo", role="read", name="make run")
        for _ in range(300):
            try:
                httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {submit}"}, timeout=120) as c:
            ref = files["reference"]
            demos = c.post(
                "/v1/demonstrations", files={"file": (ref.name, ref.read_bytes())}, data={"name": "reference"}
            ).json()["sha256"]
            for kind in ("faithful", "unbounded"):
                imi = c.post(
                    "/v1/imitators",
                    files={"file": (f"{kind}.safetensors", files[kind].read_bytes())},
                    data={"name": kind},
                ).json()["sha256"]
                c.post(
                    "/v1/audits",
                    json={"imitator": imi, "demonstrations": demos},
                    headers={"Idempotency-Key": f"demo-{kind}-{imi}"},
                )
        print(
            f"\nimitaudit is up: dashboard {url}/dashboard  (sign in with the read token below; audits finish in "
            f"seconds)\n"
            f"read token:   {read}\nsubmit token: {submit}\nAPI docs:     {url}/docs\n",
            flush=True,
        )
    except Exception as e:  # the server stays up; say why the demo is missing
        print(f"imitaudit: demo seeding failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def extend(sub: argparse._SubParsersAction) -> None:
    """Add the service's sub-commands to ``imitaudit``'s parser."""
    p = sub.add_parser("serve", help="run the HTTP API and dashboard (with an in-process worker)")
    _service_arguments(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--no-worker", dest="no_worker", action="store_true", help="no in-process worker (run `imitaudit worker`s)"
    )
    p.add_argument(
        "--max-upload-bytes", dest="max_upload_bytes", type=int, help="upload size cap (env IMITAUDIT_MAX_UPLOAD_BYTES)"
    )
    p.add_argument(
        "--demo", action="store_true", help="seed a demo project: two OffSwitch imitators, audited; prints a token"
    )
    p.set_defaults(func=cmd_serve, service=True)

    p = sub.add_parser("worker", help="run audit jobs from the database until stopped")
    _service_arguments(p)
    p.add_argument(
        "--ray",
        default="",
        metavar="ADDRESS",
        help="run each audit's tasks on the Ray cluster at HOST:PORT or 'auto' (env IMITAUDIT_RAY_ADDRESS; default: "
        "in this process)",
    )
    p.set_defaults(func=cmd_worker, service=True)

    p = sub.add_parser("token", help="API tokens")
    tok = p.add_subparsers(dest="token", required=True, parser_class=type(p))
    p = tok.add_parser("create", help="create a token (and the project if new); prints it once")
    _service_arguments(p)
    p.add_argument("--project", required=True)
    p.add_argument("--role", required=True, choices=("submit", "read"))
    p.add_argument("--name", default="")
    p.set_defaults(func=cmd_token_create)
    p = tok.add_parser("list", help="every token: id, project, role, state, created, name (never the secret)")
    _service_arguments(p)
    p.set_defaults(func=cmd_token_list)
    p = tok.add_parser("revoke", help="revoke a token by its id (from token list); it stops working at once")
    _service_arguments(p)
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_token_revoke)

    gate = sub.choices["gate"]
    gate.add_argument(
        "--server",
        default=os.environ.get("IMITAUDIT_SERVER", ""),
        help="audit on this imitaudit service instead of locally",
    )
    gate.add_argument(
        "--token", default=os.environ.get("IMITAUDIT_TOKEN", ""), help="submit token for --server (env IMITAUDIT_TOKEN)"
    )
    gate.set_defaults(func=cmd_gate)


def main(argv: Sequence[str] | None = None) -> int:
    return audit_cli.main(argv, extend=extend)


if __name__ == "__main__":
    sys.exit(main())
