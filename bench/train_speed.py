"""Benchmark: a fixed amount of training, this checkout against another (the baseline), in turns.

    git worktree add /tmp/baseline <commit>
    python -m bench.train_speed --baseline /tmp/baseline --out BENCHMARKS.md

The work is the imitaudit side of bench/peer_gail.py's second row (its ``ours_config``) cut to a fixed length: an
MLP imitator of the first 25 steps of one scripted CartPole-v1 demonstration, 2,000 BC steps, then 100 adversarial
iterations of 16 episodes (evaluations of 50 episodes every 100 steps or iterations, as in that row, part of the
work), no target, so both sides do the same steps. The baseline's ``audit``, ``models`` and ``service`` run under
this checkout's benchmark code (nothing is written into the baseline). Each side runs as its own process (start-up
included) with the same torch threads, alternately, so a drift in the machine's speed falls on both; the ratio is
taken pair by pair. Each run prints a hash of its trained imitator's weights: equal hashes say the two checkouts
trained the same imitator.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BEGIN, END = "<!-- bench/train_speed.py begin -->", "<!-- bench/train_speed.py end -->"
HERE = Path(__file__).resolve().parent.parent


def work(threads: int) -> dict:
    """Train once; the seconds from the first import of the trainer, env steps and the weights' hash."""
    start = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    from audit.data.demonstrations import record
    from audit.training.run import train
    from bench.peer_gail import cut, expert, ours_config

    demos = cut(record("CartPole-v1", expert, episodes=1, seed=0, source="scripted"), 25)
    cfg = ours_config(steps=100, log_dir=os.environ["TRAIN_SPEED_LOGS"])
    result = train(demos, cfg)
    digest = hashlib.sha256()
    for name, tensor in sorted(result.imitator.state_dict().items()):
        digest.update(name.encode() + tensor.numpy().tobytes())
    return {"seconds": time.perf_counter() - start, "env_steps": result.env_steps, "hash": digest.hexdigest()[:16]}


def overlay(base: Path, logs: Path) -> Path:
    """A folder whose ``audit``, ``models`` and ``service`` are the baseline's (symlinks) and which has no ``bench``:
    first on the path, it makes the baseline's code run under this checkout's benchmark, which the baseline may
    predate, without writing into the baseline."""
    folder = logs / "baseline-code"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("audit", "models", "service"):
        link = folder / name
        if link.is_symlink():
            link.unlink()
        link.symlink_to(base / name, target_is_directory=True)
    return folder


def run_side(path: list[Path], threads: int, logs: Path) -> dict:
    """One run of :func:`work` in a fresh process whose imports search ``path`` first."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path)), "TRAIN_SPEED_LOGS": str(logs)}
    code = f"import json, sys; sys.path[:0] = {[str(p) for p in path]!r}; from bench.train_speed import work; "
    code += f"print(json.dumps(work({threads})))"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=logs)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {**row, "wall": time.perf_counter() - start}


def main() -> None:
    from audit.bench.sections import publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="a checkout of the commit to compare against")
    parser.add_argument("--label", default="", help="what the baseline is (default: its git commit)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="out/bench-train-speed")
    parser.add_argument("--out", default="BENCHMARKS.md")
    args = parser.parse_args()
    base = Path(args.baseline).resolve()
    if not (base / "audit" / "training" / "run.py").exists():
        parser.error(f"--baseline {args.baseline}: not an imitaudit checkout")
    label = (
        args.label
        or subprocess.run(
            ["git", "-C", str(base), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    logs = Path(args.work).resolve()
    logs.mkdir(parents=True, exist_ok=True)
    baseline_path = [overlay(base, logs), HERE]
    pairs = []
    for i in range(args.pairs + 1):  # the first pair warms the file cache and is not counted
        ours, theirs = run_side([HERE], args.threads, logs), run_side(baseline_path, args.threads, logs)
        print(json.dumps({"pair": i, "this": ours, "baseline": theirs}), flush=True)
        if i:
            pairs.append((ours, theirs))
    ratios = [t["wall"] / o["wall"] for o, t in pairs]
    same = all(o["hash"] == t["hash"] for o, t in pairs)
    lines = [
        BEGIN,
        "## Training speed against a baseline commit (`bench/train_speed.py`)",
        "",
        f"Command: `python -m bench.train_speed --baseline <checkout of {label}>` — one run, {args.pairs} counted "
        f"pairs after one warm-up pair, alternating, {args.threads} torch thread(s), each run its own process "
        "(start-up included). The work: bench/peer_gail.py's second-row imitaudit side cut to 2,000 BC steps and 100 "
        f"adversarial iterations ({pairs[0][0]['env_steps']:,} env steps), evaluations included.",
        "",
        "| side | wall s (median) | min | max |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {statistics.median(w):.1f} | {min(w):.1f} | {max(w):.1f} |"
            for name, w in (
                ("this checkout", [o["wall"] for o, _ in pairs]),
                (f"baseline {label}", [t["wall"] for _, t in pairs]),
            )
        ),
        "",
        f"Speed-up (baseline / this, pair by pair): median **{statistics.median(ratios):.2f}x** (min "
        f"{min(ratios):.2f}, max {max(ratios):.2f}). Trained imitators "
        + ("identical on both sides (same weight hash in every run)." if same else "NOT identical (hashes differ)."),
        END,
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
