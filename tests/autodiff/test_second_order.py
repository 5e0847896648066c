"""gc.hvp (three modes), gc.jacobian and gc.hessian against finite differences, sympy and each
other; higher derivatives by repeated grad against sympy; the cost model; node counts."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.autodiff.second_order import choose_mode, cost, flops
from graphc.ir import walk
from tests.ops.cases import CASES, Case

F64 = [c for c in CASES if c.dtype == "float64"]
MODES = ["reverse", "forward", "auto"]


def build(case: Case, rng):
    g = gc.Graph(case.id or case.op)
    xs = [g.input(f"x{k}", shape=s) for k, s in enumerate(case.shapes)]
    return g, xs, case.build(*xs), [case.sample(rng, k) for k in range(len(xs))]


def dense_jacobian_fd(f, base, k, eps=1e-6):
    """d f / d base[k] by central differences, one column per entry of base[k]."""
    x = base[k]
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = eps
        e = e.reshape(x.shape)
        plus = f(*base[:k], x + e, *base[k + 1:])
        minus = f(*base[:k], x - e, *base[k + 1:])
        cols.append(np.ravel((plus - minus) / (2 * eps)))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("case", F64, ids=[c.id or c.op for c in F64])
def test_jacobian_both_ways_matches_finite_differences(case, rng):
    g, xs, out, base = build(case, rng)
    f = gc.function(xs, out)
    for k, x in enumerate(xs):
        want = dense_jacobian_fd(f, base, k)
        for mode in ("forward", "reverse"):
            J = gc.jacobian(out, x, mode=mode)
            assert J.shape == out.shape + x.shape and J.role == "grad"
            got = gc.function(xs, J)(*base)
            np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-6, atol=1e-7,
                                       err_msg=mode)


@pytest.mark.parametrize("case", F64, ids=[c.id or c.op for c in F64])
def test_hvp_modes_agree_with_finite_differences_and_the_hessian(case, rng):
    g, xs, out, base = build(case, rng)
    z = gc.sum(out * g.constant(rng.standard_normal(out.shape))) if out.shape else out
    vs = [rng.standard_normal(x.shape) for x in xs]
    grad_f = gc.function(xs, gc.grad(z, xs))
    eps = 1e-5
    plus = grad_f(*[b + eps * v for b, v in zip(base, vs)])
    minus = grad_f(*[b - eps * v for b, v in zip(base, vs)])
    want = [(p - m) / (2 * eps) for p, m in zip(plus, minus)]
    H = gc.hessian(z, xs)
    blocks = gc.function(xs, [b for row in H for b in row])(*base)
    for mode in MODES:
        hv = gc.function(xs, gc.hvp(z, xs, [g.constant(v) for v in vs], mode=mode))(*base)
        for i in range(len(xs)):
            np.testing.assert_allclose(hv[i], want[i], rtol=1e-6, atol=1e-6, err_msg=mode)
            h_v = sum(np.tensordot(blocks[i * len(xs) + j], vs[j], axes=xj.ndim)
                      for j, xj in enumerate(xs))
            np.testing.assert_allclose(hv[i], h_v, rtol=1e-10, atol=1e-10, err_msg=mode)


def test_hessian_matches_sympy():
    s = sympy.symbols("s0:3")
    expr = sympy.exp(s[0] * s[1]) + sympy.sin(s[2]) * s[0] ** 2 + sympy.log(1 + s[1] ** 2) * s[2]
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    z = gc.exp(x[0] * x[1]) + gc.sin(x[2]) * x[0] ** 2 + gc.log1p(x[1] ** 2) * x[2]
    at = np.array([0.3, -0.8, 1.1])
    want = np.array(sympy.hessian(expr, s).subs(dict(zip(s, at))), dtype=float)
    for mode in MODES:
        np.testing.assert_allclose(gc.hessian(z, x, mode=mode).eval({x: at}), want,
                                   rtol=1e-12, atol=1e-14)
        v = np.array([1.0, -2.0, 0.5])
        np.testing.assert_allclose(gc.hvp(z, x, v, mode=mode).eval({x: at}), want @ v,
                                   rtol=1e-12)
    J = gc.jacobian(gc.grad(z, x), x)           # the Jacobian of the gradient is the Hessian
    np.testing.assert_allclose(J.eval({x: at}), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("point", [-0.7, 0.25, 1.3])
def test_third_and_fourth_derivatives_by_repeated_grad_match_sympy(point):
    t = sympy.Symbol("t")
    expr = sympy.sin(t) * sympy.exp(t ** 2) / (1 + t ** 2) + sympy.tanh(t) ** 3 + sympy.sqrt(
        2 + sympy.cos(t))
    g = gc.Graph()
    x = g.input("x")
    d = gc.sin(x) * gc.exp(x * x) / (1.0 + x * x) + gc.tanh(x) ** 3 + gc.sqrt(2.0 + gc.cos(x))
    derivs = []
    for _ in range(4):
        d = gc.grad(d, x)
        derivs.append(d)
    got = gc.function([x], derivs)(point)
    for k, val in enumerate(got, start=1):
        want = float(sympy.diff(expr, t, k).subs(t, point))
        assert float(val) == pytest.approx(want, rel=1e-10), f"order {k}"


def test_v_computed_from_x_is_not_differentiated_through(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    z = (gc.exp(x) * x).sum() + (x[0] * x[1] * x[2])
    v = gc.sin(x) * 2.0                                  # depends on x
    xv = rng.standard_normal(3)
    H = gc.hessian(z, x).eval({x: xv})
    want = H @ (2.0 * np.sin(xv))
    for mode in MODES:
        np.testing.assert_allclose(gc.hvp(z, x, v, mode=mode).eval({x: xv}), want,
                                   rtol=1e-12, err_msg=mode)
    # What differentiating through v would give instead: grad of <grad z, v> includes J_v^T g.
    naive = gc.grad((gc.grad(z, x) * v).sum(), x).eval({x: xv})
    assert not np.allclose(naive, want)


def test_hvp_over_lists_of_parameters_matches_the_dense_hessian(rng):
    g = gc.Graph()
    X = g.constant(rng.standard_normal((7, 4)))
    W = g.input("W", shape=(4, 3))
    b = g.input("b", shape=(3,))
    z = gc.logsumexp(gc.tanh(X @ W + b)).sum() + 0.1 * (W * W).sum()
    Wv, bv = rng.standard_normal((4, 3)), rng.standard_normal(3)
    vW, vb = rng.standard_normal((4, 3)), rng.standard_normal(3)
    (HWW, HWb), (HbW, Hbb) = [gc.function([W, b], row)(Wv, bv) for row in gc.hessian(z, [W, b])]
    assert HWW.shape == (4, 3, 4, 3) and HWb.shape == (4, 3, 3) and Hbb.shape == (3, 3)
    np.testing.assert_allclose(HWb, np.transpose(HbW, (1, 2, 0)), atol=1e-12)  # symmetric
    want_W = np.tensordot(HWW, vW, 2) + np.tensordot(HWb, vb, 1)
    want_b = np.tensordot(HbW, vW, 2) + Hbb @ vb
    for mode in MODES:
        hW, hb = gc.function([W, b], gc.hvp(z, [W, b], [vW, vb], mode=mode))(Wv, bv)
        np.testing.assert_allclose(hW, want_W, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hb, want_b, rtol=1e-10, atol=1e-12)
    # ... and the dense Hessian itself against central differences of the gradient.
    gW = gc.function([W, b], gc.grad(z, W))
    eps = 1e-5
    fd = (gW(Wv + eps * vW, bv + eps * vb) - gW(Wv - eps * vW, bv - eps * vb)) / (2 * eps)
    np.testing.assert_allclose(want_W, fd, rtol=1e-6, atol=1e-8)


def ladder(depth: int, order: int) -> int:
    g = gc.Graph()
    x = g.input("x")
    h = x
    for _ in range(depth):
        h = gc.sin(h) * gc.cos(h)
    for _ in range(order):
        h = gc.grad(h, x)
    return len(walk.ancestors([h]))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_derivatives_of_the_diamond_ladder_grow_linearly_in_depth(order):
    counts = [ladder(d, order) for d in (4, 8, 16, 32)]
    steps = np.diff(counts) / np.diff([4, 8, 16, 32])
    assert steps[0] > 0 and np.all(steps == steps[0]), counts   # exactly a * depth + b


def test_cost_model_counts_matmul_flops_and_memory_traffic():
    g = gc.Graph()
    A = g.input("A", shape=(5, 7))
    B = g.input("B", shape=(7, 3))
    C = A @ B
    D = gc.tanh(C) + 1.0
    assert flops(C) == 2 * 5 * 7 * 3
    assert flops(D.inputs[0]) == 15 + 15                # tanh reads 15 entries, writes 15
    assert flops(D) == 15 + 15 + 1                      # plus reads the scalar constant
    assert flops(C.T) == 0                              # a view
    assert cost([D]) == 2 * 5 * 7 * 3 + 30 + 31


def test_auto_builds_the_mode_the_cost_model_picks(rng):
    g = gc.Graph()
    x = g.input("x", shape=(6,))
    M = g.constant(rng.standard_normal((6, 6)))
    z = gc.softplus(M @ gc.tanh(x)).sum()
    v = g.input("v", shape=(6,))
    picked = choose_mode(z, [x], [v])
    assert picked in ("forward", "reverse")
    sizes = {}
    for mode in ("forward", "reverse", "auto"):
        with g.scratch():
            sizes[mode] = len(walk.ancestors([gc.hvp(z, x, v, mode=mode)]))
    assert sizes["auto"] == sizes[picked]


def test_errors_name_the_problem_and_leave_the_graph_unchanged():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = g.input("y", shape=("n",))
    z = gc.sin(x).sum()
    with pytest.raises(gc.ShapeError, match="scalar"):
        gc.hvp(gc.sin(x), x, np.ones(3))
    n = len(g.nodes)  # the sin above
    with pytest.raises(gc.GraphError, match="mode"):
        gc.hvp(z, x, np.ones(3), mode="sideways")
    with pytest.raises(gc.ShapeError, match=r"\(3,\).*\(2,\)"):
        gc.hvp(z, x, np.ones(2))
    with pytest.raises(gc.ShapeError, match="symbolic"):
        gc.jacobian(gc.exp(y), y)
    n += 1  # the exp above
    with pytest.raises(gc.ShapeError, match="scalar"):
        gc.hessian(gc.sin(x), x)
    n += 1
    assert len(g.nodes) == n
