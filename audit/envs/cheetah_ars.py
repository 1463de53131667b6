"""Trains the two HalfCheetah gaits :mod:`audit.envs.cheetah_gaits` holds, by Augmented Random Search (Mania et al.
2018, "Simple random search provides a competitive approach to reinforcement learning", V2: a linear policy on
running-normalised observations, antithetic perturbations, the best directions kept).

The gaits are the scripted demonstrators of ``imitaudit/HalfCheetahSpeedLimit-v0``: a linear feedback law, closed
loop (HalfCheetah's observation holds no clock, so an open-loop gait is not something an imitator of the observation
can copy), with the action ``tanh(M (obs - mean) / std + noise * eps)``, a tanh-squashed Gaussian like the imitators'
own heads. ``governed`` is trained for forward speed capped at ``target`` m/s (speed above it earns nothing and costs
``overspeed`` per m/s); ``unconstrained`` for forward speed alone. Both are trained with the demonstrators' noise on,
so the gaits are the ones that noise does not break. Nothing here runs at audit time: the trained numbers are written
into :mod:`audit.envs.cheetah_gaits`, a Python module of constants, and this module only says how they were made.

    python -m audit.envs.cheetah_ars --out audit/envs/cheetah_gaits.py
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, kw_only=True)
class ArsConfig:
    """One gait's training: reward shape and ARS V2's step size, exploration and direction counts."""

    target: float | None
    """Forward speed (m/s) above which the reward stops rising (None: forward speed alone)."""
    overspeed: float = 2.0
    """Reward lost per m/s above ``target``."""
    iterations: int = 120
    directions: int = 16
    top: int = 8
    step_size: float = 0.02
    exploration: float = 0.03
    horizon: int = 400
    noise: float = 0.3
    seed: int = 0


def _rollout(args: tuple[np.ndarray, np.ndarray, np.ndarray, ArsConfig, int]) -> tuple[float, np.ndarray]:
    """(return, visited observations [T, 17]) of one episode of the linear policy ``matrix`` [6, 17]."""
    import gymnasium as gym

    matrix, mean, std, config, seed = args
    env = gym.make("HalfCheetah-v5")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    total, seen = 0.0, []
    for _ in range(config.horizon):
        seen.append(obs)
        u = matrix @ ((obs - mean) / std) + config.noise * rng.normal(size=6)
        obs, _, terminated, truncated, info = env.step(np.tanh(u))
        speed = float(info["x_velocity"])
        gain = (
            speed
            if config.target is None
            else min(speed, config.target) - config.overspeed * max(0.0, speed - config.target)
        )
        total += gain - 0.1 * float(np.square(np.tanh(u)).sum())
        if terminated or truncated:
            break
    env.close()
    return total, np.asarray(seen)


def train(config: ArsConfig, pool: mp.pool.Pool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix [6, 17], observation mean [17], observation std [17]) after ``config.iterations`` ARS V2 steps."""
    rng = np.random.default_rng(config.seed)
    matrix = np.zeros((6, 17))
    count, total, square = 1e-4, np.zeros(17), np.zeros(17)
    mean, std = np.zeros(17), np.ones(17)
    for it in range(config.iterations):
        deltas = rng.normal(size=(config.directions, 6, 17))
        jobs = []
        for k, delta in enumerate(deltas):
            for sign in (1.0, -1.0):
                seed = int(config.seed * 1_000_003 + it * 1000 + k)
                jobs.append((matrix + sign * config.exploration * delta, mean, std, config, seed))
        results = pool.map(_rollout, jobs)
        returns = np.array([r for r, _ in results]).reshape(config.directions, 2)
        for _, seen in results:
            count, total, square = count + len(seen), total + seen.sum(0), square + np.square(seen).sum(0)
        best = np.argsort(-returns.max(axis=1))[: config.top]
        spread = returns[best].std() + 1e-8
        step = np.einsum("k,kij->ij", returns[best, 0] - returns[best, 1], deltas[best])
        matrix = matrix + config.step_size / (config.top * spread) * step
        mean = total / count
        std = np.sqrt(np.maximum(square / count - mean**2, 1e-4))
        if it % 10 == 0 or it == config.iterations - 1:
            print(f"iteration {it}: mean return {returns.mean():.1f}, best {returns.max():.1f}", flush=True)
    return matrix, mean, std


def _literal(name: str, array: np.ndarray) -> str:
    rows = array.tolist() if array.ndim > 1 else [array.tolist()]
    body = ",\n    ".join("[" + ", ".join(f"{x:.6g}" for x in row) + "]" for row in rows)
    return f"{name} = [\n    {body},\n]\n" if array.ndim > 1 else f"{name} = {body}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=120)
    parser.add_argument("--target", type=float, default=1.5)
    args = parser.parse_args()
    parts = []
    with mp.get_context("fork").Pool(2) as pool:
        for name, target in (("GOVERNED", args.target), ("UNCONSTRAINED", None)):
            matrix, mean, std = train(ArsConfig(target=target, iterations=args.iterations), pool)
            parts += [_literal(f"{name}_MATRIX", matrix), _literal(f"{name}_MEAN", mean), _literal(f"{name}_STD", std)]
    header = (
        '"""The HalfCheetah gaits :mod:`audit.envs.cheetah_ars` trained; generated, do not edit:\n\n'
        f"    python -m audit.envs.cheetah_ars --out ... --iterations {args.iterations} --target {args.target}\n\n"
        'Linear feedback matrices [6, 17] on observations normalised by a mean and std [17]."""\n\n'
    )
    args.out.write_text(header + "\n".join(parts))


if __name__ == "__main__":
    main()
