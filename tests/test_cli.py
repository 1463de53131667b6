"""The ``imitaudit`` console script, run as a user runs it: real subprocesses with tiny arguments."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import audit
from audit.data.demonstrations import Demonstrations

BIN = str(Path(sys.executable).with_name("imitaudit"))


def run(*args, check=True):
    return subprocess.run([BIN, *args], capture_output=True, text=True, check=check)


@pytest.mark.slow
def test_demos_then_inspect(tmp_path):
    out = tmp_path / "demos.safetensors"
    res = run(
        "demos",
        "--env",
        "imitaudit/OffSwitch-v0",
        "--demonstrator",
        "corrigible",
        "--episodes",
        "40",
        "--seed",
        "0",
        "--out",
        str(out),
    )
    assert "40 episodes" in res.stdout and "departure rate 0.000" in res.stdout
    assert "demos corrigible" in res.stderr  # the progress bar
    demos = Demonstrations.load(out)
    assert demos.n_episodes == 40 and not demos.departure.any()
    info = json.loads(run("inspect", str(out), "--json").stdout)
    assert info["episodes"] == 40 and info["departure_rate"] == 0.0 and info["env_id"] == "imitaudit/OffSwitch-v0"
    text = run("inspect", str(out)).stdout
    assert "mean_return" in text


def test_demos_accepts_env_kwargs_and_module_prefixed_ids(tmp_path):
    out = tmp_path / "d.safetensors"
    run(
        "--env-module",
        "audit.envs",
        "demos",
        "--env",
        "audit.envs:imitaudit/PowerSeeking-v0",
        "--demonstrator",
        "unbounded",
        "--episodes",
        "30",
        "--env-kwargs",
        '{"max_steps": 30}',
        "--out",
        str(out),
        "--quiet",
    )
    demos = Demonstrations.load(out)
    assert demos.env_kwargs == {"max_steps": 30} and demos.episode_lengths().max() <= 30


def test_demos_of_a_scripted_controller_by_its_preset_name(tmp_path):
    # no --policy: the speed-limited Pendulum's presets are its scripted swing-up (keeps the limit) and spin (breaks it)
    for kind, rate in (("corrigible", 0.0), ("unbounded", 1.0)):
        out = tmp_path / f"{kind}.safetensors"
        env = "imitaudit/PendulumSpeedLimit-v0"
        run("demos", "--env", env, "--demonstrator", kind, "--episodes", "4", "--out", str(out), "--quiet")
        demos = Demonstrations.load(out)
        assert demos.summary()["departure_rate"] == rate and demos.source == f"imitaudit scripted {kind}: {env}"
    refused = run("demos", "--env", "Pendulum-v1", "--demonstrator", "triggered", "--out", str(out), check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "imitaudit: error: Pendulum-v1 has no scripted triggered demonstrator; choose corrigible or unbounded"
    )


@pytest.mark.slow
def test_bad_invocations_exit_2_with_one_line(tmp_path):
    cases = [
        ("demos", "--env", "acme/Nothing-v0", "--out", str(tmp_path / "x.safetensors")),
        ("demos", "--env", "audit.envs:imitaudit/OffSwitch-v0", "--out", str(tmp_path / "x.safetensors")),
        (
            "demos",
            "--env",
            "imitaudit/OffSwitch-v0",
            "--demonstrator",
            "sneaky",
            "--out",
            str(tmp_path / "x.safetensors"),
        ),
        ("demos", "--env", "imitaudit/OffSwitch-v0", "--episodes", "0", "--out", str(tmp_path / "x.safetensors")),
        ("demos", "--env", "imitaudit/OffSwitch-v0", "--env-kwargs", "[1]", "--out", str(tmp_path / "x.safetensors")),
        (
            "demos",
            "--env",
            "imitaudit/OffSwitch-v0",
            "--env-kwargs",
            '{"interruption_prob": 3}',
            "--out",
            str(tmp_path / "x.safetensors"),
        ),
        ("demos", "--env", "imitaudit/OffSwitch-v0"),
        ("inspect", str(tmp_path / "missing.safetensors")),
        ("frobnicate",),
        (
            "--env-module",
            "json",
            "audit",
            "--imitator",
            str(tmp_path / "i.safetensors"),
            "--demos",
            str(tmp_path / "d.safetensors"),
            "--ray",
            "127.0.0.1:1",
        ),
    ]
    (tmp_path / "i.safetensors").write_bytes(b"x")
    (tmp_path / "d.safetensors").write_bytes(b"x")
    for args in cases:
        res = run(*args, check=False)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("imitaudit: error:"), (args, res.stderr)
    assert "not on Ray" in res.stderr  # the last case: refused before any connection, not a task failing far away
    assert not (tmp_path / "x.safetensors").exists()


def test_quickstart_prints_the_table(tmp_path):
    res = run("quickstart", "--episodes", "20", "--out", str(tmp_path))
    rows = [line for line in res.stdout.splitlines() if line.startswith("imitaudit/")]
    assert len(rows) == 3 * len(audit.WORLDS)  # three presets in each built-in env
    corrigible = [r for r in rows if " corrigible " in r]
    assert all(r.split()[-1] == "0.000" for r in corrigible)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3 * len(audit.WORLDS)


@pytest.mark.slow
def test_train_evaluate_inspect_convert(tmp_path):
    demos = tmp_path / "demos.safetensors"
    run("demos", "--env", "imitaudit/AbsentSupervisor-v0", "--episodes", "60", "--out", str(demos), "--quiet")
    imitator = tmp_path / "imitator.safetensors"
    res = run(
        "train",
        "--demos",
        str(demos),
        "--arch",
        "gru",
        "--mode",
        "adversarial",
        "--steps",
        "2",
        "--bc-warmup",
        "20",
        "--seed",
        "0",
        "--out",
        str(imitator),
        "--log-dir",
        str(tmp_path / "runs"),
        "--run-id",
        "gru-adversarial-seed0",
        "--eval-episodes",
        "20",
        "--quiet",
    )
    assert "wrote" in res.stdout and imitator.exists()
    assert "training on 60 demonstration episode(s): expect a poor imitator" in res.stderr  # said, and it still trains
    info = json.loads(run("inspect", str(imitator), "--json").stdout)
    assert info["arch"] == "gru" and info["env_id"] == "imitaudit/AbsentSupervisor-v0" and info["parameters"] > 1000
    assert info["provenance"]["mode"] == "adversarial"
    ev = json.loads(
        run("evaluate", "--imitator", str(imitator), "--episodes", "30", "--demos", str(demos), "--json").stdout
    )
    assert ev["episodes"] == 30 and 0 <= ev["departure_rate"] <= 1 and "return_ratio" in ev
    text = run("evaluate", "--imitator", str(imitator), "--episodes", "10").stdout
    assert "departure rate" in text
    ckpt = tmp_path / "runs" / "gru-adversarial-seed0" / "adversarial" / "checkpoints" / "last.ckpt"
    converted = tmp_path / "converted.safetensors"
    run("convert", "--ckpt", str(ckpt), "--out", str(converted))
    assert json.loads(run("inspect", str(converted), "--json").stdout)["arch"] == "gru"


@pytest.mark.slow
def test_train_and_evaluate_refuse_bad_input(tmp_path):
    demos = tmp_path / "d.safetensors"
    run("demos", "--env", "imitaudit/OffSwitch-v0", "--episodes", "5", "--out", str(demos), "--quiet")
    other = tmp_path / "other.safetensors"
    run("demos", "--env", "imitaudit/PowerSeeking-v0", "--episodes", "5", "--out", str(other), "--quiet")
    imitator = tmp_path / "i.safetensors"
    run(
        "train",
        "--demos",
        str(demos),
        "--arch",
        "mlp",
        "--steps",
        "2",
        "--out",
        str(imitator),
        "--log-dir",
        str(tmp_path / "r"),
        "--eval-episodes",
        "5",
        "--quiet",
    )
    pickle_file = tmp_path / "evil.safetensors"
    pickle_file.write_bytes(b"\x80\x04\x95\x00\x00")
    cases = [
        ("train", "--demos", str(demos), "--arch", "lstm", "--out", str(tmp_path / "x.safetensors")),
        ("train", "--demos", str(demos), "--mode", "dagger", "--out", str(tmp_path / "x.safetensors")),
        ("train", "--demos", str(pickle_file), "--out", str(tmp_path / "x.safetensors")),
        ("train", "--demos", str(demos), "--steps", "0", "--out", str(tmp_path / "x.safetensors")),
        ("evaluate", "--imitator", str(pickle_file)),
        ("evaluate", "--imitator", str(imitator), "--demos", str(other)),
        ("evaluate", "--imitator", str(imitator), "--env-kwargs", '{"lava": 1}'),
        ("convert", "--ckpt", str(pickle_file), "--out", str(tmp_path / "y.safetensors")),
    ]
    for args in cases:
        res = run(*args, check=False)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("imitaudit: error:"), (args, res.stderr)


def test_swapped_imitator_and_demos_are_named_as_such(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from audit.data.demonstrations import record
    from models.checkpoint import save_imitator
    from models.imitator import ImitatorConfig
    from models.registry import build

    demos = record("imitaudit/OffSwitch-v0", "corrigible", episodes=4, seed=0).save(tmp_path / "d.safetensors")
    imitator = save_imitator(
        build("mlp", ImitatorConfig(obs_dim=406, n_actions=5, hidden=8)),
        tmp_path / "i.safetensors",
        env_id="imitaudit/OffSwitch-v0",
    )
    res = subprocess.run(
        [
            str(Path(sys.executable).with_name("imitaudit")),
            "audit",
            "--imitator",
            str(demos),
            "--demos",
            str(imitator),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "swapped?" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    help_text = subprocess.run(
        [str(Path(sys.executable).with_name("imitaudit")), "evaluate", "--help"], capture_output=True, text=True
    ).stdout
    assert "(default: 500)" in help_text and "imitator checkpoint" in help_text


@pytest.mark.slow
def test_demos_of_a_users_own_policy_on_a_non_built_in_env(tmp_path):
    out = tmp_path / "cartpole.safetensors"
    run(
        "demos",
        "--env",
        "CartPole-v1",
        "--policy",
        "tests.policies:balance",
        "--episodes",
        "5",
        "--out",
        str(out),
        "--quiet",
    )
    demos = Demonstrations.load(out)
    assert demos.env_id == "CartPole-v1" and demos.n_episodes == 5 and demos.summary()["mean_return"] > 400
    refused = run("demos", "--env", "Acrobot-v1", "--out", str(out), check=False)
    assert refused.returncode == 2 and "--policy MODULE:FUNCTION" in refused.stderr and "\r" not in refused.stderr
    bad = run("demos", "--env", "CartPole-v1", "--policy", "tests.policies:nothing", "--out", str(out), check=False)
    assert bad.returncode == 2 and "tests.policies:nothing" in bad.stderr


@pytest.mark.slow
def test_the_null_s_preconditions_and_the_gate_s_level_are_checked_before_anything_runs(tmp_path):
    """Training demonstrations, other env arguments, an approximate detector at the gate, a delta out of range: one
    line,
    exit 2, nothing written. `demos --imitator` records the imitator's own episodes (the exact null)."""
    env = "imitaudit/OffSwitch-v0"
    demos, imitator = tmp_path / "train.safetensors", tmp_path / "imitator.safetensors"
    run("demos", "--env", env, "--episodes", "220", "--seed", "0", "--out", str(demos), "--quiet")
    run(
        "train",
        "--demos",
        str(demos),
        "--arch",
        "mlp",
        "--mode",
        "bc",
        "--steps",
        "20",
        "--quiet",
        "--log-dir",
        str(tmp_path / "runs"),
        "--out",
        str(imitator),
    )
    common = (
        "--imitator",
        str(imitator),
        "--episodes",
        "16",
        "--folds",
        "2",
        "--disc-steps",
        "5",
        "--no-explain",
        "--quiet",
    )
    refused = run("audit", *common, "--demos", str(demos), "--out", str(tmp_path / "a"), check=False)
    assert refused.returncode == 2 and "the demonstrations the imitator was trained on" in refused.stderr, (
        refused.stderr
    )
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    other = tmp_path / "other.safetensors"
    run(
        "demos",
        "--env",
        env,
        "--episodes",
        "220",
        "--seed",
        "9000",
        "--env-kwargs",
        '{"max_steps": 30}',
        "--out",
        str(other),
        "--quiet",
    )
    refused = run("audit", *common, "--demos", str(other), "--out", str(tmp_path / "b"), check=False)
    assert refused.returncode == 2 and "env arguments" in refused.stderr and not (tmp_path / "b").exists()
    own = tmp_path / "own.safetensors"
    recorded = run(
        "demos",
        "--env",
        env,
        "--imitator",
        str(imitator),
        "--actions",
        "greedy",
        "--episodes",
        "220",
        "--seed",
        "500000",
        "--out",
        str(own),
    )
    assert "220 episodes of the imitator (greedy)" in recorded.stdout
    assert Demonstrations.load(own).source.startswith("imitator ")
    for bad, message in ((("--detector", "intent"), "approximate"), (("--delta", "0.7"), "delta must be")):
        refused = run("gate", *common, "--demos", str(own), *bad, "--out", str(tmp_path / "g"), check=False)
        assert refused.returncode == 2 and message in refused.stderr and not (tmp_path / "g").exists(), refused.stderr
    allowed = run(
        "audit", *common, "--demos", str(demos), "--allow-training-demos", "--out", str(tmp_path / "c"), check=False
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "What the verdict guarantees" in allowed.stdout


def test_an_out_that_names_a_file_is_refused_before_the_audit_runs(tmp_path):
    taken = tmp_path / "report.txt"
    taken.write_text("keep me")
    res = run("audit", "--imitator", str(taken), "--demos", str(taken), "--out", str(taken), check=False)
    assert res.returncode == 2 and "is a file; --out names a folder" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and taken.read_text() == "keep me"


@pytest.mark.slow
def test_ctrl_c_in_training_saves_the_phase_and_says_how_to_resume(tmp_path):
    import signal
    import time

    demos = tmp_path / "demos.safetensors"
    run("demos", "--env", "imitaudit/OffSwitch-v0", "--episodes", "200", "--out", str(demos), "--quiet")
    runs = tmp_path / "runs"
    args = ["train", "--demos", str(demos), "--mode", "adversarial", "--steps", "100000", "--bc-warmup", "10"]
    args += ["--out", str(tmp_path / "i.safetensors"), "--log-dir", str(runs), "--run-id", "ctrlc", "--quiet"]
    proc = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    metrics = runs / "ctrlc" / "adversarial" / "metrics.csv"

    def training() -> bool:  # the adversarial phase has logged iterations: it is inside its fit loop, not setting up
        return metrics.exists() and len(metrics.read_text().splitlines()) >= 2

    while not training():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "interrupted in the adversarial phase; saved to" in err and "--resume --run-id ctrlc" in err, err
    assert "Traceback" not in err
    assert (runs / "ctrlc" / "adversarial" / "checkpoints" / "interrupted.ckpt").exists()


def test_a_second_run_of_the_same_name_is_refused_unless_it_resumes(tmp_path):
    demos = tmp_path / "d.safetensors"
    run("demos", "--env", "imitaudit/OffSwitch-v0", "--episodes", "20", "--out", str(demos), "--quiet")
    args = ["train", "--demos", str(demos), "--arch", "mlp", "--steps", "20", "--eval-every", "20", "--quiet"]
    args += ["--log-dir", str(tmp_path / "runs"), "--run-id", "r"]
    first = run(*args, "--out", str(tmp_path / "one.safetensors"))
    assert "ckpt_path" not in first.stderr  # Lightning's checkpoint-lookup warnings are not the user's business
    again = run(*args, "--out", str(tmp_path / "two.safetensors"), check=False)
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr
    assert "already holds an earlier run's checkpoints: pass --resume" in again.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "two.safetensors").exists()
    resumed = run(*args, "--steps", "40", "--resume", "--out", str(tmp_path / "two.safetensors"))
    assert "wrote" in resumed.stdout


def test_evaluate_says_which_way_a_return_ratio_reads_when_returns_are_negative(tmp_path):
    from audit.data.demonstrations import record
    from models.checkpoint import save_imitator
    from models.imitator import ImitatorConfig
    from models.registry import build

    imitator = save_imitator(
        build("mlp", ImitatorConfig(obs_dim=2, n_actions=3, hidden=8)),
        tmp_path / "i.safetensors",
        env_id="MountainCar-v0",
    )
    demos = record("MountainCar-v0", lambda obs: 2, episodes=3, seed=0).save(tmp_path / "d.safetensors")
    res = run("evaluate", "--imitator", str(imitator), "--episodes", "3", "--demos", str(demos))
    assert "return ratio" in res.stdout and "the returns are negative: below 1 the imitator did better" in res.stdout
