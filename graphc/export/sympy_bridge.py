"""The bridge to SymPy: `to_sympy` writes nodes as sympy expressions, `from_sympy` builds nodes.

`to_sympy` runs the graph once over sympy values: every node becomes a NumPy object array of
sympy expressions (a 0-d array for a scalar), computed once and reused by every consumer, so a
subexpression the graph shares is one Python object in the result (what `sympy.cse` finds
again; `cse=True` names those shared nodes directly). Each op writes itself through its own
hook, `op.sympy(node, *args)` (declared with the op, helpers in `graphc.ops.symbolic`): ops
that only move, sum or multiply entries (reshape, getitem, sum, matmul, ...) run their NumPy
forward on the object arrays, elementwise ops apply their `formula` entry by entry, and the
rest reduce or normalise along axes. Inputs and constants, the leaves, are written here.

sympy simplifies as it builds (`sin(x)` asks whether `x` is a multiple of pi), which recurses
through the expression: where that recursion runs past Python's limit (a chain a few hundred
`sin` deep), the node and every node after it are built unevaluated instead, so the result has
the graph's structure. sympy itself still recurses when it prints or substitutes into such an
expression; walk its `.args` with an explicit stack.

`from_sympy` goes the other way, one graphc op per sympy function (`CONVERTERS`), building each
distinct subexpression once, in one transaction: an unsupported function raises `GraphError`
and leaves the graph as it was. Matrix expressions (`MatrixSymbol`, products, transposes) map
to matmul and transpose.
"""

from __future__ import annotations

import math
import re

import numpy as np
import sympy
from sympy.matrices.expressions import MatrixExpr
from sympy.matrices.expressions.matexpr import MatrixElement

from graphc import ops
from graphc.errors import GraphError
from graphc.ir import types, walk
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Constant, Input, has_hook, output_types
from graphc.ops.base import lift
from graphc.ops.symbolic import as_objects, object_array, sympify
from graphc.ops.symbolic import entries as array_entries

MAX_ENTRIES = 10_000  # to_sympy writes tensors entry by entry: small tensors only


# == to_sympy ===============================================================================
def to_sympy(nodes, symbols: dict | None = None, cse: bool = False):
    """The sympy expression of a node (a `sympy.Array` for a tensor), for checking and printing.

    Inputs become real symbols named after them (`x`, or `W[0, 1]` entry by entry); `symbols`
    maps input nodes to other sympy symbols or arrays. A list of nodes gives a list. With
    `cse=True` the result is `(replacements, expr)` as `sympy.cse` gives it, with one symbol
    per graph node that is used more than once.

    Examples:
        >>> import sympy, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x")
        >>> z = gc.tanh(x) * gc.tanh(x) + 2.0 * x
        >>> gc.to_sympy(z)
        2*x + tanh(x)**2
        >>> sympy.simplify(gc.to_sympy(gc.grad(z, x)) - sympy.diff(gc.to_sympy(z), gc.to_sympy(x)))
        0
    """
    single = isinstance(nodes, Node)
    outs = [nodes] if single else list(nodes) if isinstance(nodes, (list, tuple)) else None
    if outs is None or not all(isinstance(n, Node) for n in outs):
        raise GraphError(f"to_sympy: expected a node or a list of nodes, got {nodes!r}")
    if not outs:
        return []
    graph = outs[0].graph
    for n in outs:
        if n.graph is not graph:
            raise GraphError(f"to_sympy: node {n.name!r} belongs to graph {n.graph.name!r}, "
                             f"not {graph.name!r}")
    symbols = _check_symbols_arg(symbols, graph)
    order = walk.ancestors(outs)
    shared = _shared(order, outs) if cse else set()
    values: dict[Node, np.ndarray] = {}
    replacements: list = []
    held: set[Node] = set()  # built unevaluated, and so is every node reading one
    for n in order:
        _check_static(n)
        if isinstance(n.op, Input):
            v = symbols[n] if n in symbols else _input_symbols(n)
        elif any(x in held for x in n.inputs):
            v = _held(n, [values[x] for x in n.inputs])
            held.add(n)
        else:
            args = [values[x] for x in n.inputs]
            try:
                v = _evaluate(n, args)
            except RecursionError:  # sympy's automatic simplification recursed too deep
                v = _held(n, args)
                held.add(n)
        if n in shared:
            names = _input_symbols(n, real=False)
            for s, e in zip(names.flat, v.flat):
                replacements.append((s, sympify(e)))
            v = names
        values[n] = v
    exprs = [_to_result(values[n]) for n in outs]
    result = exprs[0] if single else exprs
    return (replacements, result) if cse else result


