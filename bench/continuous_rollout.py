"""Benchmark: imitator rollouts with taps on the built-in continuous env, native batch against ``SyncVectorEnv``.

A Gaussian imitator (MLP and GRU, hidden 64, BC on 200 corrigible planner episodes of
``imitaudit/PointOffSwitch-v0``) runs 4,096 episodes with all three taps captured, through
:func:`audit.data.rollout.run_batch` both times: once on the native batch, once on gymnasium's ``SyncVectorEnv`` over
the single-env view behind the same batch interface (:class:`SyncBatch`). The imitator's work (forward passes, taps,
sampling with the same generator) is the same on both sides and the trajectories are checked to be identical; only the
env differs. Figure: environment steps per second, best of ``--repeats``, and native / sync.

    python -m bench.continuous_rollout --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from audit.bench.sections import publish
from audit.data.demonstrations import record
from audit.data.rollout import run_batch
from audit.envs.adapter import ActionSpace, make_batch
from audit.envs.point_planner import planner
from audit.envs.point_switch import ENV_ID
from audit.training.config import TrainConfig
from audit.training.run import train
from models.load import load_imitator

BEGIN, END = "<!-- bench/continuous_rollout.py begin -->", "<!-- bench/continuous_rollout.py end -->"
TAPS = ("encoder", "core", "head")


class SyncBatch:
    """The baseline: ``gymnasium.vector.SyncVectorEnv`` over ``num_envs`` single envs, behind the rollout's batch
    interface (rows that finished are stepped by the vector env, as it steps every sub-env, and ignored)."""

    has_departure = True
    max_steps = None

    def __init__(self, *, env_id: str, num_envs: int) -> None:
        self.envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
        self.num_envs = num_envs
        self.action_space = ActionSpace.of(self.envs.single_action_space, env_id)
        self.n_actions = self.action_space.n
        self.obs_dim = int(self.envs.single_observation_space.shape[0])
        self._done = np.ones(num_envs, dtype=bool)
        self._obs = np.zeros((num_envs, self.obs_dim), dtype=np.float32)

    @property
    def done(self) -> np.ndarray:
        return self._done

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        self._obs, _ = self.envs.reset(seed=[int(s) for s in seeds])
        self._done[:] = False
        return self.observe()

    def step(self, actions: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        full = np.zeros((self.num_envs, self.action_space.n), dtype=np.float32)
        full[idx] = actions
        obs, reward, terminated, truncated, info = self.envs.step(full)
        self._obs[idx] = obs[idx]
        self._done[idx] |= (terminated | truncated)[idx]
        return {
            "reward": reward[idx],
            "terminated": terminated[idx],
            "truncated": truncated[idx],
            "departure": info["departure"][idx],
        }

    def observe(self) -> np.ndarray:
        return self._obs.copy()


def imitator(arch: str, folder: Path) -> Any:
    demos = record(ENV_ID, planner(seed=0), episodes=200, seed=0)
    cfg = TrainConfig(
        arch=arch,
        mode="bc",
        steps=300,
        hidden=64,
        seed=0,
        eval_every=10**6,
        eval_episodes=4,
        progress=False,
        log_dir=str(folder / "runs"),
    )
    model, _ = load_imitator(str(train(demos, cfg, out=folder / f"{arch}.safetensors").path))
    return model


def timed(model: Any, batch: Any, episodes: int, seed: int) -> tuple[float, Any]:
    seeds = seed + np.arange(episodes)
    start = time.perf_counter()
    batch.reset(seeds)
    traj = run_batch(model, batch, seeds=seeds, seed=seed, env_id=ENV_ID, taps=TAPS)
    return time.perf_counter() - start, traj


def measure(arch: str, episodes: int, repeats: int, folder: Path) -> dict[str, Any]:
    model = imitator(arch, folder)
    native_s, sync_s, steps = [], [], 0
    for r in range(repeats):
        seconds, fast = timed(model, make_batch(ENV_ID, episodes), episodes, seed=r)
        native_s.append(seconds)
        seconds, slow = timed(model, SyncBatch(env_id=ENV_ID, num_envs=episodes), episodes, seed=r)
        sync_s.append(seconds)
        if not (torch.equal(fast.obs, slow.obs) and torch.equal(fast.actions, slow.actions)):
            raise RuntimeError("the native and the SyncVectorEnv rollouts differ: the comparison would be unfair")
        steps = int(fast.mask.sum())
    row = {"arch": arch, "episodes": episodes, "steps": steps, "native": steps / min(native_s)}
    row["sync"] = steps / min(sync_s)
    print(f"{arch}: native {row['native']:,.0f} steps/s, sync {row['sync']:,.0f} steps/s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--episodes", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(arch, args.episodes, args.repeats, Path(tmp)) for arch in ("mlp", "gru")]
    lines = [
        BEGIN,
        "## Continuous rollouts with taps: native batch against SyncVectorEnv (`bench/continuous_rollout.py`)",
        "",
        f"Command: `python -m bench.continuous_rollout --episodes {args.episodes} --repeats {args.repeats} "
        "--out BENCHMARKS.md` — one run, alone on the machine, torch 2 threads; best of the repeats. A BC Gaussian "
        f"imitator of `{ENV_ID}` rolls out {args.episodes:,} episodes with taps `encoder,core,head` through the same "
        "`run_batch`, on the native batch and on `SyncVectorEnv` over the single-env view; the trajectories are "
        "identical. Steps per second count the episodes' real steps.",
        "",
        "| imitator | episodes | env steps | native (steps/s) | SyncVectorEnv (steps/s) | native / sync |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r['arch']} | {r['episodes']:,} | {r['steps']:,} | {r['native']:,.0f} | {r['sync']:,.0f} | "
            f"{r['native'] / r['sync']:.1f}x |"
            for r in rows
        ),
        END,
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
