"""docker-compose.yml stays correct: api, worker, postgres and a Ray head and worker with health checks, volumes,
settings from the
environment, no default secrets."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_declares_the_services_without_secrets():
    text = (ROOT / "docker-compose.yml").read_text()
    spec = yaml.safe_load(text)
    services = spec["services"]
    assert set(services) == {"api", "worker", "postgres", "ray-head", "ray-worker"}
    for name, svc in services.items():
        assert "healthcheck" in svc, name
    assert services["api"]["command"][:2] == ["imitaudit", "serve"] and "--no-worker" in services["api"]["command"]
    assert services["worker"]["command"] == ["imitaudit", "worker"]
    assert services["worker"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert {"pgdata", "blobs"} <= set(spec["volumes"])
    env = services["api"]["environment"]
    assert (
        env["IMITAUDIT_DATABASE_URL"].startswith("postgresql+psycopg://")
        and "${IMITAUDIT_DB_PASSWORD:?" in env["IMITAUDIT_DATABASE_URL"]
    )
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${IMITAUDIT_DB_PASSWORD:?")
    # every variable the compose file passes is one the service's settings or every process's thread setting read
    import inspect

    from audit.cli import set_threads
    from service.settings import Settings

    threads = inspect.getsource(set_threads)
    for key in env:
        assert key.removeprefix("IMITAUDIT_").lower() in Settings.model_fields or key in threads, key
    assert (ROOT / "Dockerfile").exists()


def test_compose_workers_run_their_audits_on_its_ray_pair():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    head, node, worker = services["ray-head"], services["ray-worker"], services["worker"]
    assert (
        head["command"][:3] == ["ray", "start", "--head"]
        and "--port=6379" in head["command"]
        and "--block" in head["command"]
    )
    assert (
        node["command"][:2] == ["ray", "start"]
        and "--address=ray-head:6379" in node["command"]
        and "--block" in node["command"]
    )
    assert node["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert worker["environment"]["IMITAUDIT_RAY_ADDRESS"].endswith("ray-head:6379}")
    assert head["build"] == node["build"] == worker["build"]  # one image: tasks import the same imitaudit
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "'.[ray]'" in dockerfile
    for name, svc in services.items():  # a health check that runs pgrep needs it in the image
        if "pgrep" in " ".join(svc["healthcheck"]["test"]):
            assert "procps" in dockerfile, name
    # the pin the image installs is the one make test runs against
    import tomllib

    import ray

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
    assert f"ray=={ray.__version__}" in " ".join(extras)