def _held(n: Node, args: list[np.ndarray]) -> np.ndarray:
    """A node's value built with sympy's evaluation off: its args stay as they are, so a
    5,000-deep chain builds (sympy's own algorithms recurse on it: printing, `subs`)."""
    with sympy.evaluate(False):
        return _evaluate(n, args)


def _check_symbols_arg(symbols, graph: Graph) -> dict:
    if symbols is None:
        return {}
    if not isinstance(symbols, dict):
        raise GraphError(f"to_sympy: symbols must map input nodes to sympy symbols, got "
                         f"{type(symbols).__name__}")
    out = {}
    for node, sym in symbols.items():
        if not isinstance(node, Node) or node.graph is not graph or not isinstance(node.op, Input):
            raise GraphError(f"to_sympy: symbols keys must be inputs of graph {graph.name!r}, "
                             f"got {node!r}")
        arr = object_array(sym.as_explicit() if isinstance(sym, MatrixExpr) else sym)
        if arr.shape != tuple(node.shape):
            raise GraphError(f"to_sympy: the symbols given for input {node.name!r} have shape "
                             f"{arr.shape}, the input has {types.fmt_shape(node.shape)}")
        out[node] = arr
    return out


def _check_static(n: Node) -> None:
    if not types.is_static(n.shape):
        raise GraphError(f"to_sympy: node {n.name!r} has the symbolic shape "
                         f"{types.fmt_shape(n.shape)}; to_sympy writes tensors entry by entry "
                         "and needs static shapes")
    if math.prod(n.shape) > MAX_ENTRIES:
        raise GraphError(f"to_sympy: node {n.name!r} of shape {types.fmt_shape(n.shape)} has "
                         f"more than {MAX_ENTRIES} entries; to_sympy is for small tensors")


def _shared(order: list[Node], outs: list[Node]) -> set[Node]:
    """Nodes worth a name of their own: computed (not inputs or constants), used twice or more."""
    uses: dict[Node, int] = {}
    out_set = set(outs)
    for n in order:
        for x in n.inputs:
            uses[x] = uses.get(x, 0) + 1
    return {n for n, k in uses.items()
            if k > 1 and not isinstance(n.op, (Input, Constant)) and n not in out_set
            and not n.op.multi}  # a tuple is named through its views


def _input_symbols(n: Node, real: bool = True) -> np.ndarray:
    """`x` for a scalar input, `x[i, j]` entry by entry for a tensor one."""
    kw = ({"integer": True} if n.dtype.kind in "iu" else {"real": True}) if real else {}
    if n.dtype.kind == "b":
        kw = {}
    if not n.shape:
        return object_array(sympy.Symbol(n.name, **kw))
    out = np.empty(n.shape, dtype=object)
    for idx in np.ndindex(*n.shape):
        out[idx] = sympy.Symbol(f"{n.name}[{', '.join(map(str, idx))}]", **kw)
    return out


def _to_result(arr: np.ndarray):
    if arr.ndim == 0:
        return sympify(arr[()])
    return sympy.Array([sympify(v) for v in arr.flat], arr.shape)


def _number(v) -> sympy.Basic:
    """A constant's entry as sympy: exact where the float's shortest repr is short."""
    if isinstance(v, (bool, np.bool_)):
        return sympy.true if v else sympy.false
    if isinstance(v, (int, np.integer)):
        return sympy.Integer(int(v))
    v = float(v)
    if math.isnan(v):
        return sympy.nan
    if math.isinf(v):
        return sympy.oo if v > 0 else -sympy.oo
    if v == int(v) and abs(v) < 2**53:
        return sympy.Integer(int(v))
    text = repr(v)
    if len(text) <= 12 and "e" not in text:
        return sympy.Rational(text)  # 0.5 -> 1/2, 0.1 -> 1/10; float() gives v back exactly
    return sympy.Float(v)


