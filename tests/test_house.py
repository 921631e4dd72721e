"""The house's shape: imports point down the layers, no import circle (imports inside functions included), no
module over 600 lines and no function over 100 lines in the library, the flows and the tasks, and no import inside a
function without a reason."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import vlalign

# The layers, lowest first: a module may import from its own layer or a lower one, never a higher one.
LAYERS = ["methods", "datalake", "datasets", "encoders", "engine", "report", "tasks", "flows", "cli"]
TOP_MODULES = {"vlalign._compat": "datalake"}  # environment workarounds: as low as the lake


def _modules() -> dict[str, Path]:
    mods = {"vlalign": Path(vlalign.__file__)}
    # flows/ and tasks/ install as vlalign.flows and vlalign.tasks (a package-dir mapping): walk them too
    for m in [*pkgutil.walk_packages(vlalign.__path__, "vlalign."), *(
            info for pkg in ("vlalign.flows", "vlalign.tasks")
            for info in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + "."))]:
        spec = importlib.util.find_spec(m.name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            mods[m.name] = Path(spec.origin)
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, ast.AST, bool]]:
    """(imported vlalign module, node, inside a function) for every import of a vlalign module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.append((t, node, id(node) in in_function))
    return out


def _layer(mod: str) -> str | None:
    if mod in TOP_MODULES:
        return TOP_MODULES[mod]
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        for target, _, _ in _imports(name, path):
            if not MODULES[target].name == "__init__.py":
                edges.setdefault(name, set()).add(target)
    return edges


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    counter = 0
    for root in sorted(MODULES):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_the_circle_finder_finds_a_circle():
    """The finder itself, on made-up graphs: one with a circle and a chain into it, one with a chain only."""
    saved = dict(MODULES)
    try:
        MODULES.clear()
        MODULES.update({"a": Path("a"), "b": Path("b"), "c": Path("c"), "d": Path("d")})
        assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
        assert _circles({"a": {"b"}, "b": {"c"}}) == []
    finally:
        MODULES.clear()
        MODULES.update(saved)


def test_no_import_circle_in_the_package():
    assert _circles(_graph()) == []


def test_imports_point_down_the_layers():
    upward = []
    for name, path in MODULES.items():
        mine = _layer(name)
        if mine is None:
            continue
        for target, node, _ in _imports(name, path):
            theirs = _layer(target)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                upward.append(f"{name}:{node.lineno} imports {target} ({mine} -> {theirs})")
    assert upward == []


def test_imports_inside_functions_say_why():
    """An import inside a function is for a heavy optional dependency, and a comment on its line says why."""
    unexplained = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and node is not fn:
                    # the reason: on the import's own lines, or a comment line just above its block of imports
                    first = node.lineno - 1
                    while first > 0 and lines[first - 1].strip().startswith(("import ", "from ")):
                        first -= 1
                    block = lines[first:node.end_lineno]
                    above = lines[first - 1].strip() if first > 0 else ""
                    if not any("#" in line for line in block) and not above.startswith("#"):
                        unexplained.append(f"{name}:{node.lineno}")
    assert sorted(set(unexplained)) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_stay_small(name):
    src = MODULES[name].read_text(encoding="utf-8")
    lines = len(src.splitlines())
    assert lines <= 600, f"{name} has {lines} lines"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(src))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 100]
    assert long == []
