"""The OpenAPI spec is honest: schemathesis drives every documented operation (bounded examples) against the app
in-process with a real SQLite file, and no answer is a 5xx, a status the spec does not list, an undocumented
content type or a body that breaks its declared schema."""

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.auth import create_token
from service.settings import Settings

ROOT = Path(tempfile.mkdtemp(prefix="imitaudit-openapi-"))
APP = create_app(Settings(data_dir=ROOT / "data"), start_worker=False)
with APP.state.service.sessions.begin() as _s:
    TOKEN = create_token(_s, project="p", role="submit")
APP.state.service.validator.warm().result()  # started as the server's start does: the first upload does not wait for it
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
OPERATIONS = [op.ok() for op in SCHEMA.get_all_operations()]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module", autouse=True)
def _close_validator():
    yield
    APP.state.service.validator.close()  # no lifespan runs here to close it: its process would outlive the tests


def test_every_route_is_documented():
    paths = {op.path for op in OPERATIONS}
    assert {
        "/v1/imitators",
        "/v1/demonstrations",
        "/v1/audits",
        "/v1/audits/{audit_id}/report.html",
        "/healthz",
    } <= paths
    upload = next(op for op in OPERATIONS if op.path == "/v1/imitators" and op.method.upper() == "POST")
    assert {"multipart/form-data", "application/octet-stream"} <= set(upload.definition.raw["requestBody"]["content"])


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_no_5xx_and_no_schema_violation(op):
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    @given(case=op.as_strategy())
    def run(case):
        case.call_and_validate(
            headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS, timeout=300
        )  # a respawned validator, on a loaded machine

    run()
