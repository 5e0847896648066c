"""The sympy bridge: round trips over the op table, gradients against sympy.diff, sharing,
every sympy function from_sympy maps, matrix expressions, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.export.sympy_bridge import CONVERTERS
from graphc.ir.op import OPS, has_hook
from graphc.ops.base import Elementwise
from tests.ops.cases import CASES
from tests.ops.cases_linalg import NO_SYMPY

# -- round trips -----------------------------------------------------------------------------


def _build(case):
    g = gc.Graph()
    xs = [g.input(f"x{k}", shape=s, dtype=case.dtype) for k, s in enumerate(case.shapes)]
    return g, xs, case.build(*xs)


@pytest.mark.parametrize("case", CASES, ids=[c.id or c.op for c in CASES])
def test_round_trip_evaluates_equal_on_the_op_table(case, rng):
    g, xs, y = _build(case)
    refused = sorted({n.op.name for n in g.nodes} & NO_SYMPY)
    if refused:  # SymPy has no closed form (eigh, svd, qr): a clear error instead
        with pytest.raises(gc.GraphError, match=f"{refused[0]}: SymPy has no closed form"):
            gc.to_sympy(y)
        return
    y2 = gc.from_sympy(gc.to_sympy(y), g)  # symbols found by name: x0, x1[0, 2], ...
    assert y2 is not y and y2.shape == y.shape
    feed = {x: case.sample(rng, k) for k, x in enumerate(xs)}
    want, got = gc.eval([y, y2], feed)
    np.testing.assert_allclose(got, want, rtol=1e-6 if case.dtype == "float32" else 1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if len(c.shapes) == 1 and c.shapes[0] == ()],
                         ids=lambda c: c.id or c.op)
def test_scalar_round_trip_with_explicit_symbols_and_cse_form(case, rng):
    g, (x,), y = _build(case)
    s = sympy.Symbol("s", real=True)
    expr = gc.to_sympy(y, symbols={x: s})
    assert expr.free_symbols <= {s}
    y2 = gc.from_sympy(expr, g, {s: x})
    replacements, reduced = gc.to_sympy(y, symbols={x: s}, cse=True)
    assert sympy.simplify(reduced.subs(list(reversed(replacements))) - expr) == 0
    v = case.sample(rng, 0)
    np.testing.assert_allclose(*gc.eval([y2, y], {x: v}), rtol=1e-12)


def test_every_registered_op_has_a_sympy_form_or_is_a_leaf():
    """Each op's class carries its sympy form: the hook `sympy`, or for an elementwise op
    a `formula` of sympy scalars; inputs and constants are written by to_sympy itself."""
    builtin = {n: cls for n, cls in OPS.items() if cls.__module__.startswith(("graphc.ops.",
                                                                             "graphc.ir."))
               and not cls.__module__.startswith("graphc.ops.custom")}
    written = {n for n, cls in builtin.items() if has_hook(cls, "sympy") and not (
        issubclass(cls, Elementwise) and cls.formula is None)} | {"input", "constant"}
    assert sorted(set(builtin) - written) == []


# -- gradients against sympy.diff ------------------------------------------------------------
EXPRESSIONS = [
    lambda x, y: x * y + gc.sin(x),
    lambda x, y: gc.exp(x * y) / (1.0 + y * y),
    lambda x, y: gc.tanh(x) * gc.tanh(x) - y,
    lambda x, y: gc.log(1.0 + x * x) * gc.cos(y),
    lambda x, y: gc.sqrt(x * x + y * y + 1.0),
    lambda x, y: gc.sigmoid(x * y),
    lambda x, y: gc.softplus(x - 2.0 * y),
    lambda x, y: x ** 3.0 + y ** 2.0 * x,
    lambda x, y: gc.exp(-x * x) * gc.sin(y),
    lambda x, y: gc.tan(x) + gc.square(y - x),
    lambda x, y: gc.log1p(x * x) + gc.expm1(y),
    lambda x, y: (x + y) / (x - y + 3.0),
    lambda x, y: gc.sin(gc.cos(gc.sin(x * y))),
    lambda x, y: gc.tanh(gc.tanh(gc.tanh(x) * y) * x),
    lambda x, y: gc.abs(x) * y,
    lambda x, y: 2.0 ** x + y,
    lambda x, y: gc.exp(x) ** y,
    lambda x, y: gc.logsumexp(gc.stack([x, y, x * y])),
    lambda x, y: gc.softmax(gc.stack([x, y]))[0],
    lambda x, y: gc.sum(gc.stack([x, y]) * gc.stack([y, x])),
    lambda x, y: gc.mean(gc.stack([gc.sin(x), gc.cos(y)])),
    lambda x, y: gc.stack([x, y]) @ gc.stack([y, x * x]),
    lambda x, y: gc.softplus(x) * gc.sigmoid(y) + gc.log(gc.sigmoid(x)),
    lambda x, y: gc.where(x > 0.0, x * y, y),
    lambda x, y: gc.log_softmax(gc.stack([x, 2.0 * y, x - y]))[1],
    lambda x, y: (x * y) * gc.cos(x * y) + gc.sqrt(gc.exp(x * y)),  # x*y shared three ways
]


@pytest.mark.parametrize("k", range(len(EXPRESSIONS)))
def test_to_sympy_of_grad_simplifies_to_sympy_diff(k):
    g = gc.Graph()
    x, y = g.input("x"), g.input("y")
    z = EXPRESSIONS[k](x, y)
    gx, gy = gc.grad(z, [x, y])
    ez, sx, sy = gc.to_sympy([z, x, y])
    got_x, got_y = gc.to_sympy([gx, gy])
    assert sympy.simplify(got_x - sympy.diff(ez, sx)) == 0
    assert sympy.simplify(got_y - sympy.diff(ez, sy)) == 0


def test_tensor_gradient_is_sympys_derivative_by_array():
    g = gc.Graph()
    W = g.input("W", shape=(2, 3))
    x = g.input("x", shape=(3,))
    z = gc.sum(gc.tanh(W @ x) * np.array([1.0, -2.0]))
    gW = gc.grad(z, W)
    ez, sW, gWs = gc.to_sympy([z, W, gW])
    assert isinstance(gWs, sympy.Array) and gWs.shape == (2, 3)
    want = sympy.derive_by_array(ez, sW)
    assert all(sympy.simplify(gWs[i, j] - want[i, j]) == 0 for i in range(2) for j in range(3))


def test_second_derivative_against_sympy():
    g = gc.Graph()
    x = g.input("x")
    z = gc.sin(x) * gc.exp(x * x)
    h = gc.grad(gc.grad(z, x), x)
    sx = gc.to_sympy(x)
    assert sympy.simplify(gc.to_sympy(h) - sympy.diff(gc.to_sympy(z), sx, 2)) == 0


# -- sharing ---------------------------------------------------------------------------------
def ladder(x, depth):
    for _ in range(depth):
        x = gc.sin(x) * gc.cos(x)  # each rung uses the one below twice: the tree doubles
    return x


def test_shared_subexpressions_stay_shared():
    g = gc.Graph()
    x = g.input("x")
    z = ladder(x, 40)  # as a tree: about 2**41 nodes
    expr = gc.to_sympy(z)
    rung = expr
    for _ in range(3):  # both factors hold the very same object for the rung below
        c, s = sorted(rung.args, key=lambda e: type(e).__name__)
        same = type(c) is sympy.cos and type(s) is sympy.sin and c.args[0] is s.args[0]
        assert same  # (a bool: printing the 2**41-node tree on failure would never end)
        rung = s.args[0]
    mine, reduced = gc.to_sympy(z, cse=True)  # linear time, where sympy.cse is exponential
    assert len(mine) == 39 and sympy.count_ops(reduced) == 3  # sin(m) * cos(m)
    replacements, _ = sympy.cse(gc.to_sympy(ladder(x, 10)))
    assert len(replacements) == 9  # sympy.cse finds the rungs again


def test_cse_form_matches_the_plain_form():
    g = gc.Graph()
    x = g.input("x")
    z = ladder(x, 4)
    reps, reduced = gc.to_sympy(z, cse=True)
    assert [str(s) for s, _ in reps][:1] == [f"{g.nodes[3].name}"]
    assert sympy.simplify(reduced.subs(list(reversed(reps))) - gc.to_sympy(z)) == 0


# -- from_sympy: every supported function ---------------------------------------------------
u, v, w = sympy.symbols("u v w", real=True)
FROM_SYMPY = [
    u + v - 3 * w, u * v / w, -u, 1 / u, u**2, sympy.sqrt(v), 1 / sympy.sqrt(v), v**-2,
    u**v, 2**u, sympy.exp(u), sympy.log(v), sympy.log(1 + v), sympy.log(v, 2),
    sympy.sin(u), sympy.cos(u), sympy.tan(u), sympy.cot(u), sympy.sec(u), sympy.csc(u),
    sympy.sinh(u), sympy.cosh(u), sympy.tanh(u), sympy.coth(u), sympy.sech(u), sympy.csch(u),
    sympy.asinh(u), sympy.acosh(v + 1), sympy.atanh(u / 3), sympy.Abs(u), sympy.sign(u),
    sympy.Max(u, v, w), sympy.Min(u, v), sympy.Max(u, 0), sympy.Heaviside(u),
    sympy.Heaviside(u, 1), 1 / (1 + sympy.exp(-u)), sympy.pi * u + sympy.E,
    sympy.Rational(1, 3) * u,
    sympy.Piecewise((u, u > v), (v * w, sympy.And(u < 0, w >= 0)), (w, True)),
    sympy.Piecewise((1, sympy.Or(u <= 0, sympy.Eq(v, w))), (2, sympy.Ne(u, v)), (3, True)),
    sympy.Piecewise((u, sympy.Not(sympy.And(u > 0, v > 1))), (v, True)),
    # issue 15: functions with graphc ops of their own
    sympy.asin(u / 3), sympy.acos(u / 3), sympy.atan(u), sympy.atan2(u, v), sympy.erf(u),
    sympy.erfc(u), sympy.floor(u * 1.5), sympy.ceiling(u * 1.5), sympy.Mod(u, v),
    sympy.Mod(w, -v),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 1/u at u = 0 gives inf on both sides
@pytest.mark.parametrize("expr", FROM_SYMPY, ids=str)
def test_from_sympy_matches_lambdify(expr, rng):
    g = gc.Graph()
    nodes = {s: g.input(str(s), shape=(9,)) for s in (u, v, w)}
    y = gc.from_sympy(expr, g, nodes)
    vals = [np.concatenate([[0.0, 1.0, -1.0], rng.uniform(-2, 2, 6)]),
            np.concatenate([[1.5, 2.0, 1.0], rng.uniform(0.5, 2, 6)]),
            np.concatenate([[1.5, 1.0, 1.0], rng.uniform(-2, 2, 6)])]
    want = sympy.lambdify([u, v, w], expr, ["scipy", "numpy"])(*vals)  # scipy: erf
    got = y.eval(dict(zip(nodes.values(), vals)))
    np.testing.assert_allclose(got, np.broadcast_to(want, (9,)), rtol=1e-12, atol=1e-12)


def test_from_sympy_picks_stable_ops_and_shares_subexpressions():
    g = gc.Graph()
    x = g.input("x")
    e = sympy.Symbol("e")
    y = gc.from_sympy(sympy.log(1 + e**2) + 1 / (1 + sympy.exp(-e)) + sympy.sin(e**2), g, {e: x})
    names = [n.op.name for n in g.nodes]
    assert "log1p" in names and "sigmoid" in names
    assert names.count("square") == 1  # e**2 built once though used twice
    np.testing.assert_allclose(y.eval({x: 0.7}),
                               np.log1p(0.49) + 1 / (1 + np.exp(-0.7)) + np.sin(0.49))


def test_every_converter_is_exercised():
    exercised = set()
    for expr in FROM_SYMPY + MATRIX_EXPRESSIONS:
        for sub in sympy.preorder_traversal(expr):
            exercised |= {cls for cls in type(sub).__mro__ if cls in CONVERTERS}
    assert sorted(c.__name__ for c in set(CONVERTERS) - exercised) == []


# -- matrix expressions ----------------------------------------------------------------------
A, B = sympy.MatrixSymbol("A", 3, 2), sympy.MatrixSymbol("B", 2, 3)
C = sympy.MatrixSymbol("C", 3, 3)
MATRIX_EXPRESSIONS = [
    A * B, (A * B).T + 2 * C, C**3 - sympy.Identity(3), sympy.HadamardProduct(A, B.T),
    sympy.Trace(C * A * B) * C, A * B + sympy.OneMatrix(3, 3), sympy.ZeroMatrix(3, 2),
    sympy.Matrix([[u, v], [u * v, 1]]), sympy.Array([u, sympy.sin(v), 2]),
]


@pytest.mark.parametrize("expr", MATRIX_EXPRESSIONS, ids=str)
def test_matrix_expressions_map_to_matmul(expr, rng):
    g = gc.Graph()
    vals = {A: rng.standard_normal((3, 2)), B: rng.standard_normal((2, 3)),
            C: rng.standard_normal((3, 3)), u: 0.3, v: -1.2}
    nodes = {s: g.input(str(s), shape=np.shape(val)) for s, val in vals.items()}
    y = gc.from_sympy(expr, g, nodes)
    np.testing.assert_allclose(y.eval({nodes[s]: vals[s] for s in nodes}),
                               _numeric(expr, vals), rtol=1e-12)
    if any(isinstance(e, sympy.MatMul) for e in sympy.preorder_traversal(expr)):
        assert "matmul" in {n.op.name for n in g.nodes}


def _numeric(expr, vals):
    """The oracle: sympy substitutes the values and multiplies the matrices out itself."""
    if isinstance(expr, sympy.MatrixExpr):
        expr = expr.xreplace({s: sympy.ImmutableMatrix(vals[s]) for s in (A, B, C)}).doit()
        expr = expr.as_explicit() if isinstance(expr, sympy.MatrixExpr) else expr
    expr = sympy.sympify(expr).xreplace({u: sympy.Float(vals[u]), v: sympy.Float(vals[v])})
    return np.array(sympy.Array(expr).tolist(), dtype=float)


def test_entries_of_matrix_symbols_and_symbol_arrays():
    g = gc.Graph()
    M = g.input("M", shape=(2, 2))
    P = sympy.MatrixSymbol("P", 2, 2)
    q = sympy.Array(sympy.symbols("q0 q1"))
    vec = g.input("vec", shape=(2,))
    y = gc.from_sympy(P[0, 1] * q[0] + P[1, 0] * q[1], g, {P: M, q: vec})
    Mv, vv = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([5.0, 7.0])
    np.testing.assert_allclose(y.eval({M: Mv, vec: vv}), 2 * 5 + 3 * 7)


# -- dtypes and errors -----------------------------------------------------------------------
def test_constants_follow_the_inputs_float32():
    g = gc.Graph()
    x = g.input("x", shape=(2,), dtype="float32")
    y = gc.from_sympy(sympy.Rational(1, 3) * u + sympy.pi, g, {u: x})
    assert y.dtype == np.float32


def test_unsupported_function_is_a_clear_error_and_leaves_the_graph():
    g = gc.Graph()
    x = g.input("x")
    before = list(g.nodes)
    with pytest.raises(gc.GraphError, match=r"gamma\(u\) \(gamma\) has no graphc op.*elementwise"):
        gc.from_sympy(sympy.sin(u) + sympy.gamma(u), g, {u: x})
    assert len(g.nodes) == len(before)
    for bad, pattern in [(sympy.Inverse(C), "inverses do not"), (sympy.I * u, "no graphc op"),
                         (C**-1, "positive integer"), (sympy.Heaviside(u, sympy.nan), "at 0"),
                         (sympy.loggamma(u), "loggamma")]:
        with pytest.raises(gc.GraphError, match=pattern):
            gc.from_sympy(bad, g, {u: x, C: g.input(f"C{len(g.nodes)}", shape=(3, 3))})
    gamma = gc.elementwise("test_gamma", sympy.gamma(u), [u])
    y = gc.from_sympy(sympy.sin(u) + sympy.gamma(u), g, {u: x}, functions={sympy.gamma: gamma})
    np.testing.assert_allclose(y.eval({x: 0.5}), np.sin(0.5) + 1.7724538509055159)


def test_symbol_errors():
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    with pytest.raises(gc.GraphError, match=r"symbol zz is not mapped.*no input named 'zz'"):
        gc.from_sympy(sympy.Symbol("zz") + 1, g)
    with pytest.raises(gc.GraphError, match="indexes input 'x'"):
        gc.from_sympy(sympy.Symbol("x[0, 1]"), g)
    with pytest.raises(gc.GraphError, match="shape"):
        gc.from_sympy(A * B, g, {A: x, B: x})
    with pytest.raises(gc.GraphError, match="inputs keys"):
        gc.from_sympy(u, g, {"u": x})
    with pytest.raises(gc.GraphError, match="another graph|graph"):
        gc.from_sympy(u, g, {u: gc.Graph("other").input("u")})
    assert gc.from_sympy(sympy.Symbol("x[1]") * 2, g).eval({x: [1.0, 4.0]}) == 8.0


def test_to_sympy_errors():
    g = gc.Graph()
    x = g.input("x", shape=("n",))
    with pytest.raises(gc.GraphError, match="symbolic shape"):
        gc.to_sympy(gc.exp(x))
    big = g.input("big", shape=(200, 200))
    with pytest.raises(gc.GraphError, match="small tensors"):
        gc.to_sympy(big)
    with pytest.raises(gc.GraphError, match="different|belongs"):
        gc.to_sympy([big, gc.Graph("h").input("y")])
    s = g.input("s", shape=(2, 2))
    with pytest.raises(gc.GraphError, match="shape"):
        gc.to_sympy(s, symbols={s: sympy.MatrixSymbol("S", 3, 3)})
    S = sympy.MatrixSymbol("S", 2, 2)
    assert gc.to_sympy(gc.trace(s), symbols={s: S}) == S[0, 0] + S[1, 1]
