"""User-defined ops: elementwise ops from a sympy formula, and applying hand-written ops.

`elementwise(name, expr, args)` turns a formula into an op of the library's elementwise kind
(`graphc.ops.base.Elementwise`): NumPy broadcasting, a forward made by `sympy.lambdify`, and
one derivative rule per argument, `d out / d args[i]`, from which `bprop = g * d` and
`jvp = t * d` follow. Each `d` is itself an op made the same way from `sympy.diff(expr,
args[i])` (`derivative`: for real arguments, with floor, ceiling, sign and Heaviside of
derivative 0, as the built-in `sign`), declared lazily the first time a gradient asks for it,
so derivatives of every order exist and stay elementwise: the third derivative of `swish` is
the op `swish_d3`. A function SymPy cannot differentiate is reported, naming the op, when a
gradient asks for it.

Hand-written ops are declared like the built-ins (a registered frozen dataclass subclassing
`gc.Op`, see docs/custom-ops.md) and put into a graph with `apply`, which lifts numbers to
constants and leaves the graph as it was when the shape rule refuses the inputs.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import sympy

from graphc.errors import GraphError
from graphc.ir import exprtext
from graphc.ir.graph import Node
from graphc.ir.op import OPS, Op, register
from graphc.ops.base import MINUS_ONE, ONE, Elementwise, build, graph_of, lift


class SympyElementwise(Elementwise):
    """An elementwise op whose forward and derivatives come from one sympy formula.

    `expr` is the formula in `symbols` (one per input); `base` and `orders` say which partial
    derivative of the user's formula this op is (all zeros for the formula itself).
    """

    expr: ClassVar[sympy.Expr]
    symbols: ClassVar[tuple[sympy.Symbol, ...]]
    base: ClassVar[str]
    orders: ClassVar[tuple[int, ...]]
    numpy_fn: ClassVar = None
    partials: ClassVar[dict]

    def forward(self, *arrays):
        arrays = [np.asarray(a) for a in arrays]
        dtype = np.result_type(*arrays)
        if dtype.kind != "f":  # ints and bools give float64, like np.exp
            dtype = np.dtype(np.float64)
        arrays = np.broadcast_arrays(*arrays)  # lambdify's Max/Piecewise want equal shapes
        with np.errstate(all="ignore"):
            out = np.asarray(type(self).numpy_fn(*arrays))
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        if out.shape != shape:  # a formula free of some argument gives a smaller result
            out = np.broadcast_to(out, shape)
        return np.array(out, dtype=dtype)  # a fresh, writable array of the input's precision

    def formula(self, *args):
        """This op's formula applied to sympy scalars (its `sympy` hook, for `gc.to_sympy`)."""
        return self.expr.xreplace(dict(zip(self.symbols, args)))


class ElementwiseFunction:
    """A user elementwise op as a function on nodes: `swish(x)` builds a `swish` node.

    `op` is the op class, `expr` and `symbols` its formula; `diff(i)` is the partial derivative
    with respect to argument `i`, another ElementwiseFunction.
    """

    def __init__(self, op: type[SympyElementwise]):
        self.op = op

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def expr(self) -> sympy.Expr:
        return self.op.expr

    @property
    def symbols(self) -> tuple[sympy.Symbol, ...]:
        return self.op.symbols

    def __call__(self, *args) -> Node:
        if len(args) != self.op.arity:
            raise GraphError(f"{self.name} takes {self.op.arity} argument(s) "
                             f"({', '.join(map(str, self.symbols))}), got {len(args)}")
        return build(self.op(), *args)

    def diff(self, i: int = 0) -> ElementwiseFunction:
        """The partial derivative with respect to argument `i`, as an elementwise function."""
        if not isinstance(i, int) or not 0 <= i < self.op.arity:
            raise GraphError(f"{self.name}.diff: argument index must be in "
                             f"[0, {self.op.arity}), got {i!r}")
        return _partial(self.op, i)

    def __repr__(self) -> str:
        args = ", ".join(map(str, self.symbols))
        return f"<elementwise {self.name}({args}) = {self.expr}>"


