"""The package's modules import one another without cycles: every import statement counts, also those inside
functions (a deferred import only hides a cycle from the interpreter, not from the reader)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spaceport_dagster"


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (a package import counts as its __init__)."""
    files = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import module` imports pkg.module; `from module import name` imports module
                targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (package / "b.py").write_text("from . import a\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 100 and "spaceport_dagster.runner" in graph["spaceport_dagster.cli"]
    assert cycles(graph) == []


def private_dagster_imports(package: Path = PACKAGE) -> dict[str, list[str]]:
    """module -> the private Dagster modules (`dagster._…`, `dagster_aws._…`) it imports."""
    found: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        modules = [node.module or "" for node in ast.walk(ast.parse(path.read_text(), str(path)))
                   if isinstance(node, ast.ImportFrom)]
        modules += [alias.name for node in ast.walk(ast.parse(path.read_text(), str(path)))
                    if isinstance(node, ast.Import) for alias in node.names]
        private = sorted(m for m in modules if m.split(".")[0].startswith("dagster") and "._" in m)
        if private:
            found[_module_name(path, package)] = private
    return found


def test_private_dagster_imports_live_in_dagster_private_only() -> None:
    """dagster_private.py says why each one is needed; a new one elsewhere would escape that list."""
    found = private_dagster_imports()
    assert set(found) == {"spaceport_dagster.dagster_private"}, found
    assert "dagster._core.errors" in found["spaceport_dagster.dagster_private"]
