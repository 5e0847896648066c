"""Call-time checks of the values fed to a function, against the input nodes' types.

Each failure raises `InputError` naming the input, what was expected and what came. The checks
also bind the symbolic dimensions (`batch`) to sizes, consistently across all inputs of a call.
"""

from __future__ import annotations

import numpy as np
import sympy

from graphc.errors import InputError
from graphc.ir import types
from graphc.ir.graph import Node


def describe(node: Node) -> str:
    return f"shape {types.fmt_shape(node.shape)}, dtype {node.dtype}"


def bind_args(inputs: tuple[Node, ...], args: tuple, kwargs: dict) -> list:
    """Match positional and keyword arguments to input nodes, in the inputs' order."""
    if len(args) > len(inputs):
        raise InputError(f"got {len(args)} positional values for {len(inputs)} inputs "
                         f"({', '.join(n.name for n in inputs)})")
    by_name = {n.name: k for k, n in enumerate(inputs)}
    values = list(args) + [_MISSING] * (len(inputs) - len(args))
    for name, v in kwargs.items():
        k = by_name.get(name)
        if k is None:
            raise InputError(f"unknown input {name!r}; the inputs are "
                             f"{', '.join(repr(n.name) for n in inputs) or 'none'}")
        if values[k] is not _MISSING:
            raise InputError(f"input {name!r} given both by position and by name")
        values[k] = v
    for n, v in zip(inputs, values):
        if v is _MISSING:
            raise InputError(f"missing input {n.name!r} ({describe(n)})")
    return values


def check_values(inputs: tuple[Node, ...], values: list,
                 nodes: list[Node] | None = None, convert=None) -> tuple[list[np.ndarray], dict]:
    """Convert and check each value; returns the arrays and the symbol bindings.

    A symbol is bound by an axis whose dimension is the symbol itself, or solved from one
    whose dimension is `a*n + b` in a single symbol not bound otherwise. Once bound, every
    symbolic size of `nodes` (default: every node of the inputs' graph whose symbols are all
    bound) must be >= 0: a negative one is an InputError naming the node and the inputs that
    bound its symbols.
    """
    env: dict[sympy.Symbol, int] = {}
    bound_by: dict[sympy.Symbol, str] = {}
    pending: list[tuple[Node, int, sympy.Expr, int]] = []
    arrays = []
    for node, value in zip(inputs, values):
        arr = _as_array(node, value) if convert is None else convert(node, value)
        if arr.ndim != node.ndim:
            raise InputError(f"input {node.name!r}: expected rank {node.ndim} "
                             f"({describe(node)}), got an array of shape {arr.shape}")
        for axis, (want, got) in enumerate(zip(node.shape, arr.shape)):
            if isinstance(want, int):
                if want != got:
                    raise InputError(f"input {node.name!r}: expected {describe(node)}, got "
                                     f"shape {arr.shape} (axis {axis} is {got}, not {want})")
            elif isinstance(want, sympy.Symbol):
                if want in env and env[want] != got:
                    raise InputError(
                        f"input {node.name!r}: dimension {want} is {env[want]} (bound by input "
                        f"{bound_by[want]!r}) but axis {axis} here has length {got}")
                env.setdefault(want, got)
                bound_by.setdefault(want, node.name)
            else:
                pending.append((node, axis, want, got))
        arrays.append(arr)
    _bind_expressions(pending, env, bound_by)
    if env:
        _check_sizes(inputs, nodes, env, bound_by)
    return arrays, env


def _bind_expressions(pending: list, env: dict, bound_by: dict) -> None:
    """Check the axes whose dimension is an expression, solving `a*n + b = size` for a single
    unbound symbol n; repeated until nothing more can be solved."""
    while pending:
        rest = []
        for node, axis, want, got in pending:
            free = want.free_symbols - env.keys()
            if not free:
                value = want.xreplace({s: sympy.Integer(env[s]) for s in want.free_symbols})
                if not value.is_Integer or int(value) != got:
                    names = "; ".join(f"{s} = {env[s]}, bound by input {bound_by[s]!r}"
                                      for s in sorted(want.free_symbols, key=str))
                    raise InputError(f"input {node.name!r}: axis {axis} should be {want} = "
                                     f"{value} ({names}), got {got}")
            elif len(free) == 1 and (solved := _solve_affine(want, next(iter(free)))):
                s, (a, b) = next(iter(free)), solved
                n = (sympy.Integer(got) - b) / a
                if not n.is_Integer or n < 1:
                    raise InputError(
                        f"input {node.name!r}: axis {axis} has length {got}, but its dimension "
                        f"{want} would need {s} = {n}, and {s} must be a positive integer")
                env[s] = int(n)
                bound_by[s] = node.name
            else:
                rest.append((node, axis, want, got))
        if len(rest) == len(pending):
            node, axis, want, _ = rest[0]
            unknown = sorted(map(str, want.free_symbols - env.keys()))
            which = (f"the symbol {unknown[0]} cannot" if len(unknown) == 1 else
                     f"the symbols {', '.join(unknown)} cannot")
            raise InputError(
                f"input {node.name!r}: axis {axis} has the dimension {want}, but {which} be "
                "determined from the inputs' shapes (give each symbol an axis of its own, or "
                "use a dimension a*n + b of one unknown n)")
        pending = rest


