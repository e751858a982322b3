"""The package's import graph: no cycles, leaf modules that import nothing of the project, layers that go one way."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "mnist_lit"
# module -> the project modules it may import (every import, also those inside functions)
LEAVES = {
    "mnist_lit.errors": set(),
    "mnist_lit.interrupts": set(),
    "mnist_lit.config.resolvers": set(),
    "mnist_lit.config.schema": {"mnist_lit.errors"},
    "mnist_lit.io.atomic": {"mnist_lit.errors"},
    "mnist_lit.display.tables": set(),
    "mnist_lit.process.resources": set(),
}
# The research core (networks and data sets) knows nothing of evaluation, training, sweeps or display.
CORE = ("mnist_lit.models", "mnist_lit.data")
ABOVE_CORE = ("mnist_lit.evaluation", "mnist_lit.training", "mnist_lit.sweeps", "mnist_lit.display", "mnist_lit.perf")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    found.add(target)
        graph[name] = found
    return graph


def test_there_is_no_import_cycle():
    graph = import_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, f"import cycle: {' -> '.join(path[path.index(module) :] + [module])}"
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_leaf_modules_import_nothing_else_of_the_project():
    graph = import_graph()
    for module, allowed in LEAVES.items():
        assert graph[module] <= allowed, f"{module} imports {sorted(graph[module] - allowed)}"


def test_networks_and_data_sets_do_not_import_the_layers_above_them():
    for module, imported in import_graph().items():
        if module.startswith(CORE):
            above = sorted(m for m in imported if m.startswith(ABOVE_CORE))
            assert not above, f"{module} imports {above}"
