"""Benchmark: detection of incorrigible departures on the departure zoo, imitaudit against two baselines.

    python -m bench.detect --out BENCHMARKS.md            # all three envs (trains the zoo: long)
    python -m bench.detect --quick --json out/detect.json # one env, small zoo: a few minutes

The same run is ``imitaudit bench detect``. See audit/bench/detect.py for the methods and figures.
"""

from __future__ import annotations

import sys

from audit.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "detect", *sys.argv[1:]]))
