"""No module of flowprep (the CLI included: flowprep/cli) imports another in a circle.

Every module's imports are read from its source: module-level and inside functions,
`if TYPE_CHECKING:` blocks excepted; `from pkg import name` counts as importing the
submodule pkg.name when there is one, else the package pkg itself (its __init__). A
cycle is a strongly connected component of more than one module; the test names each.
"""
import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flowprep")


def module_files(root=ROOT, package="flowprep"):
    """Module name -> source path of every .py file under ``root``."""
    mods = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__pycache__"))]
        for f in filenames:
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            mods[".".join([package] + rel)] = os.path.join(dirpath, f)
    return mods


def _type_checking_nodes(tree):
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    return skip


def imports_of(name, path, mods):
    """The project modules that module ``name`` (source at ``path``) imports."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    pkg = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    skip = _type_checking_nodes(tree)
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = pkg
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            mod = (base + ("." + node.module if node.module else "")) if node.level \
                else (node.module or "")
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods]
            targets = subs + ([mod] if len(subs) < len(node.names) else [])
        for t in targets:
            while t and t not in mods:  # a name inside a module, or a compiled extension
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def find_cycles(graph):
    """Strongly connected components (Tarjan) of more than one node, each sorted."""
    index, low, stack, on, res = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                res.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return res


def import_graph(root=ROOT):
    mods = module_files(root)
    return {name: imports_of(name, path, mods) for name, path in mods.items()}


def test_the_package_and_its_cli_have_no_import_cycle():
    graph = import_graph()
    assert "flowprep.cli.main" in graph and "flowprep.run.extract" in graph  # both are read
    cycles = find_cycles(graph)
    msg = "\n".join("cycle: " + "; ".join(f"{a} -> {b}" for a in c for b in sorted(graph[a])
                                         if b in c) for c in cycles)
    assert not cycles, msg


def test_no_module_imports_the_package_init():
    """The version comes from flowprep/_version.py: importing `flowprep` itself from inside
    the package is the edge every old cycle went through."""
    graph = import_graph()
    importers = sorted(name for name, deps in graph.items() if "flowprep" in deps)
    assert importers == [], importers


def test_the_checker_finds_a_cycle(tmp_path):
    """The checker itself: a two-module cycle made through a function-level import is found,
    one under `if TYPE_CHECKING:` is not."""
    pkg = tmp_path / "flowprep"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from .d import y\n")
    (pkg / "d.py").write_text("from . import c\n")
    cycles = find_cycles(import_graph(str(pkg)))
    assert cycles == [["flowprep.a", "flowprep.sub.b"]]


@pytest.mark.parametrize("stmt, expected", [
    ("from . import quantize", {"flowprep.quantize"}),
    ("from . import FlowprepError", {"flowprep"}),
    ("from .._version import __version__", {"flowprep._version"}),
    ("import flowprep._tvl1", {"flowprep"}),  # a compiled module: its package is imported
])
def test_how_an_import_is_read(tmp_path, stmt, expected):
    pkg = tmp_path / "flowprep"
    (pkg / "run").mkdir(parents=True)
    for f in ("__init__.py", "quantize.py", "_version.py", "run/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "run" / "x.py").write_text(stmt.replace("from . import", "from .. import") + "\n"
                                      if stmt.startswith("from . ") else stmt + "\n")
    mods = module_files(str(pkg))
    assert imports_of("flowprep.run.x", str(pkg / "run" / "x.py"), mods) == expected
