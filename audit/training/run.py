"""A training run: BC, then (adversarial mode) adversarial iterations; logs, resumable checkpoints, the imitator file.

Metrics are namespaced ``disc/``, ``imitator/``, ``env/`` and go to CSV and TensorBoard
under ``<log_dir>/<run_id>`` (by default a fresh folder per run under the data directory's ``runs/``);
Lightning checkpoints there make a named run resumable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from audit.data.batching import EpisodeDataset, episode_loader, split_episodes
from audit.data.demonstrations import Demonstrations
from audit.data.demonstrator import preset_of
from audit.envs.adapter import agent_plane, env_signature, grid_shape
from audit.training.adversarial import AdversarialModule
from audit.training.bc import BCModule, ImitationModule
from audit.training.config import TrainConfig
from audit.training.finish import FinishModule
from audit.training.progress import PhaseProgress
from audit.training.queries import check_preset
from audit.training.replay import ReplayModule, check_fits
from models.checkpoint import save_imitator
from models.imitator import Imitator, ImitatorConfig
from models.registry import build


@dataclass
class TrainResult:
    """What a run produced."""

    imitator: Imitator
    path: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None
    steps_done: dict[str, int] = field(default_factory=dict)
    """Phase -> training batches completed (counting any resumed part)."""
    reached_target: bool = False
    """An evaluation reached ``target_return`` (training stopped there)."""
    env_steps: int = 0
    """Environment steps used for training (adversarial rollouts; evaluations not counted)."""
    eval_seconds: float = 0.0
    """Wall-clock spent evaluating in the env (the checks ``eval_every`` asks for), part of the run's time."""


class _StopAtBatchEnd(L.Callback):
    """Raises the Ctrl-C that :func:`_ctrl_c_at_batch_ends` recorded, at the end of the batch it came in (Lightning then
    saves the phase and ends the fit). A KeyboardInterrupt raised by the signal itself lands wherever the interpreter
    happens to be, and one landing in a finaliser is printed and dropped: the run then went on as if never stopped."""

    def __init__(self, requested: threading.Event) -> None:
        self.requested = requested

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt


