"""docker-compose.yml stays correct: api, worker, postgres with health checks, volumes, settings from the environment, no default secrets."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_declares_the_three_services_without_secrets():
    text = (ROOT / "docker-compose.yml").read_text()
    spec = yaml.safe_load(text)
    services = spec["services"]
    assert set(services) == {"api", "worker", "postgres"}
    for name, svc in services.items():
        assert "healthcheck" in svc, name
    assert services["api"]["command"][:2] == ["imitaudit", "serve"] and "--no-worker" in services["api"]["command"]
    assert services["worker"]["command"] == ["imitaudit", "worker"]
    assert services["worker"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert {"pgdata", "blobs"} <= set(spec["volumes"])
    env = services["api"]["environment"]
    assert env["IMITAUDIT_DATABASE_URL"].startswith("postgresql+psycopg://") and "${IMITAUDIT_DB_PASSWORD:?" in env["IMITAUDIT_DATABASE_URL"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${IMITAUDIT_DB_PASSWORD:?")
    # every variable the compose file passes is one the service's settings or every process's thread setting read
    import inspect

    from audit.cli import set_threads
    from service.settings import Settings

    doc = Settings.from_env.__doc__ + inspect.getsource(set_threads)
    for key in env:
        assert key in doc, key
    assert (ROOT / "Dockerfile").exists()