def _evaluate(n: Node, args: list[np.ndarray]) -> np.ndarray:
    op = n.op
    if isinstance(op, Constant):
        return np.vectorize(_number, otypes=[object])(op.value) if op.value.ndim else \
            object_array(_number(op.value[()]))
    if not has_hook(op, "sympy"):
        raise GraphError(f"to_sympy: node {n.name!r} uses op {op.label()}, which has no sympy "
                         f"form: {type(op).__name__} defines no hook sympy(node, *args) (ops "
                         "made by gc.elementwise have one; see graphc.ops.symbolic)")
    if op.multi:  # one array per output, each shaped like its output
        outs = op.sympy(n, *args)
        return tuple(as_objects(v, shape) for v, (shape, _) in zip(outs, output_types(n)))
    return as_objects(op.sympy(n, *args), n.shape)


# == from_sympy =============================================================================
_ENTRY = re.compile(r"^(?P<base>.+)\[(?P<index>\d+(?:, *\d+)*)\]$")


def from_sympy(expr, graph: Graph, inputs: dict | None = None, functions: dict | None = None):
    """Nodes of `graph` computing a sympy expression: the inverse of `to_sympy`.

    `inputs` maps symbols (or a `MatrixSymbol`, or an array of symbols) to nodes or values; a
    symbol not in it is looked up among the graph's inputs by name. Tensor nodes broadcast
    like NumPy. `functions` maps further sympy functions to node-building callables.

    Examples:
        >>> import numpy as np, sympy, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> t = sympy.Symbol("t")
        >>> y = gc.from_sympy(sympy.exp(t) * sympy.sin(t) + t**2, g, {t: x})
        >>> np.allclose(y.eval({x: [0.5, 1.0]}), np.exp([0.5, 1]) * np.sin([0.5, 1]) + [0.25, 1])
        True
    """
    if not isinstance(graph, Graph):
        raise GraphError(f"from_sympy: graph must be a gc.Graph, got {type(graph).__name__}")
    if isinstance(expr, (int, float)):
        expr = sympy.sympify(expr)
    if not isinstance(expr, (sympy.Basic, sympy.MatrixBase)):
        raise GraphError(f"from_sympy: expected a sympy expression, got {type(expr).__name__}")
    if isinstance(expr, sympy.MatrixBase):
        expr = sympy.ImmutableMatrix(expr)  # hashable, for the memo of subexpressions
    with graph.transaction():  # binding `inputs` may already make constants
        builder = _Builder(graph, inputs or {}, functions or {})
        builder.resolve_symbols(expr)
        return builder.convert(expr)


