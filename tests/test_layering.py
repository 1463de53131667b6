"""The house rules (docs/architecture.md): models/ imports neither audit/ nor service/; audit/ never imports
service/."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"models": {"audit", "service"}, "audit": {"service"}}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package):
    for path in (ROOT / package).rglob("*.py"):
        bad = imported_roots(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_service_uses_only_audit_s_public_api():
    """service/ imports ``audit`` itself (its ``__all__``) and the CLI it extends, never audit's internals or
    models/."""
    for path in (ROOT / "service").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + (
                    [f"{node.module}.{a.name}" for a in node.names] if node.module == "audit" else []
                )
            for name in names:
                if name.split(".")[0] == "models":
                    raise AssertionError(f"{path.relative_to(ROOT)} imports {name}: go through audit's public API")
                if name.startswith("audit.") and name not in ("audit.cli",):
                    assert name.split(".", 1)[1] in __import__("audit").__all__ or name == "audit.cli", (
                        f"{path.relative_to(ROOT)} imports {name}"
                    )


def test_every_module_starts_with_a_docstring():
    for package in ("audit", "models", "service", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                continue  # virtualenvs a benchmark makes for its peer
            tree = ast.parse(path.read_text())
            assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} has no module docstring"


def test_the_service_data_layer_knows_no_http():
    """The store, the job states, the running service and its errors import neither the web framework nor the routes'
    error type: the dashboard, the CLI and the worker use them as the API does (app.py maps their errors to HTTP)."""
    for name in ("store", "jobs", "errors", "runtime", "db", "blobs"):
        path = ROOT / "service" / f"{name}.py"
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        web = {
            m
            for m in modules
            if m.split(".")[0] in ("fastapi", "starlette")
            or m in ("service.deps", "service.app")
            or m.startswith("service.routes")
        }
        assert not web, f"service/{name}.py imports {web}"


def test_models_import_graph_has_no_cycle():
    """models/ modules import each other one way (function-level imports included): formats and the network below,
    the file readers above them, models/load.py on top."""
    graph = {}
    for path in (ROOT / "models").glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {
            n.module.split(".")[1]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("models.")
        }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(trail + [node, nxt])}"
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
