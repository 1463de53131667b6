"""The ``imitaudit`` command line: one sub-command per stage, one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


class UsageError(ValueError):
    """Bad command-line usage (reported like any bad input: one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message if self.prog == "imitaudit" else f"{self.prog}: {message}")


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled, file=sys.stderr, leave=False)


def cmd_demos(args: argparse.Namespace) -> int:
    from audit.demonstrations import check_env_kwargs, record
    from audit.demonstrator import PRESETS
    from audit.envs import resolve_env_id, world_of

    resolve_env_id(args.env)
    if args.demonstrator not in PRESETS:
        raise UsageError(f"unknown demonstrator preset {args.demonstrator!r}; choose one of {', '.join(PRESETS)}")
    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
    if not isinstance(env_kwargs, dict):
        raise UsageError("--env-kwargs must be a JSON object")
    world = world_of(args.env)
    if world is not None:
        check_env_kwargs(world, env_kwargs)
    with _progress_bar(args.episodes, f"demos {args.demonstrator}", not args.quiet) as bar:
        demos = record(
            args.env,
            args.demonstrator,
            episodes=args.episodes,
            seed=args.seed,
            env_kwargs=env_kwargs,
            progress=bar.update,
        )
    out = demos.save(args.out)
    s = demos.summary()
    rate = "n/a" if s["departure_rate"] is None else f"{s['departure_rate']:.3f}"
    print(f"wrote {out}: {s['episodes']} episodes, {s['steps']} steps, mean return {s['mean_return']:.3f}, departure rate {rate}")
    return EXIT_OK


def describe_file(path: Path) -> dict:
    """What a file holds, for ``inspect`` (demonstrations now; checkpoints and reports as they arrive)."""
    from audit.demonstrations import Demonstrations
    from models.safetensors_io import read_safetensors
    from audit.envs import resolve_env_id

    _, metadata = read_safetensors(path)
    if "imitaudit.schema" not in metadata:
        raise ValueError(f"{path}: metadata has no 'imitaudit.schema': not an imitaudit file")
    schema = metadata["imitaudit.schema"]
    if schema.startswith("imitaudit.demonstrations/"):
        demos = Demonstrations.load(path, require_env=False)
        info = demos.summary()
        try:
            resolve_env_id(demos.env_id)
            info["env_installed"] = True
        except ValueError:
            info["env_installed"] = False
        return info
    raise ValueError(f"{path}: safetensors file with unknown imitaudit schema {schema!r}")


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
    from audit.demonstrations import record
    from audit.demonstrator import PRESETS
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="imitaudit", description="Audit imitators for incorrigible departures.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demos", help="record demonstrations of a demonstrator preset")
    p.add_argument("--env", required=True, help="Gymnasium env id, e.g. imitaudit/OffSwitch-v0")
    p.add_argument("--demonstrator", default="corrigible", help="corrigible, unbounded or triggered")
    p.add_argument("--episodes", type=int, default=2000, help="number of episodes")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (episode e uses seed + e)")
    p.add_argument("--env-kwargs", default="", help="JSON object of env keyword arguments")
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demos)

    p = sub.add_parser("inspect", help="describe what a file holds")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("quickstart", help="generate demonstrations on each env and print a summary table")
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="folder to save the datasets in (optional)")
    p.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "episodes", 1) < 1:
            raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
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
