"""Cost of validating uploads in the capped child process against validating them in the API's own process.

    python -m bench.validate --out BENCHMARKS.md

The same files each way, in one run: a GRU checkpoint (hidden 64, OffSwitch) and 1,000 OffSwitch
demonstration episodes; per file the median of 10 validations after one warm-up (the child's
start-up, about the cost of importing torch, is paid once per server and reported apart).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import audit
from audit.bench.sections import publish
from audit.data.demonstrations import record
from models.checkpoint import save_imitator
from models.imitator import ImitatorConfig
from models.registry import build
from service.validate import Validator

ENV = "imitaudit/OffSwitch-v0"


def timed(fn, repeats: int = 10) -> float:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        files = {
            "imitator": save_imitator(
                build("gru", ImitatorConfig(obs_dim=406, n_actions=5, hidden=64, grid=(5, 9, 9))),
                Path(work) / "i.safetensors",
                env_id=ENV,
            ),
            "demonstrations": record(ENV, "corrigible", episodes=1000, seed=0).save(Path(work) / "d.safetensors"),
        }
        validator = Validator(memory_bytes=2 * 1024**3, seconds=600, allowed_envs=())
        start = time.perf_counter()
        validator.check("imitator", files["imitator"])
        startup = time.perf_counter() - start
        rows = []
        for kind, path in files.items():
            check = audit.check_imitator if kind == "imitator" else audit.check_demonstrations
            check(path, allow_imports=False)
            inline = timed(lambda: check(path, allow_imports=False))
            isolated = timed(lambda: validator.check(kind, path))
            rows.append(
                f"| {kind} ({path.stat().st_size / 1e6:.1f} MB) | {1000 * inline:.1f} | {1000 * isolated:.1f} | "
                f"{isolated / inline:.2f}x |"
            )
        validator.close()
    publish(
        [
            "<!-- bench/validate.py begin -->",
            "## Upload validation in a capped child process (`bench/validate.py`)",
            "",
            "Command: `python -m bench.validate --out BENCHMARKS.md` — one run; median of 10 validations per "
            "file after a warm-up.",
            f"The child process's first start (spawn + imports) took {startup:.1f} s, once per server.",
            "",
            "| file | in the API process, ms | in the child, ms | ratio |",
            "|---|---:|---:|---:|",
            *rows,
            "<!-- bench/validate.py end -->",
        ],
        args.out,
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