@contextmanager
def _ctrl_c_at_batch_ends() -> Iterator[threading.Event]:
    """While fitting in the main thread, SIGINT only records the request (the event); elsewhere the event never
    fires and Ctrl-C is Python's."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = signal.signal(signal.SIGINT, lambda *_: requested.set())
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def _trainer(
    cfg: TrainConfig, run_dir: Path, phase: str, epochs: int, steps: int, stop: L.Callback | None = None
) -> L.Trainer:
    from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(save_dir=str(run_dir), name=phase, version="")]
    try:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name=phase, version=""))  # type: ignore[arg-type]
    except ModuleNotFoundError:  # tensorboard is optional at run time
        pass
    ckpt = ModelCheckpoint(dirpath=str(run_dir / phase / "checkpoints"), save_last=True, every_n_epochs=1, save_top_k=0)
    # Ctrl-C: the phase's state as it stands is saved apart (a file named "last" would clash with the epochs' own), and
    # --resume continues from whichever of the two is newer
    on_stop = OnExceptionCheckpoint(dirpath=str(run_dir / phase / "checkpoints"), filename="interrupted")
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=loggers,
        callbacks=[ckpt, on_stop, *([stop] if stop else [])]
        + (
            [PhaseProgress(phase=phase, total=steps, unit="steps" if phase == "bc" else "iterations")]
            if cfg.progress
            else []
        ),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        deterministic=False,
    )


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_utilities"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*GPU available.*")
    # a fresh phase: no checkpoint to restore is what train() made sure of
    warnings.filterwarnings("ignore", message=".*ckpt_path=None\\)` was called without a model.*")
    warnings.filterwarnings("ignore", message='.*ckpt_path="last"\\) is set, but there is no last checkpoint.*')
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")


def _last_checkpoint(run_dir: Path, phase: str) -> Path:
    """The phase's newest state: the end of its last epoch, or where Ctrl-C stopped it if that came later."""
    folder = run_dir / phase / "checkpoints"
    found = [p for p in (folder / "last.ckpt", folder / "interrupted.ckpt") if p.exists()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else folder / "last.ckpt"


def _holds_checkpoints(run_dir: Path) -> bool:
    return any(run_dir.glob("*/checkpoints/*.ckpt"))


def _fit_phase(
    module: L.LightningModule, make_loader, cfg: TrainConfig, run_dir: Path, phase: str, steps: int, resume: bool
) -> int:
    """Fit one phase of ``steps`` batches in epochs of ``eval_every`` (resuming its last checkpoint if asked); returns
    the batches done."""
    every = cfg.warmup_eval_every if phase == "bc" and cfg.mode == "adversarial" else None
    per_epoch = min(every or cfg.eval_every, steps)
    last = _last_checkpoint(run_dir, phase)
    epochs = max(1, math.ceil(steps / per_epoch))
    try:
        with _ctrl_c_at_batch_ends() as requested:
            # whole epochs: the batches that really run
            trainer = _trainer(cfg, run_dir, phase, epochs, epochs * per_epoch, _StopAtBatchEnd(requested))
            restore = resume and last.exists()
            try:
                trainer.fit(module, train_dataloaders=make_loader(per_epoch), ckpt_path=str(last) if restore else None)
            except RuntimeError as err:
                if not (restore and "loading state_dict" in str(err)):
                    raise
                raise ValueError(
                    f"cannot resume from {last}: its weights do not fit this run (another env, architecture or "
                    "size); leave out --resume or pass another --run-id"
                ) from None
    except SystemExit:  # Lightning ends a Ctrl-C with exit(1): say what happened and where the run stands instead
        if not trainer.interrupted:
            raise
        raise TrainingInterrupted(
            f"interrupted in the {phase} phase; saved to {run_dir / phase / 'checkpoints' / 'interrupted.ckpt'}: the "
            f"same command with --resume --run-id "
            f"{run_dir.name} --log-dir {run_dir.parent} continues it"
        ) from None
    return trainer.fit_loop.epoch_loop.total_batch_idx + 1


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a training phase; the message says where its state was saved and how to resume."""


def _provenance(cfg: TrainConfig, demos: Demonstrations, demos_sha256: str, metrics: dict[str, float]) -> dict:
    """What the checkpoint records of the run that made it."""
    return {
        "trainer": "imitaudit.train",
        "mode": cfg.mode,
        "steps": cfg.phase_steps,
        "bc_warmup": cfg.bc_warmup if cfg.mode == "adversarial" else 0,
        "seed": cfg.seed,
        "disc_taps": list(cfg.disc_taps),
        "grad_through_activations": cfg.grad_through_activations,
        "demos_sha256": demos_sha256,
        "demos_source": demos.source,
        "final_metrics": metrics,
    }


def _open_run_dir(cfg: TrainConfig, resume: bool) -> Path:
    """The run's folder, made and holding the run's config.json (a resumed run's config.json is left as it is: the
    resumed config replaces it only once it has trained, so a resume that fails keeps the run's record).

    Raises:
        ValueError: ``resume`` without a run id, or (without ``resume``) a folder with an earlier run's checkpoints.
    """
    if resume and not cfg.run_id:
        raise ValueError("--resume continues a named run: pass --run-id (the run folder's name)")
    run_dir = cfg.runs_folder() / cfg.name
    if not resume and _holds_checkpoints(run_dir):
        # Lightning would quietly restore them (an on-exception checkpoint makes it read ckpt_path=None as "last")
        raise ValueError(
            f"run folder {run_dir} already holds an earlier run's checkpoints: pass --resume to continue it, or "
            "another --run-id"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (resume and (run_dir / "config.json").exists()):
        _write_config(cfg, run_dir)
    return run_dir


def _write_config(cfg: TrainConfig, run_dir: Path) -> None:
    part = run_dir / "config.json.part"
    part.write_text(json.dumps(cfg.to_dict(), indent=2))
    part.replace(run_dir / "config.json")


def train(
    demos: Demonstrations,
    cfg: TrainConfig,
    *,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    demos_sha256: str = "",
) -> TrainResult:
    """Train an imitator on ``demos`` and (if ``out``) save its checkpoint.

    With ``resume``, a run folder left by an interrupted run of the same ``run_id`` is
    continued from its last checkpoint (per phase).

    Raises:
        ValueError: bad config, or demonstrations that do not fit their env.
    """
    _quiet_lightning()
    obs_dim, _ = demos.check_fits_env()
    train_eps, held_eps = split_episodes(demos.n_episodes, cfg.heldout_fraction, cfg.seed)
    if len(train_eps) == 0:
        raise ValueError("no demonstration episodes left to train on")
    train_set = EpisodeDataset(demos, train_eps)
    held_set = EpisodeDataset(demos, held_eps) if len(held_eps) else None
    icfg = _imitator_config(cfg, demos, obs_dim)
    _check_adversarial(cfg, demos, icfg)
    run_dir = _open_run_dir(cfg, resume)
    torch.manual_seed(cfg.seed)
    common = _module_kwargs(cfg, demos, icfg, float(demos.episode_returns()[train_eps].mean()))

    bc_steps = cfg.bc_steps
    metrics: dict[str, float] = {}
    done: dict[str, int] = {}
    skip_bc = cfg.mode == "adversarial" and resume and _last_checkpoint(run_dir, "adversarial").exists()
    if bc_steps > 0 and not skip_bc:
        bc = BCModule(**common)
        minibatches = lambda n: episode_loader(train_set, cfg.batch_episodes, n, cfg.seed)  # noqa: E731
        done["bc"] = _fit_phase(bc, minibatches, cfg, run_dir, "bc", bc_steps, resume)
        imitator, metrics, reached = bc.imitator, dict(bc.last_eval), bc.reached_target
        eval_seconds = bc.eval_seconds
    else:
        imitator, reached, eval_seconds = build(cfg.arch, icfg), False, 0.0
    env_steps = 0
    for phase, module, steps in _later_phases(cfg, common, train_set, held_set):
        if reached:
            break
        module.imitator.load_state_dict(imitator.state_dict())
        done[phase] = _fit_phase(module, _iterations, cfg, run_dir, phase, steps, resume)
        imitator, metrics, reached = module.imitator, dict(module.last_eval), module.reached_target
        env_steps, eval_seconds = env_steps + module.env_steps, eval_seconds + module.eval_seconds
    imitator.eval()
    if resume:
        _write_config(cfg, run_dir)
    path = None
    if out is not None:
        provenance = _provenance(cfg, demos, demos_sha256, metrics)
        path = save_imitator(
            imitator,
            out,
            env_id=demos.env_id,
            env_kwargs=demos.env_kwargs,
            obs_shape=demos.obs_shape,
            provenance=provenance,
        )
    return TrainResult(
        imitator=imitator,
        path=path,
        metrics=metrics,
        run_dir=run_dir,
        steps_done=done,
        reached_target=reached,
        env_steps=env_steps,
        eval_seconds=eval_seconds,
    )


def _later_phases(
    cfg: TrainConfig, common: dict[str, Any], train_set: EpisodeDataset, held_set: EpisodeDataset | None
) -> Iterator[tuple[str, ImitationModule, int]]:
    """The phases after BC, in order, each with its module and batches: an adversarial run's adversarial phase, then
    its finishing phase when ``query_finish`` asks for one (each module built only when the previous phase is done)."""
    if cfg.mode != "adversarial":
        return
    adv = (ReplayModule if cfg.learner == "replay" else AdversarialModule)(**common)
    adv.attach_demos(train_set, held_set)
    yield "adversarial", adv, cfg.phase_steps
    if cfg.query_finish:
        yield "finish", FinishModule(**common), cfg.query_finish


def _module_kwargs(cfg: TrainConfig, demos: Demonstrations, icfg: ImitatorConfig, demo_return: float) -> dict[str, Any]:
    """The keyword arguments every phase's module takes (the hyper-parameters its checkpoint saves)."""
    return {
        "train_cfg": cfg.to_dict(),
        "imitator_config": icfg.to_dict(),
        "env_id": demos.env_id,
        "env_kwargs": demos.env_kwargs,
        "demo_return": demo_return,
        "query_preset": _query_preset(cfg, demos),
    }


def _check_adversarial(cfg: TrainConfig, demos: Demonstrations, icfg: ImitatorConfig) -> None:
    """Raises ValueError, before any training, for an adversarial run its demonstrations or imitator cannot serve."""
    if cfg.mode != "adversarial":
        return
    if cfg.terminal_reward == "absorbing" and demos.terminated is None:
        raise ValueError("terminal_reward 'absorbing' needs demonstrations that record how each episode ended")
    if cfg.learner == "replay":
        check_fits(build(cfg.arch, icfg))


def _imitator_config(cfg: TrainConfig, demos: Demonstrations, obs_dim: int) -> ImitatorConfig:
    """The imitator's sizes for ``demos``' env under ``cfg``, and its action space's."""
    _, space = env_signature(demos.env_id, demos.env_kwargs)
    if cfg.plan_iterations and grid_shape(demos.env_id) is None:
        raise ValueError(f"plan_iterations needs a built-in grid env; {demos.env_id} has no grid")
    return ImitatorConfig(
        obs_dim=obs_dim,
        n_actions=space.n,
        continuous=space.continuous,
        action_low=space.low,
        action_high=space.high,
        hidden=cfg.hidden,
        max_len=max(512, int(demos.episode_lengths().max()) + 1),
        grid=grid_shape(demos.env_id) if cfg.grid_encoder else None,
        agent_plane=agent_plane(demos.env_id) if cfg.grid_encoder and cfg.centred_readout else None,
        plan_iterations=cfg.plan_iterations,
    )


def _iterations(n: int) -> DataLoader:
    """The adversarial phase's loader: ``n`` empty batches (each iteration collects its own data)."""
    return DataLoader(range(n), batch_size=1)  # type: ignore[arg-type]


def _query_preset(cfg: TrainConfig, demos: Demonstrations) -> str:
    """``query_demonstrator`` resolved: the preset to ask, or ''.

    Raises:
        ValueError: queries the env cannot answer, or ``auto`` for demonstrations no preset recorded.
    """
    if not cfg.query_demonstrator or cfg.mode != "adversarial":
        return ""
    preset = preset_of(demos.source) if cfg.query_demonstrator == "auto" else cfg.query_demonstrator
    if preset is None:
        raise ValueError(
            "--query-demonstrator auto: these demonstrations were not recorded by a built-in preset; name one"
        )
    check_preset(demos.env_id, preset)
    return preset


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
