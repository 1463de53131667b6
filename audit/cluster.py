"""Where an audit's independent pieces run: in this process, or as Ray tasks on a cluster (``--ray ADDRESS``).

Ray is optional (``pip install imitaudit[ray]``) and imported only when a cluster is asked for.
An audit's rollout shards, its cross-fitted detectors (one task per fold, the lookahead's futures
inside them) and its explanations (one batch per fold) run there; the detection benchmark's zoo
training and audits too. Each task gets its inputs from the object store (put there once per stage), runs the function
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


def _auto_address() -> str:
    """``auto``'s HOST:PORT: ``RAY_ADDRESS``, else the cluster the last ``ray start`` on this machine recorded.

    Resolved here so that a dead cluster's record is one line, not ``ray.init`` retrying it for ever.
    """
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    from ray._private.services import canonicalize_bootstrap_address_or_die  # the ray pin keeps this private helper

    try:
        return canonicalize_bootstrap_address_or_die("auto")
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError or its own errors here
        raise ValueError(
            f"--ray auto found no Ray cluster on this machine ({str(exc).splitlines()[0][:160]}); "
            "start one with `ray start --head` or give HOST:PORT"
        ) from None


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
        if address == "auto":
            address = _auto_address()
        _reachable(address)
        try:
            if not ray.is_initialized():
                ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - Ray's connection errors have no common base
            raise ValueError(
                f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0][:200]}"
            ) from None
        self.ray = ray
        self.nodes: set[str] = set()
        """Ids of the nodes tasks ran on (for the caller's report line)."""
        self.tasks: dict[str, int] = {}
        """Tasks submitted, by kind."""
        self.seconds: dict[str, list[float]] = {}
        """Each finished task's seconds inside its worker (fetching its inputs included), by kind."""
        self.bytes: dict[str, dict[str, int]] = {}
        """Object-store bytes by kind: ``shared`` (the inputs put once per map) and ``results`` (what the tasks
        returned); items travel inline with each task and are not counted (an index, a span, one trajectory, a
        config)."""

    def map(
        self,
        fn: Callable[..., Any],
        items: Sequence[Any],
        *,
        common: Sequence[Any] = (),
        kind: str = "tasks",
        progress: Callable[[float], None] | None = None,
    ) -> list[Any]:
        """``[fn(*common, item) for item in items]``, each call a Ray task; ``common`` is put in the object store once.

        Args:
            kind: what the tasks are, for :attr:`tasks` (the CLI's report line).
            progress: called with the share of tasks done while waiting (at least once a second); if it raises,
                the tasks are cancelled (their workers killed) and the exception propagates.
        """
        import torch

        ray = self.ray
        refs_common = [ray.put(c) for c in common]
        moved = self.bytes.setdefault(kind, {"shared": 0, "results": 0})
        moved["shared"] += _sizes(ray, refs_common)
        # one CPU per task: imitaudit's training and audits run on CPU (the trainer asks for accelerator="cpu")
        task = ray.remote(max_retries=RETRIES, num_cpus=1)(_run)
        threads = torch.get_num_threads()
        # the common refs travel inside a list, so the task resolves them after it has set its threads (an ONNX
        # session is built as it is unpickled)
        pending = [task.remote(fn, threads, item, refs_common) for item in items]
        self.tasks[kind] = self.tasks.get(kind, 0) + len(pending)
        order = {ref: i for i, ref in enumerate(pending)}
        results: list[Any] = [None] * len(pending)
        waiting = list(pending)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1, timeout=1.0)
                moved["results"] += _sizes(ray, done)
                for ref in done:
                    node, seconds, value = ray.get(ref)
                    self.nodes.add(node)
                    self.seconds.setdefault(kind, []).append(seconds)
                    results[order[ref]] = value
                if progress:
                    progress((len(pending) - len(waiting)) / len(pending))
        except BaseException:
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
        return results

    @property
    def slots(self) -> int:
        """The cluster's CPU slots: tasks that can run at once (each asks for one)."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def warm(self) -> float:
        """Start a worker process in every CPU slot of the cluster and import imitaudit there; returns the seconds it
        took.

        A fresh worker pays for importing torch and imitaudit once (seconds); a long-lived cluster keeps its workers.
        """
        import time

        start = time.perf_counter()
        self.map(_warm, range(self.slots), kind="warm-ups")
        for counts in (self.tasks, self.seconds, self.bytes):  # not the work the caller reports
            counts.pop("warm-ups", None)
        return time.perf_counter() - start

    def close(self) -> None:
        """Disconnect this process from the cluster (a later :class:`Cluster` may connect to another)."""
        self.ray.shutdown()

    def summary(self) -> str:
        """One line: the tasks run, by kind, and the nodes they ran on."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.tasks.items())
        return f"ray: {kinds or 'no tasks'} ran as tasks on {len(self.nodes)} node(s)"


def _run(fn: Callable[..., Any], threads: int, item: Any, common: list[Any]) -> tuple[str, float, Any]:
    """One task: ``fn(*common, item)`` at the driver's torch thread count (equal threads give equal floats).

    Returns (node id, seconds, result)."""
    import time

    import ray
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    value = fn(*ray.get(common), item)
    return ray.get_runtime_context().get_node_id(), time.perf_counter() - start, value


def _sizes(ray: Any, refs: list[Any]) -> int:
    """Bytes of the objects ``refs`` name, as the object store holds them (0 for the small ones kept inline)."""
    from ray.experimental import get_object_locations

    return sum(loc.get("object_size") or 0 for loc in get_object_locations(refs).values()) if refs else 0


def _warm(_: int) -> int:
    """Import what audits' tasks run (torch, the detectors, captum) into a worker process."""
    import os
    import time

    import captum.attr  # noqa: F401 - explanations import it on first use

    import audit.bench.detect  # noqa: F401 - the import is the warm-up
    import audit.detect.pipeline  # noqa: F401

    time.sleep(1.0)  # hold the slot, so each of the cluster's slots gets one warm-up
    return os.getpid()
