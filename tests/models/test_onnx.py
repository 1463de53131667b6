"""ONNX imitators: exports of registry imitators act and tap exactly as the originals; hostile graphs get one line."""

import json
import re

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from models.imitator import ImitatorConfig
from models.load import load_imitator
from models.onnx_export import export_imitator, export_module, stamp
from models.onnx_imitator import MAX_TENSOR, _session, load_onnx_bytes
from models.registry import build
from models.taps import TapRecorder, teacher_forced
from tests.onnx_graphs import (
    computed_width,
    microsoft_in_branch,
    nan_logits,
    secret_branch,
    secret_constant,
    secret_sparse,
    string_logits,
)

TAPS = ("encoder", "core", "head")


@pytest.mark.parametrize(
    "arch,config",
    [
        ("mlp", ImitatorConfig(obs_dim=4, n_actions=2)),
        ("gru", ImitatorConfig(obs_dim=4, n_actions=3, hidden=16)),
        ("gru", ImitatorConfig(obs_dim=2 * 3 * 3 + 1, n_actions=5, grid=(2, 3, 3), agent_plane=1, hidden=8)),
        (
            "gru",
            ImitatorConfig(
                obs_dim=2 * 4 * 4 + 1, n_actions=5, grid=(2, 4, 4), agent_plane=1, hidden=8, plan_iterations=5
            ),
        ),
        ("mlp", ImitatorConfig(obs_dim=3, n_actions=1, continuous=True, action_low=(-2.0,), action_high=(2.0,))),
        ("gru", ImitatorConfig(obs_dim=4, n_actions=2, hidden=16, continuous=True)),
    ],
    ids=["mlp", "gru", "grid-gru", "planning-grid-gru", "gaussian-mlp", "unbounded-gaussian-gru"],
)
def test_an_exported_registry_imitator_steps_and_taps_as_the_original(arch, config, tmp_path):
    torch.manual_seed(0)
    model = build(arch, config).eval()
    onnx_model, info = load_imitator(export_imitator(model, tmp_path / "m.onnx", env_id="CartPole-v1"))
    assert info.arch == "onnx" and info.env_id == "CartPole-v1" and info.n_actions == config.n_actions
    assert onnx_model.tap_sizes() == model.tap_sizes()
    bounds = ("continuous", "action_low", "action_high")
    assert [getattr(onnx_model.config, k) for k in bounds] == [getattr(config, k) for k in bounds]
    shown = info.summary()["config"]  # what `inspect` prints of a graph
    assert [shown[k] for k in bounds] == [config.to_dict()[k] for k in bounds]
    obs = torch.rand(3, 6, config.obs_dim)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 4:] = False
    with torch.no_grad():
        want, want_acts = teacher_forced(model, obs, mask, TAPS)
        got, got_acts = teacher_forced(onnx_model, obs, mask, TAPS)
    assert torch.allclose(got[mask], want[mask], atol=1e-5)
    for tap in TAPS:
        assert torch.allclose(got_acts.taps[tap], want_acts.taps[tap], atol=1e-5), tap
    # stepping: the same logits and taps one step at a time
    state_a, state_b = model.initial_state(3), onnx_model.initial_state(3)
    for t in range(3):
        with torch.no_grad(), TapRecorder(model=onnx_model, names=TAPS) as rec:
            (la, state_a), (lb, state_b) = model(obs[:, t], state_a), onnx_model(obs[:, t], state_b)
        assert torch.allclose(la, lb, atol=1e-5)
        assert set(rec.take()) == set(TAPS)
    rows = torch.tensor([2, 2, 0])
    if state_b is not None:
        assert onnx_model.select_state(state_b, rows)[0].shape[model.state_batch_dim] == 3


def _graph(tmp_path, *, nodes=None, inits=None, outputs=None, inputs=None, props=None, domain_opsets=()):
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], np.ones(8, dtype=np.float32))
    nodes = nodes or [helper.make_node("Relu", ["obs"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes,
        "g",
        inputs or [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 4])],
        outputs or [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[w, *(inits or [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *domain_opsets])
    helper.set_model_props(model, {"imitaudit.env_id": "CartPole-v1", **(props or {})})
    path = tmp_path / "g.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_a_hand_built_graph_loads_with_the_taps_it_has(tmp_path):
    model, info = load_imitator(_graph(tmp_path))
    assert set(model.taps) == {"head", "core"}  # core: the input of the last MatMul; no second layer, no encoder
    logits, _ = model(torch.ones(2, 4))
    assert torch.allclose(logits, torch.full((2, 2), 4.0))


HOSTILE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:40]),
    "no env id": lambda p: p.write_bytes(_strip_env(p)),
}


def _strip_env(path):
    m = onnx.load_model(str(path))
    del m.metadata_props[:]
    return m.SerializeToString()


