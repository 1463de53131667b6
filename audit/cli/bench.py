"""``imitaudit bench detect`` and ``bench null``: the benchmarks that run inside the package."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audit.bench.null import DISC_STEPS
from audit.cli.common import EXIT_OK, Parser, UsageError, connect, positive_int, ray_argument

OFFSETS_FLAG = {None: "", True: " --grid-offsets", False: " --no-grid-offsets"}
NULL_DEFAULTS = {"demos_episodes": 240, "alpha": 0.05, "delta": 0.05, "disc_steps": DISC_STEPS}
"""``bench null``'s defaults of the settings its command line names only when they differ."""


def null_command(args: argparse.Namespace) -> str:
    """The ``bench null`` command line that reproduces ``args`` (settings at their defaults left out)."""
    return (
        f"imitaudit bench null --envs {args.envs} --archs {args.archs} --actions {args.actions} --detectors "
        f"{args.detectors} --rules {args.rules} --seeds {args.seeds} --episodes {args.episodes}"
        + OFFSETS_FLAG[args.grid_offsets]
        + "".join(
            f" --{name.replace('_', '-')} {getattr(args, name)}"
            for name, default in NULL_DEFAULTS.items()
            if getattr(args, name) != default
        )
    )


def cmd_bench_null(args: argparse.Namespace) -> int:
    from itertools import product

    from audit.bench.null import NullCase, render_table, run_case, summarize
    from audit.bench.sections import write_marked_section

    split = lambda text: [x for x in text.split(",") if x]  # noqa: E731
    cases = [
        NullCase(env_id=e, arch=a, actions=act, detector=d, score_rule=r, grid_offsets=args.grid_offsets)
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
            disc_steps=args.disc_steps,
            progress=None if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr, flush=True)),
        )
        rows.append(summarize(result, alpha=args.alpha, delta=args.delta))
    command = null_command(args)
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
    cluster = connect(args)
    results = run_detection_benchmark(
        envs,
        args.zoo,
        quick=args.quick,
        episodes=episodes,
        seed=args.seed,
        alpha=args.alpha,
        grid_offsets=args.grid_offsets,
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
            OFFSETS_FLAG[args.grid_offsets].strip(),
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


def bench_commands(sub: argparse._SubParsersAction) -> None:
    """bench detect, bench null: the benchmarks that run inside the package."""
    p = sub.add_parser("bench", help="benchmarks")
    bench = p.add_subparsers(dest="bench", required=True, parser_class=Parser)
    p = bench.add_parser("detect", help="the departure-zoo detection benchmark")
    p.add_argument("--quick", action="store_true", help="one env, a small zoo (CI)")
    p.add_argument("--envs", default="", help="comma-separated built-in env ids (default: all; --quick: OffSwitch)")
    p.add_argument(
        "--episodes",
        type=positive_int,
        default=None,
        help="audited trajectories per imitator (default 256; --quick 96)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the zoo (default: 0)")
    p.add_argument("--alpha", type=float, default=0.01, help="flag level (default: 0.01)")
    p.add_argument(
        "--grid-offsets",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="built-in envs: every method also reads the nearest tiles' offsets (default: the audit's default)",
    )
    p.add_argument("--zoo", default="out/zoo", help="folder where the zoo's datasets and imitators are cached")
    p.add_argument("--json", default="", help="write every figure as JSON here")
    p.add_argument("--out", default="", help="Markdown file to write the table into (e.g. BENCHMARKS.md)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    ray_argument(p, "the zoo's training (one task per imitator) and the audits (one per imitator and method)")
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
    p.add_argument(
        "--grid-offsets",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="built-in envs: detectors also read the nearest tiles' offsets (default: the audit's default)",
    )
    p.add_argument("--seeds", type=int, default=100, help="audits per case (default: 100)")
    p.add_argument("--episodes", type=positive_int, default=64, help="audited trajectories per audit (default: 64)")
    p.add_argument(
        "--demos-episodes",
        type=int,
        default=NULL_DEFAULTS["demos_episodes"],
        help="demonstrations recorded from each imitator (default: 240)",
    )
    p.add_argument("--alpha", type=float, default=NULL_DEFAULTS["alpha"], help="flag level (default: 0.05)")
    p.add_argument("--delta", type=float, default=NULL_DEFAULTS["delta"], help="the gate's level (default: 0.05)")
    p.add_argument(
        "--disc-steps",
        type=positive_int,
        default=NULL_DEFAULTS["disc_steps"],
        help=f"the discriminator's steps per fit (default: {DISC_STEPS}, fewer than an audit's own, for speed)",
    )
    p.add_argument("--zoo", default="out/null", help="folder where the imitators and their demonstrations are cached")
    p.add_argument("--out", default="", help="Markdown file to write the table into (e.g. BENCHMARKS.md)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_bench_null)
