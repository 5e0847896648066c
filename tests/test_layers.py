"""The layers of graphc, read from the import statements of every module under graphc/.

STYLE.md ("A layout that shows the architecture"): imports flow one way, `ir` <- `ops` <-
`autodiff`; `rewrite`, `compile` and `export` use `ir` and `ops` but not each other's
internals. As enforced here:

- `errors` imports nothing from graphc; `ir` imports only `errors`;
- every other part uses only the parts `USES` lists for it, lazy imports included;
- a part reaches `autodiff`, `rewrite`, `compile` or `export` (the parts above `ops`) only
  through the package (`from graphc.rewrite import optimize`), never a module inside it
  (`graphc.rewrite.engine`): those modules are internals; `ir` and `ops` are the foundation
  everything builds on, module by module;
- nothing but the top (`graphc/__init__.py`, `__main__.py`, `demo.py`, `krylov.py`,
  `curvature.py`, `estimators.py`) imports the top; the top may use every part;
- no two modules import each other, directly or around a cycle, lazily or not (a
  `TYPE_CHECKING` import never runs and does not count), except inside `ops`, whose op
  builders call each other through lazy imports;
- no module imports a private name (`_name`) of another module, or reads one through an
  imported module or class (`codegen._literal`); no module outside `ir/` touches a private
  member of the IR's classes (`g._names`, `g._append`, ...): `Graph`'s public API covers it.

`EXCEPTIONS` lists the few imports against these rules, each with its reason; one that no
longer occurs fails too, so the list only shrinks. A failure prints each offending import
with its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "graphc"
TOP = {"graphc", "graphc.__main__", "graphc.demo", "graphc.krylov", "graphc.curvature",
       "graphc.estimators"}

# part -> the parts its modules may import (its own part always)
USES: dict[str, set[str]] = {
    "errors": set(),
    "ir": {"errors"},
    "ops": {"errors", "ir"},
    "autodiff": {"errors", "ir", "ops"},
    "rewrite": {"errors", "ir", "ops"},
    "compile": {"errors", "ir", "ops", "rewrite"},  # `optimize`, through graphc.rewrite
    "export": {"errors", "ir", "ops"},
}
FOUNDATION = {"errors", "ir", "ops"}  # usable module by module; the others through the package

# (importing module, imported module) -> why it is allowed
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("graphc.autodiff.check", "graphc.compile"):
        "check_grad compares derivatives with finite differences, so it runs the graph",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """`ir`, `ops`, ... for a module of graphc, `top` for the top-level modules."""
    if module in TOP:
        return "top"
    return module.split(".")[1]


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def ir_private_members() -> set[str]:
    """The private attributes and methods of the classes in graphc/ir/graph.py."""
    found = set()
    for cls in ast.walk(ast.parse((PACKAGE / "ir" / "graph.py").read_text("utf-8"))):
        if not isinstance(cls, ast.ClassDef):
            continue
        for n in ast.walk(cls):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and private(n.name):
                found.add(n.name)
            elif (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                  and n.value.id == "self" and private(n.attr)):
                found.add(n.attr)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str) and private(n.value):
                found.add(n.value)  # __slots__ entries
    return found


IR_PRIVATE = ir_private_members()


def imports(module: str, tree: ast.Module, is_package: bool):
    """(line, statement text, imported module, imported name or None) for each graphc import:
    `from graphc.ir import types` gives the module graphc.ir.types, `from graphc.ir.graph
    import Node` the module graphc.ir.graph and the name Node."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "graphc" or a.name.startswith("graphc."):
                    yield node.lineno, ast.unparse(node), a.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[:len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            if base != "graphc" and not base.startswith("graphc."):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if is_module(sub):
                    yield node.lineno, ast.unparse(node), sub, None
                else:
                    yield node.lineno, ast.unparse(node), base, a.name


def problems(path: Path, source: str, used: set | None = None) -> list[str]:
    """Every import and access in one module against the rules, as `file:line: ...`."""
    module = module_name(path)
    part = part_of(module)
    tree = ast.parse(source)
    where = path.relative_to(ROOT)
    out = []
    if part != "top" and part not in USES:
        return [f"{where}:1: module {module} is in no known part; add its part to USES "
                "(or the module to TOP)"]
    bound: set[str] = set()  # names bound to something imported from another graphc module
    for line, text, target, name in imports(module, tree, path.name == "__init__.py"):
        if name is not None and private(name) and target != module:
            out.append(f"{where}:{line}: `{text}` imports the private name {name} of "
                       f"{target}")
        if any(private(p) for p in target.split(".")):
            out.append(f"{where}:{line}: `{text}` imports the private module {target}")
        if target != module:
            bound.update(a.asname or a.name.split(".")[0]
                         for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                         and n.lineno == line for a in n.names)
        if part == "top":
            continue
        to = part_of(target)
        if to == part:
            continue
        if (module, target) in EXCEPTIONS:
            if used is not None:
                used.add((module, target))
            continue
        if to == "top" or target == "graphc":
            out.append(f"{where}:{line}: `{text}` imports the top package from the {part} "
                       "part; only graphc/__init__.py, __main__.py, demo.py, krylov.py, "
                       "curvature.py, estimators.py may")
        elif to not in USES[part]:
            allowed = ", ".join(sorted(USES[part])) or "nothing of graphc"
            out.append(f"{where}:{line}: `{text}`: the {part} part may not use {to} (it "
                       f"may use {allowed})")
        elif to not in FOUNDATION and target != f"graphc.{to}":
            out.append(f"{where}:{line}: `{text}` reaches into {to}'s internals "
                       f"({target}); import from graphc.{to} instead")
    for n in ast.walk(tree):
        if not (isinstance(n, ast.Attribute) and private(n.attr)):
            continue
        if isinstance(n.value, ast.Name) and n.value.id in bound:
            out.append(f"{where}:{n.lineno}: `{ast.unparse(n)}` reads the private name "
                       f"{n.attr} of an imported graphc module or class")
        elif (part != "ir" and n.attr in IR_PRIVATE
              and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))):
            out.append(f"{where}:{n.lineno}: `{ast.unparse(n)}` touches the private member "
                       f"{n.attr} of the IR (Graph, Node): use Graph's public API")
    return out


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_import_follows_the_layers():
    used: set = set()
    found = []
    for path in all_modules():
        found += problems(path, path.read_text("utf-8"), used)
    assert not found, "imports against the layers (tests/test_layers.py):\n" + "\n".join(found)
    stale = [f"{a} -> {b} ({why})" for (a, b), why in EXCEPTIONS.items() if (a, b) not in used]
    assert not stale, "exceptions no longer needed; remove them from EXCEPTIONS:\n" + \
        "\n".join(stale)


