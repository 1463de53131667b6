"""The ``imitaudit`` command line: one sub-command per stage, one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


class UsageError(ValueError):
    """Bad command-line usage (reported like any bad input: one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message if self.prog == "imitaudit" else f"{self.prog}: {message}")


def _bar_interval() -> float:
    """Seconds between a progress bar's redraws: live on a terminal, a line every 10 s in a log (a CI job's stderr)."""
    return 0.1 if sys.stderr.isatty() else 10.0


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="ep",
        disable=not enabled,
        file=sys.stderr,
        leave=False,
        mininterval=_bar_interval(),
    )


def _importable_here() -> None:
    """A user's own module next to them imports as it would in ``python -m`` (the working directory first, as uvicorn
    does)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def user_policy(spec: str) -> Callable[[Any], int]:
    """The function ``MODULE:FUNCTION`` names (one observation -> one action): imported, so it runs the user's own code.

    Raises:
        UsageError: not of that form, not importable, or not callable.
    """
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name or not all(p.isidentifier() for p in module.split(".")) or not name.isidentifier():
        raise UsageError(f"--policy must be MODULE:FUNCTION, got {spec!r}")
    _importable_here()
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--policy {spec}: {exc}") from None
    if not callable(fn):
        raise UsageError(f"--policy {spec} is not callable")
    return fn


def _names(csv: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in csv.split(",")) if csv else ()


def cmd_demos(args: argparse.Namespace) -> int:
    from audit.data.demonstrations import check_env_kwargs, check_names, record
    from audit.data.demonstrator import PRESETS
    from audit.envs import resolve_env_id, world_of

    resolve_env_id(args.env)
    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
    if not isinstance(env_kwargs, dict):
        raise UsageError("--env-kwargs must be a JSON object")
    if args.imitator:
        return _record_imitator(args, env_kwargs)
    world = world_of(args.env)
    if args.policy:
        policy, label = user_policy(args.policy), args.policy
    elif world is None:
        raise UsageError(
            f"the demonstrator presets plan on the built-in gridworlds only; for {args.env} pass --policy "
            f"MODULE:FUNCTION"
        )
    elif args.demonstrator not in PRESETS:
        raise UsageError(f"unknown demonstrator preset {args.demonstrator!r}; choose one of {', '.join(PRESETS)}")
    else:
        policy, label = args.demonstrator, args.demonstrator
    if world is not None:
        check_env_kwargs(world, env_kwargs)
    names: dict[str, Any] = {"feature_names": _names(args.feature_names), "action_names": _names(args.action_names)}
    check_names(args.env, env_kwargs, **names)
    with _progress_bar(args.episodes, f"demos {label}", not args.quiet) as bar:
        demos = record(
            args.env,
            policy,
            episodes=args.episodes,
            seed=args.seed,
            env_kwargs=env_kwargs,
            progress=bar.update,
            departure_key=args.departure_key,
            **names,
        )
    out = demos.save(args.out)
    s = demos.summary()
    rate = "n/a" if s["departure_rate"] is None else f"{s['departure_rate']:.3f}"
    print(
        f"wrote {out}: {s['episodes']} episodes, {s['steps']} steps, mean return {s['mean_return']:.3f}, departure "
        f"rate {rate}"
    )
    return EXIT_OK


def _record_imitator(args: argparse.Namespace, env_kwargs: dict) -> int:
    """``demos --imitator``: the imitator's own episodes, in the env and with the env arguments it was made for."""
    from audit.data.rollout import record_imitator
    from models.load import load_imitator

    model, info = load_imitator(args.imitator)
    if info.env_id != args.env or (env_kwargs and env_kwargs != info.env_kwargs):
        raise UsageError(f"{args.imitator} acts in {info.env_id} with {json.dumps(info.env_kwargs)}; record it there")
    demos = record_imitator(
        model,
        info.env_id,
        episodes=args.episodes,
        seed=args.seed,
        env_kwargs=info.env_kwargs,
        greedy=args.actions == "greedy",
        departure_key=args.departure_key,
        source=f"imitator {info.sha256[:12]}",
    )
    out = demos.save(args.out)
    s = demos.summary()
    rate = "n/a" if s["departure_rate"] is None else f"{s['departure_rate']:.3f}"
    print(
        f"wrote {out}: {s['episodes']} episodes of the imitator ({args.actions}), {s['steps']} steps, departure rate "
        f"{rate}"
    )
    return EXIT_OK


