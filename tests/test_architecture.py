"""The import graph of the project's packages, read from their source (nothing is imported).

Two promises: no module imports itself back through others (no cycle, whatever the
import's place: top level, inside a function, under ``TYPE_CHECKING``), and the
packages are layers that point one way (``ALLOWED``): ``store`` at the bottom, the
``telemetry`` command line at the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ALLOWED: dict[str, frozenset[str]] = {
    # package: the other packages its modules may import (its own always).
    "store": frozenset(),  # the on-disk format: imports none of the others
    "collector": frozenset({"store"}),  # writes through store; never reads or reports
    "analysis": frozenset({"store"}),  # reads through store; torch-free
    "reports": frozenset({"store", "analysis"}),  # draws what analysis reads
    # features on top of the collector: they record through its public API
    "integrations": frozenset({"store", "collector"}),  # TensorBoard, Lightning
    "exports": frozenset({"store", "collector"}),  # export-format benchmarks
    # the CLI: anything
    "telemetry": frozenset(
        {"store", "collector", "integrations", "exports", "analysis", "reports"}
    ),
}
"""The allowed dependencies between packages, as data. A new package fails
``test_every_package_has_a_row`` until it gets its row."""

CANDIDATES = ("store", "collector", "analysis", "reports", "telemetry", "integrations", "exports")
PACKAGES = tuple(p for p in CANDIDATES if (ROOT / p / "__init__.py").is_file())

Graph = dict[str, dict[str, str]]
"""module -> {imported module: where the import is ("path:line")}."""


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of ``packages`` by dotted name (a package by its own name)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported(tree: ast.AST, package: str, known: Mapping[str, Path]) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of every import in ``tree``, at any depth, relative ones resolved.

    ``from a import b`` is an import of ``a.b`` when that is a module, else of ``a``.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in known else base), node.lineno


def import_graph(root: Path, packages: tuple[str, ...]) -> Graph:
    """The project's modules and what each imports among them (others are left out)."""
    known = modules(root, packages)
    graph: Graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = graph.setdefault(name, {})
        for target, line in _imported(tree, package, known):
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.setdefault(target, f"{path.relative_to(root)}:{line}")
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle of ``graph`` as a path (its first module again at the end), or None."""
    on_path, finished = set(), set()
    for start in sorted(graph):
        if start in finished:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        on_path.add(start)
        while stack:  # depth first, without recursion
            target = next(stack[-1], None)
            if target is None:
                stack.pop()
                on_path.discard(path[-1])
                finished.add(path.pop())
            elif target in on_path:
                return [*path[path.index(target) :], target]
            elif target not in finished:
                path.append(target)
                on_path.add(target)
                stack.append(iter(sorted(graph[target])))
    return None


def layer_violations(graph: Graph, allowed: Mapping[str, frozenset[str]]) -> list[str]:
    """``importer -> imported (where)`` for each import that crosses the table's layers."""
    out = []
    for name, edges in sorted(graph.items()):
        package = name.split(".")[0]
        for target, where in sorted(edges.items()):
            other = target.split(".")[0]
            if other != package and other not in allowed.get(package, frozenset()):
                out.append(f"{name} -> {target} ({where})")
    return out


def _describe(cycle: list[str], graph: Graph) -> str:
    steps = [f"{a} -> {b} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)]
    return "import cycle: " + " -> ".join(cycle) + "\n  " + "\n  ".join(steps)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT, PACKAGES)


def test_the_graph_is_read(graph: Graph) -> None:
    """The parser finds the imports it guards (a graph with no edges would pass anything)."""
    assert "store.errors" in graph["analysis.store"]
    assert "telemetry.commands.analyze" in graph["telemetry.cli"]
    assert "analysis" in graph["telemetry.common"]  # function-local imports count too


def test_every_package_has_a_row() -> None:
    assert set(PACKAGES) <= set(ALLOWED), (
        f"no row in ALLOWED for {sorted(set(PACKAGES) - set(ALLOWED))}: say what it may import"
    )


def test_no_import_cycle(graph: Graph) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, _describe(cycle, graph)


DEPRECATED_ALIASES = {
    # old import paths of public names, kept for one release (issue 17): each re-exports
    # the module it moved to and warns; nothing in the project imports them
    "collector.tensorboard": "integrations.tensorboard.writer",
    "collector.lightning": "integrations.lightning",
    "collector.export": "exports.benchmark",
}


def test_the_layers_point_one_way(graph: Graph) -> None:
    bad = [
        v
        for v in layer_violations(graph, ALLOWED)
        if v.split(" -> ")[0] not in DEPRECATED_ALIASES
        or not v.split(" -> ")[1].startswith(DEPRECATED_ALIASES[v.split(" -> ")[0]] + " ")
    ]
    assert not bad, "imports against the layering (tests/test_architecture.py ALLOWED):\n  " + (
        "\n  ".join(bad)
    )


def test_deprecated_aliases_are_only_aliases(graph: Graph) -> None:
    """Nothing imports an old path, and an old path imports nothing but its new home."""
    for old, new in DEPRECATED_ALIASES.items():
        assert old in graph, f"{old} is gone: drop it from DEPRECATED_ALIASES"
        importers = sorted(m for m, targets in graph.items() if old in targets)
        assert importers == [], f"{importers} import the deprecated {old}"
        text = (ROOT / (old.replace(".", "/") + ".py")).read_text()
        assert f"from {new} import *" in text and "DeprecationWarning" in text


def test_a_planted_cycle_and_a_planted_upward_import_are_caught(tmp_path: Path) -> None:
    """The checks themselves: a cycle through a function-local import, and store -> telemetry."""
    for package, files in {
        "store": {"__init__.py": "", "a.py": "from store import b\n"},
        "telemetry": {"__init__.py": "", "c.py": ""},
    }.items():
        (tmp_path / package).mkdir()
        for name, text in files.items():
            (tmp_path / package / name).write_text(text)
    (tmp_path / "store" / "b.py").write_text(
        "def f():\n    from .a import x\n    import telemetry.c\n"
    )
    planted = import_graph(tmp_path, ("store", "telemetry"))
    cycle = find_cycle(planted)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"store.a", "store.b"}
    assert "store/b.py:2" in _describe(cycle, planted)
    assert layer_violations(planted, ALLOWED) == ["store.b -> telemetry.c (store/b.py:3)"]
