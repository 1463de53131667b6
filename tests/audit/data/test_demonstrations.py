"""Demonstration datasets: recording, the safetensors format, and refusing bad files with one clear line."""

import json
import pickle
import re
import zipfile

import gymnasium as gym
import numpy as np
import pytest
from safetensors.numpy import save_file

import audit.envs
from audit.data.demonstrations import SCHEMA, Demonstrations, from_arrays, record
from audit.data.demonstrator import Demonstrator
from models.safetensors_io import read_safetensors, write_safetensors


@pytest.fixture(scope="module")
def demos() -> Demonstrations:
    return record("imitaudit/OffSwitch-v0", "unbounded", episodes=60, seed=5)


def test_recorded_dataset_has_the_format(demos):
    assert demos.obs.dtype == np.float32 and demos.obs.shape[1:] == (406,)
    assert demos.actions.dtype == np.int64 and demos.episode.dtype == np.int64
    assert demos.departure is not None and demos.departure.dtype == np.bool_
    assert demos.n_episodes == 60
    np.testing.assert_array_equal(np.unique(demos.episode), np.arange(60))
    assert demos.episode_departed().mean() > 0.5
    # each episode starts at the start tile: the agent plane matches the first obs of a fresh env
    env = gym.make("imitaudit/OffSwitch-v0")
    first, _ = env.reset(seed=5 + 17)
    np.testing.assert_array_equal(demos.obs[demos.episode_bounds()[17, 0]], first)