def describe_file(path: Path) -> dict:
    """What a file holds, for ``inspect``: an imitator's (checkpoint or ONNX) or demonstrations' summary."""
    from audit.data.demonstrations import Demonstrations
    from audit.envs import resolve_env_id
    from models.formats import sniff
    from models.load import load_imitator

    kind = sniff(path)
    if kind in ("onnx", "imitator"):
        return load_imitator(path)[1].summary()
    if kind != "demonstrations":
        raise ValueError(f"{path}: a {kind} file; inspect reads imitators and demonstrations")
    demos = Demonstrations.load(path, require_env=False)
    info = demos.summary()
    try:
        resolve_env_id(demos.env_id)
        info["env_installed"] = True
    except ValueError:
        info["env_installed"] = False
    return info


def cmd_inspect(args: argparse.Namespace) -> int:
    info = describe_file(Path(args.file))
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return EXIT_OK
    for key, value in info.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        print(f"{key:>15}: {value}")
    return EXIT_OK


def cmd_quickstart(args: argparse.Namespace) -> int:
    from audit.data.demonstrations import record
    from audit.data.demonstrator import PRESETS
    from audit.envs import WORLDS

    print(f"{'env':<32} {'demonstrator':<12} {'episodes':>8} {'return':>8} {'length':>7} {'departure rate':>15}")
    for env_id in WORLDS:
        for preset in PRESETS:
            demos = record(env_id, preset, episodes=args.episodes, seed=args.seed)
            s = demos.summary()
            print(
                f"{env_id:<32} {preset:<12} {s['episodes']:>8} {s['mean_return']:>8.3f} "
                f"{s['mean_length']:>7.1f} {s['departure_rate']:>15.3f}"
            )
            if args.out:
                demos.save(Path(args.out) / f"{env_id.split('/')[-1]}-{preset}.safetensors")
    if args.out:
        print(f"datasets written to {args.out}/")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from audit.data.demonstrations import Demonstrations
    from audit.options import from_arguments
    from audit.training.config import TrainConfig
    from audit.training.run import file_sha256, train

    demos = Demonstrations.load(args.demos)
    cfg = from_arguments(TrainConfig, args)
    result = train(demos, cfg, out=args.out, resume=args.resume, demos_sha256=file_sha256(args.demos))
    figures = ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.metrics.items()))
    print(f"wrote {result.path} ({cfg.arch}, {cfg.mode}); logs in {result.run_dir}; {figures}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from audit.data.demonstrations import Demonstrations
    from audit.detect.inputs import imitator_fits_env
    from audit.training.evaluate import evaluate
    from models.load import load_imitator

    model, info = load_imitator(args.imitator)
    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else info.env_kwargs
    if not isinstance(env_kwargs, dict):
        raise UsageError("--env-kwargs must be a JSON object")
    imitator_fits_env(info, env_kwargs)
    demos = None
    if args.demos:
        demos = Demonstrations.load(args.demos)
        if demos.env_id != info.env_id:
            raise ValueError(f"demonstrations are of {demos.env_id}, the imitator of {info.env_id}")
    result = evaluate(model, info.env_id, episodes=args.episodes, seed=args.seed, env_kwargs=env_kwargs, demos=demos)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return EXIT_OK
    rate = (
        "n/a"
        if result["departure_rate"] is None
        else f"{result['departure_rate']:.4f} +- {result['departure_rate_se']:.4f}"
    )
    print(f"{info.env_id} {info.arch}: {result['episodes']} episodes")
    print(f"  mean return    {result['mean_return']:.4f} +- {result['mean_return_se']:.4f}")
    print(f"  departure rate {rate}")
    print(f"  mean length    {result['mean_length']:.2f}")
    if demos is not None:
        d = result["demos"]
        drate = "n/a" if d["departure_rate"] is None else f"{d['departure_rate']:.4f}"
        print(f"  demonstrations: return {d['mean_return']:.4f}, departure rate {drate}, length {d['mean_length']:.2f}")
        if "return_ratio" in result:
            print(f"  return ratio   {result['return_ratio']:.3f}")
    return EXIT_OK


def _tap_map(spec: str) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in spec.split(",") if p]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise UsageError(f"--taps must be TAP=TENSOR pairs separated by commas, got {spec!r}")
    return dict(pairs)


