"""A ``module:Env`` id imports its module only when the user allowed that module on their own machine."""

import sys

import pytest

from audit import cli
from audit.envs import _IMPORTABLE, allow_env_modules, resolve_env_id
from service.cli import extend

MODULE = "tests.audit.envs.registering_module"


@pytest.fixture(autouse=True)
def fresh_allowlist():
    saved = set(_IMPORTABLE)
    sys.modules.pop(MODULE, None)
    yield
    _IMPORTABLE.clear()
    _IMPORTABLE.update(saved)


def test_a_module_env_id_is_refused_without_the_flag_and_nothing_is_imported():
    with pytest.raises(ValueError, match=f"would import module '{MODULE}': pass --env-module {MODULE}"):
        resolve_env_id(f"{MODULE}:imitaudit-test/Registered-v0")
    assert MODULE not in sys.modules


def test_an_allowed_module_is_imported_and_its_env_resolves():
    allow_env_modules(MODULE)
    assert resolve_env_id(f"{MODULE}:imitaudit-test/Registered-v0") == "imitaudit-test/Registered-v0"
    assert sys.modules[MODULE].IMPORTED
    with pytest.raises(ValueError, match="dotted Python module name"):
        allow_env_modules("os; rm")


def test_the_service_refuses_the_flag(capsys):
    assert (
        cli.main(["--env-module", MODULE, "worker", "--data-dir", "/nonexistent/unused"], extend=extend)
        == cli.EXIT_ERROR
    )
    assert "never imports a module an env id names" in capsys.readouterr().err
    assert MODULE not in sys.modules