class _Builder:
    """One from_sympy call: the symbol table and the memo of converted subexpressions."""

    def __init__(self, graph: Graph, inputs: dict, functions: dict):
        self.graph = graph
        self.memo: dict = {}
        self.symbols: dict = {}
        for key, value in inputs.items():
            self._bind(key, value)
        self.functions = {}
        for key, fn in functions.items():
            if not callable(fn):
                raise GraphError(f"from_sympy: functions[{key}] must build nodes from nodes, "
                                 f"got {fn!r}")
            self.functions[key if isinstance(key, str) else getattr(key, "__name__", key)] = fn
        self.like = None

    def resolve_symbols(self, expr) -> None:
        """Bind every free symbol first, so constants take the inputs' float precision."""
        for s in sorted(expr.free_symbols, key=str):
            if isinstance(s, (sympy.Symbol, sympy.MatrixSymbol)):
                bound = self._symbol(s)
                if self.like is None and types.is_float(bound.dtype):
                    self.like = bound

    def _bind(self, key, value) -> None:
        if isinstance(key, (sympy.NDimArray, sympy.MatrixBase)):
            node = self._node(value, key)
            entries = array_entries(key)
            shape = tuple(key.shape)
            if tuple(node.shape) != shape:
                raise GraphError(f"from_sympy: an array of symbols of shape {shape} is mapped "
                                 f"to node {node.name!r} of shape {types.fmt_shape(node.shape)}")
            for idx, s in zip(np.ndindex(*shape), entries):
                self.symbols[s] = (node, idx)
            return
        if not isinstance(key, (sympy.Symbol, sympy.MatrixSymbol)):
            raise GraphError(f"from_sympy: inputs keys must be symbols, MatrixSymbols or "
                             f"arrays of symbols, got {type(key).__name__} {key!r}")
        node = self._node(value, key)
        if isinstance(key, sympy.MatrixSymbol) and tuple(node.shape) != tuple(key.shape):
            raise GraphError(f"from_sympy: MatrixSymbol {key} of shape {tuple(key.shape)} is "
                             f"mapped to node {node.name!r} of shape "
                             f"{types.fmt_shape(node.shape)}")
        self.symbols[key] = node

    def _node(self, value, key) -> Node:
        if isinstance(value, Node):
            if value.graph is not self.graph:
                raise GraphError(f"from_sympy: {key} is mapped to node {value.name!r} of graph "
                                 f"{value.graph.name!r}, not {self.graph.name!r}")
            return value
        try:
            return lift(value, self.graph)
        except GraphError as e:
            raise GraphError(f"from_sympy: {key} is mapped to {value!r}: {e}") from None

    # -- conversion -------------------------------------------------------------------------
    def convert(self, expr) -> Node:
        try:
            return self._convert(expr)
        except RecursionError:
            raise GraphError("from_sympy: the expression is nested too deeply to convert; "
                             "build it from parts (sympy.cse) instead") from None

    def _convert(self, expr) -> Node:
        node = self.memo.get(expr)
        if node is None:
            node = self._build(expr)
            self.memo[expr] = node
        return node

    def const(self, value) -> Node:
        return lift(value, self.graph, self.like)

    def _build(self, e) -> Node:
        if isinstance(e, (sympy.MatrixBase, sympy.NDimArray)):
            return self._array(e)
        fn = self.functions.get(type(e).__name__) if isinstance(e, sympy.Function) else None
        if fn is not None:
            return fn(*[self._convert(a) for a in e.args])
        if isinstance(e, (sympy.Symbol, sympy.MatrixSymbol)):
            return self._symbol(e)
        if e.is_Number or isinstance(e, sympy.NumberSymbol):
            if not e.is_extended_real and e is not sympy.nan:
                raise GraphError(f"from_sympy: {e} is not a real number")
            return self.const(float(e))
        if e in (sympy.true, sympy.false):
            return self.graph.constant(bool(e))
        if isinstance(e, MatrixElement):
            return ops.getitem(self._convert(e.parent), (int(e.i), int(e.j)))
        for cls in type(e).__mro__:
            converter = CONVERTERS.get(cls)
            if converter is not None:
                return converter(self, e)
        raise GraphError(f"from_sympy: {e} ({type(e).__name__}) has no graphc op; supported: "
                         f"{', '.join(sorted(c.__name__ for c in CONVERTERS))}; declare it "
                         "with gc.elementwise and pass functions={sympy_function: op}")

    def _symbol(self, s) -> Node:
        node = self.memo.get(s)
        if node is None:
            bound = self.symbols.get(s)
            if bound is None:
                bound = self._by_name(s)
            node = ops.getitem(*bound) if isinstance(bound, tuple) else bound
            self.memo[s] = node
        return node

    def _by_name(self, s):
        """An unmapped symbol `x` or entry `x[0, 1]`: the graph's input of that name."""
        name, idx = s.name, None
        m = _ENTRY.match(name)
        inputs = {n.name: n for n in self.graph.inputs}
        if name not in inputs and m and m["base"] in inputs:
            name, idx = m["base"], tuple(int(k) for k in m["index"].split(","))
        node = inputs.get(name)
        if node is None:
            raise GraphError(f"from_sympy: symbol {s} is not mapped to a node and graph "
                             f"{self.graph.name!r} has no input named {name!r}; pass "
                             f"{{{s}: node}} as inputs")
        if idx is not None:
            if len(idx) != node.ndim:
                raise GraphError(f"from_sympy: symbol {s} indexes input {name!r} of shape "
                                 f"{types.fmt_shape(node.shape)} with {len(idx)} indices")
            return (node, idx)
        return node

    def _array(self, e) -> Node:
        shape = tuple(e.shape)
        entries = [self._convert(sympify(v)) for v in array_entries(e)]
        if not entries:
            raise GraphError(f"from_sympy: the array of shape {shape} is empty")
        for v in entries:
            if not types.shape_eq(v.shape, entries[0].shape):
                raise GraphError(f"from_sympy: the entries of an array must have one shape; "
                                 f"got {types.fmt_shape(entries[0].shape)} and "
                                 f"{types.fmt_shape(v.shape)}")
        return ops.reshape(ops.stack(entries), shape + tuple(entries[0].shape))


def _fold(fn, nodes):
    out = nodes[0]
    for n in nodes[1:]:
        out = fn(out, n)
    return out


