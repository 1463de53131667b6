"""Training progress with an ETA: one line to stderr every few seconds, for the whole phase rather than one epoch.

Lightning's bar restarts at every epoch (an epoch here is ``eval_every`` batches), so it
cannot say when the run ends; this callback counts the phase's batches and extrapolates.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import lightning as L
import torch

from audit.threads import others_running, sharing_note


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class PhaseProgress(L.Callback):
    """Prints ``phase: done/total unit (pct), elapsed, ETA`` every ``every`` seconds and when the phase ends.

    Args:
        phase: ``bc``, ``adversarial`` or ``finish``.
        total: batches in the phase (gradient steps or adversarial iterations).
        unit: what a batch is called.
        every: seconds between lines.
        stream: where to print (stderr).
        others: runnable threads of other processes now (read at each line: a run that starts alone may not stay so).
    """

    def __init__(
        self,
        *,
        phase: str,
        total: int,
        unit: str,
        every: float = 5.0,
        stream: TextIO | None = None,
        others: Callable[[], int] = others_running,
    ) -> None:
        self.phase, self.total, self.unit, self.every = phase, total, unit, every
        self.stream = stream or sys.stderr
        self.others = others
        self.start = self.last = 0.0
        self.first = 0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start = self.last = time.perf_counter()
        self.first = (
            trainer.fit_loop.epoch_loop.total_batch_idx + 1 if trainer.global_step else 0
        )  # resumed runs count on

    def _line(self, done: int, trainer: L.Trainer) -> str:
        elapsed = time.perf_counter() - self.start
        rate = (done - self.first) / elapsed if elapsed > 0 and done > self.first else 0.0
        eta = _clock((self.total - done) / rate) if rate > 0 else "?"
        extra = ""
        acc = trainer.callback_metrics.get("disc/acc_pb")
        if acc is not None:
            extra = f", discriminator accuracy {float(acc):.2f}"
        share = 100 * done / max(self.total, 1)
        cores = max(1, len(os.sched_getaffinity(0)))
        note = sharing_note(torch.get_num_threads(), cores, self.others())
        if note:
            extra += f"; {note}"
        return (
            f"{self.phase}: {done}/{self.total} {self.unit} ({share:.0f}%), {_clock(elapsed)} elapsed, ETA {eta}{extra}"
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            print(self._line(trainer.fit_loop.epoch_loop.total_batch_idx + 1, trainer), file=self.stream, flush=True)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        done = trainer.fit_loop.epoch_loop.total_batch_idx + 1
        print(self._line(min(done, self.total), trainer).replace(", ETA 0s", ", done"), file=self.stream, flush=True)
