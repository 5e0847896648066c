"""Issue 14: five items, each checked against an independent oracle (closed forms, finite
differences, NumPy/SciPy, values worked out by hand).

1. the binary cross-entropy written out over sigmoid is finite and right at saturated logits;
2. `where` does not hide a NaN derivative of the branch it does not choose (the docs say so),
   and the double `where` does;
3. `one_hot` of class ids given as an array: a constant, in the graph of `like`;
4. a user formula with `floor` differentiates (derivative 0 almost everywhere), and one SymPy
   cannot differentiate gives an error that names the op and the function;
5. a ShapeError from a helper names the helper the user called, the bad shape or axis, and
   the user's line.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.special
import sympy

import graphc as gc

Z = np.array([40.0, -40.0, 800.0, -800.0, 2.5, -0.75])  # saturated, and two ordinary logits


def softplus(v):
    return np.logaddexp(0.0, v)  # log(1 + e**v) without overflow: the oracle


def central(f, x, h=1e-6):
    """d f / d x entry by entry by central differences (f elementwise, float64)."""
    return (f(x + h) - f(x - h)) / (2 * h)


# -- 1. binary cross-entropy at saturated logits ---------------------------------------------
def naive_bce(z, y):
    s = gc.sigmoid(z)
    return -(y * gc.log(s) + (1 - y) * gc.log(1 - s))


@pytest.mark.parametrize("label", [0.0, 1.0, 0.3])
def test_naive_binary_cross_entropy_is_finite_and_exact_at_saturation(label):
    """loss = softplus(z) - y z and d loss / dz = sigmoid(z) - y (closed forms)."""
    g = gc.Graph()
    z = g.input("z", shape=Z.shape)
    y = g.input("y", shape=Z.shape)
    loss = naive_bce(z, y)
    gz = gc.grad(gc.sum(loss), z)
    yv = np.full(Z.shape, label)
    want_loss = softplus(Z) - yv * Z
    want_grad = scipy.special.expit(Z) - yv
    f = gc.function([z, y], [loss, gz], optimize=True)
    got_loss, got_grad = f(Z, yv)
    assert np.isfinite(got_loss).all() and np.isfinite(got_grad).all()
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-12, atol=1e-15)
    # Node.eval compiles with the rewrites too
    np.testing.assert_allclose(gc.eval([loss, gz], {z: Z, y: yv})[1], want_grad, atol=1e-15)
    # what the compiler made of it: no log of a probability and no division is left
    names = [n.op.name for n in f.graph.nodes]
    assert "log" not in names and "div" not in names and "softplus" in names
    assert {"log_sigmoid_to_neg_softplus", "log_one_minus_sigmoid_to_neg_softplus",
            "quotients_times_denominators_to_products"} <= set(f.fired)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning",
                            "ignore:overflow:RuntimeWarning")
def test_optimize_false_runs_the_formula_as_written():
    """Documented: without the rewrites the formula is computed as written, log(0) and all."""
    g = gc.Graph()
    z = g.input("z", shape=(1,))
    loss = naive_bce(z, 1.0)
    out = gc.function([z], [loss], optimize=False)(np.array([800.0]))[0]
    assert not np.isfinite(out).all()  # 0 * log(1 - 1) = 0 * -inf


@pytest.mark.parametrize("form, value, slope", [
    (lambda z: gc.log(gc.sigmoid(z)), lambda v: -softplus(-v),
     lambda v: scipy.special.expit(-v)),
    (lambda z: gc.log(1.0 - gc.sigmoid(z)), lambda v: -softplus(v),
     lambda v: -scipy.special.expit(v)),
    (lambda z: gc.log1p(-gc.sigmoid(z)), lambda v: -softplus(v),
     lambda v: -scipy.special.expit(v)),
    (lambda z: gc.log(gc.exp(z)), lambda v: v, lambda v: np.ones_like(v)),
], ids=["log_sigmoid", "log_one_minus_sigmoid", "log1p_neg_sigmoid", "log_exp"])
def test_log_of_a_saturating_op_and_its_gradient_are_finite(form, value, slope):
    g = gc.Graph()
    z = g.input("z", shape=Z.shape)
    y = form(z)
    gz = gc.grad(gc.sum(y), z)
    f = gc.function([z], [y, gz])
    got_y, got_g = f(Z)
    np.testing.assert_allclose(got_y, value(Z), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got_g, slope(Z), rtol=1e-12, atol=1e-15)
    # and the slope is the finite-difference slope where the closed form is not tiny
    mid = np.array([-3.0, -0.5, 0.5, 3.0])
    fd = central(lambda v: gc.function([z], [y])(np.resize(v, Z.shape))[0][:4], mid)
    np.testing.assert_allclose(f(np.resize(mid, Z.shape))[1][:4], fd, rtol=1e-7)


def test_second_derivative_of_log_sigmoid_is_finite():
    """d2/dz2 log(sigmoid(z)) = -sigmoid(z) sigmoid(-z); the naive graph gives NaN at +-800."""
    g = gc.Graph()
    z = g.input("z", shape=Z.shape)
    gz = gc.grad(gc.sum(gc.log(gc.sigmoid(z))), z)
    h = gc.grad(gc.sum(gz), z)
    got = gc.function([z], [h])(Z)[0]
    want = -scipy.special.expit(Z) * scipy.special.expit(-Z)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


def test_hessian_of_the_binary_cross_entropy_is_finite():
    """d2 loss / dz2 = sigmoid(z) sigmoid(-z) whatever the label."""
    g = gc.Graph()
    z = g.input("z", shape=Z.shape)
    gz = gc.grad(gc.sum(naive_bce(z, 0.3)), z)
    got = gc.function([z], [gc.grad(gc.sum(gz), z)])(Z)[0]
    want = scipy.special.expit(Z) * scipy.special.expit(-Z)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("n", [6, 5000])  # 5000 entries: a fused kernel's scalar form
@pytest.mark.parametrize("optimize", [True, False])
def test_softplus_is_stable_for_large_magnitudes(n, optimize):
    g = gc.Graph()
    z = g.input("z", shape=(n,))
    y = gc.softplus(z) * 2.0 + 1.0
    gz = gc.grad(gc.sum(gc.softplus(z)), z)
    zv = np.resize(Z, n)
    got_y, got_g = gc.function([z], [y, gz], optimize=optimize)(zv)
    np.testing.assert_allclose(got_y, 2 * softplus(zv) + 1, rtol=1e-14)
    np.testing.assert_allclose(got_g, scipy.special.expit(zv), rtol=1e-14, atol=1e-300)
    assert got_y[2] == 1601.0 and got_y[3] == 1.0  # softplus(800) = 800, softplus(-800) = 0


def test_binary_cross_entropy_in_float32_and_as_a_mean():
    g = gc.Graph()
    z = g.input("z", shape=(2, 3), dtype="float32")
    yv = np.array([[1, 0, 1], [0, 1, 0]], dtype="float32")
    loss = gc.mean(naive_bce(z, g.constant(yv)))
    gz = gc.grad(loss, z)
    zv = np.array([[40, -40, 800], [-800, 2.5, -0.75]], dtype="float32")
    got_loss, got_grad = gc.function([z], [loss, gz])(zv)
    z64 = zv.astype(np.float64)
    np.testing.assert_allclose(got_loss, np.mean(softplus(z64) - yv * z64), rtol=1e-6)
    np.testing.assert_allclose(got_grad, (scipy.special.expit(z64) - yv) / 6, rtol=1e-6,
                               atol=1e-9)
    assert got_grad.dtype == np.float32


# -- 2. where does not remove a NaN derivative; the double where does ------------------------
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")
def test_where_of_log_at_zero_needs_the_double_where():
    """gc.grad(sum(where(x > 0, log(x), 0)), x) at x = 0: where sends the cotangent 0 to log,
    whose bprop is g / x = 0 / 0 = NaN (docs/ops.md says so). Feeding log a safe 1.0 where
    it is not chosen gives the right gradient, 1/x where x > 0 and 0 elsewhere."""
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    xv = np.array([0.0, 0.5, 2.0, -1.0])
    naive = gc.grad(gc.sum(gc.where(x > 0, gc.log(x), 0.0)), x)
    assert np.isnan(naive.eval({x: xv})[0])
    safe_x = gc.where(x > 0, x, 1.0)
    y = gc.where(x > 0, gc.log(safe_x), 0.0)
    gx = gc.grad(gc.sum(y), x)
    np.testing.assert_allclose(y.eval({x: xv}), [0.0, np.log(0.5), np.log(2.0), 0.0])
    np.testing.assert_allclose(gx.eval({x: xv}), [0.0, 2.0, 0.5, 0.0])
    inside = xv[1:3]
    np.testing.assert_allclose(gx.eval({x: xv})[1:3], central(np.log, inside), rtol=1e-8)
    for optimize in (True, False):
        assert np.isfinite(gc.function([x], [gx], optimize=optimize)(xv)[0]).all()


# -- 3. one_hot of class ids given as an array ----------------------------------------------
def test_one_hot_of_an_array_is_a_constant_in_the_graph_of_like():
    g = gc.Graph()
    logits = g.input("logits", shape=(3, 4))
    ids = np.array([0, 2, 2])
    oh = gc.one_hot(ids, 4, like=logits)
    assert oh.op.name == "one_hot" and oh.inputs[0].op.name == "constant"
    np.testing.assert_array_equal(oh.eval(), [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
    assert oh.eval().dtype == np.float64
    np.testing.assert_array_equal(gc.one_hot([1, 3], 4, "float32", like=logits).eval(),
                                  np.eye(4, dtype=np.float32)[[1, 3]])
    # used as labels: the same loss as the fused op given the integer ids
    lv = np.arange(12.0).reshape(3, 4) / 5
    ce = -gc.sum(oh * gc.log_softmax(logits), axis=-1)
    want = -scipy.special.log_softmax(lv, axis=-1)[np.arange(3), ids]
    np.testing.assert_allclose(ce.eval({logits: lv}), want, rtol=1e-12)
    np.testing.assert_allclose(gc.softmax_cross_entropy(logits, ids).eval({logits: lv}), want,
                               rtol=1e-12)


def test_a_value_alone_has_no_graph_and_the_error_says_what_to_do():
    """graphc has no default graph: one_hot, sum, softmax, exp of a NumPy array alone name
    themselves in the GraphError and say how to put the value into a graph."""
    with pytest.raises(gc.GraphError, match=r"^one_hot: .*like=.*g\.constant"):
        gc.one_hot(np.array([0, 2, 2]), 4)
    with pytest.raises(gc.GraphError, match=r"^one_hot: like must be a graph node"):
        gc.one_hot(np.array([0, 2, 2]), 4, like=np.zeros(3))
    for name, call in [("sum", lambda: gc.sum(np.ones(3))),
                       ("softmax", lambda: gc.softmax(np.ones(3))),
                       ("exp", lambda: gc.exp(np.ones(3))),
                       ("outer", lambda: gc.outer(np.ones(2), np.ones(3)))]:
        with pytest.raises(gc.GraphError, match=rf"^{name}: .*no default graph.*g\.constant"):
            call()


# -- 4. user formulas with floor, and derivatives SymPy does not know -----------------------
t = sympy.Symbol("t")
a, b = sympy.symbols("a b")


def test_floor_in_a_user_formula_has_derivative_zero_almost_everywhere():
    stair = gc.elementwise("issue14_stair", sympy.floor(t) + t**2, [t])
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    xv = np.array([-1.5, -0.25, 0.5, 2.75])  # away from the integers, where floor jumps
    y = stair(x)
    np.testing.assert_allclose(y.eval({x: xv}), np.floor(xv) + xv**2)
    gx = gc.grad(gc.sum(y), x)
    np.testing.assert_allclose(gx.eval({x: xv}), 2 * xv, rtol=1e-12)
    np.testing.assert_allclose(gx.eval({x: xv}),
                               central(lambda v: np.floor(v) + v**2, xv), rtol=1e-7)
    np.testing.assert_allclose(gc.grad(gc.sum(gx), x).eval({x: xv}), 2.0)
    # floor alone: no gradient at all; frac(t) = t - floor(t) has slope 1
    floor_only = gc.elementwise("issue14_floor", sympy.floor(t), [t])
    np.testing.assert_array_equal(gc.grad(gc.sum(floor_only(x)), x).eval({x: xv}), 0.0)
    saw = gc.elementwise("issue14_frac", sympy.frac(t) * t, [t])
    np.testing.assert_allclose(gc.grad(gc.sum(saw(x)), x).eval({x: xv}),
                               central(lambda v: (v - np.floor(v)) * v, xv), rtol=1e-7)


def test_abs_in_a_user_formula_differentiates_as_for_real_arguments():
    """sympy.diff(Abs(t), t) for a complex t has re/im parts; graphc tensors are real."""
    f = gc.elementwise("issue14_abs", sympy.Abs(t) * t, [t])
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    xv = np.array([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(gc.grad(gc.sum(f(x)), x).eval({x: xv}), 2 * np.abs(xv))


def test_a_derivative_sympy_cannot_give_names_the_op_and_the_function():
    """besselj(a, b) has no derivative in its order a: the error comes when a gradient asks,
    names the op, the argument and besselj, and shows no SymPy printer internals."""
    bj = gc.elementwise("issue14_bessel", sympy.besselj(a, b), [a, b])
    g = gc.Graph()
    nu = g.input("nu", shape=(2,))
    x = g.input("x", shape=(2,))
    out = gc.sum(bj(nu, x))
    gx = gc.grad(out, x)  # the other argument is fine: d J_nu(x)/dx = (J_{nu-1} - J_{nu+1})/2
    nv, xv = np.array([0.0, 1.0]), np.array([1.0, 2.5])
    np.testing.assert_allclose(gx.eval({nu: nv, x: xv}), scipy.special.jvp(nv, xv), rtol=1e-10)
    n = len(g.nodes)
    with pytest.raises(gc.GraphError) as info:
        gc.grad(out, nu)
    msg = str(info.value)
    assert "'issue14_bessel'" in msg and "besselj" in msg and "respect to a" in msg
    assert "Printer" not in msg and "_print" not in msg and "\n" not in msg
    assert len(g.nodes) == n


# -- 5. errors name the helper the user called ----------------------------------------------
def _graph():
    g = gc.Graph()
    return g, g.input("M", shape=(3, 4)), g.input("v", shape=(3,)), g.input("s", shape=())


HELPERS = [
    # (the helper's name as the message must start, the call, text naming the bad shape/axis)
    ("dot", lambda M, v, s: gc.dot(M, v), r"\(3, 4\) and \(3,\)"),
    ("mean", lambda M, v, s: gc.mean(M, axis=5), r"\(3, 4\).*axis 5"),
    ("mean", lambda M, v, s: gc.mean(M, axis=(0, 0)), r"\(3, 4\).*repeated axis in \(0, 0\)"),
    ("mean", lambda M, v, s: M.mean(axis=-3), r"\(3, 4\).*axis -3"),
    ("sum", lambda M, v, s: gc.sum(M, axis=2), r"\(3, 4\).*axis 2"),
    ("max", lambda M, v, s: gc.max(M, axis=(1, 1)), r"\(3, 4\).*repeated axis"),
    ("swapaxes", lambda M, v, s: gc.swapaxes(M, 0, 5), r"\(3, 4\).*axis 5"),
    ("swapaxes", lambda M, v, s: gc.swapaxes(s, 0, 1), r"\(\).*axis 0"),
    ("transpose", lambda M, v, s: gc.transpose(M, (0, 0)), r"\(3, 4\).*\(0, 0\)"),
    ("expand_dims", lambda M, v, s: gc.expand_dims(M, 7), r"\(3, 4\).*axis 7"),
    ("split", lambda M, v, s: gc.split(M, 2, axis=5), r"\(3, 4\).*axis 5"),
    ("getitem", lambda M, v, s: M[5], r"\(3, 4\).*index 5"),
    ("logsumexp", lambda M, v, s: gc.logsumexp(M, axis=4), r"axis 4.*\(3, 4\)"),
    ("softmax", lambda M, v, s: gc.softmax(v, axis=1), r"axis 1.*\(3,\)"),
    ("log_softmax", lambda M, v, s: gc.log_softmax(s), r"scalar"),
    ("trace", lambda M, v, s: gc.trace(v), r"\(3,\)"),
    ("diag", lambda M, v, s: gc.diag(s), r"\(\)"),
    ("inv", lambda M, v, s: gc.linalg.inv(M), r"\(3, 4\)"),
    ("softmax_cross_entropy", lambda M, v, s: gc.softmax_cross_entropy(M, v), r"\(3,\)"),
]


@pytest.mark.parametrize("name, call, bad", HELPERS,
                         ids=[f"{h[0]}-{k}" for k, h in enumerate(HELPERS)])
def test_a_helper_names_itself_the_bad_shape_and_the_users_line(name, call, bad):
    g, M, v, s = _graph()
    n = len(g.nodes)
    with pytest.raises(gc.ShapeError) as info:
        call(M, v, s)
    msg = str(info.value)
    assert msg.startswith(name) and msg[len(name)] in " :", msg
    assert "test_issue14_items.py:" in msg, msg  # the user's line
    assert msg.count("(at ") == 1, msg
    assert re.search(bad, msg), msg
    assert len(g.nodes) == n  # nothing half-built


def test_an_error_inside_a_helper_is_reported_under_the_helpers_name():
    """outer is expand_dims times a vector: the op that refuses is mul, the message names
    outer (and its arguments' shapes) first."""
    g, M, v, s = _graph()
    other = gc.Graph("other").input("w", shape=(2,))
    with pytest.raises(gc.GraphError) as info:
        gc.outer(v, other)
    msg = str(info.value)
    assert msg.startswith("outer of (3,) and (2,): ") and "'other'" in msg
    assert "test_issue14_items.py" in msg


def test_swapaxes_matches_numpy_and_no_longer_wraps_an_axis():
    g, M, v, s = _graph()
    mv = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(gc.swapaxes(M, -1, 0).eval({M: mv}), np.swapaxes(mv, -1, 0))
    with pytest.raises(np.exceptions.AxisError):
        np.swapaxes(mv, 0, 2)  # NumPy refuses axis 2 of a matrix: so does gc (it used to wrap)
    with pytest.raises(gc.ShapeError, match="swapaxes"):
        gc.swapaxes(M, 0, 2)