def _add(b: _Builder, e) -> Node:
    pos, neg = [], []
    for t in e.args:
        if t.could_extract_minus_sign():
            neg.append(b._convert(-t))
        else:
            pos.append(b._convert(t))
    if not pos:
        return ops.neg(_fold(ops.add, neg))
    out = _fold(ops.add, pos)
    return ops.sub(out, _fold(ops.add, neg)) if neg else out


def _mul(b: _Builder, e) -> Node:
    coeff, factors = e.as_coeff_mul()
    num, den = [], []
    for f in factors:
        if f.is_Pow and f.exp.is_number and f.exp.is_negative:
            den.append(b._convert(f.base ** -f.exp))
        else:
            num.append(b._convert(f))
    sign = -1 if coeff < 0 else 1
    coeff = abs(coeff)
    if coeff != 1:
        num.insert(0, b.const(float(coeff)))
    if not num:
        num = [b.const(1.0)]
    out = _fold(ops.mul, num)
    if den:
        out = ops.div(out, _fold(ops.mul, den))
    return ops.neg(out) if sign < 0 else out


def _pow(b: _Builder, e) -> Node:
    base, ex = e.args
    if base == sympy.E:
        return ops.exp(b._convert(ex))
    if ex.is_number and ex.is_negative:
        if base.is_Add and len(base.args) == 2 and sympy.S.One in base.args and ex == -1:
            rest = base.args[0] if base.args[1] == 1 else base.args[1]
            if isinstance(rest, sympy.exp) and rest.args[0].could_extract_minus_sign():
                return ops.sigmoid(b._convert(-rest.args[0]))  # 1/(1 + exp(-u))
        return ops.div(b.const(1.0), b._convert(base ** -ex))
    if ex == 2:
        return ops.square(b._convert(base))
    if ex == sympy.S.Half:
        return ops.sqrt(b._convert(base))
    if ex == 1:
        return b._convert(base)
    return ops.pow(b._convert(base), b._convert(ex))


def _log(b: _Builder, e) -> Node:
    (u,) = e.args
    if u.is_Add and sympy.S.One in u.args:  # log(1 + v): log1p, accurate for small v
        return ops.log1p(b._convert(u - 1))
    return ops.log(b._convert(u))


def _unary(fn):
    return lambda b, e: fn(b._convert(e.args[0]))


def _via(formula):
    """A function written with the supported ones: `sinh(u) = (exp(u) - exp(-u)) / 2`."""
    u = sympy.Dummy("u")
    body = formula(u)
    return lambda b, e: b._convert(body.xreplace({u: e.args[0]}))


def _extremum(fn, relu_for_zero: bool):
    def convert(b: _Builder, e):
        args = list(e.args)
        if relu_for_zero and len(args) == 2 and sympy.S.Zero in args:
            other = args[0] if args[1] == 0 else args[1]
            return ops.relu(b._convert(other))
        return _fold(fn, [b._convert(a) for a in args])
    return convert


def _heaviside(b: _Builder, e) -> Node:
    x = b._convert(e.args[0])
    h0 = e.args[1] if len(e.args) > 1 else sympy.Heaviside(0)
    if h0 is sympy.nan or not h0.is_number:
        raise GraphError(f"from_sympy: {e} has no value at 0; use Heaviside(x, h0)")
    at_zero = ops.where(ops.equal(x, 0.0), b.const(float(h0)), b.const(0.0))
    return ops.where(ops.greater(x, 0.0), b.const(1.0), at_zero)


def _piecewise(b: _Builder, e) -> Node:
    pieces = list(e.args)
    last_value, last_cond = pieces[-1]
    if last_cond == sympy.true:
        out = b._convert(last_value)
        pieces = pieces[:-1]
    else:
        out = b.const(float("nan"))  # sympy's value where no condition holds
    for value, cond in reversed(pieces):
        out = ops.where(b._convert(cond), b._convert(value), out)
    return out


def _relational(fn):
    return lambda b, e: fn(b._convert(e.lhs), b._convert(e.rhs))


def _and(b, e):
    return _fold(lambda p, q: ops.where(p, q, b.graph.constant(False)),
                 [b._convert(a) for a in e.args])


def _or(b, e):
    return _fold(lambda p, q: ops.where(p, b.graph.constant(True), q),
                 [b._convert(a) for a in e.args])


def _not(b, e):
    return ops.where(b._convert(e.args[0]), b.graph.constant(False), b.graph.constant(True))