def runtime_imports(path: Path):
    """The modules `path` imports when it runs: `if TYPE_CHECKING:` blocks left out."""
    tree = ast.parse(path.read_text("utf-8"))
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and ast.unparse(n.test) in ("TYPE_CHECKING",
                                                               "typing.TYPE_CHECKING"):
            n.body = []
    module = module_name(path)
    for line, text, target, _ in imports(module, tree, path.name == "__init__.py"):
        if target != module:
            yield line, text, target


def test_no_import_cycles():
    import networkx as nx

    dg = nx.DiGraph()
    for path in all_modules():
        for line, text, target in runtime_imports(path):
            dg.add_edge(module_name(path), target,
                        at=f"{path.relative_to(ROOT)}:{line}: `{text}`")
    cycles = [c for c in nx.simple_cycles(dg)
              if not all(part_of(m) == "ops" for m in c)]
    assert not cycles, "import cycles:\n" + "\n".join(
        " -> ".join(c + c[:1]) + "\n    " + "\n    ".join(
            dg.edges[a, b]["at"] for a, b in zip(c, c[1:] + c[:1])) for c in cycles)


def test_ir_imports_nothing_but_errors():
    for path in sorted((PACKAGE / "ir").rglob("*.py")):
        module = module_name(path)
        for line, text, target, _ in imports(module, ast.parse(path.read_text("utf-8")),
                                             path.name == "__init__.py"):
            assert part_of(target) in ("ir", "errors"), f"{path.relative_to(ROOT)}:{line}: {text}"
    errors = PACKAGE / "errors.py"
    assert not list(imports("graphc.errors", ast.parse(errors.read_text("utf-8")), False))


def test_the_ir_private_members_are_found():
    assert {"_names", "_unique", "_scopes", "_role", "_append", "_entries"} <= IR_PRIVATE


@pytest.mark.parametrize("path, source, expected", [
    ("graphc/ir/fake.py", "from graphc.ops import add\n",
     "graphc/ir/fake.py:1: `from graphc.ops import add`: the ir part may not use ops"),
    ("graphc/ops/fake.py", "x = 1\nfrom graphc.autodiff import grad\n",
     "graphc/ops/fake.py:2: `from graphc.autodiff import grad`: the ops part may not use "
     "autodiff"),
    ("graphc/compile/fake.py", "def f():\n    from graphc.rewrite.engine import op_key\n",
     "graphc/compile/fake.py:2: `from graphc.rewrite.engine import op_key` reaches into "
     "rewrite's internals"),
    ("graphc/export/fake.py", "from graphc.compile import function\n",
     "the export part may not use compile"),
    ("graphc/rewrite/fake.py", "from graphc import Graph\n", "imports the top package"),
    ("graphc/autodiff/fake.py", "from graphc.autodiff.reverse import _float\n",
     "graphc/autodiff/fake.py:1: `from graphc.autodiff.reverse import _float` imports the "
     "private name _float of graphc.autodiff.reverse"),
    ("graphc/krylov.py", "from graphc.compile import codegen\ncodegen._literal(1)\n",
     "graphc/krylov.py:2: `codegen._literal` reads the private name _literal"),
    ("graphc/compile/fake.py", "from graphc.compile.function import _check_finite\n",
     "graphc/compile/fake.py:1: `from graphc.compile.function import _check_finite` imports "
     "the private name _check_finite of graphc.compile.function"),
    ("graphc/rewrite/fake.py", "def f(g):\n    return g._names\n",
     "graphc/rewrite/fake.py:2: `g._names` touches the private member _names of the IR"),
    ("graphc/compile/fake.py", "def f(node):\n    node.graph._append(node.op)\n",
     "`node.graph._append` touches"),
])
def test_the_checker_names_file_line_and_import(path, source, expected):
    found = problems(ROOT / path, source)
    assert any(expected in p for p in found), found


def test_the_checker_allows_what_the_layers_allow():
    ok = {
        "graphc/ops/fake.py": "from graphc.ir.graph import Node\n"
                              "from graphc.errors import GraphError\n",
        "graphc/compile/fake.py": "from graphc.rewrite import optimize\nfrom graphc import ops\n",
        "graphc/autodiff/fake.py": "from graphc.ops.base import lift\nclass A:\n"
                                   "    def f(self):\n        return self._names\n",
        "graphc/demo.py": "import graphc as gc\nfrom graphc.rewrite.engine import RULES\n",
    }
    for path, source in ok.items():
        assert problems(ROOT / path, source) == [], path
