"""Where an audit's independent pieces run: in this process, or as Ray tasks on a cluster (``--ray ADDRESS``).

Ray is optional (``pip install imitaudit[ray]``) and imported only when a cluster is asked for.
Today the cross-fitted detectors run there, one task per fold: each task gets the fold's inputs
from the object store (the episodes are put there once), fits with the seed the local path uses
and the driver's torch thread count, and returns the fitted detector and its evidence, so the
report is the one the local path writes. A task whose worker dies is retried by Ray
(``max_retries``); a cluster that cannot be reached is one line, not a hang.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

RETRIES = 3
"""Ray retries of a task whose worker process died."""


def _reachable(address: str, seconds: float = 5.0) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray needs HOST:PORT of a Ray head (or 'auto'), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=seconds):
            pass
    except OSError as exc:
        raise ValueError(f"cannot reach the Ray cluster at {address} ({exc.strerror or type(exc).__name__})") from None


class Cluster:
    """A connection to a Ray cluster that runs functions of this package as tasks.

    Args:
        address: ``HOST:PORT`` of a running head, or ``auto`` (this machine's cluster, or ``RAY_ADDRESS``).

    Raises:
        ValueError: Ray is not installed, or the cluster cannot be reached (one line).
    """

    def __init__(self, *, address: str) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("--ray needs Ray: pip install 'imitaudit[ray]'") from None
        if address == "auto" and os.environ.get("RAY_ADDRESS"):
            address = os.environ["RAY_ADDRESS"]
        if address != "auto":
            _reachable(address)
        try:
            if not ray.is_initialized():
                ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - Ray's connection errors have no common base
            raise ValueError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0][:200]}") from None
        self.ray = ray
        self.nodes: set[str] = set()
        """Ids of the nodes tasks ran on (for the caller's report line)."""

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *, common: Sequence[Any] = (),
            progress: Callable[[float], None] | None = None) -> list[Any]:
        """``[fn(*common, item) for item in items]``, each call a Ray task; ``common`` is put in the object store once.

        ``progress`` is called with the share of tasks done while waiting (at least once a second); if it raises,
        the tasks are cancelled and the exception propagates.
        """
        import torch

        ray = self.ray
        refs_common = [ray.put(c) for c in common]
        task = ray.remote(max_retries=RETRIES, num_cpus=1)(_run)
        threads = torch.get_num_threads()
        pending = [task.remote(fn, threads, item, *refs_common) for item in items]
        order = {ref: i for i, ref in enumerate(pending)}
        results: list[Any] = [None] * len(pending)
        waiting = list(pending)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1, timeout=1.0)
                for ref in done:
                    node, value = ray.get(ref)
                    self.nodes.add(node)
                    results[order[ref]] = value
                if progress:
                    progress((len(pending) - len(waiting)) / len(pending))
        except BaseException:
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
        return results


def _run(fn: Callable[..., Any], threads: int, item: Any, *common: Any) -> tuple[str, Any]:
    """One task: ``fn(*common, item)`` at the driver's torch thread count (equal threads give equal floats)."""
    import ray
    import torch

    torch.set_num_threads(threads)
    return ray.get_runtime_context().get_node_id(), fn(*common, item)
