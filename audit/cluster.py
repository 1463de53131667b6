"""Where an audit's independent pieces run: in this process, or as Ray tasks on a cluster (``--ray ADDRESS``).

Ray is optional (``pip install imitaudit[ray]``) and imported only when a cluster is asked for.
An audit's rollout shards, its cross-fitted detectors (one task per fold, the lookahead's futures
inside them) and its explanations run there; the detection benchmark's zoo training and audits
too. Each task gets its inputs from the object store (put there once per stage), runs the function
the local path runs with the same seeds and the driver's torch thread count, and returns its
result, so the report is the one the local path writes. A task whose worker dies is retried by Ray
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
        measure: also record each task's seconds and the bytes it moved through the object store (its pickled
            inputs, once per map for the shared ones, and its result), for ``bench/scale.py``; costs a pickling each.

    Raises:
        ValueError: Ray is not installed, or the cluster cannot be reached (one line).
    """

    def __init__(self, *, address: str, measure: bool = False) -> None:
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
        self.tasks: dict[str, int] = {}
        """Tasks submitted, by kind."""
        self.measure = measure
        self.seconds: dict[str, list[float]] = {}
        """With ``measure``: each finished task's seconds inside the task, by kind."""
        self.bytes: dict[str, dict[str, int]] = {}
        """With ``measure``: bytes through the object store by kind: ``shared`` (inputs put once per map) and
        ``per_task`` (each task's item and result)."""

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *, common: Sequence[Any] = (), kind: str = "tasks",
            progress: Callable[[float], None] | None = None) -> list[Any]:
        """``[fn(*common, item) for item in items]``, each call a Ray task; ``common`` is put in the object store once.

        Args:
            kind: what the tasks are, for :attr:`tasks` (the CLI's report line).
            progress: called with the share of tasks done while waiting (at least once a second); if it raises,
                the tasks are cancelled (their workers killed) and the exception propagates.
        """
        import torch

        ray = self.ray
        refs_common = [ray.put(c) for c in common]
        if self.measure:
            moved = self.bytes.setdefault(kind, {"shared": 0, "per_task": 0})
            moved["shared"] += sum(_size(c) for c in common)
            moved["per_task"] += sum(_size(x) for x in items)
        # one CPU per task: imitaudit's training and audits run on CPU (the trainer asks for accelerator="cpu")
        task = ray.remote(max_retries=RETRIES, num_cpus=1)(_run)
        threads = torch.get_num_threads()
        # the common refs travel inside a list, so the task resolves them after it has set its threads (an ONNX
        # session is built as it is unpickled)
        pending = [task.remote(fn, threads, item, refs_common, self.measure) for item in items]
        self.tasks[kind] = self.tasks.get(kind, 0) + len(pending)
        order = {ref: i for i, ref in enumerate(pending)}
        results: list[Any] = [None] * len(pending)
        waiting = list(pending)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1, timeout=1.0)
                for ref in done:
                    node, seconds, size, value = ray.get(ref)
                    self.nodes.add(node)
                    results[order[ref]] = value
                    if self.measure:
                        self.seconds.setdefault(kind, []).append(seconds)
                        self.bytes[kind]["per_task"] += size
                if progress:
                    progress((len(pending) - len(waiting)) / len(pending))
        except BaseException:
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
        return results

    def close(self) -> None:
        """Disconnect this process from the cluster (a later :class:`Cluster` may connect to another)."""
        self.ray.shutdown()

    def summary(self) -> str:
        """One line: the tasks run, by kind, and the nodes they ran on."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.tasks.items())
        return f"ray: {kinds or 'no tasks'} ran as tasks on {len(self.nodes)} node(s)"


def _run(fn: Callable[..., Any], threads: int, item: Any, common: list[Any], measure: bool) -> tuple[str, float, int, Any]:
    """One task: ``fn(*common, item)`` at the driver's torch thread count (equal threads give equal floats).

    Returns (node id, seconds, result bytes if ``measure`` else 0, result)."""
    import time

    import ray
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    value = fn(*ray.get(common), item)
    seconds = time.perf_counter() - start
    return ray.get_runtime_context().get_node_id(), seconds, _size(value) if measure else 0, value


def _size(obj: Any) -> int:
    """Pickled bytes of ``obj`` (what Ray's serializer moves, up to its framing)."""
    import ray.cloudpickle

    return len(ray.cloudpickle.dumps(obj))
