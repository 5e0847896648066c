"""`gc.fixed_point` and `gc.root`: values against SciPy's solvers, derivatives against the
implicit-function formula written out by hand in NumPy and against finite differences (first
and second order), run-time failures, and the usual round trips (compile, save/load, text)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

import graphc as gc
from graphc.autodiff.implicit import FixedPoint, Root


def cos_fixed_point(shape=()):
    g = gc.Graph("cos")
    p = g.input("p", shape=shape)
    x = gc.fixed_point(lambda x, p: gc.cos(p * x), np.zeros(shape), p)
    return g, p, x


def cos_formula(p, x):
    """x = cos(p x): dx/dp = -x sin(px) / (1 + p sin(px)), entry by entry."""
    s = np.sin(p * x)
    return -x * s / (1.0 + p * s)


def scipy_cos(p):
    return scipy.optimize.fixed_point(lambda x: np.cos(p * x), np.zeros_like(p), xtol=1e-13,
                                      maxiter=5000)


# -- fixed_point: x = cos(p x) -------------------------------------------------------------------
def test_scalar_value_matches_scipy_and_the_gradient_matches_the_formula():
    _, p, x = cos_fixed_point()
    for pv in (0.3, 0.8, 1.0):
        xs = float(x.eval({p: pv}))
        np.testing.assert_allclose(xs, scipy_cos(np.float64(pv)), rtol=0, atol=1e-9)
        assert abs(xs - np.cos(pv * xs)) < 1e-9  # stopped at tol 1e-10 on the step
        dx = float(gc.grad(x, p).eval({p: pv}))
        np.testing.assert_allclose(dx, cos_formula(pv, xs), rtol=1e-12)
        tangent = float(gc.jvp(x, p, np.float64(1.0)).eval({p: pv}))
        np.testing.assert_allclose(tangent, cos_formula(pv, xs), rtol=1e-12)


def test_scalar_second_derivative_against_finite_differences():
    _, p, x = cos_fixed_point()
    d1 = gc.grad(x, p)
    d2 = gc.grad(d1, p)
    pv, h = 0.8, 1e-5
    fd = (float(d1.eval({p: pv + h})) - float(d1.eval({p: pv - h}))) / (2 * h)
    np.testing.assert_allclose(float(d2.eval({p: pv})), fd, rtol=1e-7)
    # and against the solution alone, by a second difference of SciPy's values
    h = 1e-4
    fd2 = (scipy_cos(pv + h) - 2 * scipy_cos(pv) + scipy_cos(pv - h)) / h**2
    np.testing.assert_allclose(float(d2.eval({p: pv})), fd2, rtol=1e-5)
    # forward over reverse gives the same
    hv = gc.hvp(x, p, np.float64(1.0), mode="forward")
    np.testing.assert_allclose(float(hv.eval({p: pv})), float(d2.eval({p: pv})), rtol=1e-12)


def test_vector_p_value_gradient_and_second_order(rng):
    _, p, x = cos_fixed_point((4,))
    pv = rng.uniform(0.2, 1.4, 4)
    xs = x.eval({p: pv})
    np.testing.assert_allclose(xs, scipy_cos(pv), rtol=0, atol=1e-10)
    J = gc.jacobian(x, p).eval({p: pv})
    np.testing.assert_allclose(J, np.diag(cos_formula(pv, xs)), rtol=1e-12, atol=1e-15)
    z = (x * x).sum()
    assert gc.check_grad(z, p, at={p: pv}, order=2, modes=("reverse", "forward")) < 1e-6


def contraction():
    """x = 0.5 tanh(W x + b) + c: a contraction for |W| < 2, with params [W, b] and c captured."""
    g = gc.Graph("contraction")
    W = g.input("W", shape=(3, 3))
    b = g.input("b", shape=(3,))
    c = g.input("c", shape=(3,))
    x = gc.fixed_point(lambda x, wb: 0.5 * gc.tanh(wb[0] @ x + wb[1]) + c, np.zeros(3),
                       [W, b])
    return g, W, b, c, x


def test_gradients_equal_the_implicit_function_formula_by_hand(rng):
    _, W, b, c, x = contraction()
    assert [a.name for a in x.inputs[1:]] == ["W", "b", "c"]  # c is captured as a parameter
    Wv, bv, cv = rng.standard_normal((3, 3)) * 0.6, rng.standard_normal(3), rng.standard_normal(3)
    u = rng.standard_normal(3)
    z = (x * u).sum()
    feed = {W: Wv, b: bv, c: cv}
    xs = x.eval(feed)
    np.testing.assert_allclose(xs, 0.5 * np.tanh(Wv @ xs + bv) + cv, rtol=0, atol=1e-10)
    # by hand: D = d f / d(pre-activation), A = I - D W, w = A^{-T} u
    D = 0.5 * (1.0 - np.tanh(Wv @ xs + bv) ** 2)
    A = np.eye(3) - D[:, None] * Wv
    w = np.linalg.solve(A.T, u)
    want = {W: np.outer(D * w, xs), b: D * w, c: w}
    got = gc.eval(gc.grad(z, [W, b, c]), feed)
    for k, node in enumerate([W, b, c]):
        np.testing.assert_allclose(got[k], want[node], rtol=1e-11, atol=1e-13)
    # forward mode: x' = A^{-1} (D (W' x + b') + c')
    tW, tb, tc = rng.standard_normal((3, 3)), rng.standard_normal(3), rng.standard_normal(3)
    tangent = gc.jvp(x, [W, b, c], [tW, tb, tc])
    np.testing.assert_allclose(tangent.eval(feed), np.linalg.solve(A, D * (tW @ xs + tb) + tc),
                               rtol=1e-11, atol=1e-13)
    assert gc.check_grad(z, [W, b, c], at=feed, order=2, modes=("reverse", "forward")) < 1e-6


def test_hvp_and_hessian_against_finite_differences(rng):
    _, W, b, c, x = contraction()
    Wv, bv, cv = rng.standard_normal((3, 3)) * 0.6, rng.standard_normal(3), rng.standard_normal(3)
    feed = {W: Wv, b: bv, c: cv}
    z = (gc.sin(x) * x).sum()
    gb = gc.grad(z, b)
    v = rng.standard_normal(3)
    h = 1e-5
    fd = (gb.eval({**feed, b: bv + h * v}) - gb.eval({**feed, b: bv - h * v})) / (2 * h)
    for mode in ("reverse", "forward"):
        np.testing.assert_allclose(gc.hvp(z, b, v, mode=mode).eval(feed), fd, rtol=1e-6,
                                   atol=1e-9)
    H = gc.hessian(z, b).eval(feed)
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(H @ v, fd, rtol=1e-6, atol=1e-9)
    # the mixed block d2z/db dW, by differences of the gradient with respect to b along W
    tW = rng.standard_normal((3, 3))
    fd = (gb.eval({**feed, W: Wv + h * tW}) - gb.eval({**feed, W: Wv - h * tW})) / (2 * h)
    mixed = gc.jvp(gb, W, tW)
    np.testing.assert_allclose(mixed.eval(feed), fd, rtol=1e-6, atol=1e-9)


def test_x0_is_not_differentiated_and_the_solution_ignores_it(rng):
    g = gc.Graph()
    p = g.input("p", shape=(2,))
    x0 = g.input("x0", shape=(2,))
    x = gc.fixed_point(lambda x, p: gc.cos(p * x), x0, p)
    z = x.sum()
    feed = {p: np.array([0.4, 0.9]), x0: np.array([0.1, -0.3])}
    np.testing.assert_array_equal(gc.grad(z, x0).eval(feed), np.zeros(2))
    np.testing.assert_allclose(x.eval(feed), x.eval({**feed, x0: np.array([0.7, 0.2])}),
                               rtol=0, atol=1e-10)


def test_compiled_with_and_without_rewrites_and_the_body_compiles_once(rng):
    _, W, b, c, x = contraction()
    z = (x * x).sum()
    outs = [z, *gc.grad(z, [W, b])]
    args = [rng.standard_normal((3, 3)) * 0.5, rng.standard_normal(3), rng.standard_normal(3)]
    fast = gc.function([W, b, c], outs)(*args)
    plain = gc.function([W, b, c], outs, optimize=False)(*args)
    for a, bb in zip(fast, plain):
        np.testing.assert_allclose(a, bb, rtol=1e-12, atol=1e-14)
    body = x.op.body
    fn = body.function()
    gc.eval(x, dict(zip([W, b, c], args)))
    assert body.function() is fn  # compiled once, reused by every run of the loop


def test_a_fixed_point_inside_a_fixed_point_differentiates_to_second_order():
    """Bilevel: x = cos(q y(x)) where y(x) solves y = 0.5 sin(x + y)."""
    g = gc.Graph()
    q = g.input("q")

    def outer(x, q):
        y = gc.fixed_point(lambda y, x: 0.5 * gc.sin(x + y), 0.0, x)
        return gc.cos(q * y)

    x = gc.fixed_point(outer, 0.0, q)

    def solve(qv):  # the same by plain iteration
        xv = 0.0
        for _ in range(500):
            yv = 0.0
            for _ in range(200):
                yv = 0.5 * np.sin(xv + yv)
            xv = np.cos(qv * yv)
        return xv

    np.testing.assert_allclose(float(x.eval({q: 0.7})), solve(0.7), rtol=0, atol=1e-9)
    h = 1e-5
    fd = (solve(0.7 + h) - solve(0.7 - h)) / (2 * h)
    np.testing.assert_allclose(float(gc.grad(x, q).eval({q: 0.7})), fd, rtol=1e-7)
    assert gc.check_grad(x, q, at={q: 0.7}, order=2, modes=("reverse", "forward")) < 1e-6


def test_float32_solves_stop_at_the_dtypes_precision():
    g = gc.Graph()
    p = g.input("p", shape=(3,), dtype="float32")
    x = gc.fixed_point(lambda x, p: gc.cos(p * x), np.zeros(3, np.float32), p)
    r = gc.root(lambda x, p: x * x * x - p, np.ones(3, np.float32), p)
    pv = np.array([0.5, 0.9, 1.0], np.float32)
    xs, rs = gc.eval([x, r], {p: pv})
    assert xs.dtype == rs.dtype == np.float32
    np.testing.assert_allclose(xs, scipy_cos(pv.astype(np.float64)), rtol=1e-5)
    np.testing.assert_allclose(rs, np.cbrt(pv.astype(np.float64)), rtol=1e-6)


# -- root: a small nonlinear system --------------------------------------------------------------
def system():
    """x0^2 + x1^2 = p0, x0 = p1 x1, exp(x2) = x0 + p2: closed form x1 = sqrt(p0 / (1 + p1^2)),
    x0 = p1 x1, x2 = log(x0 + p2) on the branch Newton finds from (1, 1, 0)."""
    g = gc.Graph("system")
    p = g.input("p", shape=(3,))

    def F(x, p):
        return gc.stack([x[0] * x[0] + x[1] * x[1] - p[0], x[0] - p[1] * x[1],
                         gc.exp(x[2]) - x[0] - p[2]])

    x = gc.root(F, np.array([1.0, 1.0, 0.0]), p)
    return g, p, x


def system_np(x, p):
    return np.array([x[0] ** 2 + x[1] ** 2 - p[0], x[0] - p[1] * x[1], np.exp(x[2]) - x[0] - p[2]])


def system_partials(x, p):
    Fx = np.array([[2 * x[0], 2 * x[1], 0.0], [1.0, -p[1], 0.0], [-1.0, 0.0, np.exp(x[2])]])
    Fp = np.array([[-1.0, 0.0, 0.0], [0.0, -x[1], 0.0], [0.0, 0.0, -1.0]])
    return Fx, Fp


P = np.array([2.0, 0.7, 0.5])


def test_root_value_matches_fsolve_and_the_closed_form():
    _, p, x = system()
    xs = x.eval({p: P})
    np.testing.assert_allclose(xs, scipy.optimize.fsolve(system_np, [1.0, 1.0, 0.0], args=(P,),
                                                         xtol=1e-13), rtol=0, atol=1e-10)
    x1 = np.sqrt(P[0] / (1 + P[1] ** 2))
    np.testing.assert_allclose(xs, [P[1] * x1, x1, np.log(P[1] * x1 + P[2])], rtol=0,
                               atol=1e-13)


def test_root_jacobian_and_vjp_equal_the_implicit_formula(rng):
    _, p, x = system()
    xs = x.eval({p: P})
    Fx, Fp = system_partials(xs, P)
    want = -np.linalg.solve(Fx, Fp)  # dx/dp
    np.testing.assert_allclose(gc.jacobian(x, p).eval({p: P}), want, rtol=1e-12, atol=1e-14)
    u = rng.standard_normal(3)
    w = np.linalg.solve(Fx.T, -u)  # the rule: w = dF/dx^{-T} (-g), g_p = w^T dF/dp
    np.testing.assert_allclose(gc.vjp(x, p, u).eval({p: P}), w @ Fp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(u @ want, w @ Fp, rtol=1e-12)


def test_root_second_order_against_finite_differences(rng):
    _, p, x = system()
    z = (x * x).sum() + gc.sin(x[2])
    assert gc.check_grad(z, p, at={p: P}, order=2, modes=("reverse", "forward")) < 1e-6
    gp = gc.grad(z, p)
    v, h = rng.standard_normal(3), 1e-5
    fd = (gp.eval({p: P + h * v}) - gp.eval({p: P - h * v})) / (2 * h)
    np.testing.assert_allclose(gc.hvp(z, p, v).eval({p: P}), fd, rtol=1e-6, atol=1e-9)
    # the same from the closed form, differentiated twice by differences
    def z_closed(q):
        x1 = np.sqrt(q[0] / (1 + q[1] ** 2))
        xv = np.array([q[1] * x1, x1, np.log(q[1] * x1 + q[2])])
        return (xv * xv).sum() + np.sin(xv[2])
    h = 1e-4
    H_fd = np.array([[(z_closed(P + h * (ei + ej)) - z_closed(P + h * (ei - ej))
                       - z_closed(P - h * (ei - ej)) + z_closed(P - h * (ei + ej))) / (4 * h * h)
                      for ej in np.eye(3)] for ei in np.eye(3)])
    np.testing.assert_allclose(gc.hessian(z, p).eval({p: P}), H_fd, rtol=1e-5, atol=1e-6)


def test_root_with_a_list_of_params_and_a_scalar_unknown():
    g = gc.Graph()
    a = g.input("a")
    b = g.input("b")
    r = gc.root(lambda x, ab: x * x * x + ab[0] * x - ab[1], 1.0, (a, b))
    feed = {a: 1.0, b: 10.0}
    xs = float(r.eval(feed))
    assert abs(xs**3 + xs - 10.0) < 1e-12  # x = 2
    da, db = (float(v) for v in gc.eval(gc.grad(r, [a, b]), feed))
    np.testing.assert_allclose([da, db], [-xs / (3 * xs**2 + 1), 1 / (3 * xs**2 + 1)],
                               rtol=1e-12)


# -- failures ------------------------------------------------------------------------------------
def test_not_converging_raises_at_call_time_naming_the_op():
    g = gc.Graph()
    p = g.input("p")
    x = gc.fixed_point(lambda x, p: gc.cos(p * x), 0.0, p, max_steps=3)
    with pytest.raises(gc.InputError, match=r"fixed_point.*did not converge in 3 steps"):
        x.eval({p: 0.8})
    y = gc.fixed_point(lambda x, p: 2.0 * x + p, 0.0, p)   # diverges to inf
    with pytest.raises(gc.InputError, match="fixed_point_lambda.*did not converge"):
        y.eval({p: 1.0})
    r = gc.root(lambda x, p: x * x - p, 0.0, p)            # dF/dx = 0 at x0
    with pytest.raises(gc.InputError, match="root.*singular"):
        r.eval({p: 2.0})
    r = gc.root(lambda x, p: x * x + p, 0.3, p, max_steps=20)   # no real root
    with pytest.raises(gc.InputError, match="root.*did not converge in 20 Newton steps"):
        r.eval({p: 1.0})


def test_build_errors_are_clear():
    g = gc.Graph()
    p = g.input("p", shape=(3,))
    n = len(g)
    with pytest.raises(gc.ShapeError, match=r"fixed_point: f\(x, params\) is \(3,\).*x \(x0\) "
                                            r"is \(\)"):
        def f(x, p):
            return gc.cos(p * x)
        gc.fixed_point(f, 0.0, p)
    assert len(g) == n  # nothing half-built
    with pytest.raises(gc.GraphError, match="must be callable"):
        gc.fixed_point(3.0, 0.0, p)
    with pytest.raises(gc.GraphError, match="x0 must be a float"):
        gc.root(lambda x, p: x - p, np.zeros(3, int), p)
    with pytest.raises(gc.GraphError, match="must return a graph node"):
        gc.fixed_point(lambda x, p: 1.0, np.zeros(3), p)
    with pytest.raises(gc.GraphError, match="tol must be"):
        gc.fixed_point(lambda x, p: x * p, np.zeros(3), p, tol=-1.0)
    with pytest.raises(gc.GraphError, match="max_steps must be"):
        gc.root(lambda x, p: x - p, np.zeros(3), p, max_steps=0)
    with pytest.raises(gc.GraphError, match="max_steps"):
        FixedPoint(gc.fixed_point(lambda x, p: x * p, np.zeros(3), p).op.body, 1e-8, 0)


# -- round trips ---------------------------------------------------------------------------------
def test_save_and_load_keep_the_solves_and_their_gradients(tmp_path, rng):
    g, W, b, c, x = contraction()
    g2, p, r = system()
    z = (x * x).sum()
    gb = gc.grad(z, b)
    feed = {W: rng.standard_normal((3, 3)) * 0.5, b: rng.standard_normal(3),
            c: rng.standard_normal(3)}
    gc.save(g, tmp_path / "fp.json")
    h = gc.load(tmp_path / "fp.json")
    assert [n.name for n in h.nodes] == [n.name for n in g.nodes]
    loaded = {k.name: v for k, v in feed.items()}
    np.testing.assert_allclose(gc.eval(h[gb.name], loaded), gb.eval(feed), rtol=0, atol=0)
    assert isinstance(h[x.name].op, FixedPoint) and h[x.name].op == x.op
    # a loaded solve is differentiated again, to second order
    at = {h[k]: v for k, v in loaded.items()}
    assert gc.check_grad((h[x.name] ** 2).sum(), h["W"], at=at, order=2) < 1e-6
    gr = gc.grad(r.sum(), p)
    gc.save(g2, tmp_path / "root.json")
    h2 = gc.load(tmp_path / "root.json")
    assert isinstance(h2[r.name].op, Root)
    np.testing.assert_allclose(gc.eval(h2[gr.name], {"p": P}), gr.eval({p: P}), rtol=0,
                               atol=0)


def test_drawing_text_and_sympy():
    _, p, x = cos_fixed_point()
    gx = gc.grad(x, p)
    text = gc.debugprint(gx)
    assert "fixed_point(body=fixed_point_lambda" in text and "implicit(" in text
    assert "┆" in text  # the bodies are printed under their nodes
    dot = gc.to_dot(gx)
    assert "fixed_point" in dot and "cluster" in dot
    with pytest.raises(gc.GraphError, match="fixed_point.*no closed form"):
        gc.to_sympy(x)


def test_two_equal_solves_merge_and_differentiate_like_one(rng):
    g = gc.Graph()
    p = g.input("p", shape=(2,))
    a = gc.fixed_point(lambda x, p: gc.cos(p * x), np.zeros(2), p)
    b = gc.fixed_point(lambda x, p: gc.cos(p * x), np.zeros(2), p)
    f = gc.function([p], a + b)
    assert sum(n.op.name == "fixed_point" for n in f.graph.nodes) == 1
    pv = np.array([0.5, 1.2])
    np.testing.assert_allclose(f(pv), 2 * a.eval({p: pv}), rtol=0, atol=0)
