"""The package's shape: layers without loops, and imports at the top of modules.

The layers (README, *Architecture*): data -> model -> train -> codehash -> job -> store -> trainer -> runs -> ledger ->
rounds -> experiments ->
the chapters' modules and the command line. A module imports only modules below it; an import
inside a function is allowed only where it keeps a heavy import (TensorFlow, scikit-learn, the
notebook machinery) off a light path, and says so in a comment on that line.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, need_real_data

PACKAGE = REPO / "helpers"


def imports(path: Path) -> dict[str, list[tuple[int, bool, str]]]:
    """For each helpers module a file imports: (line, inside a function, the line's text)."""
    tree = ast.parse(path.read_text())
    lines = path.read_text().splitlines()
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    found: dict[str, list[tuple[int, bool, str]]] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "helpers":
                names = [alias.name for alias in node.names]
            elif node.module.startswith("helpers."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("helpers.")]
        for name in names:
            if (PACKAGE / f"{name}.py").is_file():
                found.setdefault(name, []).append((node.lineno, id(node) in inner, lines[node.lineno - 1]))
    return found


def graph() -> dict[str, set[str]]:
    return {p.stem: set(imports(p)) - {p.stem} for p in PACKAGE.glob("*.py")}


def cycle(edges: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``edges`` as a list of modules, or [] when there is none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_cycle_finder_finds_a_loop() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_helpers_import_graph_has_no_cycle() -> None:
    loop = cycle(graph())
    assert not loop, "helpers import each other in a loop: " + " -> ".join(loop)


def test_the_layers_look_only_down() -> None:
    edges = graph()
    order = ["data", "model", "train", "codehash", "job", "store", "trainer", "runs", "ledger", "rounds", "experiments"]
    for i, module in enumerate(order):
        above = set(order[i + 1:])
        assert not edges.get(module, set()) & above, f"{module} imports {edges[module] & above}, a layer above it"


def test_imports_inside_functions_say_why() -> None:
    unexplained = [f"{path.name}:{line}: {text.strip()}" for path in PACKAGE.glob("*.py")
                   for found in imports(path).values() for line, inner, text in found
                   if inner and "#" not in text]
    assert not unexplained, "imports of helpers inside functions without a reason:\n" + "\n".join(unexplained)


def test_reading_the_ledger_imports_no_tensorflow(tmp_path: Path) -> None:
    """The chapters' modules import without TensorFlow, and once a configuration's network is in the cache
    (it is part of the code hash, helpers.job.serialised_network) its runs are read from the ledger without it."""
    need_real_data()
    env = {**os.environ, "USPS_TRAINING": "forbid", "USPS_BOOK_PROFILE": "full", "USPS_CACHE_DIR": str(tmp_path)}
    env.pop("USPS_LEDGER_DIR", None)
    fill = "from helpers import job, recipe; job.serialised_network(recipe.paper_config())"  # imports TensorFlow
    subprocess.run([sys.executable, "-c", fill], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    script = """
import json, sys
from helpers import best_published, book, evaluate, experiments, findings, ledger, plots, recipe, rounds, runs, standings, testlog
imported = "tensorflow" in sys.modules
result = runs.run(recipe.paper_job())
print(json.dumps([imported, "tensorflow" in sys.modules, result.source]))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == [False, False, "ledger"], \
        "importing the chapters' modules or reading a run from the ledger imported TensorFlow"
