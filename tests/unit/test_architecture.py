"""The package's layering (DESIGN.md), read from its source: no import cycle (not even one only a
type checker follows), a pure domain, SQL only in dal/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "layers" / "flywheel"


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """module → the flywheel modules it imports (anywhere in the file, TYPE_CHECKING blocks too)."""
    modules = {_module(p): p for p in (PACKAGE / "flywheel").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flywheel"):
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    deps.add(child if child in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("flywheel"))
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert "flywheel.services.registry" in graph["flywheel.services.training"]
    assert "flywheel.services.registry" in graph["flywheel.services.experiments"]
    assert cycles(graph) == []


def test_the_domain_is_pure_and_sql_lives_in_dal() -> None:
    io = ("flywheel.dal", "flywheel.clients", "flywheel.services", "psycopg", "boto3", "openai", "httpx")
    for path in (PACKAGE / "flywheel" / "domain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else ([a.name for a in node.names] if isinstance(node, ast.Import) else [])
            )
            assert not any(n.startswith(io) for n in names), (path.name, names)
    sql = re.compile(r"\b(SELECT .* FROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b")
    outside = [
        p.relative_to(PACKAGE).as_posix()
        for p in (PACKAGE / "flywheel").rglob("*.py")
        if p.parent.name != "dal" and sql.search(p.read_text())
    ]
    assert outside == ["flywheel/local/embedded.py"]  # the local runtime creating its database