def elementwise(name: str, expr, args) -> ElementwiseFunction:
    """A new elementwise op from a sympy formula, differentiable to every order.

    `expr` is a sympy expression in `args`, or text that `graphc.ir.exprtext.formula` reads
    (arithmetic and a fixed table of functions of the names in `args`; never run as Python).
    The forward is `sympy.lambdify` of `expr` (NumPy and SciPy functions, so `erf` works);
    the derivative for each argument is `sympy.diff`, declared as an op of the same kind on
    first use. Inputs broadcast like the built-ins. Declaring the same name again with the
    same formula returns the op already declared.

    Examples:
        >>> import numpy as np, sympy, graphc as gc
        >>> t = sympy.Symbol("t")
        >>> swish = gc.elementwise("swish_doc", t / (1 + sympy.exp(-t)), [t])
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> y = swish(x)
        >>> np.round(y.eval({x: np.array([0.0, 1.0])}), 6)
        array([0.      , 0.731059])
        >>> d3 = gc.grad(gc.grad(gc.grad(y.sum(), x).sum(), x).sum(), x)
        >>> [n.op.name for n in g.nodes if n.op.name.startswith("swish_doc")][-1]
        'swish_doc_d3'
    """
    symbols = _check_symbols(name, args)
    expr = _check_expr(name, expr, symbols)
    orders = (0,) * len(symbols)
    existing = OPS.get(name)
    if existing is not None:
        if (isinstance(existing, type) and issubclass(existing, SympyElementwise)
                and existing.symbols == symbols and existing.expr == expr):
            return ElementwiseFunction(existing)
        raise GraphError(f"elementwise: an op named {name!r} is already registered "
                         f"({existing.__module__}.{existing.__qualname__}); choose another name")
    return ElementwiseFunction(_declare(name, name, expr, symbols, orders))


def apply(op: Op, *args, name: str | None = None) -> Node:
    """Put a hand-written op into the graph of its arguments (numbers become constants).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> gc.apply(gc.ops.elementwise.Exp(), x, name="e").name
        'e'
    """
    if not isinstance(op, Op):
        raise GraphError(f"apply: expected an op instance (a gc.Op subclass, instantiated), "
                         f"got {type(op).__name__}: {op!r}")
    g = graph_of(*args)
    like = next((a for a in args if isinstance(a, Node)), None)
    with g.transaction():
        return g.apply(op, [lift(a, g, like) for a in args], name)


# -- declaring the ops ---------------------------------------------------------------------
def _declare(name, base, expr, symbols, orders) -> type[SympyElementwise]:
    """Make and register the op class for `expr`; its derivative rules declare more lazily."""
    try:
        fn = sympy.lambdify(symbols, expr, modules=["scipy", "numpy"])
    except Exception as e:  # sympy's printers raise several kinds for unknown functions
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GraphError(f"elementwise {name!r}: cannot make a NumPy function of {expr}: "
                         f"{first}") from None
    _probe(base, fn, expr, len(symbols))
    attrs = {
        "__doc__": f"User elementwise op {name}({', '.join(map(str, symbols))}) = {expr}.",
        "__module__": __name__, "name": name, "arity": len(symbols),
        "expr": expr, "symbols": symbols, "base": base, "orders": orders,
        "numpy_fn": staticmethod(fn), "partials": {},
    }
    partials = [derivative(expr, symbols, i) for i in range(len(symbols))]
    attrs["derivs"] = tuple(_rule(name, i, d, expr, symbols) for i, d in enumerate(partials))
    attrs["differentiable"] = any(d != 0 for d in partials)
    cls = type(_class_name(name), (SympyElementwise,), attrs)
    return register(dataclasses.dataclass(frozen=True)(cls))


# Piecewise-constant functions: their derivative is 0 wherever it exists, the convention of
# the built-in `sign` (and of relu' = Heaviside, whose own derivative is then 0, not a delta).
PIECEWISE_CONSTANT = (sympy.floor, sympy.ceiling, sympy.sign, sympy.Heaviside)


def derivative(expr: sympy.Expr, symbols: tuple[sympy.Symbol, ...], i: int) -> sympy.Expr:
    """d expr / d symbols[i] for real arguments (graphc tensors are real), with the a.e.
    convention at jumps: floor, ceiling, sign and Heaviside have derivative 0 (SymPy leaves
    d floor(t)/dt unevaluated, and gives DiracDelta for Heaviside); frac and Mod are
    differentiated as written through floor (d Mod(t, 2)/dt = 1). What SymPy still cannot
    differentiate stays an unevaluated `Derivative`, which `_rule` reports."""
    real = {s: sympy.Dummy(s.name, real=True) for s in symbols}
    d = sympy.diff(expr.xreplace(real).rewrite(sympy.floor), real[symbols[i]])
    d = d.replace(lambda e: isinstance(e, sympy.Derivative)
                  and isinstance(e.expr, PIECEWISE_CONSTANT), lambda e: sympy.S.Zero)
    d = d.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: sympy.S.Zero)
    if d.has(sympy.Subs):  # the chain rule through floor(g(t)): Subs(0, ...) is 0
        d = d.doit()
    return d.xreplace({v: k for k, v in real.items()})


def _underivable(name: str, i: int, d: sympy.Expr, expr: sympy.Expr, symbols):
    """The rule for an argument whose derivative SymPy leaves unevaluated: asked for by a
    gradient, it says which op, which argument and which function."""
    left = sorted({str(e.expr.func) if isinstance(e, sympy.Derivative) else str(e)
                   for e in d.atoms(sympy.Derivative, sympy.Subs)})

    def rule(*xs):
        raise GraphError(
            f"elementwise {name!r}: no derivative of {name}({', '.join(map(str, symbols))}) "
            f"= {expr} with respect to {symbols[i]}: SymPy cannot differentiate "
            f"{', '.join(left)} (it leaves {d} unevaluated); write the formula without it, "
            "or declare a gc.Op with its own bprop and jvp (docs/custom-ops.md)")

    return rule


