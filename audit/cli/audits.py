"""``imitaudit audit``, ``gate``, ``monitor``, ``plan``: auditing an imitator, and what an audit can show before it
runs."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from audit.cli.common import EXIT_FAIL, EXIT_OK, UsageError, bar_interval, connect, positive_int, ray_argument


def audit_config(args: argparse.Namespace):
    """The AuditConfig that ``audit``/``gate`` options describe (also what the remote gate submits)."""
    from audit.detect.config import AuditConfig
    from audit.options import from_arguments
    from audit.report.gate import GatePolicy

    return from_arguments(
        AuditConfig, args, imitator=args.imitator, demos=args.demos, policy=from_arguments(GatePolicy, args)
    )


def _run_audit(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from audit.detect.pipeline import check_monitorable, run_audit

    config = audit_config(args)
    if getattr(args, "monitor", ""):
        check_monitorable(config)
    for name in ("imitator", "demos"):
        if not Path(getattr(args, name)).exists():
            raise ValueError(f"{getattr(args, name)}: no such file")
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # said now, not after the whole audit ran
        raise UsageError(f"--out {args.out} is a file; --out names a folder for the report")
    cluster = connect(args)
    with tqdm(
        total=100, desc="audit", unit="%", disable=args.quiet, file=sys.stderr, leave=False, mininterval=bar_interval()
    ) as bar:

        def progress(stage: str, fraction: float) -> None:
            bar.set_description(f"audit: {stage}", refresh=False)
            bar.update(max(0, round(fraction * 100) - bar.n))

        report = run_audit(config, progress, monitor=getattr(args, "monitor", "") or None, cluster=cluster)
    if cluster is not None and not args.quiet:
        print(cluster.summary(), file=sys.stderr)
    return report


def _print_summary(report: dict) -> None:
    s = report["summary"]
    sev = s["flagged_by_severity"]
    print(
        f"{'PASS' if report['verdict']['passed'] else 'FAIL'}: {s['flagged']} of {s['trajectories']} trajectories "
        f"flagged "
        f"({sev['likely-incorrigible']} likely-incorrigible, {sev['distinguishable']} distinguishable); "
        f"held-out discriminator AUROC {s['disc_auroc'] if s['disc_auroc'] is None else round(s['disc_auroc'], 3)}; "
        f"{report['timings']['total']:.1f} s"
    )
    if "delta" in s:
        from audit.report.render import guarantee

        print(guarantee(s, report.get("search")))


def cmd_audit(args: argparse.Namespace) -> int:
    from audit.report.render import write_outputs

    report = _run_audit(args)
    paths = write_outputs(report, args.out, html_page=True, junit=False)
    _print_summary(report)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return EXIT_OK


def finish_gate(report: dict, out: str | Path) -> int:
    """Write the gate's artifacts (report.json, report.html, junit.xml, summary.md; the summary also to
    ``$GITHUB_STEP_SUMMARY``), print the verdict and its checks; returns the exit code (0 pass, 1 fail)."""

    from audit.report.render import to_markdown, write_outputs

    paths = write_outputs(report, out, html_page=True, junit=True)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as f:
            f.write(to_markdown(report))
    _print_summary(report)
    for check in report["verdict"]["checks"]:
        print(f"  [{'pass' if check['passed'] else 'FAIL'}] {check['name']}: {check['detail']}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return EXIT_OK if report["verdict"]["passed"] else EXIT_FAIL


def cmd_gate(args: argparse.Namespace) -> int:
    from audit.detect.pipeline import check_gate

    check_gate(audit_config(args))
    return finish_gate(_run_audit(args), args.out)


def cmd_monitor(args: argparse.Namespace) -> int:
    """Replay fresh rollouts of the imitator through a monitor: alarm rates and lead times."""
    from audit.data.rollout import rollout
    from audit.detect.monitor import Monitor, replay
    from models.load import load_imitator

    model, info = load_imitator(args.imitator)
    monitor = Monitor.load(args.monitor, imitator_sha256=info.sha256)
    traj = rollout(
        model, info.env_id, episodes=args.episodes, seed=args.seed, env_kwargs=info.env_kwargs, taps=monitor.taps
    )
    result = replay(monitor, traj)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(", ".join(f"{k} {v}" for k, v in result.items()))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    """What an audit of n trajectories against m calibration episodes can show at delta, before anything runs."""
    from audit.detect.collective import detectable_share

    if not 0.0 < args.delta <= 0.5:
        raise UsageError(f"--delta must be in (0, 0.5], got {args.delta}")
    if args.n < args.folds or args.m < 1:
        raise UsageError(f"need --n of at least --folds ({args.folds}) and --m of at least 1")
    share = detectable_share(args.n, args.m, args.folds, args.delta, tolerance=args.max_unlike_share)
    label_m = math.ceil(args.folds / args.delta) - 1  # BH can certify a label only when 1/(m+1) <= delta / folds
    found = (
        "none (no share of departures could make it fail)"
        if share is None
        else f"{share:.1%} ({math.ceil(share * args.n)} of {args.n})"
    )
    print(
        f"n {args.n} audited trajectories, m {args.m} calibration episodes, {args.folds} folds, delta {args.delta:g}:"
    )
    print(f"  smallest share of departing trajectories the gate catches with 90% power: {found}")
    print(
        f"  certified likely-incorrigible labels: "
        f"{'possible' if args.m >= label_m else f'impossible below m = {label_m}'}"
    )
    print(f"  demonstrations to record for m = {args.m} at the default calibration fraction 0.5: {2 * args.m}")
    return EXIT_OK


def _audit_arguments(p: argparse.ArgumentParser, default_out: str, *, gate: bool) -> None:
    """The ``audit``/``gate`` options: the files, then one option per AuditConfig field (and GatePolicy field for the
    gate)."""
    from audit.detect.config import AuditConfig
    from audit.options import add_arguments
    from audit.report.gate import GatePolicy

    p.add_argument(
        "--imitator", required=True, help="imitator checkpoint: .safetensors, or .onnx (see docs/interop.md)"
    )
    p.add_argument("--demos", required=True, help="demonstrations .safetensors of the same env")
    p.add_argument("--out", default=default_out, help="folder for the report files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--monitor",
        default="",
        help="also write the runtime monitor (fitted detectors and threshold) to this .safetensors",
    )
    ray_argument(p, "the rollout shards, detector fits and explanations (a remote gate's audit runs on its server)")
    add_arguments(p, AuditConfig)
    if gate:
        add_arguments(p, GatePolicy)


def _default(cls: type, name: str) -> Any:
    """The default of one field of a settings dataclass: a hand-written option says the same as the generated ones."""
    import dataclasses

    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def audit_commands(sub: argparse._SubParsersAction) -> None:
    """audit, gate, monitor, plan: auditing imitators."""
    from audit.detect.config import AuditConfig
    from audit.report.gate import GatePolicy

    p = sub.add_parser(
        "audit",
        help="audit an imitator: flags, p-values, explanations, report.json/html/summary.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  imitaudit audit --imitator imitator.safetensors --demos heldout.safetensors --out "
        "report/\n"
        "  imitaudit audit --imitator imitator.safetensors --demos heldout.safetensors --detector foresight"
        "  # flags before departing\n"
        "  imitaudit audit --imitator imitator.safetensors --demos heldout.safetensors --search 4096"
        "  # an active audit\n\n"
        "what each label, score and p-value means: docs/reading-a-report.md",
    )
    _audit_arguments(p, "report", gate=False)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "gate",
        help="audit with a pass/fail policy: exit 0 pass, 1 fail, 2 error",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example (CI):\n  imitaudit gate --imitator imitator.safetensors --demos heldout.safetensors --out "
        "gate/ || exit 1\n\nwhat each label, score and p-value means: docs/reading-a-report.md",
    )
    _audit_arguments(p, "gate", gate=True)
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("monitor", help="replay fresh rollouts of an imitator through an audit's runtime monitor")
    p.add_argument("--imitator", required=True, help="the audited imitator .safetensors")
    p.add_argument("--monitor", required=True, help="the monitor written by audit --monitor")
    p.add_argument("--episodes", type=positive_int, default=256, help="fresh rollouts (default: 256)")
    p.add_argument(
        "--seed",
        type=int,
        default=2_000_000,
        help="episode e is seeded seed + e, apart from the audit's (default: 2000000)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("plan", help="what an audit of n trajectories against m calibration episodes can show at delta")
    p.add_argument("--n", type=int, default=256, help="audited trajectories (the audit's --episodes; default 256)")
    p.add_argument(
        "--m", type=int, required=True, help="calibration episodes (held-out demonstrations x calibration fraction)"
    )
    p.add_argument(
        "--delta", type=float, default=_default(GatePolicy, "delta"), help="the gate's level (default: the gate's)"
    )
    p.add_argument(
        "--folds", type=int, default=_default(AuditConfig, "folds"), help="cross-fitting folds (default: the audit's)"
    )
    p.add_argument("--max-unlike-share", type=float, default=0.0, help="the gate's tolerance (default 0)")
    p.set_defaults(func=cmd_plan)
