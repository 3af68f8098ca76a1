"""klm's modules import one another in layers: no cycle, counting imports inside functions.

A function-level import hides a cycle from Python (it runs after both modules
are loaded) but not from a reader: the two modules still depend on each
other. This test parses every module of `klm/` (no import is executed), draws
an edge for every `import klm...` / `from klm... import` / relative import,
wherever it sits in the file, and fails on any strongly connected component
larger than one module, naming its modules and the lines that close it.

Importing `klm.a.b` first runs `klm/a/__init__.py`, so an import of `klm.a.b`
from outside `klm.a` is an edge to the package `klm.a` too (a package whose
`__init__` re-exports a module that imports back is a cycle Python reports as
"partially initialized module").
"""

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke

PACKAGE = Path(__file__).resolve().parents[1] / "klm"


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    """`{module name: path}` of klm's modules (tests beside them excluded)."""
    return {
        _module_name(path): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.name.endswith("_test.py") and path.name != "conftest.py"
    }


def _targets(module, node, is_package, modules):
    """The klm modules an import statement names (the longest module prefix of each name)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            package = ".".join(base + ([node.module] if node.module else []))
        else:
            package = node.module or ""
        # `from klm.a import b`: b may be a submodule or a name defined in klm.a.
        names = [f"{package}.{alias.name}" for alias in node.names]
    targets = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module:
            targets.add(name)
    return targets


def _packages_above(name):
    """`klm.a.b.c` -> `{"klm", "klm.a", "klm.a.b"}`."""
    parts = name.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts))}


def import_graph():
    """`{module: {imported module: [(line, "function" | "module"), ...]}}` over klm/."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    where = "function" if in_function else "module"
                    for target in _targets(module, child, path.name == "__init__.py", modules):
                        edges.setdefault(target, []).append((child.lineno, where))
                        # Its packages' __init__ run first (those of the importer's own packages already have).
                        for package in _packages_above(target) - _packages_above(module) - {module}:
                            if package in modules:
                                edges.setdefault(package, []).append((child.lineno, f"{where}, via {target}"))
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

        visit(tree, False)
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_klm_has_no_import_cycle():
    graph = import_graph()
    found = cycles(graph)
    details = []
    for component in found:
        members = set(component)
        for module in component:
            for target, places in sorted(graph[module].items()):
                if target in members:
                    lines = ", ".join(f"line {line} ({where} level)" for line, where in places)
                    details.append(f"  {module} -> {target}: {lines}")
    assert not found, "Import cycles in klm (move the shared piece down a layer):\n" + "\n".join(details)


def test_the_check_sees_a_cycle_closed_inside_a_function():
    """The detector itself: a function-level import that closes a cycle is found."""
    graph = {"klm.a": {"klm.b": [(3, "module")]}, "klm.b": {"klm.a": [(9, "function")]}, "klm.c": {}}
    assert cycles(graph) == [["klm.a", "klm.b"]]
    assert cycles({"klm.a": {"klm.b": []}, "klm.b": {}}) == []


def test_a_package_init_that_imports_back_is_a_cycle(tmp_path, monkeypatch):
    """`klm.gen` imports `klm.pkg.data`; `klm/pkg/__init__` imports `klm.pkg.recipe`, which imports `klm.gen`."""
    package = tmp_path / "klm"
    (package / "pkg").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "gen.py").write_text("from klm.pkg.data import rows\n")
    (package / "pkg" / "__init__.py").write_text("from klm.pkg.recipe import train\n")
    (package / "pkg" / "data.py").write_text("rows = []\n")
    (package / "pkg" / "recipe.py").write_text("from klm.gen import rows\n\n\ndef train():\n    pass\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert cycles(import_graph()) == [["klm.gen", "klm.pkg", "klm.pkg.recipe"]]


def test_relative_and_from_imports_resolve_to_modules():
    modules = {"klm", "klm.data", "klm.data.lm", "klm.runs"}
    relative = ast.parse("from ..runs import TASKS").body[0]
    assert _targets("klm.data.lm", relative, False, modules) == {"klm.runs"}
    names = ast.parse("from klm.data import lm, load_tokenizer").body[0]
    assert _targets("klm.runs", names, False, modules) == {"klm.data.lm", "klm.data"}
