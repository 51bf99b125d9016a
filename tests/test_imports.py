"""No import cycles anywhere in src/threadline.

The graph has an edge from a module to every threadline module it imports, at module level or
inside a function (a lazy import still ties the two modules together for a reader), resolved
the way Python does: `from pkg import name` points at the submodule `pkg.name` when there is one,
else at `pkg`. Imports under `if TYPE_CHECKING:` are left out: they exist for annotations only
and never run. A cycle fails the test, named module by module.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

KNOWN_CYCLES: list[set[str]] = []  # cycles known and not fixed yet: none


def _module_names() -> dict[str, Path]:
    out = {}
    for path in (SRC / "threadline").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The threadline module `name` is, or the nearest package holding it."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _module_names()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    package = module if is_package else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                owner = _owner(target, modules) if target.startswith("threadline") else None
                if owner is not None and owner != module:
                    graph[module].add(owner)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def _path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component's first module, as module -> module -> ... -> it again."""
    members = set(component)
    start = component[0]
    trail = [start]
    seen = {start}
    while True:
        here = trail[-1]
        nexts = sorted(graph[here] & members)
        if start in nexts and len(trail) > 1:
            return [*trail, start]
        step = next((n for n in nexts if n not in seen), None)
        if step is None:  # a dead end inside the component: back up
            trail.pop()
            if not trail:
                return [*component, component[0]]
            continue
        seen.add(step)
        trail.append(step)


def test_the_graph_sees_imports_inside_functions_and_skips_type_checking_ones():
    graph = import_graph()
    # serving.py imports the web app inside Server.__init__
    assert "threadline.server.web.app" in graph["threadline.server.serving"]
    # server/__init__ names its lazy exports under TYPE_CHECKING only
    assert "threadline.server.serving" not in graph["threadline.server"]


def test_no_import_cycles_in_src():
    graph = import_graph()
    found = [c for c in cycles(graph) if not any(set(c) <= known for known in KNOWN_CYCLES)]
    message = "\n".join(" -> ".join(_path(graph, c)) for c in found)
    assert not found, f"import cycles in src/threadline:\n{message}"


def test_the_server_never_imports_boundaries_or_integrations():
    graph = import_graph()
    bad = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if m.startswith("threadline.server")
        for t in targets
        if t.startswith(("threadline.boundaries", "threadline.integrations"))
    )
    assert not bad, "\n".join(bad)


def test_the_server_imports_no_private_name_of_another_module():
    modules = _module_names()
    bad = []
    for module, path in modules.items():
        if not module.startswith("threadline.server"):
            continue
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("threadline"):
                names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("threadline")]
            else:
                continue
            for name in names:
                if any(part.startswith("_") for part in name.split(".")):
                    bad.append(f"{module}: {name}")
    assert not bad, "\n".join(bad)
