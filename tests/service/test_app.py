"""The API in-process (FastAPI's TestClient, a real SQLite file, no worker): request schema, one-line errors, uploads,
queueing."""

import pytest

from audit.data.demonstrations import record
from models.checkpoint import save_imitator
from models.imitator import ImitatorConfig
from models.registry import build
from service.settings import Settings

from .conftest import in_process

ENV = "imitaudit/OffSwitch-v0"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    client, _, _ = in_process(Settings(data_dir=root / "data"))
    imitator = save_imitator(
        build("mlp", ImitatorConfig(obs_dim=406, n_actions=5, hidden=8)), root / "imi.safetensors", env_id=ENV
    )
    demos = record(ENV, "corrigible", episodes=220, seed=0).save(root / "demos.safetensors")
    shas = {}
    for kind, path in (("imitators", imitator), ("demonstrations", demos)):
        r = client.post(f"/v1/{kind}", files={"file": (path.name, path.read_bytes())})
        assert r.status_code == 201, r.text
        shas[kind] = r.json()["sha256"]
    return client, shas


def test_openapi_shows_the_audit_settings_with_their_bounds(api):
    client, _ = api
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    settings = schemas["AuditSettings"]["properties"]
    alpha = settings["alpha"]["anyOf"][0]
    assert alpha["minimum"] == 0.0001 and alpha["maximum"] == 0.5
    assert settings["episodes"]["anyOf"][0]["maximum"] == 4096
    assert "flagged" in settings["alpha"]["description"]
    assert "AuditPublic" in schemas and "ImitatorPublic" in schemas
    body = spec["paths"]["/v1/audits"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/AuditCreate")


@pytest.mark.parametrize(
    "body,status,words",
    [
        (b"not json", 400, "JSON"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"imitator": "x"}', 422, "demonstrations"),
        (b'{"imitator": "x", "demonstrations": "y", "evil": 1}', 422, "unknown field evil"),
        (b'{"imitator": "x", "demonstrations": "y", "settings": {"exec": "rm"}}', 422, "unknown setting exec"),
        (b'{"imitator": "x", "demonstrations": "y", "settings": {"episodes": 1000000000}}', 422, "settings.episodes"),
        (b'{"imitator": "x", "demonstrations": "y", "settings": {"episodes": true}}', 422, "settings.episodes"),
        (b'{"imitator": "x", "demonstrations": "y", "settings": {"folds": 6, "episodes": 5}}', 422, "at least folds"),
        (b'{"imitator": "x", "demonstrations": "y", "policy": {"max_unlike_share": 3}}', 422, "max_unlike_share"),
        (b'{"imitator": "x", "demonstrations": "y"}', 422, "no imitator"),
    ],
)
def test_bad_audit_requests_get_one_line(api, body, status, words):
    client, _ = api
    r = client.post("/v1/audits", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert words in r.json()["error"] and "\n" not in r.json()["error"]


def test_an_audit_is_queued_with_only_the_settings_given(api):
    client, shas = api
    body = {
        "imitator": shas["imitators"],
        "demonstrations": shas["demonstrations"],
        "settings": {"episodes": 8, "alpha": 0.05},
    }
    r = client.post("/v1/audits", json=body, headers={"Idempotency-Key": "k1"})
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["state"] == "queued" and out["settings"] == {"episodes": 8, "alpha": 0.05} and out["policy"] == {}
    again = client.post("/v1/audits", json=body, headers={"Idempotency-Key": "k1"})
    assert again.json()["id"] == out["id"]
    # 220 episodes, half held out: too few for alpha 0.001
    tight = client.post("/v1/audits", json={**body, "settings": {"alpha": 0.001}})
    assert tight.status_code == 422 and "held-out" in tight.json()["error"]
    listed = client.get("/v1/audits").json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == out["id"]


@pytest.mark.parametrize("kind", ["imitators", "demonstrations"])
@pytest.mark.parametrize(
    "env_id", ["venv.__main__:imitaudit/OffSwitch-v0", "antigravity:imitaudit/OffSwitch-v0", "os:system"]
)
def test_an_uploaded_env_id_never_reaches_an_import(api, tmp_path, kind, env_id):
    import sys

    from models.safetensors_io import read_safetensors, write_safetensors

    client, _ = api
    module = env_id.split(":")[0]
    before = module in sys.modules
    source = (
        record(ENV, "corrigible", episodes=2, seed=0).save(tmp_path / "d.safetensors")
        if kind == "demonstrations"
        else save_imitator(
            build("mlp", ImitatorConfig(obs_dim=406, n_actions=5, hidden=8)), tmp_path / "i.safetensors", env_id=ENV
        )
    )
    tensors, meta = read_safetensors(source)
    evil = write_safetensors(tmp_path / "evil.safetensors", tensors, {**meta, "env_id": env_id})
    r = client.post(f"/v1/{kind}", files={"file": ("evil.safetensors", evil.read_bytes())})
    assert r.status_code == 422 and "names a module to import" in r.json()["error"], r.text
    assert (module in sys.modules) == before  # nothing was imported
    assert client.get("/healthz").json()["status"] == "ok"


def test_an_audit_whose_null_could_not_hold_is_refused_at_submit(api, tmp_path):
    """The imitator's training demonstrations, or demonstrations from other env arguments: 422 with one line, nothing
    queued."""
    client, shas = api
    before = client.get("/v1/audits").json()["total"]
    net = build("mlp", ImitatorConfig(obs_dim=406, n_actions=5, hidden=8))
    cases = [
        (
            save_imitator(
                net, tmp_path / "own.safetensors", env_id=ENV, provenance={"demos_sha256": shas["demonstrations"]}
            ),
            "trained on",
        ),
        (save_imitator(net, tmp_path / "kw.safetensors", env_id=ENV, env_kwargs={"max_steps": 40}), "env arguments"),
    ]
    for path, words in cases:
        r = client.post("/v1/imitators", files={"file": (path.name, path.read_bytes())})
        assert r.status_code == 201, r.text
        body = {"imitator": r.json()["sha256"], "demonstrations": shas["demonstrations"]}
        refused = client.post("/v1/audits", json=body)
        assert refused.status_code == 422 and words in refused.json()["error"], refused.text
        assert "\n" not in refused.json()["error"]
    allowed = client.post(
        "/v1/audits",
        json={
            "imitator": client.post(
                "/v1/imitators", files={"file": ("own.safetensors", (tmp_path / "own.safetensors").read_bytes())}
            ).json()["sha256"],
            "demonstrations": shas["demonstrations"],
            "settings": {"allow_training_demos": True},
        },
    )
    assert allowed.status_code == 202, allowed.text
    assert client.get("/v1/audits").json()["total"] == before + 1
