"""Seeds a third-party env can take: an env whose ``reset`` seeds numpy's legacy generator (only [0, 2**32)) goes
through demos, train (its evaluations), evaluate, audit and the lookahead from the CLI, and a refused seed is one
line."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from audit.data.seeds import derive_seed
from audit.envs.adapter import ENV_SEED_LIMIT, env_seed, reset_env
from tests.audit.envs import legacy_seed

ROOT = Path(__file__).resolve().parents[3]
BIN = str(Path(sys.executable).with_name("imitaudit"))
MODULE = "tests.audit.envs.legacy_seed"
ENV = f"{MODULE}:{legacy_seed.ENV_ID}"


def test_env_seeds_stay_in_numpy_s_legacy_range_and_apart():
    assert [env_seed(s) for s in (0, 7, 1_000_000, 2**31 - 1)] == [
        0,
        7,
        1_000_000,
        2**31 - 1,
    ]  # the user's meaning kept
    derived = [
        derive_seed(s, stream, k) for s in range(3) for stream in ("evaluation", "distinguishability") for k in range(4)
    ]
    assert max(derived) >= 2**32  # the streams' seeds are wide: this is what the fold is for
    runs = [[env_seed(d + e) for e in range(1000)] for d in derived]
    flat = [s for run in runs for s in run]
    assert all(2**31 <= s < ENV_SEED_LIMIT for s in flat) and len(set(flat)) == len(flat)


def test_a_seed_the_env_refuses_anyway_is_one_line_naming_env_and_seed():
    class Picky(legacy_seed.LegacySeedWalk):
        def reset(self, *, seed=None, options=None):
            raise ValueError("Seed must be even")

    with pytest.raises(ValueError, match=r"env Picky refused seed 3 in reset \(Seed must be even\)"):
        reset_env(Picky(), 3)
    obs, _ = reset_env(gym.make(legacy_seed.ENV_ID), 2**40 + 5)  # would raise in np.random.seed unfolded
    assert obs.shape == (2,)


def cli(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([BIN, "--env-module", MODULE, *args], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode in (0, 1), res.stderr
    return res


@pytest.mark.slow
def test_train_evaluate_audit_and_lookahead_run_on_an_env_that_seeds_the_legacy_generator(tmp_path):
    cli(
        "demos",
        "--env",
        ENV,
        "--policy",
        f"{MODULE}:centre",
        "--departure-key",
        "edge",
        "--episodes",
        "300",
        "--seed",
        "0",
        "--quiet",
        "--out",
        str(tmp_path / "demos.safetensors"),
    )
    cli(
        "demos",
        "--env",
        ENV,
        "--policy",
        f"{MODULE}:centre",
        "--departure-key",
        "edge",
        "--episodes",
        "300",
        "--seed",
        "500000",
        "--quiet",
        "--out",
        str(tmp_path / "heldout.safetensors"),
    )
    cli(
        "train",
        "--demos",
        str(tmp_path / "demos.safetensors"),
        "--arch",
        "mlp",
        "--mode",
        "bc",
        "--steps",
        "200",
        "--eval-every",
        "100",
        "--log-dir",
        str(tmp_path / "runs"),
        "--quiet",
        "--out",
        str(tmp_path / "imitator.safetensors"),
    )
    assert (tmp_path / "imitator.safetensors").exists()
    evaluated = cli(
        "evaluate",
        "--imitator",
        str(tmp_path / "imitator.safetensors"),
        "--episodes",
        "50",
        "--demos",
        str(tmp_path / "demos.safetensors"),
    )
    assert "return" in evaluated.stdout
    for detector in ("discriminator", "lookahead"):
        out = tmp_path / detector
        cli(
            "audit",
            "--imitator",
            str(tmp_path / "imitator.safetensors"),
            "--demos",
            str(tmp_path / "heldout.safetensors"),
            "--detector",
            detector,
            "--episodes",
            "32",
            "--quiet",
            "--out",
            str(out),
        )
        assert (out / "report.json").exists()
