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


# Packages whose import is expensive or optional: a framework (imported only
# after `--backend` is applied, so that `klm --help` stays fast and the
# backend choice takes effect) or an optional extra (which must not be needed
# to import klm). A function-level import of a klm module is there to defer one
# of these; any other needs its reason in a comment on the line or the one above.
DEFERRED_PACKAGES = {
    "keras",
    "keras_hub",
    "tensorflow",
    "tensorflow_text",
    "jax",
    "torch",
    "lm_eval",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "tf2onnx",
    "jax2onnx",
    "tokenizers",
    "ai_edge_litert",
    "gguf",
    "llama_cpp",
    "safetensors",
    "fastapi",
    "uvicorn",
    "pydantic",
    "transformers",
}


def _module_level_imports(path):
    """`(third-party top-level names, klm import statements)` run when the module is imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    external, statements = set(), []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                external.update(alias.name.split(".")[0] for alias in child.names)
                statements.append(child)
            elif isinstance(child, ast.ImportFrom):
                if not child.level:
                    external.add((child.module or "").split(".")[0])
                statements.append(child)
            else:
                visit(child)  # module-level `try:` / `if:` bodies and class bodies run at import too

    visit(tree)
    return external - {"klm"}, statements


def deferred_packages_pulled():
    """`{module: packages of DEFERRED_PACKAGES its import pulls in}`, following klm's module-level imports."""
    modules = _modules()
    direct, edges = {}, {}
    for module, path in modules.items():
        external, statements = _module_level_imports(path)
        direct[module] = external & DEFERRED_PACKAGES
        targets = set()
        for statement in statements:
            for target in _targets(module, statement, path.name == "__init__.py", modules):
                targets |= {target} | {p for p in _packages_above(target) if p in modules}
        edges[module] = targets - {module}
    pulled = {}
    for module in modules:
        seen, todo, found = {module}, [module], set()
        while todo:
            current = todo.pop()
            found |= direct[current]
            for target in edges[current] - seen:
                seen.add(target)
                todo.append(target)
        pulled[module] = found
    return pulled


def _comment_above(lines, lineno):
    """Whether a comment line sits above line `lineno` (1-based), over the imports right above it."""
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith(("from ", "import ")):
        index -= 1
    return index >= 0 and lines[index].strip().startswith("#")


def test_function_level_imports_defer_a_framework_or_say_why():
    modules = _modules()
    pulled = deferred_packages_pulled()
    unexplained = []
    for module, path in modules.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines), filename=str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for statement in ast.walk(function):
                if not isinstance(statement, (ast.Import, ast.ImportFrom)):
                    continue
                targets = _targets(module, statement, path.name == "__init__.py", modules)
                if not targets:
                    continue  # a third-party import: deferring those is what function-level imports are for
                # Importing klm.a.b also runs the `__init__` of the packages above it that are not loaded yet.
                run = set(targets).union(*(_packages_above(t) - _packages_above(module) for t in targets))
                reaches = set().union(*(pulled[m] for m in run if m in pulled and m != module))
                commented = "#" in lines[statement.lineno - 1] or _comment_above(lines, statement.lineno)
                if not reaches and not commented:
                    unexplained.append(f"  {module} line {statement.lineno}: {lines[statement.lineno - 1].strip()}")
    assert not unexplained, (
        "Function-level imports of klm modules that pull in no framework or optional extra: move them to the "
        "top of the module, or say why in a comment on the line above:\n" + "\n".join(sorted(set(unexplained)))
    )


def test_deferred_packages_follow_module_level_imports(tmp_path, monkeypatch):
    package = tmp_path / "klm"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "light.py").write_text("import json\n")
    (package / "heavy.py").write_text("try:\n    import keras\nexcept ImportError:\n    keras = None\n")
    (package / "middle.py").write_text("from klm import heavy\n\n\ndef f():\n    import torch\n")
    (package / "user.py").write_text("def f():\n    from klm import middle\n\n\ndef g():\n    from klm import light\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    pulled = deferred_packages_pulled()
    assert pulled["klm.middle"] == {"keras"} and pulled["klm.light"] == set()
    with pytest.raises(AssertionError, match=r"klm.user line 6: from klm import light"):
        test_function_level_imports_defer_a_framework_or_say_why()
