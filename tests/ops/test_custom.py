"""User-defined ops: elementwise ops from sympy formulas (checked against sympy's own
derivatives to third order) and hand-written ops verified, or caught, by check_grad."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.ops.custom import SympyElementwise

t = sympy.Symbol("t", real=True)
a, b = sympy.symbols("a b", real=True)

GELU = t * (1 + sympy.erf(t / sympy.sqrt(2))) / 2  # Gaussian error linear unit
SWISH = t / (1 + sympy.exp(-t))                     # x * sigmoid(x)
gelu = gc.elementwise("test_gelu", GELU, [t])
swish = gc.elementwise("test_swish", SWISH, [t])


def sympy_values(expr, symbols, *values, order=0, wrt=None):
    """The oracle: sympy's derivative of `expr`, lambdified with SciPy's erf."""
    d = sympy.diff(expr, *([wrt] * order)) if order else expr
    return np.broadcast_to(sympy.lambdify(symbols, d, "scipy")(*values),
                           np.broadcast_shapes(*(np.shape(v) for v in values)))


def derivatives(y, x, order):
    """y, dy/dx, d2y/dx2, ... entry by entry for an elementwise y(x): grad of sums."""
    out = [y]
    for _ in range(order):
        out.append(gc.grad(out[-1].sum(), x))
    return out


@pytest.mark.parametrize("fn,expr", [(gelu, GELU), (swish, SWISH)], ids=["gelu", "swish"])
def test_third_order_matches_sympy(fn, expr):
    g = gc.Graph()
    x = g.input("x", shape=(7,))
    v = np.linspace(-2.5, 2.0, 7)
    ds = derivatives(fn(x), x, 3)
    values = gc.eval(ds, {x: v})
    for k, got in enumerate(values):
        np.testing.assert_allclose(got, sympy_values(expr, [t], v, order=k, wrt=t),
                                   rtol=1e-12, atol=1e-13)
    assert gc.check_grad(fn(x).sum(), x, at={x: v}, order=3) < 1e-6


def test_third_derivative_is_an_elementwise_op_whose_formula_is_sympys():
    g = gc.Graph()
    x = g.input("x")
    d3 = derivatives(gelu(x), x, 3)[-1]
    ops_used = {type(n.op) for n in g.nodes if isinstance(n.op, SympyElementwise)}
    assert {op.name for op in ops_used} == {"test_gelu", "test_gelu_d1", "test_gelu_d2",
                                            "test_gelu_d3"}
    third = next(op for op in ops_used if op.orders == (3,))
    assert sympy.simplify(third.expr - sympy.diff(GELU, t, 3)) == 0
    # to_sympy writes the user op by its formula: the graph's third derivative is sympy's
    sx = gc.to_sympy(x)
    assert sympy.simplify(gc.to_sympy(d3) - sympy.diff(GELU, t, 3).subs(t, sx)) == 0


def test_jvp_rules_give_derivative_times_tangent():
    g = gc.Graph()
    x = g.input("x", shape=(5,))
    v = np.linspace(-1.0, 1.5, 5)
    u = np.array([0.3, -1.0, 2.0, 0.5, 1.0])
    y = swish(x)
    first = gc.jvp(y, x, u)                      # forward mode
    second = gc.jvp(gc.grad(y.sum(), x), x, u)   # forward over reverse
    f1, f2 = gc.eval([first, second], {x: v})
    np.testing.assert_allclose(f1, sympy_values(SWISH, [t], v, order=1, wrt=t) * u, rtol=1e-12)
    np.testing.assert_allclose(f2, sympy_values(SWISH, [t], v, order=2, wrt=t) * u, rtol=1e-12)


def test_two_arguments_broadcast_and_gradients_sum_back_to_each_shape():
    f = gc.elementwise("test_f2", a * sympy.exp(-a * b) + b**2, [a, b])
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    y = g.input("y", shape=(3, 1))
    xv, yv = np.linspace(-1, 1, 4), np.array([[0.1], [0.7], [-0.4]])
    z = f(x, y)
    assert z.shape == (3, 4)
    gx, gy = gc.grad(z.sum(), [x, y])
    out, gxv, gyv = gc.eval([z, gx, gy], {x: xv, y: yv})
    np.testing.assert_allclose(out, sympy_values(f.expr, [a, b], xv, yv), rtol=1e-13)
    np.testing.assert_allclose(
        gxv, sympy_values(f.expr, [a, b], xv, yv, order=1, wrt=a).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        gyv, sympy_values(f.expr, [a, b], xv, yv, order=1, wrt=b).sum(axis=1, keepdims=True),
        rtol=1e-12)
    assert gc.check_grad(z, [x, y], at={x: xv, y: yv}, order=3) < 1e-6
    # the mixed partial is one op whichever argument came first
    assert f.diff(0).diff(1).name == f.diff(1).diff(0).name == "test_f2_d1_1"


def test_constant_and_missing_arguments():
    lin = gc.elementwise("test_lin", 3 * a - b, [a, b])
    only_a = gc.elementwise("test_only_a", sympy.sin(a), [a, b])
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = g.input("y", shape=(2, 1))
    xv, yv = np.array([0.1, 0.2, 0.3]), np.array([[1.0], [2.0]])
    z1, z2 = lin(x, y), only_a(x, y)
    assert z2.shape == (2, 3)
    gx1, gy1 = gc.grad(z1.sum(), [x, y])
    gx2, gy2 = gc.grad(z2.sum(), [x, y])
    vals = gc.eval([z1, z2, gx1, gy1, gx2, gy2], {x: xv, y: yv})
    np.testing.assert_allclose(vals[0], 3 * xv - yv)
    np.testing.assert_allclose(vals[1], np.broadcast_to(np.sin(xv), (2, 3)))
    np.testing.assert_allclose(vals[2], [6.0, 6.0, 6.0])
    np.testing.assert_allclose(vals[3], [[-3.0], [-3.0]])
    np.testing.assert_allclose(vals[4], 2 * np.cos(xv))
    np.testing.assert_allclose(vals[5], [[0.0], [0.0]])


def test_dtypes_follow_the_builtins():
    g = gc.Graph()
    x32 = g.input("x32", shape=(2,), dtype="float32")
    n = g.input("n", shape=(2,), dtype="int64")
    y32, yn = swish(x32), swish(n)
    assert y32.dtype == np.float32 and yn.dtype == np.float64
    v32, vn = gc.eval([y32, yn], {x32: np.array([1, 2], np.float32), n: np.array([1, 2])})
    assert v32.dtype == np.float32
    np.testing.assert_allclose(vn, sympy_values(SWISH, [t], np.array([1.0, 2.0])))
    np.testing.assert_allclose(v32, vn, rtol=1e-6)


def test_declaring_again_and_bad_declarations():
    assert gc.elementwise("test_swish", SWISH, [t]).op is swish.op
    with pytest.raises(gc.GraphError, match="already registered"):
        gc.elementwise("test_swish", sympy.sin(t), [t])
    with pytest.raises(gc.GraphError, match="already registered"):
        gc.elementwise("exp", sympy.exp(t), [t])
    with pytest.raises(gc.GraphError, match=r"uses \['b'\]"):
        gc.elementwise("test_bad1", a * b, [a])
    with pytest.raises(gc.GraphError, match="must be sympy symbols"):
        gc.elementwise("test_bad2", a, ["a"])
    with pytest.raises(gc.GraphError, match="repeat"):
        gc.elementwise("test_bad3", a, [a, a])
    with pytest.raises(gc.GraphError, match="identifier"):
        gc.elementwise("bad name", a, [a])
    with pytest.raises(gc.GraphError, match="no NumPy"):
        gc.elementwise("test_bad4", sympy.Function("mystery")(a), [a])
    with pytest.raises(gc.GraphError, match="complex"):
        gc.elementwise("test_bad5", sympy.I * a, [a])
    assert "test_bad1" not in gc.ir.op.OPS


def test_formula_as_text_and_wrong_arity_at_call():
    cube = gc.elementwise("test_cube", "a**3", [a])
    g = gc.Graph()
    x = g.input("x")
    np.testing.assert_allclose(gc.grad(cube(x), x).eval({x: 2.0}), 12.0)
    before = list(g.nodes)
    with pytest.raises(gc.GraphError, match=r"takes 1 argument"):
        cube(x, x)
    y = g.input("y", shape=(3,))
    z = g.input("z", shape=(4,))
    f2 = gc.elementwise("test_prod", a * b, [a, b])
    before = list(g.nodes)
    with pytest.raises(gc.ShapeError, match="broadcast"):
        f2(y, z)
    assert len(g.nodes) == len(before)


# -- hand-written ops, declared the way the built-ins are (docs/custom-ops.md) ---------------
@gc.register
@dataclasses.dataclass(frozen=True)
class Huber(gc.Op):
    """Huber loss per entry: quadratic within `delta` of 0, linear outside."""

    name: ClassVar[str] = "test_huber"
    delta: float = 1.0

    def infer(self, x):
        return x.shape, x.dtype

    def forward(self, x):
        r = np.abs(x)
        return np.where(r <= self.delta, 0.5 * x * x, self.delta * (r - 0.5 * self.delta))

    def slope(self, x):  # d out / dx = clip(x, -delta, delta), built from ops
        return gc.minimum(gc.maximum(x, -self.delta), self.delta)

    def bprop(self, inputs, out, g, i):
        return g * self.slope(inputs[0])

    def jvp(self, inputs, out, t, i):
        return t * self.slope(inputs[0])


def huber(x, delta=1.0):
    return gc.apply(Huber(delta), x)


@gc.register
@dataclasses.dataclass(frozen=True)
class HuberWrongBprop(Huber):
    """The same op with a bprop that forgot to clip: wrong outside [-delta, delta]."""

    name: ClassVar[str] = "test_huber_wrong_bprop"

    def bprop(self, inputs, out, g, i):
        return g * inputs[0]


@gc.register
@dataclasses.dataclass(frozen=True)
class HuberFrozenBprop(Huber):
    """A bprop right at first order but built from stop_gradient: no second derivative."""

    name: ClassVar[str] = "test_huber_frozen_bprop"

    def bprop(self, inputs, out, g, i):
        return g * gc.stop_gradient(self.slope(inputs[0]))


@gc.register
@dataclasses.dataclass(frozen=True)
class HuberWrongJvp(Huber):
    """Right bprop, but a jvp with the sign flipped."""

    name: ClassVar[str] = "test_huber_wrong_jvp"

    def jvp(self, inputs, out, t, i):
        return -t * self.slope(inputs[0])


X_VAL = np.array([-2.5, -0.4, 0.3, 1.7])  # both sides of the kinks at +-1, away from them


def huber_oracle(x, delta=1.0):
    return np.where(np.abs(x) <= delta, x, delta * np.sign(x))


def test_hand_written_op_passes_check_grad_and_matches_its_formula():
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    y = huber(x, 1.0)
    np.testing.assert_allclose(y.eval({x: X_VAL}), [2.0, 0.08, 0.045, 1.2])
    np.testing.assert_allclose(gc.grad(y.sum(), x).eval({x: X_VAL}), huber_oracle(X_VAL))
    assert gc.check_grad(y.sum() * 2.0, x, at={x: X_VAL}, order=2) < 1e-6
    assert gc.check_grad(lambda v: huber(v * v, 0.5), [X_VAL], order=2) < 1e-6


def test_check_grad_catches_a_wrong_bprop():
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    n = len(g.nodes)
    with pytest.raises(gc.GradCheckError, match=r"order-1 .*bprop \(reverse mode\)"):
        gc.check_grad(gc.apply(HuberWrongBprop(1.0), x).sum(), x, at={x: X_VAL})
    assert len(g.nodes) == n + 2  # check_grad's own nodes are gone; the op and sum stay


def test_check_grad_catches_a_bprop_that_cannot_be_differentiated_again():
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    y = gc.apply(HuberFrozenBprop(1.0), x * x).sum()
    assert gc.check_grad(y, x, at={x: X_VAL}, order=1, modes="rev") < 1e-6
    with pytest.raises(gc.GradCheckError, match="order-2"):
        gc.check_grad(y, x, at={x: X_VAL}, order=2, modes="rev")


def test_check_grad_catches_a_wrong_jvp():
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    y = gc.apply(HuberWrongJvp(1.0), x).sum()
    assert gc.check_grad(y, x, at={x: X_VAL}, modes="rev") < 1e-6
    with pytest.raises(gc.GradCheckError, match=r"jvp \(forward mode\)"):
        gc.check_grad(y, x, at={x: X_VAL})


def test_apply_lifts_numbers_names_the_node_and_rejects_non_ops():
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    y = gc.apply(gc.ops.elementwise.Add(), x, 1.5, name="shifted")
    assert y.name == "shifted"
    np.testing.assert_allclose(y.eval({x: np.array([1.0, 2.0])}), [2.5, 3.5])
    before = list(g.nodes)
    with pytest.raises(gc.GraphError, match="expected an op instance"):
        gc.apply(Huber, x)
    with pytest.raises(gc.ShapeError):
        gc.apply(gc.ops.elementwise.Add(), x, np.ones(3))
    assert len(g.nodes) == len(before)


def test_to_sympy_names_a_hand_written_op_it_cannot_write():
    g = gc.Graph()
    x = g.input("x")
    with pytest.raises(gc.GraphError, match="test_huber"):
        gc.to_sympy(huber(x))


# -- issue 12, finding 23: a text formula is read by graphc.ir.exprtext, never sympified ----
def test_text_formula_is_read_without_sympify_and_names_only_args(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("sympify must not see the user's text")

    monkeypatch.setattr(sympy, "sympify", refuse)
    f = gc.elementwise("test_text_gauss", "a * exp(-b**2 / 2)", [a, b])
    assert f.expr == a * sympy.exp(-b ** 2 / 2)
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = g.input("y", shape=(3,))
    xv, yv = np.array([1.0, -2.0, 0.5]), np.array([0.0, 1.0, -1.5])
    out = f(x, y)
    gx, gy = gc.grad(out.sum(), [x, y])
    vals = gc.eval([out, gx, gy], {x: xv, y: yv})
    np.testing.assert_allclose(vals[0], xv * np.exp(-yv ** 2 / 2))
    np.testing.assert_allclose(vals[1], np.exp(-yv ** 2 / 2))
    np.testing.assert_allclose(vals[2], -xv * yv * np.exp(-yv ** 2 / 2))
    marker = tmp_path / "ran"
    for text in [f"__import__('os').system('touch {marker}')", "a + pi", "a.func(b)"]:
        with pytest.raises(gc.GraphError, match="test_text_bad.*cannot read the formula"):
            gc.elementwise("test_text_bad", text, [a, b])
    assert not marker.exists() and "test_text_bad" not in gc.ir.op.OPS
