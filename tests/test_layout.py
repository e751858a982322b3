"""The layout: one test file per module, and the package's import graph (no cycles, leaf modules that import nothing
of the project, layers that go one way)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "mnist_lit"
TESTS = ROOT / "tests"
# Test files whose name is not a file or folder of the project: what each one tests instead.
OTHER_TESTS = {
    "test_train_multirun.py": "python train.py -m (the sweeps' command line)",
    "test_optuna_sweeper.py": "the Hydra sweeper plugin in hydra_plugins/mnist_lit_optuna_sweeper/",
    "test_layout.py": "the layout itself",
    "test_preloaded_python.py": "the tests' own preloaded interpreter, tests/preloaded_python.py",
}
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


def test_every_module_has_its_test_file_at_the_same_place():
    """mnist_lit/io/run_dir.py is tested in tests/io/test_run_dir.py: the tests of a module are found from its path."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "__init__.py":
            relative = path.relative_to(PACKAGE)
            expected = TESTS / relative.parent / f"test_{relative.name}"
            if not expected.exists():
                missing.append(f"{path.relative_to(ROOT)} (expected {expected.relative_to(ROOT)})")
    assert not missing, f"modules without a test file: {missing}"


def test_every_test_file_is_named_for_what_it_tests():
    """tests/<path>/test_<name>.py tests mnist_lit/<path>/<name>.py, or <path>/<name>.py of the project (train.py,
    evaluate.py, benchmarks/bench.py), or the folder of that name (conf/, mnist_lit/demo_page/)."""
    unnamed = []
    for test in sorted(TESTS.rglob("test_*.py")):
        relative = test.relative_to(TESTS)
        subject = relative.parent / relative.name.removeprefix("test_")
        candidates = [base / subject for base in (PACKAGE, ROOT)]
        candidates += [path.with_suffix("") for path in candidates]
        if str(relative) not in OTHER_TESTS and not any(path.exists() for path in candidates):
            unnamed.append(str(test.relative_to(ROOT)))
    assert not unnamed, f"test files that name no module, script, benchmark or folder: {unnamed}"