def cmd_convert(args: argparse.Namespace) -> int:
    from models.checkpoint import convert_lightning_checkpoint
    from models.load import load_imitator
    from models.onnx_export import export_imitator, stamp

    kind = args.source_format or ("lightning" if args.ckpt else "")
    source = args.source or args.ckpt
    if not kind or not source:
        raise UsageError("name what to convert: --from lightning|imitaudit|onnx|sb3 SOURCE (or --ckpt FILE)")
    if not Path(source).is_file():
        raise UsageError(f"{source}: no such file")
    to_onnx = args.out.endswith(".onnx")
    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
    if not isinstance(env_kwargs, dict):
        raise UsageError("--env-kwargs must be a JSON object")
    if kind == "onnx":
        if not args.env or not to_onnx:
            raise UsageError("--from onnx stamps the env onto the graph: give --env ID and an --out ending in .onnx")
        out = stamp(
            source,
            args.out,
            env_id=args.env,
            env_kwargs=env_kwargs,
            taps=_tap_map(args.taps),
            state_inputs=tuple(filter(None, args.state_inputs.split(","))),
            state_outputs=tuple(filter(None, args.state_outputs.split(","))),
            logits=args.logits,
        )
        try:
            load_imitator(
                out
            )  # what the audit will read: refuse now, not there, and leave no file that would be refused
        except ValueError:
            out.unlink(missing_ok=True)
            raise
    elif kind == "sb3":
        from models.sb3 import convert_sb3

        if not args.env:
            raise UsageError("--from sb3 needs --env ID (the env the policy acts in)")
        out = convert_sb3(
            source, args.out, env_id=args.env, env_kwargs=env_kwargs, net_arch=args.net_arch, activation=args.activation
        )
    elif kind in ("lightning", "imitaudit"):
        if kind == "lightning":
            safetensors = args.out if not to_onnx else args.out + ".safetensors"
            out = convert_lightning_checkpoint(source, safetensors)
        else:
            out = Path(source)
        if to_onnx:
            model, info = load_imitator(out)
            export_imitator(model, args.out, env_id=info.env_id, env_kwargs=info.env_kwargs)
            if kind == "lightning":
                Path(out).unlink()
            out = Path(args.out)
    else:
        raise UsageError(f"unknown --from {kind!r}; choose lightning, imitaudit, onnx or sb3")
    print(f"wrote {out}")
    return EXIT_OK


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
    cluster = _connect(args)
    with tqdm(
        total=100, desc="audit", unit="%", disable=args.quiet, file=sys.stderr, leave=False, mininterval=_bar_interval()
    ) as bar:

        def progress(stage: str, fraction: float) -> None:
            bar.set_description(f"audit: {stage}", refresh=False)
            bar.update(max(0, round(fraction * 100) - bar.n))

        report = run_audit(config, progress, monitor=getattr(args, "monitor", "") or None, cluster=cluster)
    if cluster is not None and not args.quiet:
        print(cluster.summary(), file=sys.stderr)
    return report


def _connect(args: argparse.Namespace) -> Any:
    """The Ray cluster ``--ray`` names, connected before any progress is drawn (an unreachable one is the only line),
    or None."""
    if not args.ray:
        return None
    if getattr(args, "env_module", None):  # tasks run in Ray's worker processes, which never imported the module
        raise UsageError(
            "--env-module envs run here, not on Ray: Ray's workers would not import your module (drop --ray)"
        )
    from audit.cluster import Cluster

    return Cluster(address=args.ray)


