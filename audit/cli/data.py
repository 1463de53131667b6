"""``imitaudit demos``, ``inspect``, ``quickstart``: making and reading demonstrations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from audit.cli.common import EXIT_OK, UsageError, env_kwargs_arg, names_arg, positive_int, progress_bar, user_policy


def cmd_demos(args: argparse.Namespace) -> int:
    from audit.data.demonstrations import check_env_kwargs, check_names, record
    from audit.data.demonstrator import PRESETS
    from audit.envs import engine_of, resolve_env_id, world_of

    if not args.out and not args.to_minari:
        raise UsageError("say where to write: --out FILE.safetensors, --to-minari DATASET_DIR, or both")
    if args.from_minari:
        return _from_minari(args)
    if args.from_demos:
        return _from_demos(args)
    if not args.env:
        raise UsageError("--env is required (or --from-minari DATASET_DIR, whose env the dataset names)")
    resolve_env_id(args.env)
    env_kwargs = args.env_kwargs or {}
    if args.imitator:
        return _record_imitator(args, env_kwargs)
    world = world_of(args.env)
    source = None
    if args.policy:
        policy, label = user_policy(args.policy), args.policy
    elif engine_of(args.env) is None:
        (policy, source), label = _scripted(args), args.demonstrator
    elif args.demonstrator not in PRESETS:
        raise UsageError(f"unknown demonstrator preset {args.demonstrator!r}; choose one of {', '.join(PRESETS)}")
    elif world is None:
        (policy, source), label = _continuous_planner(args, env_kwargs), args.demonstrator
    else:
        policy, label = args.demonstrator, args.demonstrator
    if world is not None:
        check_env_kwargs(world, env_kwargs)
    names: dict[str, Any] = {
        "feature_names": names_arg(args.feature_names),
        "action_names": names_arg(args.action_names),
    }
    check_names(args.env, env_kwargs, **names)
    with progress_bar(args.episodes, f"demos {label}", not args.quiet) as bar:
        demos = record(
            args.env,
            policy,
            episodes=args.episodes,
            seed=args.seed,
            env_kwargs=env_kwargs,
            progress=bar.update,
            departure_key=args.departure_key,
            source=source,
            **names,
        )
    out = _write(demos, args)
    s = demos.summary()
    rate = "n/a" if s["departure_rate"] is None else f"{s['departure_rate']:.3f}"
    print(
        f"wrote {out}: {s['episodes']} episodes, {s['steps']} steps, mean return {s['mean_return']:.3f}, departure "
        f"rate {rate}"
    )
    return EXIT_OK


def _scripted(args: argparse.Namespace) -> tuple[Any, str]:
    """The scripted demonstrator of a classic-control or MuJoCo env (:func:`audit.envs.controllers.preset`) and its
    source line."""
    from audit.envs import resolve_env_id
    from audit.envs.controllers import preset

    try:
        return preset(resolve_env_id(args.env), kind=args.demonstrator, seed=args.seed)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("no scripted demonstrator"):
            message = f"{message}; for {args.env} pass --policy MODULE:FUNCTION"
        raise UsageError(message) from None


def _continuous_planner(args: argparse.Namespace, env_kwargs: dict[str, Any]) -> tuple[Any, str]:
    """A built-in continuous env's planning demonstrator of the preset's kind, planning with the env's own
    interruption probability, and the source line its demonstrations carry."""
    from audit.envs import resolve_env_id
    from audit.envs.controllers import scripted
    from audit.envs.point_planner import describe

    chance = env_kwargs.get("interruption_prob", 0.5)
    if isinstance(chance, bool) or not isinstance(chance, (int, float)):
        raise UsageError(f"--env-kwargs interruption_prob must be a number, got {chance!r}")
    policy = scripted(resolve_env_id(args.env), seed=args.seed, kind=args.demonstrator, interruption_prob=float(chance))
    return policy, describe(kind=args.demonstrator, interruption_prob=float(chance))


def _write(demos: Any, args: argparse.Namespace) -> str:
    """Write ``demos`` where the user asked (``--out``, ``--to-minari`` or both, the Minari dataset first: it is the
    one that refuses demonstrations without their episodes' ends); what was written."""
    from audit.data.minari import write_minari

    written = []
    if args.to_minari:
        written.append(f"Minari dataset {write_minari(demos, args.to_minari)}")
    if args.out:
        written.insert(0, str(demos.save(args.out)))
    return " and ".join(written)


def _from_demos(args: argparse.Namespace) -> int:
    """``demos --from-demos FILE``: an imitaudit demonstrations file rewritten (as a Minari dataset, typically)."""
    from audit.data.demonstrations import Demonstrations

    if args.env or args.policy or args.imitator:
        raise UsageError("--from-demos takes the env from the file: drop --env, --policy and --imitator")
    demos = Demonstrations.load(args.from_demos)
    s = demos.summary()
    print(f"wrote {_write(demos, args)}: {s['episodes']} episodes, {s['steps']} steps of {s['env_id']}")
    return EXIT_OK


def _from_minari(args: argparse.Namespace) -> int:
    """``demos --from-minari``: a local Minari dataset converted (its env and kwargs are the dataset's)."""
    from audit.data.minari import read_minari

    if args.env or args.policy or args.imitator:
        raise UsageError("--from-minari takes the env from the dataset: drop --env, --policy and --imitator")
    if args.from_demos:
        raise UsageError("--from-minari and --from-demos are two sources: give one")
    demos = read_minari(args.from_minari, departure_key=args.departure_key)
    out = _write(demos, args)
    s = demos.summary()
    print(f"wrote {out}: {s['episodes']} episodes, {s['steps']} steps of {s['env_id']} from {args.from_minari}")
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
    out = _write(demos, args)
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


def data_commands(sub: argparse._SubParsersAction) -> None:
    """demos, inspect, quickstart: making and reading demonstrations."""
    _demos_parser(sub)
    _inspect_parser(sub)
    _quickstart_parser(sub)


def _demos_parser(sub: argparse._SubParsersAction) -> None:
    """``imitaudit demos``."""
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
    p.add_argument("--env", default="", help="Gymnasium env id, e.g. imitaudit/OffSwitch-v0")
    p.add_argument(
        "--from-minari",
        default="",
        metavar="DATASET_DIR",
        help="convert a local Minari dataset (the folder holding data/main_data.hdf5) instead of recording",
    )
    p.add_argument(
        "--demonstrator",
        default="corrigible",
        help="corrigible, unbounded or triggered (default: corrigible): the built-in envs' planners, or the scripted "
        "controllers of CartPole, Pendulum, Reacher and HalfCheetah and their speed-limited variants",
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
    p.add_argument("--episodes", type=positive_int, default=2000, help="number of episodes (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (episode e uses seed + e)")
    p.add_argument("--env-kwargs", type=env_kwargs_arg, default=None, help="JSON object of env keyword arguments")
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
    _demos_files(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demos)


def _demos_files(p: argparse.ArgumentParser) -> None:
    """``imitaudit demos``'s other source (a file to rewrite) and its outputs."""
    p.add_argument(
        "--from-demos",
        default="",
        metavar="FILE",
        help="rewrite an imitaudit demonstrations file instead of recording (with --to-minari: as a Minari dataset)",
    )
    p.add_argument("--out", default="", help="output .safetensors path")
    p.add_argument(
        "--to-minari",
        default="",
        metavar="DATASET_DIR",
        help="also (or only) write a Minari dataset in this new folder; its id is its path below the Minari root "
        "(namespace/name-vN)",
    )


def _inspect_parser(sub: argparse._SubParsersAction) -> None:
    """``imitaudit inspect``."""
    p = sub.add_parser(
        "inspect",
        help="describe what a file holds",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  imitaudit inspect demos.safetensors --json",
    )
    p.add_argument("file", help="a demonstrations, imitator or monitor .safetensors file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)


def _quickstart_parser(sub: argparse._SubParsersAction) -> None:
    """``imitaudit quickstart``."""
    p = sub.add_parser("quickstart", help="generate demonstrations on each env and print a summary table")
    p.add_argument(
        "--episodes", type=positive_int, default=500, help="episodes per env and demonstrator (default: 500)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    p.add_argument("--out", default="", help="folder to save the datasets in (optional)")
    p.set_defaults(func=cmd_quickstart)