def _rule(name: str, i: int, d: sympy.Expr, expr: sympy.Expr, symbols):
    """The derivative rule for input i: `(*inputs, out) -> node`, a number, or None."""
    if d.has(sympy.Derivative, sympy.Subs):
        return _underivable(name, i, d, expr, symbols)
    if d == 0:
        return lambda *xs: None
    if d == 1:
        return lambda *xs: ONE
    if d == -1:
        return lambda *xs: MINUS_ONE
    if d.is_number:
        value = float(d)
        return lambda *xs: value
    if d == expr:  # f' = f (exp-like): reuse the output, as the built-in exp does
        return lambda *xs: xs[-1]

    def rule(*xs):
        owner = type(xs[-1].op)
        return _partial(owner, i)(*xs[:-1])

    return rule


def _partial(cls: type[SympyElementwise], i: int) -> ElementwiseFunction:
    """d cls / d (argument i), declared once and cached on `cls`."""
    fn = cls.partials.get(i)
    if fn is None:
        orders = tuple(k + (j == i) for j, k in enumerate(cls.orders))
        name = _partial_name(cls.base, orders)
        d = derivative(cls.expr, cls.symbols, i)
        existing = OPS.get(name)
        if (existing is not None and issubclass(existing, SympyElementwise)
                and existing.symbols == cls.symbols and existing.expr == d):
            fn = ElementwiseFunction(existing)
        elif existing is not None:
            raise GraphError(f"elementwise {cls.base!r}: the name {name!r} for its derivative "
                             f"{d} is taken by another op; rename one of them")
        else:
            fn = ElementwiseFunction(_declare(name, cls.base, d, cls.symbols, orders))
        cls.partials[i] = fn
    return fn


def _partial_name(base: str, orders: tuple[int, ...]) -> str:
    """`swish_d2` for a second derivative; `f_d1_0` for d f / d(first of two arguments)."""
    if len(orders) == 1:
        return f"{base}_d{orders[0]}"
    return f"{base}_d" + "_".join(map(str, orders))


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) or "UserOp"


# -- checking what the user gave -----------------------------------------------------------
def _check_symbols(name, args) -> tuple[sympy.Symbol, ...]:
    if not isinstance(name, str) or not name.isidentifier():
        raise GraphError(f"elementwise: the name must be an identifier (it names the op in "
                         f"drawings, files and generated code), got {name!r}")
    if isinstance(args, sympy.Symbol):
        args = [args]
    if not isinstance(args, (list, tuple)) or not args:
        raise GraphError(f"elementwise {name!r}: args must be a non-empty list of sympy "
                         f"symbols, got {args!r}")
    for a in args:
        if not isinstance(a, sympy.Symbol):
            raise GraphError(f"elementwise {name!r}: args must be sympy symbols, got "
                             f"{type(a).__name__} {a!r}")
    if len(set(args)) != len(args):
        raise GraphError(f"elementwise {name!r}: args {list(args)} repeat a symbol")
    return tuple(args)


def _check_expr(name, expr, symbols) -> sympy.Expr:
    if isinstance(expr, str):  # read by exprtext, never evaluated: args are the only names
        try:
            expr = exprtext.formula(expr, symbols)
        except ValueError as e:
            raise GraphError(f"elementwise {name!r}: cannot read the formula: {e}") from None
    elif isinstance(expr, (int, float)) and not isinstance(expr, bool):
        expr = sympy.Integer(expr) if isinstance(expr, int) else sympy.Float(expr)
    if not isinstance(expr, sympy.Expr) or isinstance(expr, sympy.MatrixBase) \
            or getattr(expr, "is_Matrix", False):
        raise GraphError(f"elementwise {name!r}: expected a scalar sympy expression, got "
                         f"{type(expr).__name__} {expr!r}")
    extra = expr.free_symbols - set(symbols)
    if extra:
        raise GraphError(f"elementwise {name!r}: the formula {expr} uses "
                         f"{sorted(map(str, extra))}, which are not among args "
                         f"{list(symbols)}; add them to args or substitute numbers")
    if expr.has(sympy.I) or expr.has(sympy.zoo):
        raise GraphError(f"elementwise {name!r}: the formula {expr} is complex; graphc "
                         "tensors are real")
    return expr


def _probe(name, fn, expr, arity) -> None:
    """Run the lambdified formula once, so a function NumPy lacks fails at declaration."""
    try:
        with np.errstate(all="ignore"):
            fn(*([np.full(2, 0.5)] * arity))
    except Exception as e:  # NameError, TypeError...: whatever lambdify's code raised
        raise GraphError(f"elementwise {name!r}: the formula {expr} has no NumPy/SciPy "
                         f"implementation ({type(e).__name__}: {e})") from None
