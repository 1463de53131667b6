"""The ``imitaudit`` command line: one sub-command per stage, one-line errors with exit code 2.

One module per command group (``data``, ``imitators``, ``audits``, ``bench``), each building its own sub-parsers;
``common`` holds what they share. The service adds its commands through :func:`build_parser`'s ``extend``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from audit.cli.audits import audit_commands, audit_config, cmd_gate, finish_gate
from audit.cli.bench import bench_commands
from audit.cli.common import (
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_OK,
    Parser,
    UsageError,
    importable_here,
    set_threads,
    user_policy,
)
from audit.cli.data import data_commands
from audit.cli.imitators import imitator_commands

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAIL",
    "EXIT_OK",
    "UsageError",
    "audit_config",
    "build_parser",
    "cmd_gate",
    "finish_gate",
    "main",
    "set_threads",
    "user_policy",
]


def build_parser(extend: Callable[[argparse._SubParsersAction], None] | None = None) -> argparse.ArgumentParser:
    """The parser; ``extend`` may add or adjust sub-commands (the service adds serve, worker, token, remote gate)."""
    parser = Parser(prog="imitaudit", description="Audit imitators for incorrigible departures.")
    parser.add_argument(
        "--env-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="let env ids of the form MODULE:Env-v0 import MODULE (it runs its code; repeatable; "
        "example: imitaudit --env-module mypkg.envs audit ...)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    data_commands(sub)
    imitator_commands(sub)
    audit_commands(sub)
    bench_commands(sub)
    if extend is not None:
        extend(sub)
    return parser


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
            importable_here()
        return args.func(args)
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"imitaudit: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        print(f"imitaudit: {exc}" if str(exc) else "imitaudit: interrupted", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
