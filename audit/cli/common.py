"""What every ``imitaudit`` command shares: the one-line usage error, exit codes, argument types, progress bars,
threads and the cluster option."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (``--episodes 0`` is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def env_kwargs_arg(text: str) -> dict[str, Any]:
    """An argparse type for ``--env-kwargs``: a JSON object, parsed once where the option is read (empty: none)."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--env-kwargs must be a JSON object")
    return value


class UsageError(ValueError):
    """Bad command-line usage (reported like any bad input: one line, exit 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message if self.prog == "imitaudit" else f"{self.prog}: {message}")


def bar_interval() -> float:
    """Seconds between a progress bar's redraws: live on a terminal, a line every 10 s in a log (a CI job's stderr)."""
    return 0.1 if sys.stderr.isatty() else 10.0


def progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="ep",
        disable=not enabled,
        file=sys.stderr,
        leave=False,
        mininterval=bar_interval(),
    )


def importable_here() -> None:
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
    importable_here()
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--policy {spec}: {exc}") from None
    if not callable(fn):
        raise UsageError(f"--policy {spec} is not callable")
    return fn


def names_arg(csv: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in csv.split(",")) if csv else ()


def connect(args: argparse.Namespace) -> Any:
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


def ray_argument(p: argparse.ArgumentParser, runs: str) -> None:
    p.add_argument(
        "--ray",
        default=os.environ.get("RAY_ADDRESS", ""),
        metavar="ADDRESS",
        help=f"run {runs} as Ray tasks on the cluster at HOST:PORT, or 'auto' (default: $RAY_ADDRESS; none: here). "
        "Same seeds, same figures",
    )


def set_threads() -> int:
    """torch's threads for this process (:func:`audit.threads.use_threads`: ``IMITAUDIT_THREADS``, else the cores
    other running processes leave free). Returns the count.

    Raises:
        UsageError: a value that is not a positive integer.
    """
    from audit.threads import use_threads

    try:
        return use_threads()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