def _matmul(b: _Builder, e) -> Node:
    scalars = [a for a in e.args if not getattr(a, "is_Matrix", False)]
    mats = [b._convert(a) for a in e.args if getattr(a, "is_Matrix", False)]
    out = _fold(ops.matmul, mats)
    for s in scalars:
        out = ops.mul(b._convert(s), out)
    return out


def _matpow(b: _Builder, e) -> Node:
    base, ex = e.args
    if not (ex.is_Integer and ex > 0):
        raise GraphError(f"from_sympy: {e}: only positive integer matrix powers have a "
                         "graphc form (matmul); inverses do not")
    m = b._convert(base)
    return _fold(ops.matmul, [m] * int(ex))


def _trace(b: _Builder, e) -> Node:
    return ops.trace(b._convert(e.args[0]))


def _const_matrix(value):
    return lambda b, e: b.const(value(*(int(d) for d in e.shape)))


# Keyed by sympy's classes, not by graphc op names: what a sympy function becomes is the
# bridge's knowledge (sympy's types are not graphc's to extend), so this table stays here.
CONVERTERS = {
    sympy.Add: _add,
    sympy.Mul: _mul,
    sympy.Pow: _pow,
    sympy.exp: _unary(ops.exp),
    sympy.log: _log,
    sympy.sin: _unary(ops.sin),
    sympy.cos: _unary(ops.cos),
    sympy.tan: _unary(ops.tan),
    sympy.cot: _via(lambda u: 1 / sympy.tan(u)),
    sympy.sec: _via(lambda u: 1 / sympy.cos(u)),
    sympy.csc: _via(lambda u: 1 / sympy.sin(u)),
    sympy.asin: _unary(ops.arcsin),
    sympy.acos: _unary(ops.arccos),
    sympy.atan: _unary(ops.arctan),
    sympy.atan2: lambda b, e: ops.arctan2(b._convert(e.args[0]), b._convert(e.args[1])),
    sympy.tanh: _unary(ops.tanh),
    sympy.sinh: _unary(ops.sinh),
    sympy.cosh: _unary(ops.cosh),
    sympy.coth: _via(lambda u: 1 / sympy.tanh(u)),
    sympy.sech: _via(lambda u: 1 / sympy.cosh(u)),
    sympy.csch: _via(lambda u: 1 / sympy.sinh(u)),
    sympy.asinh: _unary(ops.arcsinh),
    sympy.acosh: _unary(ops.arccosh),
    sympy.atanh: _unary(ops.arctanh),
    sympy.erf: _unary(ops.erf),
    sympy.erfc: _unary(ops.erfc),
    sympy.floor: _unary(ops.floor),
    sympy.ceiling: _unary(ops.ceil),
    sympy.Mod: lambda b, e: ops.mod(b._convert(e.args[0]), b._convert(e.args[1])),
    sympy.Abs: _unary(ops.abs),
    sympy.sign: _unary(ops.sign),
    sympy.Max: _extremum(ops.maximum, relu_for_zero=True),
    sympy.Min: _extremum(ops.minimum, relu_for_zero=False),
    sympy.Heaviside: _heaviside,
    sympy.Piecewise: _piecewise,
    sympy.StrictLessThan: _relational(ops.less),
    sympy.LessThan: _relational(ops.less_equal),
    sympy.StrictGreaterThan: _relational(ops.greater),
    sympy.GreaterThan: _relational(ops.greater_equal),
    sympy.Equality: _relational(ops.equal),
    sympy.Unequality: _relational(ops.not_equal),
    sympy.And: _and,
    sympy.Or: _or,
    sympy.Not: _not,
    sympy.MatMul: _matmul,
    sympy.MatAdd: lambda b, e: _fold(ops.add, [b._convert(a) for a in e.args]),
    sympy.HadamardProduct: lambda b, e: _fold(ops.mul, [b._convert(a) for a in e.args]),
    sympy.Transpose: lambda b, e: ops.transpose(b._convert(e.arg)),
    sympy.MatPow: _matpow,
    sympy.Trace: _trace,
    sympy.Identity: _const_matrix(lambda n, m: np.eye(n)),
    sympy.ZeroMatrix: _const_matrix(lambda n, m: np.zeros((n, m))),
    sympy.OneMatrix: _const_matrix(lambda n, m: np.ones((n, m))),
}
