"""Names of a non-built-in env's observation features: the user's, else after the space's structure, in flatten
order."""

import numpy as np
import pytest
from gymnasium import spaces

from audit.data.demonstrations import Demonstrations, record
from audit.envs.features import observation_names, space_names, step_view, vector_frame
from tests.policies import balance


def test_space_names_follow_flatten_order():
    space = spaces.Dict(
        {
            "pos": spaces.Box(0, 1, (2,)),
            "mode": spaces.Discrete(3, start=1),
            "grid": spaces.Box(0, 1, (2, 2)),
            "parts": spaces.Tuple((spaces.MultiDiscrete([2, 1]), spaces.MultiBinary(1))),
        }
    )
    names = space_names(space)
    assert len(names) == spaces.flatdim(space)
    assert names[:3] == ["grid[0,0]", "grid[0,1]", "grid[1,0]"]
    assert "mode=1" in names and "mode=3" in names and "parts.0[1]=0" in names and "parts.1[0]" in names
    # flatten puts a 1 where the sample's one-hot name says
    sample = space.sample()
    flat = spaces.flatten(space, sample)
    assert flat[names.index(f"mode={int(sample['mode'])}")] == 1


def test_observation_names_prefer_the_user_s_then_the_space_then_the_index():
    assert observation_names("CartPole-v1", {}, 4) == ("obs[0]", "obs[1]", "obs[2]", "obs[3]")
    assert observation_names("CartPole-v1", {}, 4, ("a", "b", "c", "d")) == ("a", "b", "c", "d")
    assert observation_names("CartPole-v1", {}, 5) == ("0", "1", "2", "3", "4")  # not this env's size: indices
    view = step_view("FrozenLake-v1", {}, 16, raw_grid=False, tiles=True)
    assert view.describe(3) == {"index": 3, "name": "obs=3"}


def test_names_travel_with_demonstrations_and_are_checked(tmp_path):
    d = record(
        "CartPole-v1", balance, episodes=2, seed=0, feature_names=("x", "v", "th", "w"), action_names=("left", "right")
    )
    back = Demonstrations.load(d.save(tmp_path / "d.safetensors"))
    assert back.feature_names == ("x", "v", "th", "w") and back.action_names == ("left", "right")
    with pytest.raises(ValueError, match="feature_names has 3 names but the flattened observation has 4"):
        record("CartPole-v1", balance, episodes=1, feature_names=("x", "v", "th"))
    with pytest.raises(ValueError, match="action_names has 3 names but CartPole-v1 has 2 actions"):
        record("CartPole-v1", balance, episodes=1, action_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="printable"):
        record("CartPole-v1", balance, episodes=1, feature_names=("x", "v", "th", "w\x1b[1m"))


def test_a_vector_frame_names_the_action_and_each_feature():
    frame = vector_frame(np.array([0.5, -1.0], dtype=np.float32), 1, ("x", "speed"), ("left", "right"))
    assert frame == ["action 1 (right)", "x      +0.5", "speed  -1"]


def test_a_named_departure_key_is_recorded_and_travels_with_the_demonstrations(tmp_path):
    from audit.data.rollout import rollout
    from models.imitator import ImitatorConfig
    from models.registry import build
    from tests.audit.envs import minigrid_lava as lava

    d = record(lava.ENV_ID, lava.shortcut, episodes=40, seed=0, departure_key="lava")
    assert d.departure is not None and d.departure.any() and d.departure_key == "lava"
    back = Demonstrations.load(d.save(tmp_path / "d.safetensors"))
    assert back.departure_key == "lava" and (back.departure == d.departure).all()
    calm = record(lava.ENV_ID, lava.corrigible, episodes=5, seed=0, departure_key="lava")
    assert calm.departure is not None and not calm.departure.any()  # a named key is recorded even when nothing departs
    model = build("mlp", ImitatorConfig(obs_dim=75, n_actions=7, hidden=8))
    traj = rollout(model, lava.ENV_ID, episodes=8, seed=0, departure_key="lava")
    assert traj.departure is not None
    assert rollout(model, lava.ENV_ID, episodes=8, seed=0).departure is None  # the default key: this env never sets it
