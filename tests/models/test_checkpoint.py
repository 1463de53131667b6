"""Checkpoints: safetensors round trips for every arch, refusal of everything else, plugins, Lightning conversion."""

import json
import pickle
import sys
import zipfile

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from models.checkpoint import convert_lightning_checkpoint, save_imitator
from models.imitator import ImitatorConfig
from models.load import load_imitator
from models.registry import BUILTIN, architectures, build


@pytest.mark.parametrize("arch", sorted(BUILTIN))
def test_round_trip(arch, tmp_path):
    torch.manual_seed(1)
    cfg = ImitatorConfig(obs_dim=406, n_actions=5, hidden=16, grid=(5, 9, 9))
    model = build(arch, cfg)
    path = save_imitator(
        model, tmp_path / f"{arch}.safetensors", env_id="imitaudit/OffSwitch-v0", provenance={"mode": "bc"}
    )
    back, info = load_imitator(path)
    assert info.arch == arch and info.config == cfg and info.env_id == "imitaudit/OffSwitch-v0"
    assert info.obs_shape == (406,) and info.n_actions == 5 and info.provenance == {"mode": "bc"}
    assert info.n_params == sum(p.numel() for p in model.parameters()) and len(info.sha256) == 64
    obs = torch.randn(2, 4, 406)
    torch.testing.assert_close(back.sequence(obs), model.sequence(obs))
    assert not back.training


def _good(tmp_path):
    model = build("gru", ImitatorConfig(obs_dim=6, n_actions=3, hidden=8))
    path = save_imitator(model, tmp_path / "good.safetensors", env_id="CartPole-v1", obs_shape=(6,))
    from models.safetensors_io import read_safetensors

    tensors, meta = read_safetensors(path)
    return tensors, meta


def malformed(tmp_path):
    """name -> (path, message fragment)."""
    tensors, meta = _good(tmp_path)
    cases = {}

    def write(name, t, m):
        p = tmp_path / f"{name}.safetensors"
        save_file(t, str(p), metadata=m)
        return p

    p = tmp_path / "pickle.safetensors"
    p.write_bytes(pickle.dumps({"state_dict": {}}, protocol=4))
    cases["pickle"] = (p, "pickle")
    p = tmp_path / "zip.safetensors"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    cases["zip (torch.save)"] = (p, "zip archive")
    good = write("good2", tensors, meta)
    p = tmp_path / "trunc.safetensors"
    p.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    cases["truncated"] = (p, "invalid safetensors")
    p = tmp_path / "empty.safetensors"
    p.write_bytes(b"")
    cases["empty"] = (p, "empty")
    p = tmp_path / "lying.safetensors"
    p.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    cases["lying header"] = (p, "header length")
    cases["no metadata"] = (write("nometa", tensors, None), "imitaudit.schema")
    cases["unknown schema"] = (
        write("schema", tensors, {**meta, "imitaudit.schema": "imitaudit.imitator/7"}),
        "unknown schema",
    )
    m = dict(meta)
    del m["arch"]
    cases["missing arch"] = (write("noarch", tensors, m), "lacks arch")
    cases["unknown arch"] = (write("arch", tensors, {**meta, "arch": "evil"}), "unknown architecture 'evil'")
    cases["config not JSON"] = (write("cfg", tensors, {**meta, "config": "{nope"}), "malformed metadata")
    cases["config unknown field"] = (
        write("cfg2", tensors, {**meta, "config": json.dumps({**json.loads(meta["config"]), "exec": "rm"})}),
        "unknown field",
    )
    cases["obs shape does not fit"] = (
        write("obs", tensors, {**meta, "obs_shape": "[7]"}),
        "does not fit config obs_dim=6",
    )
    cases["n_actions does not fit"] = (write("nact", tensors, {**meta, "n_actions": "4"}), "n_actions=4")
    t = dict(tensors)
    del t["head.weight"]
    cases["missing tensor"] = (write("missing", t, meta), "missing tensor(s) for arch 'gru': head.weight")
    t = {**tensors, "backdoor.weight": np.zeros(3, dtype=np.float32)}
    cases["unexpected tensor"] = (write("extra", t, meta), "unexpected tensor(s)")
    t = {**tensors, "head.weight": np.zeros((3, 9), dtype=np.float32)}
    cases["wrong shape"] = (write("shape", t, meta), "head.weight has shape (3, 9)")
    t = {**tensors, "head.bias": np.zeros(3, dtype=np.int64)}
    cases["integer weights"] = (write("dtype", t, meta), "floating point")
    t = {**tensors, "head.bias": np.full(3, np.nan, dtype=np.float32)}
    cases["NaN weights"] = (write("nan", t, meta), "NaN")
    return cases


def test_every_malformed_checkpoint_is_one_clear_value_error(tmp_path):
    cases = malformed(tmp_path)
    assert len(cases) >= 17
    for name, (path, fragment) in cases.items():
        with pytest.raises(ValueError) as info:
            load_imitator(path)
        assert fragment in str(info.value), (name, str(info.value))
        assert "\n" not in str(info.value)


def test_malformed_checkpoints_exit_2_in_the_cli(tmp_path, capsys):
    from audit.cli import main

    for name, (path, fragment) in malformed(tmp_path).items():
        assert main(["inspect", str(path)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("imitaudit: error:") and err.count("\n") == 1 and fragment in err, (name, err)


def test_plugin_architecture_through_entry_points(tmp_path, monkeypatch):
    pkg = tmp_path / "acme_policies.py"
    pkg.write_text("from models.imitator import MLPImitator\nclass WideMLP(MLPImitator):\n    arch = 'acme-wide'\n")
    dist = tmp_path / "acme_policies-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-policies\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[imitaudit.architectures]\nacme-wide = acme_policies:WideMLP\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "acme-wide" in architectures()
    model = build("acme-wide", ImitatorConfig(obs_dim=4, n_actions=2, hidden=8))
    path = save_imitator(model, tmp_path / "p.safetensors", env_id="CartPole-v1")
    back, info = load_imitator(path)
    assert info.arch == "acme-wide" and type(back).__name__ == "WideMLP"
    sys.modules.pop("acme_policies", None)


def test_convert_refuses_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Evil()}, bad)
    with pytest.raises(ValueError, match="weights-only"):
        convert_lightning_checkpoint(bad, tmp_path / "out.safetensors")
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, plain)
    with pytest.raises(ValueError, match="hyper_parameters lack"):
        convert_lightning_checkpoint(plain, tmp_path / "out.safetensors")