@pytest.mark.parametrize(
    "case,expect",
    [
        ("truncated", "not a valid ONNX model"),
        ("no env id", "imitaudit.env_id"),
        ("external data", "external data file"),
        ("custom domain", "outside the standard ONNX domains"),
        ("missing tap", "tap tensor(s) not in the graph: core=nowhere"),
        ("giant declared shape", "declared with"),
        ("huge metadata", "metadata_props exceed"),
        ("two observation inputs", "exactly one observation input"),
        ("bad taps json", "malformed metadata"),
        ("state without output", "not a graph input -> output pair"),
    ],
)
def test_hostile_graphs_are_refused_with_one_line(case, expect, tmp_path):
    if case == "external data":
        ext = helper.make_tensor("e", TensorProto.FLOAT, [1], [1.0])
        ext.data_location = TensorProto.EXTERNAL
        ext.ClearField("float_data")
        entry = ext.external_data.add()
        entry.key, entry.value = "location", "/etc/passwd"
        path = _graph(tmp_path, inits=[ext])
    elif case == "custom domain":
        path = _graph(
            tmp_path,
            nodes=[
                helper.make_node("Relu", ["obs"], ["h"]),
                helper.make_node("Evil", ["h", "w"], ["logits"], domain="com.evil"),
            ],
            domain_opsets=[helper.make_opsetid("com.evil", 1)],
        )
    elif case == "missing tap":
        path = _graph(tmp_path, props={"imitaudit.taps": json.dumps({"core": "nowhere"})})
    elif case == "giant declared shape":
        path = _graph(
            tmp_path, inputs=[helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", MAX_TENSOR + 1])]
        )
    elif case == "huge metadata":
        path = _graph(tmp_path, props={"x": "y" * 300_000})
    elif case == "two observation inputs":
        path = _graph(
            tmp_path,
            inputs=[helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in ("obs", "obs2")],
        )
    elif case == "bad taps json":
        path = _graph(tmp_path, props={"imitaudit.taps": "{NaN"})
    elif case == "state without output":
        path = _graph(tmp_path, props={"imitaudit.state_inputs": "obs", "imitaudit.state_outputs": "nope"})
    else:
        path = _graph(tmp_path)
        HOSTILE[case](path)
    with pytest.raises(ValueError) as err:
        load_imitator(path)
    message = str(err.value)
    assert expect in message and "\n" not in message and len(message) < 500, message


@pytest.mark.parametrize(
    "box,expect",
    [
        ({"dims": 2, "low": None, "high": None}, "logits have 2 numbers per row; a Gaussian over 2 action dimension"),
        ({"dims": 1, "low": [1.0], "high": [-1.0]}, "action_low must be below action_high"),
        ({"dims": 1, "low": [float("nan")], "high": [1.0]}, "malformed imitaudit.action_box"),
        ({"dims": 1, "low": [0.0, 1.0], "high": [1.0]}, "one bound per action dimension"),
        ({"dims": 0}, "with 1 <= d <= 65,536"),
        ({"dims": 1, "path": "/etc/passwd"}, "with 1 <= d <= 65,536"),
        ([1], "with 1 <= d <= 65,536"),
    ],
    ids=["width", "order", "nan", "length", "zero", "extra-key", "not-an-object"],
)
def test_a_gaussian_graph_s_action_box_is_checked_in_one_line(box, expect, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    path = export_module(net, tmp_path / "g.onnx", obs_shape=(3,), env_id="Pendulum-v1")
    model = onnx.load_model(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props["imitaudit.action_box"] = json.dumps(box)
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    with pytest.raises(ValueError, match=re.escape(expect)) as err:
        load_onnx_bytes(model.SerializeToString(), "g.onnx")
    assert len(str(err.value).splitlines()) == 1 and str(err.value).startswith("g.onnx: ")


def test_a_torch_module_of_one_s_own_exports_and_stamps(tmp_path):
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2)
    )
    path = export_module(net, tmp_path / "own.onnx", obs_shape=(4,), env_id="CartPole-v1")
    model, info = load_imitator(path)
    assert set(model.taps) == set(TAPS) and model.tap_sizes() == {"head": 2, "core": 32, "encoder": 32}
    x = torch.randn(5, 4)
    assert torch.allclose(model(x)[0], net(x), atol=1e-5)
    again = stamp(path, tmp_path / "again.onnx", env_id="imitaudit/OffSwitch-v0", env_kwargs={"max_steps": 50})
    assert load_imitator(again)[1].env_kwargs == {"max_steps": 50}


def test_convert_from_onnx_refuses_a_graph_it_cannot_audit_and_writes_nothing(tmp_path):
    from audit.cli import main

    bad = _graph(tmp_path, props={"imitaudit.taps": json.dumps({"core": "nowhere"})})
    assert (
        main(["convert", "--from", "onnx", str(bad), "--env", "CartPole-v1", "--out", str(tmp_path / "out.onnx")]) == 2
    )
    assert not (tmp_path / "out.onnx").exists()
    assert (
        main(
            [
                "convert",
                "--from",
                "onnx",
                str(_graph(tmp_path)),
                "--env",
                "CartPole-v1",
                "--out",
                str(tmp_path / "ok.onnx"),
            ]
        )
        == 0
    )
    assert load_imitator(tmp_path / "ok.onnx")[1].env_id == "CartPole-v1"


def test_an_onnx_imitator_pickles_by_its_checked_bytes(tmp_path):
    """What a Ray task receives: the imitator loaded again from its file's bytes, the same logits and taps."""
    import pickle

    torch.manual_seed(0)
    model = build("gru", ImitatorConfig(obs_dim=4, n_actions=3, hidden=16)).eval()
    onnx_model, _ = load_imitator(export_imitator(model, tmp_path / "m.onnx", env_id="CartPole-v1"))
    copy = pickle.loads(pickle.dumps(onnx_model))
    assert copy is not onnx_model and copy.session is not onnx_model.session
    obs, mask = torch.rand(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        a, acts_a = teacher_forced(onnx_model, obs, mask, TAPS)
        b, acts_b = teacher_forced(copy, obs, mask, TAPS)
    assert torch.equal(a, b) and all(torch.equal(acts_a.taps[t], acts_b.taps[t]) for t in TAPS)


@pytest.mark.parametrize(
    "make,expect",
    [
        (secret_branch, "external data file"),
        (secret_sparse, "external data file"),
        (secret_constant, "external data file"),
        (microsoft_in_branch, "outside the standard ONNX domains"),
    ],
    ids=["if-branch", "sparse", "constant", "microsoft-op-in-branch"],
)
def test_every_graph_and_tensor_kind_is_checked_before_onnxruntime_sees_it(make, expect, tmp_path, monkeypatch):
    (tmp_path / "secret.txt").write_bytes(b"TOPSECRET")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as err:
        load_onnx_bytes(make().SerializeToString(), "x.onnx")
    assert expect in str(err.value) and "TOP" not in str(err.value) and "84" not in str(err.value)


@pytest.mark.parametrize("make", [secret_branch, secret_sparse], ids=["if-branch", "sparse"])
def test_sessions_resolve_files_in_an_empty_folder_not_the_working_directory(make, tmp_path, monkeypatch):
    (tmp_path / "secret.txt").write_bytes(b"TOPSECRET")
    monkeypatch.chdir(tmp_path)
    # the second wall alone: had the checks missed the tensor, onnxruntime would still find no file to read
    with pytest.raises(ValueError, match="onnxruntime cannot load the graph"):
        _session(make(), "x.onnx", 1)


@pytest.mark.parametrize(
    "make,expect",
    [
        (lambda: computed_width(5263190), "logits"),
        (lambda: computed_width(3), "one row per observation"),
        (nan_logits, "not finite"),
        (string_logits, "logits"),
    ],
    ids=["computed-width", "fixed-batch", "nan", "string"],
)
def test_logits_are_checked_at_upload_and_no_computed_value_is_echoed(make, expect, tmp_path):
    with pytest.raises(ValueError) as err:
        load_onnx_bytes(make().SerializeToString(), "x.onnx")
    message = str(err.value)
    assert expect in message and "5263190" not in message and "5,263,190" not in message and "\n" not in message, (
        message
    )


def test_a_recurrent_cell_s_default_taps_read_its_next_state_never_its_state_input(tmp_path):
    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru, self.head = torch.nn.GRUCell(4, 8), torch.nn.Linear(8, 2)

        def forward(self, obs, h):
            h = self.gru(obs, h)
            return self.head(h), h

    axes = {n: {0: "batch"} for n in ("obs", "h", "logits", "h_next")}
    torch.onnx.export(
        Cell(),
        (torch.zeros(1, 4), torch.zeros(1, 8)),
        str(tmp_path / "cell.onnx"),
        input_names=["obs", "h"],
        output_names=["logits", "h_next"],
        dynamic_axes=axes,
        dynamo=False,
    )
    path = stamp(
        tmp_path / "cell.onnx",
        tmp_path / "stamped.onnx",
        env_id="CartPole-v1",
        state_inputs=("h",),
        state_outputs=("h_next",),
    )
    model, info = load_imitator(str(path))
    assert model.tap_names and "core" in model.tap_names and info.provenance["onnx"]["taps"]["core"] == "h_next"
    assert "max_len" not in info.summary()["config"]
    logits, state = model(torch.zeros(3, 4), model.initial_state(3))
    assert logits.shape == (3, 2)
