"""Benchmark: the native batched VectorEnv against gymnasium's SyncVectorEnv, and demonstration throughput.

Both vector envs step the same env with the same seeds and the same random actions; the
figure is environment steps per second (sub-environments x vector steps / wall time),
and the ratio native / sync is what the issue's goal (>= 100x at 4,096) is judged on.
Writes a Markdown table into BENCHMARKS.md between markers, so other benchmarks' tables
in that file are kept.

    python bench/envs.py --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import platform
import time

import gymnasium as gym
import numpy as np

import audit
from audit.bench.sections import publish
from audit.data.demonstrations import record

BEGIN, END = "<!-- bench/envs.py begin -->", "<!-- bench/envs.py end -->"


def steps_per_second(envs, num_envs: int, min_seconds: float, min_steps: int, seed: int) -> float:
    """Env steps per second of ``envs`` under uniformly random actions (reset excluded)."""
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 5, size=(min_steps * 50, num_envs))
    for a in actions[:3]:  # warm-up
        envs.step(a)
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < min_seconds:
        envs.step(actions[steps % len(actions)])
        steps += 1
    return steps * num_envs / (time.perf_counter() - start)


def bench_vector(env_id: str, sizes: list[int], min_seconds: float) -> list[dict]:
    rows = []
    for n in sizes:
        native = gym.make_vec(env_id, num_envs=n)
        sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
        min_steps = 20 if n >= 1024 else 200
        fast = steps_per_second(native, n, min_seconds, min_steps, seed=0)
        slow = steps_per_second(sync, n, min_seconds, min_steps, seed=0)
        rows.append({"env": env_id, "episodes": n, "native": fast, "sync": slow, "ratio": fast / slow})
        native.close()
        sync.close()
        print(
            f"{env_id:<32} n={n:<5} native {fast:>12,.0f} steps/s  sync {slow:>10,.0f} steps/s  x{fast / slow:,.1f}",
            flush=True,
        )
    return rows


def bench_demos(env_id: str, preset: str, episodes: int) -> dict:
    start = time.perf_counter()
    demos = record(env_id, preset, episodes=episodes, seed=0)
    seconds = time.perf_counter() - start
    row = {
        "env": env_id,
        "preset": preset,
        "episodes": episodes,
        "eps_per_s": episodes / seconds,
        "steps_per_s": demos.n_steps / seconds,
    }
    print(f"{env_id:<32} demos {preset:<10} {row['eps_per_s']:>8,.0f} episodes/s", flush=True)
    return row


def render(vector_rows: list[dict], demo_rows: list[dict], command: str) -> str:
    lines = [
        BEGIN,
        "## Environments (`bench/envs.py`)",
        "",
        f"Command: `{command}` — one run on {platform.machine()} ({platform.python_version()}), "
        f"numpy {np.__version__}, gymnasium {gym.__version__}. Environment steps per second under random "
        "actions, same env, same seeds; baseline: `gymnasium.vector.SyncVectorEnv` over the single-env view.",
        "",
        "| env | episodes | native VectorEnv (steps/s) | SyncVectorEnv (steps/s) | native / sync |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in vector_rows:
        lines.append(f"| {r['env']} | {r['episodes']:,} | {r['native']:,.0f} | {r['sync']:,.0f} | {r['ratio']:,.1f}x |")
    lines += [
        "",
        "Demonstration generation (`audit.data.demonstrations.record`, planning included, batches of 512):",
        "",
        "| env | demonstrator | episodes | episodes/s | steps/s |",
        "|---|---|---:|---:|---:|",
    ]
    for r in demo_rows:
        lines.append(
            f"| {r['env']} | {r['preset']} | {r['episodes']:,} | {r['eps_per_s']:,.0f} | {r['steps_per_s']:,.0f} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--sizes", default="1,64,4096", help="comma-separated episode counts")
    parser.add_argument("--seconds", type=float, default=3.0, help="least wall time per measurement")
    parser.add_argument("--demo-episodes", type=int, default=2000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    vector_rows = [row for env_id in audit.WORLDS for row in bench_vector(env_id, sizes, args.seconds)]
    demo_rows = [
        bench_demos(env_id, preset, args.demo_episodes)
        for env_id in audit.WORLDS
        for preset in ("corrigible", "unbounded")
    ]
    command = (
        f"python -m bench.envs --sizes {args.sizes} --seconds {args.seconds:g} --demo-episodes {args.demo_episodes}"
    )
    publish(render(vector_rows, demo_rows, command).rstrip("\n").split("\n"), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
