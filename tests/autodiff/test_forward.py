"""gc.jvp (forward mode) and gc.vjp on non-scalar outputs: finite differences, the dot-product
test <u, J v> = <J^T u, v> against reverse mode, and sympy on scalar expressions."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import graphc as gc
from tests.ops.cases import CASES, Case


def build(case: Case, rng):
    g = gc.Graph(case.id or case.op)
    xs = [g.input(f"x{k}", shape=s, dtype=case.dtype) for k, s in enumerate(case.shapes)]
    return g, xs, case.build(*xs), [case.sample(rng, k) for k in range(len(xs))]


@pytest.mark.parametrize("case", CASES, ids=[c.id or c.op for c in CASES])
def test_jvp_matches_finite_differences_and_vjp(case, rng):
    g, xs, out, base = build(case, rng)
    vs = [rng.standard_normal(x.shape).astype(case.dtype) for x in xs]
    v_nodes = [g.input(f"v{k}", shape=x.shape, dtype=case.dtype) for k, x in enumerate(xs)]
    tangent = gc.jvp(out, xs, v_nodes)
    assert tangent.shape == out.shape and tangent.role == "grad"
    f = gc.function(xs + v_nodes, [out, tangent])
    y0, jv = f(*base, *vs)
    eps = 1e-5 if case.dtype == "float64" else 1e-2
    plus = f(*[b + eps * v for b, v in zip(base, vs)], *vs)[0]
    minus = f(*[b - eps * v for b, v in zip(base, vs)], *vs)[0]
    tol = 1e-6 if case.dtype == "float64" else case.tol
    np.testing.assert_allclose(jv, (plus - minus) / (2 * eps), rtol=tol, atol=tol)
    u = rng.standard_normal(np.shape(y0))
    jtu = gc.function(xs, gc.vjp(out, xs, u))(*base)
    rhs = sum(float(np.sum(a * v)) for a, v in zip(jtu, vs))
    assert float(np.sum(u * jv)) == pytest.approx(rhs, rel=max(tol, 1e-9), abs=1e-9)


def test_jvp_against_sympy_on_a_scalar_expression():
    a, b = sympy.symbols("a b")
    expr = sympy.sin(a * b) + sympy.exp(a) / b + sympy.tanh(a - b) ** 2
    g = gc.Graph()
    x = g.input("x")
    y = g.input("y")
    f = gc.sin(x * y) + gc.exp(x) / y + gc.tanh(x - y) ** 2
    va, vb = 0.7, -1.3
    t = gc.jvp(f, [x, y], [va, vb])
    tt = gc.jvp(t, [x, y], [va, vb])  # forward over forward: v^T H v
    at = {a: 0.4, b: 1.7}
    want1 = va * sympy.diff(expr, a) + vb * sympy.diff(expr, b)
    want2 = va * sympy.diff(want1, a) + vb * sympy.diff(want1, b)
    got1, got2 = gc.function([x, y], [t, tt])(0.4, 1.7)
    assert float(got1) == pytest.approx(float(want1.subs(at)), rel=1e-12)
    assert float(got2) == pytest.approx(float(want2.subs(at)), rel=1e-12)


def test_lists_in_give_lists_out_in_order(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    W = g.input("W", shape=(2, 3))
    y1 = W @ x
    y2 = (x * x).sum()
    vx, vW = rng.standard_normal(3), rng.standard_normal((2, 3))
    t1, t2 = gc.jvp([y1, y2], [x, W], [vx, vW])
    xv, Wv = rng.standard_normal(3), rng.standard_normal((2, 3))
    got1, got2 = gc.function([x, W], [t1, t2])(xv, Wv)
    np.testing.assert_allclose(got1, Wv @ vx + vW @ xv)          # the product rule by hand
    assert float(got2) == pytest.approx(2 * xv @ vx)
    single = gc.jvp(y1, W, vW)                                    # node in, node out
    np.testing.assert_allclose(single.eval({x: xv, W: Wv}), vW @ xv)


def test_vjp_generalises_grad_to_non_scalar_outputs(rng):
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    y = gc.outer(gc.sin(x), x)                                    # (4, 4)
    u = rng.standard_normal((4, 4))
    xv = rng.standard_normal(4)
    got = gc.vjp(y, x, u).eval({x: xv})
    # d/dx_k sum_ij u_ij sin(x_i) x_j = cos(x_k) sum_j u_kj x_j + sum_i u_ik sin(x_i)
    want = np.cos(xv) * (u @ xv) + u.T @ np.sin(xv)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_tangent_of_a_disconnected_or_stopped_output():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    w = g.input("w", shape=(3,))
    y = gc.stop_gradient(x) * w
    t = gc.jvp(y, x, np.ones(3))
    np.testing.assert_array_equal(t.eval({x: np.ones(3), w: np.ones(3)}), np.zeros(3))
    e = gc.exp(w)
    n = len(g.nodes)
    with pytest.raises(gc.DisconnectedError, match="'x'"):
        gc.jvp(e, x, np.ones(3), disconnected="raise")
    assert len(g.nodes) == n


def test_a_tangent_built_from_x_is_not_differentiated():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    v = gc.cos(x)                                # v depends on x: it is still only a direction
    t = gc.jvp(gc.exp(x).sum(), x, v)
    xv = np.array([0.1, -0.4, 2.0])
    assert float(t.eval({x: xv})) == pytest.approx(float(np.exp(xv) @ np.cos(xv)))


def test_bad_arguments_raise_and_leave_the_graph_as_it_was():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = gc.sin(x)
    n = len(g.nodes)
    with pytest.raises(gc.ShapeError, match=r"'x'.*\(3,\).*\(4,\)"):
        gc.jvp(y, x, np.ones(4))
    with pytest.raises(gc.GraphError, match="2 wrt nodes but 1"):
        gc.jvp(y, [x, x], [np.ones(3)])
    with pytest.raises(gc.GraphError, match="must be a list"):
        gc.jvp(y, [x], np.ones(3))
    with pytest.raises(gc.GraphError, match="float"):
        gc.jvp(y, g.input("k", shape=(3,), dtype="int64"), np.ones(3))
    n += 1  # the int input above
    other = gc.Graph("other").input("z", shape=(3,))
    with pytest.raises(gc.GraphError, match="belongs to graph"):
        gc.jvp(y, other, np.ones(3))
    assert len(g.nodes) == n


def test_float32_tangents_stay_float32(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3,), dtype="float32")
    t = gc.jvp(gc.tanh(x) * 2.0, x, np.ones(3))    # a float64 direction is cast to x's dtype
    assert t.dtype == np.float32
    xv = rng.standard_normal(3).astype(np.float32)
    np.testing.assert_allclose(t.eval({x: xv}), 2 * (1 - np.tanh(xv) ** 2), rtol=1e-6)