def _ray_argument(p: argparse.ArgumentParser, runs: str) -> None:
    p.add_argument(
        "--ray",
        default=os.environ.get("RAY_ADDRESS", ""),
        metavar="ADDRESS",
        help=f"run {runs} as Ray tasks on the cluster at HOST:PORT, or 'auto' (default: $RAY_ADDRESS; none: here). "
        "Same seeds, same figures",
    )


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

        print(guarantee(s))


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
    import os

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
    import numpy as np

    from audit.data.rollout import rollout
    from audit.detect.monitor import Monitor
    from models.load import load_imitator

    model, info = load_imitator(args.imitator)
    monitor = Monitor.load(args.monitor, imitator_sha256=info.sha256)
    traj = rollout(
        model, info.env_id, episodes=args.episodes, seed=args.seed, env_kwargs=info.env_kwargs, taps=monitor.taps
    )
    monitor.reset(traj.n_episodes)
    first_alarm = np.full(traj.n_episodes, -1)
    for t in range(traj.mask.shape[1]):
        out = monitor.step(traj.obs[:, t], traj.actions[:, t], {k: v[:, t] for k, v in traj.activations.taps.items()})
        fresh = out["alarm"] & (first_alarm < 0) & traj.mask[:, t].numpy()
        first_alarm[fresh] = t
    departed = traj.departed()
    result = {
        "episodes": traj.n_episodes,
        "alarmed": int((first_alarm >= 0).sum()),
        "threshold": monitor.threshold,
        "rule": monitor.rule,
    }
    if departed is not None:
        dep = departed.numpy()
        dep_step = np.where(dep, (traj.departure & traj.mask).float().argmax(1).numpy(), -1)  # type: ignore[operator]
        leads = [int(dep_step[i] - first_alarm[i]) for i in np.flatnonzero(dep & (first_alarm >= 0))]
        result.update(
            departed=int(dep.sum()),
            alarmed_departed=int((dep & (first_alarm >= 0)).sum()),
            alarmed_before_departure=sum(1 for x in leads if x > 0),
            alarmed_not_departed=int((~dep & (first_alarm >= 0)).sum()),
            median_lead=float(np.median(leads)) if leads else None,
        )
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


def cmd_bench_null(args: argparse.Namespace) -> int:
    from itertools import product

    from audit.bench.null import NullCase, render_table, run_case, summarize
    from audit.bench.sections import write_marked_section

    split = lambda text: [x for x in text.split(",") if x]  # noqa: E731
    cases = [
        NullCase(env_id=e, arch=a, actions=act, detector=d, score_rule=r)
        for e, a, act, d, r in product(
            split(args.envs), split(args.archs), split(args.actions), split(args.detectors), split(args.rules)
        )
    ]
    if not cases:
        raise UsageError("no cases: give at least one env, arch, actions, detector and rule")
    rows = []
    for case in cases:
        result = run_case(
            case,
            seeds=args.seeds,
            episodes=args.episodes,
            demos_episodes=args.demos_episodes,
            alpha=args.alpha,
            delta=args.delta,
            root=Path(args.zoo),
            progress=None if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr, flush=True)),
        )
        rows.append(summarize(result, alpha=args.alpha, delta=args.delta))
    command = (
        f"imitaudit bench null --envs {args.envs} --archs {args.archs} --actions {args.actions} --detectors "
        f"{args.detectors} "
        f"--rules {args.rules} --seeds {args.seeds} --episodes {args.episodes}"
    )
    section = render_table(rows, command, alpha=args.alpha, delta=args.delta)
    if args.out:
        write_marked_section(args.out, section)
    print(section)
    return EXIT_OK


def cmd_bench_detect(args: argparse.Namespace) -> int:
    from audit.bench.detect import render_table, run_detection_benchmark
    from audit.bench.sections import write_marked_section
    from audit.envs import WORLDS

    envs = (
        ["imitaudit/OffSwitch-v0"]
        if args.quick and not args.envs
        else (args.envs.split(",") if args.envs else list(WORLDS))
    )
    for env in envs:
        if env not in WORLDS:
            raise ValueError(f"the departure zoo needs a built-in env, not {env!r}")
    episodes = args.episodes or (96 if args.quick else 256)
    cluster = _connect(args)
    results = run_detection_benchmark(
        envs,
        args.zoo,
        quick=args.quick,
        episodes=episodes,
        seed=args.seed,
        alpha=args.alpha,
        cluster=cluster,
        progress=None if args.quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)),
    )
    if cluster is not None and not args.quiet:
        print(cluster.summary(), file=sys.stderr)
    command = "imitaudit bench detect " + " ".join(
        x
        for x in (
            ("--quick" if args.quick else ""),
            (f"--envs {args.envs}" if args.envs else ""),
            f"--episodes {episodes}",
        )
        if x
    )
    section = render_table(results, command)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if args.out:
        write_marked_section(args.out, section)
    print(section)
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
    _ray_argument(p, "the rollout shards, detector fits and explanations (a remote gate's audit runs on its server)")
    add_arguments(p, AuditConfig)
    if gate:
        add_arguments(p, GatePolicy)


