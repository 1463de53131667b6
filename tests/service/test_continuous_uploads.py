"""Continuous-action files through the API: a Gaussian imitator and Box demonstrations of an enabled env upload; NaN,
out-of-bounds or misshapen actions and imitators whose action head does not fit the env get one-line 4xx errors and
store nothing."""

import json

import numpy as np
import pytest

from audit.data.demonstrations import record
from audit.envs.controllers import pendulum
from models.checkpoint import save_imitator
from models.imitator import ImitatorConfig
from models.registry import build
from models.safetensors_io import read_safetensors, write_safetensors
from service.settings import Settings

from .conftest import in_process

ENV = "Pendulum-v1"
BOX = dict(continuous=True, action_low=(-2.0,), action_high=(2.0,))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("continuous-uploads")
    client, _, _ = in_process(Settings(data_dir=root / "data", envs=ENV))
    imitator = save_imitator(
        build("gru", ImitatorConfig(obs_dim=3, n_actions=1, hidden=8, **BOX)), root / "imi.safetensors", env_id=ENV
    )
    demos = record(ENV, pendulum(seed=0), episodes=2, seed=0).save(root / "demos.safetensors")
    return {"client": client, "root": root, "imitator": imitator, "demos": demos}


def _post(api, kind: str, path):
    return api["client"].post(f"/v1/{kind}", files={"file": (path.name, open(path, "rb").read())})


def _changed(api, kind: str, name: str, *, actions=None, config: dict | None = None):
    tensors, meta = read_safetensors(api[kind])
    if actions is not None:
        tensors = {**tensors, "actions": actions(tensors["actions"])}
    if config is not None:
        meta = {**meta, "config": json.dumps({**json.loads(meta["config"]), **config})}
        meta["n_actions"] = str(json.loads(meta["config"])["n_actions"])
    return write_safetensors(api["root"] / f"{name}.safetensors", tensors, meta)


def test_bad_continuous_uploads_get_one_line_and_store_nothing(api):
    nan = lambda a: np.where(np.arange(len(a))[:, None] == 5, np.nan, a).astype(np.float32)  # noqa: E731
    cases = [
        ("demos", "nan", dict(actions=nan), "NaN"),
        ("demos", "out-of-bounds", dict(actions=lambda a: (a * 3).astype(np.float32)), "outside"),
        ("demos", "two-dims", dict(actions=lambda a: np.concatenate([a, a], 1)), "2 dimensions"),
        ("imitator", "wide-head", dict(config={"n_actions": 2, "action_low": [-2, -2], "action_high": [2, 2]}), ""),
        ("imitator", "other-bounds", dict(config={"action_low": [-1.0], "action_high": [1.0]}), "bounds"),
        ("imitator", "discrete", dict(config={"continuous": False, "action_low": None, "action_high": None}), ""),
    ]
    for kind, name, change, words in cases:
        path = _changed(api, kind, name, **change)
        r = _post(api, "demonstrations" if kind == "demos" else "imitators", path)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
        error = r.json()["error"]
        assert "\n" not in error and words.lower() in error.lower(), (name, error)
    for kind in ("imitators", "demonstrations"):
        assert api["client"].get(f"/v1/{kind}").json()["total"] == 0


def test_a_gaussian_imitator_and_box_demonstrations_upload(api):
    assert _post(api, "imitators", api["imitator"]).status_code == 201
    assert _post(api, "demonstrations", api["demos"]).status_code == 201


def test_the_built_in_continuous_env_uploads_without_being_enabled_and_its_arguments_are_bounded(tmp_path):
    from audit.envs.point_planner import planner
    from audit.envs.point_switch import ENV_ID

    client, _, _ = in_process(Settings(data_dir=tmp_path / "data"))  # no IMITAUDIT_ENVS: built-in envs only
    box = dict(continuous=True, action_low=(-1.0, -1.0), action_high=(1.0, 1.0))
    imitator = save_imitator(
        build("mlp", ImitatorConfig(obs_dim=11, n_actions=2, hidden=8, **box)),
        tmp_path / "p.safetensors",
        env_id=ENV_ID,
    )
    demos = record(ENV_ID, planner(seed=0), episodes=2, seed=0).save(tmp_path / "demos.safetensors")
    post = lambda path: client.post("/v1/" + path[0], files={"file": (path[1].name, path[1].read_bytes())})  # noqa: E731
    assert post(("imitators", imitator)).status_code == 201
    assert post(("demonstrations", demos)).status_code == 201
    tensors, meta = read_safetensors(demos)
    for kwargs, words in ((dict(max_steps=10**9), "max_steps"), (dict(walls=3), "no argument 'walls'")):
        bad = write_safetensors(tmp_path / "bad.safetensors", tensors, {**meta, "env_kwargs": json.dumps(kwargs)})
        r = post(("demonstrations", bad))
        assert 400 <= r.status_code < 500 and words in r.json()["error"], r.text[:300]
    assert client.get("/v1/demonstrations").json()["total"] == 1
