"""The package's shape, checked from the source: no import cycle between modules, and no
import from a lower layer into a higher one (cli -> api -> runs -> training -> results ->
components -> attacks, privacy); the run folder's layer imports nothing of privacy. Built
with ast, so it reads every import, including those inside functions and the type-only ones
under ``if TYPE_CHECKING:`` (a cycle through annotations is still two modules that need each
other)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# where each installed package lives in the repository
SOURCES = {"robustlr": ROOT / "robustlr", "robustlr.attacks": ROOT / "attacks",
           "robustlr.privacy": ROOT / "privacy"}
# highest first; a module may import only from its own layer or the layers below it
LAYERS = ["robustlr.__main__", "robustlr.cli", "robustlr.api", "robustlr.runs", "robustlr.training", "robustlr.results",
          "robustlr", "robustlr.attacks", "robustlr.privacy"]
# the two sides are peers: neither may import the other
PEERS = {("robustlr.attacks", "robustlr.privacy"), ("robustlr.privacy", "robustlr.attacks")}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import submodule`` needs the submodule; ``from pkg import name`` needs
            # the module that defines the name (the package's __init__ for a package)
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                          for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def _layer(module: str) -> str:
    return max((layer for layer in LAYERS if module == layer or module.startswith(layer + ".")),
               key=len)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_graph_is_read_from_every_package(graph):
    assert {"robustlr.cli.app", "robustlr.runs.folder", "robustlr.training.loop",
            "robustlr.results.store", "robustlr.config", "robustlr.attacks.pgd",
            "robustlr.privacy.accounting"} <= set(graph)
    assert "robustlr.training.loop" in graph["robustlr.training.trial"]


def test_no_module_imports_from_a_higher_layer(graph):
    upward = []
    for module, targets in graph.items():
        for target in targets:
            source_layer, target_layer = _layer(module), _layer(target)
            if target.startswith(module + ".") or module.startswith(target + "."):
                continue  # a package and its own submodules
            if LAYERS.index(target_layer) < LAYERS.index(source_layer) or \
                    (source_layer, target_layer) in PEERS:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))


def test_there_is_no_import_cycle(graph):
    # a package importing its submodules is no cycle by itself; a submodule importing the
    # package that imports it closes one (load order would decide what exists)
    edges = graph
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_runs_imports_nothing_of_privacy(graph):
    # the run folder, its backends and DDP launch know no DP engine: a regime's own checks
    # (Regime.check_plan, via robustlr.training.preflight) speak for it
    leaks = [f"{m} -> {t}" for m, targets in graph.items() if m.startswith("robustlr.runs")
             for t in targets if t == "robustlr.privacy" or t.startswith("robustlr.privacy.")]
    assert not leaks, leaks


def test_type_only_imports_are_read(tmp_path):
    # an import under ``if TYPE_CHECKING:`` is an edge of the graph like any other
    module = tmp_path / "typed.py"
    module.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from robustlr.config import ExperimentConfig\n")
    assert _imports("robustlr.typed", module, _modules()) == {"robustlr.config"}


def test_attacks_and_privacy_never_import_robustlr_core(graph):
    leaks = [f"{m} -> {t}" for m, targets in graph.items()
             if m.startswith(("robustlr.attacks", "robustlr.privacy"))
             for t in targets if not t.startswith(("robustlr.attacks", "robustlr.privacy"))]
    assert not leaks, leaks