def _solve_affine(expr: sympy.Expr, s: sympy.Symbol) -> tuple | None:
    """(a, b) with expr == a*s + b, a and b rational numbers, a != 0; else None."""
    if not expr.is_polynomial(s):
        return None
    try:
        coeffs = sympy.Poly(expr, s).all_coeffs()
    except sympy.PolynomialError:
        return None
    if len(coeffs) != 2 or not all(c.is_Rational for c in coeffs) or coeffs[0] == 0:
        return None
    return coeffs[0], coeffs[1]


def _check_sizes(inputs, nodes, env: dict, bound_by: dict) -> None:
    """A negative size once the symbols are bound means the graph assumed more than holds:
    `x[5:]` has size n - 5, so it needs n >= 5."""
    dims, passed = _symbolic_dims(inputs, nodes)
    key = tuple(env.items())
    if key in passed:
        return
    known = env.keys()
    for expr, (node, axis) in dims.items():
        if not expr.free_symbols <= known:
            continue
        value = expr.xreplace({s: sympy.Integer(env[s]) for s in expr.free_symbols})
        if not (value.is_number and value.is_negative):
            continue
        symbols = sorted(expr.free_symbols, key=str)
        bound = "; ".join(f"{s} is {env[s]} (from input {bound_by[s]!r})" for s in symbols)
        need = f"{expr} >= 0"
        if len(symbols) == 1 and (solved := _solve_affine(expr, symbols[0])) and solved[0] > 0:
            need = f"{symbols[0]} >= {sympy.ceiling(-solved[1] / solved[0])}"
        of = ", ".join(x.name for x in node.inputs[:3])
        raise InputError(
            f"node {node.name!r} ({node.op.label()}{' of ' + of if of else ''}, built at "
            f"{node.source}) has size {expr} = {value} on axis {axis}: it needs {need}; "
            f"{bound}")
    if len(passed) < 64:
        passed.add(key)


def _symbolic_dims(inputs, nodes) -> tuple[dict, set]:
    """{symbolic size: (first node with it, axis)} over `nodes` or the inputs' whole graph,
    and the set of bindings already found valid; cached in the graph for its current length."""
    if nodes is not None:
        return _collect(nodes), set()
    if not inputs:
        return {}, set()
    g = inputs[0].graph
    key = ("graphc.compile.inputs.sizes",)
    hit = g.cache.get(key)
    size = len(g.nodes)
    if hit is None or hit[0] != size:
        # append-only: scan just the new nodes (a rollback drops the entry, so a stale one
        # never names removed nodes)
        grown = hit is not None and hit[0] < size
        dims, start = (dict(hit[1]), hit[0]) if grown else ({}, 0)
        hit = (size, _collect(g.nodes[start:size], dims), set())
        g.cache.put(key, hit, g.nodes[size - 1:size])  # dropped if a rollback removes any
    return hit[1], hit[2]


def _collect(nodes, dims: dict | None = None) -> dict:
    dims = {} if dims is None else dims
    for n in sorted(nodes, key=lambda n: n.index):
        for axis, d in enumerate(n.shape):
            if not isinstance(d, int) and d not in dims:
                dims[d] = (n, axis)
    return dims


def as_array(node: Node, value) -> np.ndarray:
    """`value` as a NumPy array of the node's dtype (cast where it casts safely), or an
    InputError naming the input."""
    return _as_array(node, value)


def _as_array(node: Node, value) -> np.ndarray:
    if isinstance(value, Node):
        raise InputError(f"input {node.name!r}: expected a value, got the graph node "
                         f"{value.name!r}")
    is_array = isinstance(value, (np.ndarray, np.generic))
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise InputError(f"input {node.name!r}: expected an array ({describe(node)}), got "
                         f"{type(value).__name__}: {e}") from None
    if arr.dtype.kind not in types.SUPPORTED_KINDS:
        raise InputError(f"input {node.name!r}: expected {describe(node)}, got a value of "
                         f"dtype {arr.dtype} ({type(value).__name__})")
    if arr.dtype != node.dtype:
        rule = "safe" if is_array else "same_kind"
        if not np.can_cast(arr.dtype, node.dtype, rule):
            raise InputError(f"input {node.name!r}: expected dtype {node.dtype}, got "
                             f"{arr.dtype}, which does not cast safely; convert it first")
        arr = arr.astype(node.dtype)
    return arr


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()
