"""The package's import graph: no cycles (lazy imports included), and ``datamodules`` stands alone."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("lightning_gen", "datamodules", "gen_common")


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for root in PACKAGES:
        for f in (REPO / root).rglob("*.py"):
            name = ".".join(f.relative_to(REPO).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = f
    return mods


def _targets(mods: dict[str, Path], current: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        pkg = current.split(".") if mods[current].name == "__init__.py" else current.split(".")[:-1]
        base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (function-level imports too)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(mods, mod, node):
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != mod and not mod.startswith(target + "."):
                    graph[mod].add(target)
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph[node])
    return False


def test_no_two_modules_import_each_other() -> None:
    graph = import_graph()
    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if _reaches(graph, b, a)})
    assert cycles == []


def test_datamodules_and_gen_common_import_nothing_of_lightning_gen() -> None:
    graph = import_graph()
    leaks = {
        m: sorted(t for t in targets if t.startswith("lightning_gen"))
        for m, targets in graph.items()
        if not m.startswith("lightning_gen")
    }
    assert {m: t for m, t in leaks.items() if t} == {}
    assert not any(t.startswith("datamodules") for m, ts in graph.items() if m.startswith("gen_common") for t in ts)


def test_lightning_gen_has_at_most_four_loose_modules() -> None:
    loose = sorted(p.name for p in (REPO / "lightning_gen").glob("*.py"))
    assert len(loose) <= 4, loose
