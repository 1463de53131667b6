"""ONNX imitators through the service: an exported imitator is uploaded and audited; hostile graphs are 4xx with one
line,
the server stays healthy, nothing is stored (the safetensors corpus's checks, for ONNX files)."""

from __future__ import annotations

import json

import httpx
import onnx
import pytest
from onnx import TensorProto, helper

from models.load import load_imitator
from models.onnx_export import export_imitator
from models.onnx_imitator import MAX_TENSOR

from .conftest import FAST, upload, wait_for

pytestmark = pytest.mark.slow  # real servers and subprocesses


@pytest.fixture(scope="module")
def exported(inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    model, info = load_imitator(inputs["unbounded"])
    return root, export_imitator(model, root / "unbounded.onnx", env_id=info.env_id, env_kwargs=info.env_kwargs)


def test_an_onnx_imitator_is_uploaded_and_audited(service, exported):
    a = service["clients"]["a_submit"]
    r = upload(a, "imitators", exported[1], "unbounded-onnx")
    assert r.status_code in (200, 201), r.text
    assert r.json()["arch"] == "onnx" and r.json()["env_id"] == "imitaudit/OffSwitch-v0"
    audit = a.post(
        "/v1/audits",
        json={"imitator": r.json()["sha256"], "demonstrations": service["demos"]["sha256"], "settings": FAST},
    )
    assert audit.status_code == 202, audit.text
    done = wait_for(a, audit.json()["id"])
    assert done["state"] == "succeeded", done
    report = a.get(f"/v1/audits/{audit.json()['id']}/report").json()
    assert report["imitator"]["arch"] == "onnx" and report["summary"]["trajectories"] == FAST["episodes"]


def _hostile(root, good):
    model = onnx.load_model(str(good))
    cases = {}

    def variant(name, change):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        change(m)
        cases[name] = m.SerializeToString()

    def props(m, **kv):
        old = {p.key: p.value for p in m.metadata_props}
        del m.metadata_props[:]
        helper.set_model_props(m, {**old, **kv})

    def external(m):
        init = m.graph.initializer[0]
        init.data_location = TensorProto.EXTERNAL
        init.ClearField("raw_data")
        entry = init.external_data.add()
        entry.key, entry.value = "location", "../../etc/passwd"

    def custom(m):
        m.graph.node[-1].domain = "com.evil"
        m.opset_import.append(helper.make_opsetid("com.evil", 1))

    def giant(m):
        m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = MAX_TENSOR + 1

    variant("env id naming a module", lambda m: props(m, **{"imitaudit.env_id": "os:system"}))
    variant(
        "env id of venv.__main__", lambda m: props(m, **{"imitaudit.env_id": "venv.__main__:imitaudit/OffSwitch-v0"})
    )
    variant("env not enabled", lambda m: props(m, **{"imitaudit.env_id": "FrozenLake-v1"}))
    variant("env kwargs memory bomb", lambda m: props(m, **{"imitaudit.env_kwargs": json.dumps({"max_steps": 10**12})}))
    variant(
        "env kwargs not a constructor argument",
        lambda m: props(m, **{"imitaudit.env_kwargs": json.dumps({"size": 10**6})}),
    )
    variant("env kwargs NaN", lambda m: props(m, **{"imitaudit.env_kwargs": '{"max_steps": NaN}'}))
    variant("missing env id", lambda m: props(m, **{"imitaudit.env_id": ""}))
    variant("huge metadata", lambda m: props(m, **{"imitaudit.note": "x" * 400_000}))
    variant("taps not in the graph", lambda m: props(m, **{"imitaudit.taps": json.dumps({"core": "nowhere"})}))
    variant("taps not JSON", lambda m: props(m, **{"imitaudit.taps": "{"}))
    variant(
        "state names that do not pair",
        lambda m: props(m, **{"imitaudit.state_inputs": "state", "imitaudit.state_outputs": ""}),
    )
    variant("external data file", external)
    variant("custom-domain operator", custom)
    variant("giant declared shape", giant)
    variant(
        "obs that do not fit the env", lambda m: setattr(m.graph.input[0].type.tensor_type.shape.dim[1], "dim_value", 7)
    )
    raw = good.read_bytes()
    cases["truncated onnx"] = raw[: len(raw) // 3]
    cases["onnx header only"] = raw[:12]
    return cases


def test_hostile_onnx_uploads_are_4xx_with_one_line_and_nothing_is_stored(service, exported):
    a = service["clients"]["a_submit"]
    before = a.get("/v1/imitators").json()["total"]
    cases = _hostile(*exported)
    assert len(cases) >= 17
    for name, body in cases.items():
        r = a.post(
            "/v1/imitators",
            content=body,
            headers={"Content-Type": "application/octet-stream", "X-Imitaudit-Name": "bad.onnx"},
        )
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        error = r.json()["error"]
        assert error and "\n" not in error and "Traceback" not in error and len(error) < 600, (name, error)
    assert httpx.get(f"{service['url']}/healthz").json()["status"] == "ok"
    assert a.get("/v1/imitators").json()["total"] == before


@pytest.mark.parametrize("make", ["secret_branch", "secret_sparse", "secret_constant", "microsoft_in_branch"])
def test_graphs_that_would_read_the_server_s_files_are_refused_and_leak_nothing(service, make):
    """The server's working directory holds secret.txt and its SQLite file: external data hidden in an If branch, a
    sparse
    initializer or a Constant node is refused before onnxruntime sees it, and the answer quotes none of it."""
    from tests import onnx_graphs

    a = service["clients"]["a_submit"]
    for target in ("secret.txt", "imitaudit.db"):
        model = getattr(onnx_graphs, make)()
        helper.set_model_props(model, {"imitaudit.env_id": "imitaudit/OffSwitch-v0"})
        for graph in [model.graph, *[attr.g for n in model.graph.node for attr in n.attribute if attr.HasField("g")]]:
            tensors = [
                *graph.initializer,
                *[sp.values for sp in graph.sparse_initializer],
                *[attr.t for n in graph.node for attr in n.attribute if attr.HasField("t")],
            ]
            for t in tensors:
                for entry in t.external_data:
                    if entry.key == "location":
                        entry.value = target
        r = a.post(
            "/v1/imitators",
            content=model.SerializeToString(),
            headers={"Content-Type": "application/octet-stream", "X-Imitaudit-Name": "x.onnx"},
        )
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert "external data file" in error or "standard ONNX domains" in error, error
        assert "TOP" not in error and "SQLite" not in error and "84" not in error, error
