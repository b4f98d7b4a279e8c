"""The code's shape, as the architecture notes draw it: imports flow one way,
backend <- core <- features <- worker <- entry points, with no circle anywhere.
Read from the source with ``ast``: nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FEATURES = (
    "accounts",
    "admin",
    "analyses",
    "api",
    "main",
    "projects",
    "retention",
    "sharing",
    "tes",
)
THIRD_PARTY_WEB = ("flask", "flask_", "celery", "kombu", "sqlalchemy", "werkzeug")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(package: str) -> dict[str, Path]:
    return {
        _module(path): path
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and "pipelines" not in path.parts
    }


MODULES = {**_sources("frontend"), **_sources("backend")}


def _imports(module: str) -> set[str]:
    """The project modules ``module`` imports, anywhere in its body (an import
    inside a function is an import too)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from . import x`` names a module when x is one.
            names = [
                f"{source}.{alias.name}"
                if f"{source}.{alias.name}" in MODULES
                else source
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _third_party(module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
    return found


def _cycle() -> list[str] | None:
    """One import circle, as the modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)):
            return found
    return None


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "backend":
        return "backend"
    if len(parts) == 1:
        return "entry"  # frontend/__init__.py: create_app
    if parts[1] == "core":
        return "core"
    if parts[1] in FEATURES:
        return "feature"
    if parts[1] == "worker":
        return "worker"
    return "entry"  # make_celery, cli, celery_app, errors, headers, logs...


ORDER = {"backend": 0, "core": 1, "feature": 2, "worker": 3, "entry": 4}


def test_no_module_imports_itself_back_through_a_circle():
    circle = _cycle()
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_pipeline_side_knows_no_web_framework_database_or_queue():
    offending = {
        module: sorted(
            name for name in _third_party(module) if name.startswith(THIRD_PARTY_WEB)
        )
        for module in MODULES
        if module.startswith("backend")
    }
    assert {m: names for m, names in offending.items() if names} == {}
    assert not [
        m
        for m in MODULES
        if m.startswith("backend")
        and any(target.startswith("frontend") for target in GRAPH[m])
    ]


@pytest.mark.parametrize(
    ("lower", "higher"),
    [("core", "feature"), ("core", "worker"), ("feature", "worker")],
)
def test_imports_never_climb_back_up(lower, higher):
    """backend <- core <- features <- worker <- entry points: a module never
    imports one of a layer above it (core never a feature, no feature the
    worker)."""
    climbs = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _layer(module) == lower
        for target in targets
        if _layer(target) == higher
    )
    assert climbs == []


def test_every_import_goes_down_or_sideways():
    climbs = sorted(
        f"{module} ({_layer(module)}) -> {target} ({_layer(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if ORDER[_layer(target)] > ORDER[_layer(module)]
    )
    assert climbs == []


def test_every_runner_offers_the_whole_runner_protocol():
    from backend.runners import RUNNERS, Runner

    wanted = set(Runner.__annotations__) | {
        name for name in vars(Runner) if not name.startswith("_")
    }
    wanted -= {"on_output_end"}  # set per instance by whoever follows its runs
    for name, runner in RUNNERS.items():
        assert runner.name == name
        missing = sorted(attr for attr in wanted if not hasattr(runner, attr))
        assert missing == [], f"{name} lacks {missing}"
