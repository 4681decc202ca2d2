"""Imports run one way: no module of ``pixels`` imports, directly or in a circle, one above it.

The import graph is read from the source with :mod:`ast` (nothing is imported), so a circle is
found even where Python would happen to resolve it at run time.

What counts as an edge ``M -> N`` ("running M may execute N"):

* every ``import`` / ``from ... import`` in M, at module level **or inside a function or
  method** (a function-level import is a deferred dependency, not an absent one: it runs the
  first time the function does and then needs N's whole import chain);
* ``from pixels.a import b`` depends on ``pixels.a.b`` when ``b`` is a submodule, else on
  ``pixels.a``;
* importing ``pixels.a.b`` also executes ``pixels/a/__init__.py``: an import adds an edge to each
  package above its target that is not already a package of M (M's own packages are being
  initialised before M runs, so they are not new work);
* ``importlib.import_module("pixels.x")`` with a literal name.

What does not count, and why:

* imports under ``if TYPE_CHECKING:`` never execute; mypy reads them, and annotations are
  strings (``from __future__ import annotations``), so they cannot form a run-time circle;
* a package's **lazy re-exports** (a module-level ``__getattr__`` that imports on attribute
  access, or a module-level ``{name: "pixels.module"}`` map that it resolves): importing the
  package or one of its submodules does not run ``__getattr__``, so these are not edges of the
  package itself. They are edges of whoever *uses* them: ``from pixels.dicom import
  DicomMetaExtractor`` in M is recorded as ``M -> pixels.transformers``. A module inside
  ``pixels.dicom`` that imported a table-level name through its own package would therefore
  still show up as a circle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pixels

SRC = Path(pixels.__file__).parent
ROOT = "pixels"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass
class _Module:
    name: str
    is_package: bool
    tree: ast.Module
    lazy: dict[str, str] = field(default_factory=dict)  # re-exported name -> module


def _load() -> dict[str, _Module]:
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        name = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = _Module(name, path.name == "__init__.py", tree)
    for mod in modules.values():
        mod.lazy = _lazy_exports(mod, modules)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_from(mod: _Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.name.split(".")
    if not mod.is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _runtime_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """Nodes that may run: not under ``if TYPE_CHECKING:``, not the module's ``__getattr__``."""
    stack: list[ast.AST] = [
        n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "__getattr__")
    ]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _lazy_exports(mod: _Module, modules: dict[str, _Module]) -> dict[str, str]:
    """Names a module-level ``__getattr__`` imports on access, mapped to their module."""
    getattr_fn = next(
        (n for n in mod.tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"),
        None,
    )
    if getattr_fn is None:
        return {}
    lazy: dict[str, str] = {}
    for node in ast.walk(getattr_fn):
        if isinstance(node, ast.ImportFrom):
            target = _resolve_from(mod, node)
            for alias in node.names:
                lazy[alias.asname or alias.name] = target
    # a module-level {"name": "pixels.module"} map that __getattr__ resolves
    for stmt in mod.tree.body:
        value = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Dict):
            for key, val in zip(value.keys, value.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and isinstance(key.value, str)
                    and isinstance(val, ast.Constant)
                    and isinstance(val.value, str)
                    and val.value in modules
                ):
                    lazy[key.value] = val.value
    return lazy


def _with_packages(importer: str, target: str, modules: dict[str, _Module]) -> set[str]:
    """``target`` and every package above it that ``importer`` is not already inside."""
    out = set()
    parts = target.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name not in modules:
            continue
        if importer == name or importer.startswith(name + "."):
            continue
        out.add(name)
    return out


