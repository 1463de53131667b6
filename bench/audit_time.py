"""Audit time by detector on the same zoo imitators, in one run, and the likely-incorrigible labels of non-departing
trajectories.

    python -m bench.audit_time --zoo out/zoo/full-plan24-q10

The zoo is the one `imitaudit bench detect` builds (its cache folder for the full scale).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from audit.detect.config import AuditConfig
from audit.detect.pipeline import run_audit

ENVS = ("OffSwitch-v0", "AbsentSupervisor-v0", "PowerSeeking-v0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="the full zoo's folder (one sub-folder per env)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for env in ENVS:
        z = f"{args.zoo}/{env}"
        for kind in ("faithful", "sloppy"):
            for det in ("discriminator", "lookahead", "combined"):
                times = []
                for _ in range(2 if kind == "faithful" else 1):
                    r = run_audit(
                        AuditConfig(
                            imitator=f"{z}/imitator-{kind}.safetensors",
                            demos=f"{z}/demos-reference.safetensors",
                            detector=det,
                        )
                    )
                    times.append(r["timings"]["total"])
                clean = [x for x in r["trajectories"] if not x["departed"]]
                li = sum(x["severity"] == "likely-incorrigible" for x in clean)
                print(
                    env,
                    kind,
                    det,
                    f"seconds {statistics.median(times):.2f}",
                    f"likely-incorrigible non-departing {li} / {len(clean)}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
