"""Data flows one way: no import cycle within or between `refinery_lib` and `web`, and only
the CLI entry module imports `web` (issue #15).

Every module of both packages is parsed with `ast` (not imported), and every import counts,
a lazy one inside a function too: such an import hides a cycle from Python, not from this
test. `from pkg import name` counts as importing `pkg.name` when that is a module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("refinery_lib", "web")
# the modules of refinery_lib that may import web: the CLI's panel commands (`refinery serve`
# builds the app and hands it the run function); nothing of the domain knows the panel
WEB_ENTRY_POINTS = frozenset({"refinery_lib.panel_cli"})

Graph = dict[str, dict[str, int]]  # module -> {imported module: first line}


def modules_of(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted name -> file, for every .py file of the packages (subpackages included)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if any(not p.isidentifier() for p in parts):
                continue  # not importable under a dotted name (a data folder's script)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(name: str, known: set[str]) -> str | None:
    """The module `name` is, or the closest package above it that is known (for `import
    a.b.attr`-like spellings); None outside the analysed packages."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known: set[str]) -> dict[str, int]:
    """The analysed modules `module` imports, anywhere in its file, with the first line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}

    def add(name: str | None, line: int) -> None:
        target = _resolve(name, known) if name else None
        if target is not None and target != module:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                drop = node.level - 1
                if drop > len(base) - 1:
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the "
                                         "top-level package")
                base = base[: len(base) - drop] if drop else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                # `from pkg import sub`: the submodule; `from mod import name`: the module
                add(sub if sub in known else source, node.lineno)
    return found


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> Graph:
    mods = modules_of(root, packages)
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's components of more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def cycle_in(graph: Graph, component: list[str]) -> list[str]:
    """One cycle through the component's first module, shortest first (BFS), closed."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")


def describe(graph: Graph, cycle: list[str]) -> str:
    return " -> ".join(
        f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)
    ) + f" -> {cycle[-1]}"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph()


def test_no_import_cycle(graph: Graph) -> None:
    cycles = [describe(graph, cycle_in(graph, c)) for c in strongly_connected(graph)]
    assert not cycles, "import cycles (each module imports the next):\n" + "\n".join(cycles)


def test_only_the_cli_imports_web(graph: Graph) -> None:
    offenders = sorted(
        f"{m} imports {t} (line {line})"
        for m, targets in graph.items() if m.startswith("refinery_lib")
        for t, line in targets.items() if t == "web" or t.startswith("web.")
        if m not in WEB_ENTRY_POINTS
    )
    assert not offenders, "refinery_lib must not know the panel:\n" + "\n".join(offenders)
    # the entry point exists and does import the panel: the allowance is not stale
    for entry in WEB_ENTRY_POINTS:
        assert any(t.startswith("web") for t in graph[entry]), entry


def test_web_may_import_refinery_lib(graph: Graph) -> None:
    assert any(t.startswith("refinery_lib") for m in graph if m.startswith("web.")
               for t in graph[m])


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The analysis itself, on a small package: a lazy relative import closing a cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\nimport os\n")
    (pkg / "b.py").write_text("from .sub.c import thing\n")
    (pkg / "sub" / "c.py").write_text("def f():\n    from ..a import x\n    return x\nthing = 1\n")
    (pkg / "sub" / "d.py").write_text("from pkg.sub import c\nfrom .. import a as alias\n")
    g = import_graph(tmp_path, ["pkg"])
    assert g["pkg.a"] == {"pkg.b": 1}
    assert g["pkg.b"] == {"pkg.sub.c": 1}
    assert g["pkg.sub.c"] == {"pkg.a": 2}
    assert g["pkg.sub.d"] == {"pkg.sub.c": 1, "pkg.a": 2}
    [component] = strongly_connected(g)
    assert component == ["pkg.a", "pkg.b", "pkg.sub.c"]
    assert cycle_in(g, component) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
    assert "pkg.sub.c (line 2) -> pkg.a" in describe(g, cycle_in(g, component))