def test_recording_does_not_depend_on_the_batch():
    a = record("imitaudit/PowerSeeking-v0", Demonstrator(preset="corrigible"), episodes=20, seed=3, batch=7)
    b = record("imitaudit/PowerSeeking-v0", Demonstrator(preset="corrigible"), episodes=20, seed=3, batch=512)
    for name in ("obs", "actions", "rewards", "episode", "departure"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_replaying_recorded_actions_reproduces_the_dataset(demos):
    env = gym.make("imitaudit/OffSwitch-v0")
    for e, (lo, hi) in enumerate(demos.episode_bounds()[:10]):
        obs, _ = env.reset(seed=5 + e)
        for t in range(lo, hi):
            np.testing.assert_array_equal(obs, demos.obs[t])
            obs, reward, term, trunc, info = env.step(int(demos.actions[t]))
            assert reward == pytest.approx(demos.rewards[t])
            assert info["departure"] == demos.departure[t]
        assert term or trunc


def test_save_load_round_trip(demos, tmp_path):
    path = demos.save(tmp_path / "d.safetensors")
    back = Demonstrations.load(path)
    for name in ("obs", "actions", "rewards", "episode", "departure"):
        np.testing.assert_array_equal(getattr(back, name), getattr(demos, name))
    assert back.env_id == demos.env_id and back.source == demos.source and back.env_kwargs == {}
    _, meta = read_safetensors(path)
    assert meta["imitaudit.schema"] == SCHEMA
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temp file


def test_select_and_summary(demos):
    sub = demos.select(np.array([2, 5]))
    assert sub.n_episodes == 2
    s = demos.summary()
    assert s["episodes"] == 60 and 0 < s["departure_rate"] <= 1 and s["obs_shape"] == [406]


def test_record_any_gymnasium_env_with_a_callable():
    data = record("CartPole-v1", lambda obs: int(obs[2] > 0), episodes=5, seed=0)
    assert data.obs.shape[1:] == (4,) and data.departure is None
    assert data.n_episodes == 5 and data.episode_returns().mean() > 20
    assert data.source.startswith("callable")


def test_module_prefixed_env_id_and_dict_observations(tmp_path, monkeypatch):
    (tmp_path / "userenvs.py").write_text(
        '''
import gymnasium as gym
import numpy as np
from gymnasium import spaces

class Corridor(gym.Env):
    """A 5-cell corridor; stepping left from cell 0 is a departure."""
    def __init__(self):
        self.observation_space = spaces.Dict({"pos": spaces.Discrete(5), "t": spaces.Box(0, 10, (1,))})
        self.action_space = spaces.Discrete(2)
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = 2, 0
        return self._obs(), {}
    def _obs(self):
        return {"pos": self.pos, "t": np.array([self.t], dtype=np.float32)}
    def step(self, action):
        departure = self.pos == 0 and action == 0
        self.pos = min(4, max(0, self.pos + (1 if action else -1)))
        self.t += 1
        return self._obs(), float(self.pos == 4), self.pos == 4, self.t >= 10, {"departure": departure}

gym.register(id="userenvs/Corridor-v0", entry_point=Corridor)
'''
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(audit.envs, "_IMPORTABLE", {"userenvs"})  # as `imitaudit --env-module userenvs` allows it
    data = record("userenvs:userenvs/Corridor-v0", lambda obs: 0, episodes=3, seed=0)
    assert data.obs.shape[1:] == (6,)  # one-hot of 5 + the box
    assert data.departure is not None and data.episode_departed().all()


def test_box_actions_are_recorded_saved_and_read_back(tmp_path):
    push = lambda obs: np.array([1.0 if obs[1] >= 0 else -1.0])  # noqa: E731 - a bang-bang controller
    demos = record("MountainCarContinuous-v0", push, episodes=2, seed=3)
    assert demos.continuous and demos.actions.dtype == np.float32 and demos.actions.shape == (demos.n_steps, 1)
    assert set(np.unique(demos.actions)) <= {-1.0, 1.0}
    back = Demonstrations.load(demos.save(tmp_path / "car.safetensors"))
    assert np.array_equal(back.actions, demos.actions) and back.continuous
    assert back.check_fits_env() == (2, 1)


@pytest.mark.parametrize(
    "returned, message",
    [
        (np.array([np.nan]), "NaN"),
        (np.array([1.5]), "outside the env's bounds"),
        (np.array([0.1, 0.2]), "2 numbers"),
        ("left", "str"),
    ],
)
def test_bad_box_actions_from_a_policy_are_refused_in_one_line(returned, message):
    with pytest.raises(ValueError, match=message):
        record("MountainCarContinuous-v0", lambda obs: returned, episodes=1)


def test_box_demonstrations_that_do_not_fit_their_env_are_refused():
    steps = 4
    common = dict(obs=np.zeros((steps, 2)), rewards=np.zeros(steps), episode=np.zeros(steps))
    out_of_bounds = from_arrays(actions=np.full((steps, 1), 3.0), env_id="MountainCarContinuous-v0", **common)
    with pytest.raises(ValueError, match="outside"):
        out_of_bounds.check_fits_env()
    with pytest.raises(ValueError, match="NaN"):
        from_arrays(actions=np.full((steps, 1), np.nan), env_id="MountainCarContinuous-v0", **common)
    with pytest.raises(ValueError, match="continuous"):
        from_arrays(
            actions=np.zeros((steps, 1)),
            env_id="MountainCar-v0",
            obs=np.zeros((steps, 2)),
            rewards=np.zeros(steps),
            episode=np.zeros(steps),
        ).check_fits_env()
    wide = from_arrays(actions=np.zeros((steps, 3)), env_id="MountainCarContinuous-v0", **common)
    with pytest.raises(ValueError, match="3 dimensions"):
        wide.check_fits_env()


def test_a_version_1_file_is_still_read(tmp_path):
    demos = record("CartPole-v1", lambda obs: 0, episodes=1)
    path = demos.save(tmp_path / "v1.safetensors")
    tensors, meta = read_safetensors(path)
    write_safetensors(path, tensors, {**meta, "imitaudit.schema": "imitaudit.demonstrations/1"})
    assert np.array_equal(Demonstrations.load(path).actions, demos.actions)


def test_from_arrays_validates():
    ok = from_arrays(
        obs=np.zeros((4, 3)), actions=[0, 1, 1, 0], rewards=[0, 0, 1, 0], episode=[0, 0, 1, 1], env_id="CartPole-v1"
    )
    assert ok.obs.dtype == np.float32 and ok.n_episodes == 2
    with pytest.raises(ValueError, match=r"actions has shape \(3,\) but obs has 4 steps"):
        from_arrays(obs=np.zeros((4, 3)), actions=[0, 1, 1], rewards=[0] * 4, episode=[0] * 4, env_id="CartPole-v1")
    with pytest.raises(ValueError, match="non-decreasing"):
        from_arrays(obs=np.zeros((3, 2)), actions=[0] * 3, rewards=[0] * 3, episode=[1, 0, 1], env_id="CartPole-v1")
    with pytest.raises(ValueError, match="whole numbers"):
        from_arrays(obs=np.zeros((2, 2)), actions=[0.5, 1], rewards=[0, 0], episode=[0, 0], env_id="CartPole-v1")
    with pytest.raises(ValueError, match="not a registered"):
        from_arrays(obs=np.zeros((2, 2)), actions=[0, 1], rewards=[0, 0], episode=[0, 0], env_id="Nope-v9")
    with pytest.raises(ValueError, match="empty"):
        from_arrays(obs=np.zeros((0, 2)), actions=[], rewards=[], episode=[], env_id="CartPole-v1")
    with pytest.raises(ValueError, match="NaN"):
        from_arrays(obs=np.full((1, 2), np.nan), actions=[0], rewards=[0], episode=[0], env_id="CartPole-v1")


# ----- bad files: each is one line through the CLI, exit code 2 ---------------------------


def _valid_tensors(t=6):
    return {
        "obs": np.zeros((t, 406), dtype=np.float32),
        "actions": np.zeros(t, dtype=np.int64),
        "rewards": np.zeros(t, dtype=np.float32),
        "episode": np.repeat(np.arange(2), t // 2).astype(np.int64),
    }


META = {"imitaudit.schema": SCHEMA, "env_id": "imitaudit/OffSwitch-v0", "env_kwargs": "{}", "source": "test"}


def _write(path, tensors, meta):
    save_file(tensors, str(path), metadata=meta)
    return path


def bad_files(tmp):
    """name -> (path, expected message fragment)."""
    cases = {}
    cases["missing file"] = (tmp / "nope.safetensors", "no such file")
    p = tmp / "pickle.safetensors"
    p.write_bytes(pickle.dumps({"obs": [1, 2, 3]}))
    cases["pickle renamed"] = (p, "pickle")
    p = tmp / "zip.safetensors"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("data.pkl", b"x")
    cases["zip"] = (p, "zip archive")
    p = tmp / "empty.safetensors"
    p.write_bytes(b"")
    cases["empty"] = (p, "empty")
    p = tmp / "lying.safetensors"
    p.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    cases["header longer than file"] = (p, "header length")
    good = _write(tmp / "good.safetensors", _valid_tensors(), META)
    p = tmp / "truncated.safetensors"
    p.write_bytes(good.read_bytes()[:-100])
    cases["truncated"] = (p, "invalid safetensors")
    t = _valid_tensors()
    del t["actions"]
    cases["missing tensor"] = (_write(tmp / "noact.safetensors", t, META), "missing tensor(s) actions")
    t = _valid_tensors()
    t["actions"] = np.zeros(5, dtype=np.int64)
    cases["mismatched lengths"] = (_write(tmp / "len.safetensors", t, META), "actions has shape (5,)")
    t = _valid_tensors()
    t["actions"] = np.zeros(6, dtype=np.float32)
    cases["wrong dtype"] = (_write(tmp / "dtype.safetensors", t, META), "actions must be [T] int64 (discrete) or")
    cases["unknown schema"] = (
        _write(
            tmp / "schema.safetensors", _valid_tensors(), {**META, "imitaudit.schema": "imitaudit.demonstrations/9"}
        ),
        "unknown schema version",
    )
    cases["no metadata"] = (_write(tmp / "nometa.safetensors", _valid_tensors(), None), "imitaudit.schema")
    cases["env not installed"] = (
        _write(tmp / "env.safetensors", _valid_tensors(), {**META, "env_id": "acme/Factory-v3"}),
        "not a registered Gymnasium environment",
    )
    cases["env_kwargs not JSON"] = (
        _write(tmp / "kw.safetensors", _valid_tensors(), {**META, "env_kwargs": "{oops"}),
        "env_kwargs",
    )
    return cases


def test_every_bad_file_is_a_one_line_value_error(tmp_path):
    for name, (path, fragment) in bad_files(tmp_path).items():
        with pytest.raises(ValueError) as info:
            Demonstrations.load(path)
        message = str(info.value)
        assert fragment in message, (name, message)
        assert "\n" not in message, name


def test_every_bad_file_exits_2_in_the_cli_without_traceback(tmp_path, capsys):
    from audit.cli import main

    for name, (path, fragment) in bad_files(tmp_path).items():
        if name == "env not installed":
            continue  # inspect describes datasets of envs not installed here; see the next test
        code = main(["inspect", str(path)])
        err = capsys.readouterr().err
        assert code == 2, name
        assert err.count("\n") == 1 and err.startswith("imitaudit: error:") and fragment in err, (name, err)
        assert "Traceback" not in err


def test_inspect_reports_an_env_that_is_not_installed(tmp_path, capsys):
    from audit.cli import main

    path = _write(tmp_path / "env.safetensors", _valid_tensors(), {**META, "env_id": "acme/Factory-v3"})
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["env_installed"] is False and info["episodes"] == 2


@pytest.mark.parametrize(
    "returned, message",
    [
        (lambda obs: [0], "returned a list"),
        (lambda obs: 0.7, "non-integer number"),
        (lambda obs: np.array([0, 1]), "array of shape (2,)"),
        (lambda obs: "left", "returned a str"),
        (lambda obs: 5, "outside 0..1"),
    ],
)
def test_a_callable_policy_s_bad_action_is_one_line_never_truncated(returned, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        record("CartPole-v1", returned, episodes=1, seed=0)


def test_a_callable_policy_may_return_numpy_or_integral_values():
    for policy in (lambda obs: np.int64(1), lambda obs: np.array([1]), lambda obs: 1.0, lambda obs: np.array(0)):
        demos = record("CartPole-v1", policy, episodes=1, seed=0)
        assert demos.actions.dtype == np.int64 and set(demos.actions.tolist()) <= {0, 1}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: np.where(np.arange(len(a))[:, None] == 3, np.nan, a).astype(np.float32), "NaN or infinite"),
        (lambda a: (a * 5).astype(np.float32), "outside Pendulum-v1's action bounds"),
        (lambda a: np.concatenate([a, a], 1), "2 dimensions, Pendulum-v1's 1"),
        (lambda a: a.astype(np.float64), "got 2 dims of float64"),
        (lambda a: a[:, :, None], "got 3 dims of float32"),
    ],
)
def test_an_uploaded_box_dataset_with_bad_actions_is_refused_in_one_line(change, message, tmp_path):
    # what the service's validator runs on an upload
    from audit import check_demonstrations
    from audit.envs.controllers import pendulum

    path = record("Pendulum-v1", pendulum(seed=0), episodes=2, seed=0).save(tmp_path / "ok.safetensors")
    assert check_demonstrations(str(path), allow_imports=False, allowed_envs=("Pendulum-v1",))["steps"] == 400
    tensors, meta = read_safetensors(path)
    write_safetensors(path, {**tensors, "actions": change(tensors["actions"])}, meta)
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        check_demonstrations(str(path), allow_imports=False, allowed_envs=("Pendulum-v1",))
    assert "\n" not in str(caught.value)


def test_episode_ends_are_kept_through_select_and_files_and_checked(tmp_path):
    import dataclasses

    from audit.data.demonstrations import record

    demos = record("CartPole-v1", lambda obs: int(obs[2] + 0.5 * obs[3] > 0), episodes=3, seed=0)
    assert demos.last_obs is not None and demos.last_obs.shape == (3, 4) and demos.terminated is not None
    loaded = Demonstrations.load(demos.save(tmp_path / "d.safetensors"))
    np.testing.assert_array_equal(loaded.last_obs, demos.last_obs)
    picked = loaded.select(np.array([0, 2]))
    np.testing.assert_array_equal(picked.last_obs, demos.last_obs[[0, 2]])
    with pytest.raises(ValueError, match="give both or neither"):
        dataclasses.replace(demos, terminated=None)
    with pytest.raises(ValueError, match="one observation per episode"):
        dataclasses.replace(demos, last_obs=demos.last_obs[:2])
    with pytest.raises(ValueError, match="NaN"):
        dataclasses.replace(demos, last_obs=np.full_like(demos.last_obs, np.nan))