def _edges(mod: _Module, modules: dict[str, _Module]) -> set[str]:
    deps: set[str] = set()
    imported_as: dict[str, str] = {}  # "pixels.dicom" -> module, for attribute access

    def add(target: str) -> None:
        deps.update(_with_packages(mod.name, target, modules))

    for node in _runtime_nodes(mod.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT:
                    add(alias.name)
                    imported_as[alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(mod, node)
            if base.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    add(sub)
                elif base in modules and alias.name in modules[base].lazy:
                    add(base)
                    add(modules[base].lazy[alias.name])
                else:
                    add(base)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.split(".")[0] == ROOT
        ):
            add(node.args[0].value)
    # `import pixels.dicom` ... `pixels.dicom.DicomMetaExtractor`: the lazy target too
    for node in _runtime_nodes(mod.tree):
        if isinstance(node, ast.Attribute):
            owner = ast.unparse(node.value)
            if owner in imported_as and owner in modules:
                lazy = modules[owner].lazy
                if node.attr in lazy:
                    add(lazy[node.attr])
    deps.discard(mod.name)
    return deps


def import_graph() -> dict[str, set[str]]:
    """``{module: modules it may execute}`` for every module of ``pixels``."""
    modules = _load()
    return {name: _edges(mod, modules) for name, mod in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
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
                    work.append((child, iter(sorted(graph.get(child, ())))))
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


def _describe(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    lines = [f"circle of {len(component)} modules:"]
    for name in component:
        inside = sorted(graph[name] & members)
        lines.append(f"  {name} -> {', '.join(inside)}")
    return "\n".join(lines)


def layers(graph: dict[str, set[str]]) -> list[list[str]]:
    """Modules grouped by height: layer 0 imports no ``pixels`` module, layer k only lower ones."""
    height: dict[str, int] = {}

    def visit(name: str, seen: tuple[str, ...] = ()) -> int:
        if name not in height:
            if name in seen:  # a circle; reported by the test
                return 0
            below = [visit(dep, (*seen, name)) for dep in graph[name]]
            height[name] = 1 + max(below, default=-1)
        return height[name]

    for name in graph:
        visit(name)
    out: list[list[str]] = [[] for _ in range(max(height.values()) + 1)]
    for name, h in height.items():
        out[h].append(name)
    return [sorted(layer) for layer in out]


def test_the_graph_sees_imports_inside_functions_and_lazy_re_exports() -> None:
    graph = import_graph()
    # a function-level import (the CLI imports the table inside its commands)
    assert "pixels.table" in graph["pixels.cli.maintenance"]
    # the root package's lazy `Catalog` is not an edge of `pixels` itself ...
    assert graph["pixels"] == set()
    # ... and a lazy re-export used through its package resolves to where it lives
    modules = _load()
    assert modules["pixels.dicom"].lazy["DicomMetaExtractor"] == "pixels.transformers"
    assert modules[ROOT].lazy["Catalog"] == "pixels.catalog"


def test_no_import_circles() -> None:
    graph = import_graph()
    found = circles(graph)
    assert not found, "imports must run one way; found:\n" + "\n".join(
        _describe(c, graph) for c in found
    )


def test_nothing_inside_pixels_imports_an_upward_re_export() -> None:
    """``pixels.dicom`` re-exports the table-level dbx.pixels names for users only.

    A module that took ``DicomMetaExtractor`` from ``pixels.dicom`` would make the package
    depend on whether the re-export resolves; code inside ``pixels`` imports a name from the
    module that defines it.
    """
    modules = _load()
    offenders = []
    for mod in modules.values():
        for node in _runtime_nodes(mod.tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = _resolve_from(mod, node)
            lazy = modules[base].lazy if base in modules else {}
            for alias in node.names:
                target = lazy.get(alias.name)
                if target is not None and not target.startswith(base + "."):
                    offenders.append(f"{mod.name}: from {base} import {alias.name} ({target})")
    assert modules["pixels.dicom"].lazy, "pixels.dicom re-exports the dbx.pixels names"
    assert not offenders, "\n".join(offenders)


def test_a_web_module_run_as_a_script_is_imported_once() -> None:
    # `python -m pixels.web.ohif install` once warned that the package had already imported it
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "pixels.web.ohif", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning" not in done.stderr
    assert done.stdout.startswith("usage: python -m pixels.web.ohif")


#: The layers of /work/shared/DESIGN.md, lowest first: a module imports its own layer and below.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "pixels.durable",
        "pixels.errors",
        "pixels.locks",
        "pixels.schema",
        "pixels.schema_names",
        "pixels.storage",
        "pixels.version",
    ),  # the ground
    ("pixels.sources",),  # listing and opening
    ("pixels.dicom", "pixels.deid"),  # pure per-file DICOM work (de-identification included)
    ("pixels.rows", "pixels.row_pixels"),  # engine-neutral row operations
    (
        "pixels.table",
        "pixels.deltalog",
        "pixels.scan",
        "pixels.sql",
        "pixels.cluster",
    ),  # the Delta table and reading it
    ("pixels.engines",),  # local process pool, Spark
    ("pixels.transformers", "pixels.patching", "pixels.thumbnails"),  # dbx.pixels names
    ("pixels.catalog",),  # the public entry point
    ("pixels.ml", "pixels.web", "pixels.deid.run"),  # readers of the table
    ("pixels.dimse",),  # DICOM networking: the web server's index and STOW path
    ("pixels.cli",),
)


def _layer(module: str) -> int | None:
    """The layer of the longest prefix naming ``module`` (``pixels.deid.run`` over ``pixels.deid``)."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), i)
    return None if best is None else best[1]


def test_each_module_imports_only_its_layer_and_below() -> None:
    graph = import_graph()
    unplaced = sorted(m for m in graph if m != ROOT and _layer(m) is None)
    assert not unplaced, f"give these modules a layer in LAYERS (and DESIGN.md): {unplaced}"
    upward = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m != ROOT
        for d in deps
        if d != ROOT and _layer(d) > _layer(m)  # type: ignore[operator]
    )
    assert not upward, "imports must run down the layers; upward:\n" + "\n".join(upward)


def test_circle_finder_reports_each_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert sorted(circles(graph)) == [["a", "b", "c"], ["d", "e"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by basename (no packages under tests/): two modules of
    one name in different folders stop the whole collection (``import file mismatch``)."""
    tests = Path(__file__).resolve().parent
    seen: dict[str, list[str]] = {}
    for path in sorted(tests.rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    twins = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not twins, f"rename one of each: {twins}"
