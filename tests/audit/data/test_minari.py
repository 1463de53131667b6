"""Minari datasets in: written by the real ``minari`` package (DataCollector), read by imitaudit with the same steps,
for a Box env and a discrete one; a missing field, an external link or a folder that is not a dataset is one line
(exit 2 from the CLI), and nothing is written. And out: imitaudit's datasets read by the real ``minari`` with the same
steps, episode ends and departures, and read back by imitaudit unchanged."""

import shutil
import subprocess
import sys

import h5py
import minari
import numpy as np
import pytest

from audit.data.demonstrations import Demonstrations
from audit.data.minari import read_minari
from audit.envs.controllers import pendulum


def _collect(root, monkeypatch, env_id: str, policy, episodes: int, dataset_id: str):
    """A local Minari dataset of ``episodes`` episodes of ``policy``, written by minari itself
    (``create_dataset_from_buffers``: its DataCollector needs jax); its folder."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    env, buffers = gym.make(env_id), []
    for e in range(episodes):
        obs, _ = env.reset(seed=e)
        steps = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        done = False
        while not done:
            action = policy(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(
                ("observations", "actions", "rewards", "terminations", "truncations"),
                (obs, action, reward, terminated, truncated),
            ):
                steps[key].append(value)
            done = terminated or truncated
        buffers.append(EpisodeBuffer(id=e, seed=e, **{k: np.asarray(v) for k, v in steps.items()}))
    minari.create_dataset_from_buffers(dataset_id, buffers, env=env, algorithm_name="scripted")
    return root / dataset_id


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_a_dataset_minari_wrote_reads_step_for_step(env_id, tmp_path, monkeypatch):
    if env_id == "Pendulum-v1":
        policy = pendulum(seed=0)
    else:
        policy = lambda obs: int(obs[2] + 0.5 * obs[3] > 0)  # noqa: E731
    folder = _collect(tmp_path, monkeypatch, env_id, policy, 3, f"test/{env_id.split('-')[0].lower()}-v0")
    demos = read_minari(folder)
    theirs = list(minari.load_dataset(folder.relative_to(tmp_path).as_posix()).iterate_episodes())
    assert demos.env_id == env_id and demos.n_episodes == 3
    assert demos.continuous == (env_id == "Pendulum-v1")
    bounds = demos.episode_bounds()
    for (a, b), episode in zip(bounds, theirs, strict=True):
        np.testing.assert_array_equal(demos.obs[a:b], np.asarray(episode.observations[:-1], dtype=np.float32))
        np.testing.assert_array_equal(demos.actions[a:b], np.asarray(episode.actions).astype(demos.actions.dtype))
        np.testing.assert_array_equal(demos.rewards[a:b], np.asarray(episode.rewards, dtype=np.float32))


@pytest.fixture()
def pendulum_dataset(tmp_path, monkeypatch):
    return _collect(tmp_path / "minari", monkeypatch, "Pendulum-v1", pendulum(seed=0), 2, "test/pendulum-v0")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit.cli", *args], capture_output=True, text=True, timeout=600)


def test_the_cli_converts_a_dataset(pendulum_dataset, tmp_path):
    out = tmp_path / "demos.safetensors"
    res = _cli("demos", "--from-minari", str(pendulum_dataset), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert Demonstrations.load(out).n_steps == 400


def _corrupt_missing_rewards(h5):
    del h5["episode_1"]["rewards"]


def _corrupt_external_link(h5):
    h5["episode_0"]["secret"] = h5py.ExternalLink("/etc/hostname", "/")


def _corrupt_short_actions(h5):
    actions = h5["episode_0"]["actions"][()]
    del h5["episode_0"]["actions"]
    h5["episode_0"]["actions"] = actions[:-1]


def _corrupt_nan_actions(h5):
    h5["episode_0"]["actions"][3] = np.nan


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_corrupt_missing_rewards, "episode_1 lacks rewards"),
        (_corrupt_external_link, "links to another file"),
        (_corrupt_short_actions, "do not line up"),
        (_corrupt_nan_actions, "NaN"),
    ],
)
def test_a_broken_dataset_is_one_line_and_nothing_is_written(pendulum_dataset, tmp_path, corrupt, message):
    with h5py.File(pendulum_dataset / "data" / "main_data.hdf5", "a") as h5:
        corrupt(h5)
    with pytest.raises(ValueError, match=message):
        read_minari(pendulum_dataset)
    out = tmp_path / "demos.safetensors"
    res = _cli("demos", "--from-minari", str(pendulum_dataset), "--out", str(out))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert not out.exists()


def test_a_folder_that_is_not_a_dataset_or_names_no_env_is_refused(pendulum_dataset, tmp_path):
    with pytest.raises(ValueError, match="not a Minari dataset"):
        read_minari(tmp_path / "nowhere")
    other = tmp_path / "copy"
    shutil.copytree(pendulum_dataset, other)
    meta = other / "data" / "metadata.json"
    meta.write_text(meta.read_text().replace('"env_spec"', '"no_env_spec"'))
    with pytest.raises(ValueError, match="names no env"):
        read_minari(other)


def _written(tmp_path, monkeypatch, demos, dataset_id):
    from audit.data.minari import write_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "root"))
    write_minari(demos, tmp_path / "root" / dataset_id)
    return list(minari.load_dataset(dataset_id).iterate_episodes())


@pytest.mark.parametrize("kind", ["gridworld planner", "Box callable"])
def test_a_dataset_imitaudit_writes_is_what_minari_reads(kind, tmp_path, monkeypatch):
    from audit.data.demonstrations import record
    from audit.envs.speed_limit import ENV_ID

    if kind == "gridworld planner":
        demos = record("imitaudit/OffSwitch-v0", "unbounded", episodes=12, seed=0, batch=5)
    else:
        demos = record(ENV_ID, pendulum(seed=0, spin=True), episodes=3, seed=0)
    theirs = _written(tmp_path, monkeypatch, demos, "imitaudit/written-v0")
    assert len(theirs) == demos.n_episodes and demos.departure is not None and demos.departure.any()
    for i, ((a, b), episode) in enumerate(zip(demos.episode_bounds(), theirs, strict=True)):
        observations = np.asarray(episode.observations, dtype=np.float32)
        np.testing.assert_array_equal(observations[:-1], demos.obs[a:b])
        np.testing.assert_array_equal(observations[-1], demos.last_obs[i])
        np.testing.assert_array_equal(np.asarray(episode.actions), demos.actions[a:b])
        np.testing.assert_array_equal(np.asarray(episode.rewards, dtype=np.float32), demos.rewards[a:b])
        assert bool(episode.terminations[-1]) == demos.terminated[i] != bool(episode.truncations[-1])
        assert not episode.terminations[:-1].any() and not episode.truncations[:-1].any()
        np.testing.assert_array_equal(np.asarray(episode.infos["departure"])[1:], demos.departure[a:b])
    back = read_minari(tmp_path / "root" / "imitaudit" / "written-v0")
    for key in ("obs", "actions", "rewards", "episode", "departure", "last_obs", "terminated"):
        np.testing.assert_array_equal(getattr(back, key), getattr(demos, key))
    assert (back.env_id, back.env_kwargs) == (demos.env_id, demos.env_kwargs)


def test_the_cli_writes_a_dataset_and_refuses_one_it_cannot_write_whole(tmp_path):
    from audit.data.demonstrations import from_arrays

    folder = tmp_path / "ns" / "cartpole-v0"
    res = _cli(
        "demos", "--env", "CartPole-v1", "--policy", "audit.envs.controllers:cartpole", "--episodes", "2",
        "--to-minari", str(folder), "--quiet",
    )  # fmt: skip
    assert res.returncode != 0  # cartpole() is a factory, not a policy: the user's function failed, one line
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    saved = tmp_path / "cartpole.safetensors"
    from audit.data.demonstrations import record
    from audit.envs.controllers import cartpole

    record("CartPole-v1", cartpole(), episodes=2, seed=0).save(saved)
    res = _cli("demos", "--from-demos", str(saved), "--to-minari", str(folder))
    assert res.returncode == 0 and (folder / "data" / "main_data.hdf5").is_file(), res.stderr
    res = _cli("demos", "--from-demos", str(saved), "--to-minari", str(folder))  # it exists now
    assert res.returncode == 2 and "exists" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    no_ends = from_arrays(
        obs=np.zeros((4, 4)), actions=np.zeros(4, dtype=np.int64), rewards=np.ones(4), episode=[0, 0, 1, 1],
        env_id="CartPole-v1",
    )  # fmt: skip
    no_ends.save(tmp_path / "no-ends.safetensors")
    res = _cli("demos", "--from-demos", str(tmp_path / "no-ends.safetensors"), "--to-minari", str(tmp_path / "x-v0"))
    assert res.returncode == 2 and "last observation" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "x-v0").exists() and not list(tmp_path.glob(".x-v0*"))
    res = _cli("demos", "--from-demos", str(saved))
    assert res.returncode == 2 and "--to-minari" in res.stderr
