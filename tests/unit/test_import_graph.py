"""No import circle among the project's own modules.

Reads the source of the product's packages (with ast: nothing is imported) and fails on any cycle of
imports, wherever they are written: at the top level, in a class body, a `try`, an `if`, and inside
functions too, since a late import is how a circle hides (the one issue 11 removed, live -> selectors
-> moves -> live, hid behind a late import in selectors). Only imports under `if TYPE_CHECKING:` are
left out: they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support.source import PRODUCT_PACKAGES, ROOT


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the packages (a package is its __init__)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports_that_run(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from _imports_that_run(ast.Module(body=child.orelse, type_ignores=[]))
        else:
            yield from _imports_that_run(child)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _known(name: str, known: dict[str, Path]) -> str | None:
    """The module `name` loads: itself, or the longest enclosing one of ours (a name imported from it)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts.pop()
    return None


def imports_of(name: str, known: dict[str, Path]) -> set[str]:
    """The project's modules that loading `name` loads directly."""
    path = known[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str | None] = set()
    for node in _imports_that_run(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(_known(alias.name, known) for alias in node.names)
            continue
        base = package[:len(package) - node.level + 1] if node.level else []
        base = [*base, *(node.module.split(".") if node.module else [])]
        for alias in node.names:
            targets.add(_known(".".join([*base, alias.name]), known))
    return {target for target in targets if target is not None}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle, one per strongly connected component (Tarjan), as a path back to its start."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(_path(graph, set(component), min(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path(graph: dict[str, set[str]], component: set[str], start: str) -> list[str]:
    """One circle through `start` inside the component (breadth first: the shortest)."""
    came_from: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & component):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if target not in came_from:
                came_from[target] = node
                queue.append(target)
    raise AssertionError(f"{start} is in no circle")


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    known = modules(root, packages)
    return {name: imports_of(name, known) for name in known}


def test_the_projects_modules_import_each_other_without_a_circle():
    graph = import_graph(ROOT, PRODUCT_PACKAGES)
    assert {"domains.live", "domains.selectors", "domains.migration_jobs", "lab.hosts"} <= set(graph)
    assert "domains.rows" in graph["domains.live"], "the walk follows relative imports"
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(" -> ".join(circle) for circle in found)


def test_the_walk_finds_circles_late_imports_included_and_leaves_out_what_never_runs(tmp_path: Path):
    tree = {
        "app/__init__.py": "",
        "app/a.py": "from . import b\n",
        "app/b.py": "from .c import thing\n",
        "app/c.py": "import app.a\nthing = 1\n",
        "app/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import e\n",
        "app/e.py": "from . import d\n\ndef late():\n    from . import f\n",
        "app/f.py": "from .e import late\n",
    }
    for name, source in tree.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(source)
    assert cycles(import_graph(tmp_path, ("app",))) == [["app.a", "app.b", "app.c", "app.a"],
                                                        ["app.e", "app.f", "app.e"]]


def test_only_domains_virt_imports_libvirt():
    """One adapter for the hypervisor: everything else gets dataclasses and the project's own errors."""
    importers = sorted(
        name for name, path in modules(ROOT, PRODUCT_PACKAGES).items()
        if not name.startswith("domains.virt")
        and any(isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "libvirt" for alias in node.names)
                or isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "libvirt"
                for node in ast.walk(ast.parse(path.read_text(), str(path))))
    )
    assert not importers, f"libvirt imported outside domains/virt/: {importers}"