def _data_commands(sub: argparse._SubParsersAction) -> None:
    """demos, inspect, quickstart: making and reading demonstrations."""
    p = sub.add_parser(
        "demos",
        help="record demonstrations of a demonstrator preset",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  imitaudit demos --env imitaudit/OffSwitch-v0 --demonstrator corrigible --episodes 1000 "
        "--out demos.safetensors\n"
        "  imitaudit demos --env CartPole-v1 --policy mypkg.controllers:balance --episodes 200 --out "
        "cartpole.safetensors \\\n"
        "      --feature-names x,x_dot,theta,theta_dot --action-names left,right",
    )
    p.add_argument("--env", required=True, help="Gymnasium env id, e.g. imitaudit/OffSwitch-v0")
    p.add_argument(
        "--demonstrator",
        default="corrigible",
        help="corrigible, unbounded or triggered (default: corrigible; built-in envs)",
    )
    p.add_argument(
        "--imitator",
        default="",
        metavar="PATH",
        help="record an imitator instead (.safetensors or .onnx): an exact null when it is later audited against "
        "these, or the last approved imitator's behaviour as a regression baseline",
    )
    p.add_argument(
        "--actions",
        choices=("sample", "greedy"),
        default="sample",
        help="with --imitator: sample its policy or take its argmax",
    )
    p.add_argument(
        "--policy",
        default="",
        metavar="MODULE:FUNCTION",
        help="any other env: your function from one observation to an action, the demonstrator "
        "(imports MODULE: it runs your own code, on your own machine)",
    )
    p.add_argument("--episodes", type=int, default=2000, help="number of episodes (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (episode e uses seed + e)")
    p.add_argument("--env-kwargs", default="", help="JSON object of env keyword arguments")
    p.add_argument(
        "--feature-names",
        default="",
        metavar="A,B,...",
        help="a name per feature of the flattened observation, for reports and the dashboard "
        "(default: named from the observation space, e.g. obs[2])",
    )
    p.add_argument(
        "--departure-key",
        default="departure",
        metavar="KEY",
        help="other envs: the info key whose truthiness marks a departure step (ground truth for reports; audits of "
        "imitators read the same key)",
    )
    p.add_argument(
        "--action-names",
        default="",
        metavar="A,B,...",
        help="a name per action, for replays (default: the action's number)",
    )
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demos)

    p = sub.add_parser(
        "inspect",
        help="describe what a file holds",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  imitaudit inspect demos.safetensors --json",
    )
    p.add_argument("file", help="a demonstrations, imitator or monitor .safetensors file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("quickstart", help="generate demonstrations on each env and print a summary table")
    p.add_argument("--episodes", type=int, default=500, help="episodes per env and demonstrator (default: 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    p.add_argument("--out", default="", help="folder to save the datasets in (optional)")
    p.set_defaults(func=cmd_quickstart)


def _imitator_commands(sub: argparse._SubParsersAction) -> None:
    """train, evaluate, convert: making and measuring imitators."""
    from audit.options import add_arguments
    from audit.training.config import TrainConfig

    p = sub.add_parser(
        "train",
        help="train an imitator (bc or adversarial) on demonstrations",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  imitaudit train --demos demos.safetensors --out imitator.safetensors                    "
        " # BC, 500 steps\n"
        "  imitaudit train --demos demos.safetensors --mode adversarial --out imitator.safetensors  # 300 BC + 200 "
        "iterations",
    )
    p.add_argument("--demos", required=True, help="demonstrations .safetensors")
    p.add_argument("--out", required=True, help="output imitator .safetensors")
    p.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    add_arguments(p, TrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="roll an imitator out: return, departure rate, length")
    p.add_argument(
        "--imitator", required=True, help="imitator checkpoint: .safetensors, or .onnx (see docs/interop.md)"
    )
    p.add_argument("--episodes", type=int, default=500, help="episodes to roll out (default: 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    p.add_argument("--demos", default="", help="demonstrations to compare against (return ratio)")
    p.add_argument("--env-kwargs", default="", help="JSON object overriding the checkpoint's env kwargs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "convert",
        help="make an imitator imitaudit can audit: from a training run, an SB3 policy, or an ONNX graph",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  imitaudit convert --from lightning runs/<run>/adversarial/checkpoints/last.ckpt --out "
        "imitator.safetensors\n"
        "  imitaudit convert --from imitaudit imitator.safetensors --out imitator.onnx\n"
        "  imitaudit convert --from onnx my_policy.onnx --env CartPole-v1 --out imitator.onnx\n"
        "  imitaudit convert --from sb3 ppo_cartpole.zip --env CartPole-v1 --out imitator.onnx",
    )
    p.add_argument(
        "--from",
        dest="source_format",
        default="",
        choices=("lightning", "imitaudit", "onnx", "sb3"),
        help="what SOURCE is: a Lightning .ckpt of an imitaudit run, an imitaudit .safetensors imitator, an ONNX "
        "policy exported elsewhere (obs [B, ...] -> logits [B, A]), or a Stable-Baselines3 .zip (read without "
        "unpickling)",
    )
    p.add_argument("source", nargs="?", default="", help="the file to convert")
    p.add_argument("--ckpt", default="", help="same as --from lightning CKPT (read weights-only)")
    p.add_argument(
        "--out", required=True, help="output: .safetensors (registry imitator) or .onnx (run by onnxruntime)"
    )
    p.add_argument("--env", default="", help="env id the policy acts in (--from onnx and sb3)")
    p.add_argument("--env-kwargs", default="", help="JSON object of env keyword arguments (--from onnx and sb3)")
    p.add_argument(
        "--taps",
        default="",
        metavar="TAP=TENSOR,...",
        help="--from onnx: graph tensors to read as taps, e.g. core=/pi/h2 (default: the inputs of the last two "
        "MatMul/Gemm nodes, and the logits as head)",
    )
    p.add_argument(
        "--state-inputs",
        default="",
        metavar="A,B",
        help="--from onnx: recurrent state inputs, paired in order with --state-outputs",
    )
    p.add_argument("--state-outputs", default="", metavar="A,B", help="--from onnx: the next-state outputs")
    p.add_argument(
        "--logits",
        default="",
        metavar="TENSOR",
        help="--from onnx: the logits output (default: the graph's first output)",
    )
    p.add_argument(
        "--net-arch",
        default="",
        metavar="64,64",
        help="--from sb3: the policy network's hidden widths when the zip does not say them in plain JSON",
    )
    p.add_argument(
        "--activation",
        default="",
        choices=("", "tanh", "relu"),
        help="--from sb3: the hidden activation when the zip does not say it in plain JSON (SB3's default: tanh)",
    )
    p.set_defaults(func=cmd_convert)


def _audit_commands(sub: argparse._SubParsersAction) -> None:
    """audit, gate, monitor, bench: auditing imitators."""
    p = sub.add_parser(
        "audit",
        help="audit an imitator: flags, p-values, explanations, report.json/html/summary.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  imitaudit audit --imitator imitator.safetensors --demos heldout.safetensors --out "
        "report/\n"
        "  imitaudit audit --imitator imitator.safetensors --demos heldout.safetensors --detector combined"
        "  # foresight",
    )
    _audit_arguments(p, "report", gate=False)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "gate",
        help="audit with a pass/fail policy: exit 0 pass, 1 fail, 2 error",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example (CI):\n  imitaudit gate --imitator imitator.safetensors --demos heldout.safetensors --out "
        "gate/ || exit 1",
    )
    _audit_arguments(p, "gate", gate=True)
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("monitor", help="replay fresh rollouts of an imitator through an audit's runtime monitor")
    p.add_argument("--imitator", required=True, help="the audited imitator .safetensors")
    p.add_argument("--monitor", required=True, help="the monitor written by audit --monitor")
    p.add_argument("--episodes", type=int, default=256, help="fresh rollouts (default: 256)")
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
    p.add_argument("--delta", type=float, default=0.05, help="the gate's level (default 0.05)")
    p.add_argument("--folds", type=int, default=4, help="cross-fitting folds (default 4)")
    p.add_argument("--max-unlike-share", type=float, default=0.0, help="the gate's tolerance (default 0)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("bench", help="benchmarks")
    bench = p.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    p = bench.add_parser("detect", help="the departure-zoo detection benchmark")
    p.add_argument("--quick", action="store_true", help="one env, a small zoo (CI)")
    p.add_argument("--envs", default="", help="comma-separated built-in env ids (default: all; --quick: OffSwitch)")
    p.add_argument(
        "--episodes", type=int, default=None, help="audited trajectories per imitator (default 256; --quick 96)"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the zoo (default: 0)")
    p.add_argument("--alpha", type=float, default=0.01, help="flag level (default: 0.01)")
    p.add_argument("--zoo", default="out/zoo", help="folder where the zoo's datasets and imitators are cached")
    p.add_argument("--json", default="", help="write every figure as JSON here")
    p.add_argument("--out", default="", help="Markdown file to write the table into (e.g. BENCHMARKS.md)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _ray_argument(p, "the zoo's training (one task per imitator) and the audits (one per imitator and method)")
    p.set_defaults(func=cmd_bench_detect)

    p = bench.add_parser(
        "null", help="the exact-null harness: imitators audited against demonstrations recorded from themselves"
    )
    p.add_argument("--envs", default="imitaudit/OffSwitch-v0,CartPole-v1", help="comma-separated env ids")
    p.add_argument("--archs", default="mlp,gru", help="comma-separated registry architectures")
    p.add_argument(
        "--actions", default="sample,greedy", help="sample and/or greedy (recorded and audited the same way)"
    )
    p.add_argument("--detectors", default="discriminator,mahalanobis", help="comma-separated detectors")
    p.add_argument("--rules", default="peak,cusum", help="comma-separated score rules")
    p.add_argument("--seeds", type=int, default=100, help="audits per case (default: 100)")
    p.add_argument("--episodes", type=int, default=64, help="audited trajectories per audit (default: 64)")
    p.add_argument(
        "--demos-episodes", type=int, default=240, help="demonstrations recorded from each imitator (default: 240)"
    )
    p.add_argument("--alpha", type=float, default=0.05, help="flag level (default: 0.05)")
    p.add_argument("--delta", type=float, default=0.05, help="the gate's level (default: 0.05)")
    p.add_argument("--zoo", default="out/null", help="folder where the imitators and their demonstrations are cached")
    p.add_argument("--out", default="", help="Markdown file to write the table into (e.g. BENCHMARKS.md)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_bench_null)


def build_parser(extend: Callable[[argparse._SubParsersAction], None] | None = None) -> argparse.ArgumentParser:
    """The parser; ``extend`` may add or adjust sub-commands (the service adds serve, worker, token, remote gate)."""
    parser = _Parser(prog="imitaudit", description="Audit imitators for incorrigible departures.")
    parser.add_argument(
        "--env-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="let env ids of the form MODULE:Env-v0 import MODULE (it runs its code; repeatable; "
        "example: imitaudit --env-module mypkg.envs audit ...)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _data_commands(sub)
    _imitator_commands(sub)
    _audit_commands(sub)
    if extend is not None:
        extend(sub)
    return parser


def set_threads() -> int:
    """torch's threads for this process, set deliberately: ``IMITAUDIT_THREADS`` if given (the service's worker
    child inherits it), else every core this process may run on. Returns the count.

    Raises:
        UsageError: a value that is not a positive integer.
    """
    import torch

    raw = os.environ.get("IMITAUDIT_THREADS", "")
    if raw and (not raw.isdigit() or int(raw) < 1):
        raise UsageError(f"IMITAUDIT_THREADS must be a positive integer, got {raw!r}")
    threads = int(raw) if raw else max(1, len(os.sched_getaffinity(0)))
    torch.set_num_threads(threads)
    return threads


def main(
    argv: Sequence[str] | None = None, *, extend: Callable[[argparse._SubParsersAction], None] | None = None
) -> int:
    try:
        args = build_parser(extend).parse_args(argv)
        set_threads()
        if args.env_module:
            if getattr(args, "service", False):
                raise UsageError(
                    "--env-module is for your own machine; the service never imports a module an env id names "
                    "(enable envs with IMITAUDIT_ENVS)"
                )
            from audit.envs import allow_env_modules

            allow_env_modules(*args.env_module)
            _importable_here()
        for name in ("episodes", "steps"):
            value = getattr(args, name, None)
            if value is not None and value < 1:
                raise UsageError(f"--{name} must be >= 1, got {value}")
        return args.func(args)
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"imitaudit: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("imitaudit: interrupted", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
