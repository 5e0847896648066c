"""Issue 15's ops in real programs, against independent oracles: a Lennard-Jones cluster (energy,
forces against the hand-derived force law, Hessian-vector products against the hand-derived
pair Hessian and finite differences of the gradient), products with zeros at second order,
the ops without a gradient against NumPy, symbolic sizes, files, to_sympy and fusion."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.special
import sympy

import graphc as gc
import tests.ops.cases  # noqa: F401 - first: it merges cases_elem into the op table
from graphc.ops.scan import PermuteAlong, Recurrence
from tests.ops.cases_elem import CASES as ELEM_CASES

EPS, SIGMA = 0.8, 1.1


# -- Lennard-Jones: E = sum_{i<j} 4 eps ((s/r)^12 - (s/r)^6) ---------------------------------
def lattice(n: int, rng) -> np.ndarray:
    """n particles near the sites of a cubic lattice of spacing 1.2 sigma (no pair closer
    than ~1.1 sigma: every pair term is smooth)."""
    side = int(np.ceil(n ** (1 / 3)))
    sites = np.array(list(itertools.product(range(side), repeat=3)), float)[:n]
    return 1.2 * SIGMA * sites + rng.uniform(-0.05, 0.05, (n, 3))


def lj_energy(X, n):
    """The energy as a graph: pairwise differences by broadcasting, i < j by triu."""
    g = X.graph
    d = X[:, None, :] - X[None, :, :]                   # (n, n, 3)
    r2 = gc.sum(d * d, axis=-1)                          # (n, n), 0 on the diagonal
    upper = gc.triu(g.ones((n, n)), k=1) > 0.5           # pairs i < j
    s6 = (SIGMA**2 / gc.where(upper, r2, 1.0)) ** 3.0    # 1.0 where unused: no 1/0
    return gc.sum(gc.where(upper, 4.0 * EPS * (s6 * s6 - s6), 0.0))


def lj_energy_symbolic(X):
    """The same energy for any number of particles `n`: both triangles, halved; the diagonal
    excluded with eye."""
    g = X.graph
    d = gc.expand_dims(X, 1) - gc.expand_dims(X, 0)
    eye = g.eye("n")
    r2 = gc.sum(gc.square(d), axis=-1) + eye             # 1 on the diagonal: no 1/0
    s6 = (SIGMA**2 / r2) ** 3.0
    return 0.5 * gc.sum((g.ones(("n", "n")) - eye) * 4.0 * EPS * (s6 * s6 - s6))


def lj_oracle(x: np.ndarray):
    """Energy, forces and the pair Hessian's product, all by hand."""
    d = x[:, None, :] - x[None, :, :]
    r2 = (d * d).sum(-1)
    off = ~np.eye(len(x), dtype=bool)
    r2s = np.where(off, r2, 1.0)
    s6 = (SIGMA**2 / r2s) ** 3
    energy = 0.5 * np.sum(np.where(off, 4 * EPS * (s6 * s6 - s6), 0.0))
    # F_i = sum_j 24 eps (2 s12 - s6) / r^2 (x_i - x_j)
    coef = np.where(off, 24 * EPS * (2 * s6 * s6 - s6) / r2s, 0.0)
    forces = (coef[:, :, None] * d).sum(1)
    # phi'(r)/r and phi''(r) for the pair Hessian d dT phi''/r^2 + phi'/r (I - d dT / r^2)
    dphi_over_r = np.where(off, -24 * EPS * (2 * s6 * s6 - s6) / r2s, 0.0)
    d2phi = np.where(off, 4 * EPS * (156 * s6 * s6 - 42 * s6) / r2s, 0.0)

    def hvp(v):
        w = v[:, None, :] - v[None, :, :]            # H_ii = sum_j B_ij, H_ij = -B_ij
        dw = (d * w).sum(-1)
        block = (d2phi / r2s - dphi_over_r / r2s)[:, :, None] * dw[:, :, None] * d \
            + dphi_over_r[:, :, None] * w
        return block.sum(1)

    return energy, forces, hvp


def relative(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("optimize", [True, False])
def test_lennard_jones_forces_match_the_force_law(optimize, rng):
    n = 64
    g = gc.Graph("lj")
    X = g.input("X", shape=(n, 3))
    E = lj_energy(X, n)
    F = -gc.grad(E, X)
    x = lattice(n, rng)
    energy, forces, _ = lj_oracle(x)
    e_val, f_val = gc.function([X], [E, F], optimize=optimize)(x)
    assert abs(e_val - energy) <= 1e-12 * abs(energy)
    assert relative(f_val, forces) < 1e-10
    assert np.abs(f_val.sum(0)).max() < 1e-10 * np.abs(f_val).max()  # Newton's third law


@pytest.mark.parametrize("mode", ["reverse", "forward", "auto"])
def test_lennard_jones_hessian_vector_product(mode, rng):
    n = 64
    g = gc.Graph("lj_hvp")
    X = g.input("X", shape=(n, 3))
    V = g.input("V", shape=(n, 3))
    E = lj_energy(X, n)
    gX = gc.grad(E, X)
    HV = gc.hvp(E, X, V, mode=mode)
    x, v = lattice(n, rng), rng.standard_normal((n, 3))
    f = gc.function([X, V], [gX, HV])
    _, hv = f(x, v)
    _, _, oracle = lj_oracle(x)
    assert relative(hv, oracle(v)) < 1e-10  # the hand-derived pair Hessian
    # and finite differences of the gradient (fourth order, step h)
    h = 1e-4
    grad_at = gc.function([X], gX)
    fd = (-grad_at(x + 2 * h * v) + 8 * grad_at(x + h * v) - 8 * grad_at(x - h * v)
          + grad_at(x - 2 * h * v)) / (12 * h)
    assert relative(hv, fd) < 1e-7


def test_lennard_jones_with_a_symbolic_number_of_particles(rng):
    g = gc.Graph("lj_n")
    X = g.input("X", shape=("n", 3))
    E = lj_energy_symbolic(X)
    F = -gc.grad(E, X)
    f = gc.function([X], [E, F])
    for n in (27, 64):
        x = lattice(n, rng)
        energy, forces, _ = lj_oracle(x)
        e_val, f_val = f(x)
        assert abs(e_val - energy) <= 1e-12 * abs(energy)
        assert relative(f_val, forces) < 1e-10


def test_lennard_jones_graph_saves_and_loads(tmp_path, rng):
    g = gc.Graph("lj_file")
    X = g.input("X", shape=("n", 3))
    E = lj_energy_symbolic(X)
    gc.grad(E, X)
    g2 = gc.load(gc.save(g, tmp_path / "lj.json"))
    x = lattice(27, rng)
    want = gc.function([X], g.nodes[-1])(x)
    got = gc.function([g2.inputs[0]], g2.nodes[-1])(x)
    np.testing.assert_array_equal(got, want)


# -- every case of cases_elem.py: the optimized program computes what the graph as built does --
@pytest.mark.parametrize("case", ELEM_CASES, ids=[c.id or c.op for c in ELEM_CASES])
def test_optimized_and_unoptimized_agree_to_second_order(case, rng):
    g = gc.Graph(case.id)
    xs = [g.input(f"x{k}", shape=s, dtype=case.dtype) for k, s in enumerate(case.shapes)]
    out = case.build(*xs)
    z = gc.sum(out * g.constant(rng.standard_normal(out.shape)))
    grads = gc.grad(z, xs)
    second = gc.grad(gc.sum(grads[0] * grads[0]), xs[0])
    values = [case.sample(rng, k) for k in range(len(xs))]
    fast = gc.function(xs, [out, *grads, second])(*values)
    slow = gc.function(xs, [out, *grads, second], optimize=False)(*values)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


# -- products with zeros: the gradient is never a division by x -------------------------------
def test_prod_hessian_with_zeros_against_the_product_of_the_others():
    x = np.array([2.0, 0.0, 3.0, 0.0, -1.5])
    g = gc.Graph()
    X = g.input("X", shape=(5,))
    p = gc.prod(X)
    gx = gc.grad(p, X)
    H = gc.hessian(p, X)
    gv, Hv = gc.function([X], [gx, H])(x)
    want_g = [np.prod(np.delete(x, i)) for i in range(5)]
    want_H = [[0.0 if i == j else np.prod(np.delete(x, [i, j])) for j in range(5)]
              for i in range(5)]
    np.testing.assert_array_equal(gv, want_g)
    np.testing.assert_array_equal(Hv, want_H)  # d2/dx1 dx3 = 2 * 3 * -1.5, both zeros
    assert Hv[1, 3] == -9.0


def test_cumprod_gradient_with_zeros_against_the_jacobian_by_hand():
    x = np.array([1.5, 0.0, -2.0, 0.0, 3.0])
    g = gc.Graph()
    X = g.input("X", shape=(5,))
    J = gc.function([X], gc.jacobian(gc.cumprod(X), X))(x)
    want = np.array([[np.prod(np.delete(x[:i + 1], j)) if j <= i else 0.0 for j in range(5)]
                     for i in range(5)])
    np.testing.assert_array_equal(J, want)
    H = gc.function([X], gc.hessian(gc.cumprod(X).sum(), X))(x)
    want_H = np.array([[sum(np.prod(np.delete(x[:k + 1], [i, j])) for k in range(max(i, j), 5))
                        if i != j else 0.0 for j in range(5)] for i in range(5)])
    np.testing.assert_allclose(H, want_H, rtol=1e-15, atol=0)


def test_recurrence_matches_a_loop_and_differentiates_to_third_order(rng):
    a, b = rng.standard_normal((2, 6)), rng.standard_normal((2, 6))
    a[0, 2] = 0.0
    for reverse in (False, True):
        want = np.empty_like(b)
        h = np.zeros(2)
        for i in (range(5, -1, -1) if reverse else range(6)):
            h = a[:, i] * h + b[:, i]
            want[:, i] = h
        np.testing.assert_allclose(Recurrence(1, reverse).forward(a, b), want, rtol=1e-14)
        err = gc.check_grad(lambda p, q: gc.apply(Recurrence(1, reverse), p, q), [a, b],
                            order=3)
        assert err < 1e-6


def test_std_at_zero_variance_has_a_zero_gradient_and_var_matches_numpy(rng):
    g = gc.Graph()
    X = g.input("X", shape=(3, 4))
    gs = gc.grad(gc.std(X, axis=1).sum(), X)
    x = rng.standard_normal((3, 4))
    x[1] = 0.7  # a row of equal entries
    got = gs.eval({X: x})
    assert np.all(got[1] == 0.0) and np.all(np.isfinite(got))
    rows = x[[0, 2]]
    dev = rows - rows.mean(1, keepdims=True)
    np.testing.assert_allclose(got[[0, 2]], dev / (4 * rows.std(1, keepdims=True)), rtol=1e-13)
    for ddof in (0, 1):
        np.testing.assert_allclose(gc.var(X, axis=0, ddof=ddof).eval({X: x}),
                                   np.var(x, axis=0, ddof=ddof), rtol=1e-14)
        np.testing.assert_allclose(gc.std(X, ddof=ddof).eval({X: x}), np.std(x, ddof=ddof),
                                   rtol=1e-14)
    assert np.isnan(gc.std(X).eval({X: np.full((3, 4), np.nan)}))  # NaN stays NaN
    Y = g.input("Y", shape=("m",))
    np.testing.assert_allclose(gc.var(Y, ddof=1).eval({Y: np.arange(5.0)}), 2.5)


# -- conventions at kinks, from the op's own rules ----------------------------------------------
def test_clip_sends_the_gradient_to_what_the_result_equals():
    g = gc.Graph()
    x, lo, hi = (g.input(k, shape=(5,)) for k in ("x", "lo", "hi"))
    y = gc.clip(x, lo, hi)
    gx, glo, ghi = gc.grad(y.sum(), [x, lo, hi])
    feed = {x: np.array([-2.0, -1.0, 0.0, 1.0, 5.0]), lo: np.array([-1.0, -1.0, -1.0, -1.0, 9.0]),
            hi: np.array([1.0, 1.0, 1.0, 1.0, 3.0])}
    vals = gc.eval([y, gx, glo, ghi], feed)
    np.testing.assert_array_equal(vals[0], np.clip(feed[x], feed[lo], feed[hi]))
    np.testing.assert_array_equal(vals[1], [0, 0, 1, 0, 0])   # x: strictly inside only
    np.testing.assert_array_equal(vals[2], [1, 1, 0, 0, 0])   # lo: at and below it
    np.testing.assert_array_equal(vals[3], [0, 0, 0, 1, 1])   # hi: at, above, and lo > hi
    np.testing.assert_array_equal(vals[1] + vals[2] + vals[3], np.ones(5))


def test_clip_with_one_bound_keeps_integers_integer():
    g = gc.Graph()
    k = g.input("k", shape=(3,), dtype="int32")
    for y, want in [(gc.clip(k, None, 3), [1, 3, -9]), (gc.clip(k, 0, None), [1, 5, 0])]:
        assert y.dtype == np.int32
        np.testing.assert_array_equal(y.eval({k: np.array([1, 5, -9], np.int32)}), want)


def test_mod_derivatives_away_from_the_jumps(rng):
    x = np.array([2.3, -2.3, 0.4, 5.1])
    y = np.array([0.7, 0.7, -0.9, -2.0])
    g = gc.Graph()
    X, Y = g.input("X", shape=(4,)), g.input("Y", shape=(4,))
    gx, gy = gc.grad(gc.mod(X, Y).sum(), [X, Y])
    vals = gc.eval([gc.mod(X, Y), gx, gy], {X: x, Y: y})
    np.testing.assert_array_equal(vals[0], np.mod(x, y))
    np.testing.assert_array_equal(vals[1], np.ones(4))
    np.testing.assert_array_equal(vals[2], -np.floor(x / y))


def test_sort_gradient_goes_through_the_permutation_and_ties_to_the_earlier_entry():
    g = gc.Graph()
    X = g.input("X", shape=(4,))
    w = np.array([1.0, 10.0, 100.0, 1000.0])
    gx = gc.grad(gc.sum(gc.sort(X) * w), X)
    np.testing.assert_array_equal(gx.eval({X: np.array([3.0, -1.0, 3.0, 0.0])}),
                                  [100.0, 1.0, 1000.0, 10.0])


def test_rounding_and_comparison_ops_let_no_gradient_through():
    g = gc.Graph()
    X = g.input("X", shape=(4,))
    z = gc.sum(gc.floor(X) + gc.ceil(X) * X + gc.round(X))
    gx = gc.grad(z, X).eval({X: np.array([0.3, 1.7, -2.2, 4.5])})
    np.testing.assert_array_equal(gx, np.ceil([0.3, 1.7, -2.2, 4.5]))


# -- ops without a gradient, against NumPy --------------------------------------------------
NO_GRADIENT = [
    ("floor", lambda x: gc.floor(x), np.floor),
    ("ceil", lambda x: gc.ceil(x), np.ceil),
    ("round", lambda x: gc.round(x), np.round),
    ("round2", lambda x: gc.round(x * 10.0, 2), lambda v: np.round(v * 10.0, 2)),
    ("round-1", lambda x: gc.round(x * 100.0, -1), lambda v: np.round(v * 100.0, -1)),
    ("argmax", lambda x: gc.argmax(x), np.argmax),
    ("argmax1", lambda x: gc.argmax(x, axis=1, keepdims=True),
     lambda v: np.argmax(v, 1, keepdims=True)),
    ("argmin0", lambda x: gc.argmin(x, axis=0), lambda v: np.argmin(v, 0)),
    ("argmin_none_keep", lambda x: gc.argmin(x, keepdims=True),
     lambda v: np.argmin(v, keepdims=True)),
    ("argsort", lambda x: gc.argsort(x), lambda v: np.argsort(v, kind="stable")),
    ("argsort0", lambda x: gc.argsort(x, axis=0), lambda v: np.argsort(v, 0, kind="stable")),
    ("any", lambda x: gc.any(x > 1.0), lambda v: np.any(v > 1.0)),
    ("any1", lambda x: gc.any(x > 1.0, axis=1), lambda v: np.any(v > 1.0, axis=1)),
    ("all0k", lambda x: gc.all(x, axis=0, keepdims=True), lambda v: np.all(v, 0, keepdims=True)),
]


@pytest.mark.parametrize("name, build, oracle", NO_GRADIENT, ids=[c[0] for c in NO_GRADIENT])
def test_ops_without_a_gradient_match_numpy_compiled_both_ways(name, build, oracle, rng):
    g = gc.Graph()
    X = g.input("X", shape=(4, 5))
    y = build(X)
    x = np.round(rng.standard_normal((4, 5)) * 4) / 4  # ties and halves included
    x[0, 1] = 0.0
    want = oracle(x)
    for optimize in (True, False):
        got = gc.function([X], y, optimize=optimize)(x)
        assert got.dtype == np.asarray(want).dtype and got.shape == np.shape(want)
        np.testing.assert_array_equal(got, want)
    # no gradient flows through it: X's gradient is the disconnected zero
    np.testing.assert_array_equal(gc.grad(gc.sum(gc.cast(y, X.dtype)), X).eval({X: x}), 0.0)


@pytest.mark.parametrize("name, build, oracle", NO_GRADIENT, ids=[c[0] for c in NO_GRADIENT])
def test_ops_without_a_gradient_save_load_and_write_sympy(name, build, oracle, tmp_path, rng):
    g = gc.Graph()
    X = g.input("X", shape=(2, 3))
    y = build(X)
    g2 = gc.load(gc.save(g, tmp_path / "g.json"))
    x = np.round(rng.standard_normal((2, 3)) * 2) / 2
    np.testing.assert_array_equal(gc.function([g2.inputs[0]], g2.nodes[-1])(x), oracle(x))
    if name.startswith("argsort"):
        with pytest.raises(gc.GraphError, match="argsort, which has no sympy function"):
            gc.to_sympy(y)
        return
    y2 = gc.from_sympy(gc.to_sympy(y), g)
    np.testing.assert_array_equal(y2.eval({X: x}), np.asarray(oracle(x), dtype=y2.dtype))


# -- constants made from a shape --------------------------------------------------------------
def test_constants_with_symbolic_sizes_resolve_per_call():
    g = gc.Graph()
    X = g.input("X", shape=("n", "m"))
    outs = [g.zeros(("n", "m")), g.ones(("m",), "int32"), g.full(("n", 2), 2.5),
            g.eye("n", "m", k=1), g.arange("n"), g.arange(2, "m"), g.linspace(-1.0, 1.0, "n"),
            gc.zeros(("m", 2), like=X), gc.full((), True, like=X)]
    f = gc.function([X], outs)
    for n, m in [(3, 4), (5, 2)]:
        got = f(np.zeros((n, m)))
        want = [np.zeros((n, m)), np.ones(m, np.int32), np.full((n, 2), 2.5), np.eye(n, m, 1),
                np.arange(n), np.arange(2, m), np.linspace(-1, 1, n), np.zeros((m, 2)),
                np.full((), True)]
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_constants_with_symbolic_sizes_save_and_load(tmp_path):
    g = gc.Graph()
    X = g.input("X", shape=("n",))
    y = (X * g.arange("n") + g.linspace(0.0, 2.0, "n") + g.full(("n",), 0.5)
         + gc.sum(g.eye("n", 3, k=-1), axis=1)[0] + g.ones(("n",), "int8"))
    g2 = gc.load(gc.save(g, tmp_path / "c.json"))
    assert [n.op for n in g2.nodes] == [n.op for n in g.nodes]
    x = np.arange(5.0)
    want = x * np.arange(5) + np.linspace(0, 2, 5) + 0.5 + np.eye(5, 3, -1).sum(1)[0] + 1
    np.testing.assert_array_equal(gc.function([g2.inputs[0]], g2.nodes[-1])(x), want)
    np.testing.assert_array_equal(y.eval({X: x}), want)


def test_static_constants_match_numpy_and_fold():
    g = gc.Graph()
    X = g.input("X", shape=(3,))
    cases = [(g.arange(1.0, 2.0, 0.3), np.arange(1.0, 2.0, 0.3)),
             (g.arange(10, 0, -3), np.arange(10, 0, -3)), (g.arange(5), np.arange(5)),
             (g.linspace(0, 1, 5, endpoint=False), np.linspace(0, 1, 5, endpoint=False)),
             (g.eye(3), np.eye(3)), (g.full((2,), 7), np.full((2,), 7)),
             (gc.ones(3, like=X), np.ones(3))]
    f = gc.function([X], [c[0] for c in cases])
    assert not any(n.op.name in ("arange", "linspace", "eye", "full", "ones")
                   for n in f.graph.nodes)  # folded into constants
    for got, (node, want) in zip(f(np.zeros(3)), cases):
        assert node.shape == want.shape and node.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_a_size_no_input_binds_is_refused_when_compiling():
    g = gc.Graph()
    X = g.input("X", shape=("n",))
    with pytest.raises(gc.GraphError, match=r"zeros.*symbolic size k, which no input"):
        gc.function([X], X.sum() + g.zeros(("k",)).sum())


def test_constants_need_a_graph_and_say_so():
    with pytest.raises(gc.GraphError, match="zeros: graphc has no default graph.*like="):
        gc.zeros((3,))
    with pytest.raises(gc.GraphError, match="like must be a graph node"):
        gc.arange(3, like=np.ones(2))
    g = gc.Graph()
    with pytest.raises(gc.ShapeError, match="arange: a symbolic stop"):
        g.arange(0.5, "n")
    with pytest.raises(gc.ShapeError, match="step must not be 0"):
        g.arange(0, 3, 0)
    with pytest.raises(gc.ShapeError, match="full: fill_value must be a finite number"):
        g.full(3, np.inf)
    with pytest.raises(gc.ShapeError, match="zeros: "):
        g.zeros((-1,))
    assert len(g.nodes) == 0


# -- shapes: errors name the function, symbolic sizes flow ------------------------------------
BAD = [
    ("pad", lambda x: gc.pad(x, ((1, 2, 3),)), gc.ShapeError, r"^pad: pad_width"),
    ("pad negative", lambda x: gc.pad(x, -1), gc.ShapeError, "ints >= 0"),
    ("pad node value", lambda x: gc.pad(x, 1, x), gc.ShapeError, "constant_values must be"),
    ("triu vector", lambda x, v: gc.triu(v), gc.ShapeError, r"^triu needs a matrix.*\(4,\)"),
    ("tile negative", lambda x: gc.tile(x, (-1, 2)), gc.ShapeError, "reps must be >= 0"),
    ("repeat list", lambda x: gc.repeat(x, [1, 2, 3]), gc.ShapeError, "repeats must be an int"),
    ("roll axes", lambda x: gc.roll(x, (1, 2, 3), (0, 1)), gc.ShapeError, "3 shifts for 2"),
    ("flip axis", lambda x: gc.flip(x, 2), gc.ShapeError, "axis 2 is out of range"),
    ("moveaxis", lambda x: gc.moveaxis(x, (0, 1), 0), gc.ShapeError, "as many of each"),
    ("argmax axis", lambda x: gc.argmax(x, axis=3), gc.ShapeError, r"^argmax over \(3, 4\)"),
    ("cumsum axis", lambda x: gc.cumsum(x, axis=-3), gc.ShapeError, "axis -3 is out of range"),
    ("sort axis", lambda x: gc.sort(x, axis=2), gc.ShapeError, r"^sort of \(3, 4\)"),
    ("clip shapes", lambda x: gc.clip(x, np.zeros(3), 1.0), gc.ShapeError, r"^clip: shapes"),
    ("clip no bound", lambda x: gc.clip(x, None, None), gc.GraphError, "both be None"),
    ("var ddof", lambda x: gc.var(x, ddof=-1), gc.ShapeError, "ddof must be an int >= 0"),
    ("round decimals", lambda x: gc.round(x, 1.5), gc.ShapeError, "decimals must be an int"),
    ("meshgrid indexing", lambda x, v: gc.meshgrid(v, v, indexing="yx"), gc.ShapeError, "'xy'"),
]


@pytest.mark.parametrize("build, error, message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_arguments_raise_a_clear_error_and_leave_the_graph(build, error, message):
    g = gc.Graph()
    x, v = g.input("x", shape=(3, 4)), g.input("v", shape=(4,))
    before = len(g.nodes)
    with pytest.raises(error, match=message) as info:
        build(x, v) if build.__code__.co_argcount == 2 else build(x)
    assert "test_elem_programs.py" in str(info.value)  # the user's line
    assert len(g.nodes) == before


def test_shape_ops_keep_symbolic_sizes():
    g = gc.Graph()
    x = g.input("x", shape=("n", 3))
    n = sympy.Symbol("n", integer=True, positive=True)
    assert gc.pad(x, ((1, 2), (0, 0))).shape == (n + 3, 3)
    assert gc.tile(x, (2, 1)).shape == (2 * n, 3)
    assert gc.repeat(x, 3, axis=0).shape == (3 * n, 3)
    assert gc.roll(x, 1).shape == (n, 3)
    y = gc.sum(gc.pad(gc.cumsum(gc.flip(x, 0), 0), ((1, 1), (0, 0))) * gc.tile(x, (1, 2))[0, 1:4]
               * gc.roll(x, 2, 0)[0])
    gx = gc.grad(y, x)
    xv = np.arange(12.0).reshape(4, 3)
    gv = gc.function([x], gx)(xv)
    h = 1e-6
    fd = np.zeros_like(xv)
    f = gc.function([x], y)
    for idx in np.ndindex(*xv.shape):
        e = np.zeros_like(xv)
        e[idx] = h
        fd[idx] = (f(xv + e) - f(xv - e)) / (2 * h)
    np.testing.assert_allclose(gv, fd, rtol=1e-6, atol=1e-6)


# -- to_sympy and from_sympy ------------------------------------------------------------------
def test_to_sympy_writes_the_formulas():
    g = gc.Graph()
    x, y = g.input("x"), g.input("y")
    sx, sy = sympy.Symbol("x", real=True), sympy.Symbol("y", real=True)
    assert gc.to_sympy(gc.hypot(x, y)) == sympy.sqrt(sx**2 + sy**2)
    assert gc.to_sympy(gc.clip(x, 0.0, y)) == sympy.Min(sympy.Max(sx, 0), sy)
    assert sympy.simplify(gc.to_sympy(gc.log2(x)) - sympy.log(sx) / sympy.log(2)) == 0
    d = gc.to_sympy(gc.grad(gc.arctan2(y, x), [x, y]))
    assert sympy.simplify(d[0] - sympy.diff(sympy.atan2(sy, sx), sx)) == 0
    assert sympy.simplify(d[1] - sympy.diff(sympy.atan2(sy, sx), sy)) == 0
    rnd = gc.to_sympy(gc.round(x))
    for value in [0.5, 1.5, 2.5, -0.5, -1.5, 0.3, -2.7]:
        assert float(rnd.subs(sx, sympy.Rational(str(value)))) == np.round(value)
    s = g.input("s", shape=(5,))
    for k, e in enumerate(gc.to_sympy(gc.sort(s))):
        vals = {sympy.Symbol(f"s[{i}]", real=True): sympy.Integer(w)
                for i, w in enumerate([3, -1, 4, 1, -5])}
        assert e.xreplace(vals) == sorted([3, -1, 4, 1, -5])[k]  # (sympy's subs, one symbol at
        #                      a time, simplifies the half-substituted Min/Max to a wrong value)


def test_to_sympy_of_sort_gradient_is_a_clear_error():
    g = gc.Graph()
    s = g.input("s", shape=(3,))
    with pytest.raises(gc.GraphError, match="argsort, which has no sympy function"):
        gc.to_sympy(gc.grad(gc.sort(s)[0], s))
    perm = g.input("p", shape=(3,), dtype="int64")
    with pytest.raises(gc.GraphError, match="permutation that depends on the inputs"):
        gc.to_sympy(gc.apply(PermuteAlong(0, True), s, perm))


# -- code generation: ufuncs, and numba kernels with the new scalar forms ----------------------
def test_fused_kernels_compute_the_new_ops(rng):
    from graphc.compile import fusion

    if not fusion.enabled():
        pytest.skip("numba not installed")
    n = 2 * fusion.FUSE_MIN_SIZE
    g = gc.Graph()
    x, y = g.input("x", shape=(n,)), g.input("y", shape=(n,))
    z = (gc.erf(x) + gc.erfc(y) * gc.arctan(x) + gc.sinh(x * 0.5) - gc.arcsinh(y)
         + gc.hypot(x, y) + gc.logaddexp(x, y) + gc.clip(x, -0.5, y) + gc.mod(x, 0.3)
         + gc.log2(gc.abs(y) + 1.0) + gc.exp2(x) + gc.reciprocal(y + 3.0) + gc.floor(x)
         + gc.arctan2(x, y) + gc.round(x))
    f = gc.function([x, y], z)
    assert "fused" in f.source
    xv, yv = rng.standard_normal(n), rng.standard_normal(n)
    want = (scipy.special.erf(xv) + scipy.special.erfc(yv) * np.arctan(xv) + np.sinh(xv * 0.5)
            - np.arcsinh(yv) + np.hypot(xv, yv) + np.logaddexp(xv, yv) + np.clip(xv, -0.5, yv)
            + np.mod(xv, 0.3) + np.log2(np.abs(yv) + 1.0) + np.exp2(xv) + 1 / (yv + 3.0)
            + np.floor(xv) + np.arctan2(xv, yv) + np.round(xv))
    np.testing.assert_allclose(f(xv, yv), want, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gc.function([x, y], z, optimize=False)(xv, yv), want,
                               rtol=1e-13, atol=1e-13)


def test_generated_code_calls_the_ufuncs():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    f = gc.function([x], [gc.arcsin(x), gc.erf(x), gc.mod(x, 2.0), gc.flip(x)])
    assert "np.arcsin(" in f.source and "np.remainder(" in f.source
    assert "x[(slice(None, None, -1),)]" in f.source  # flip: a view
    v = np.array([0.1, -0.5, 0.9])
    got = f(v)
    np.testing.assert_array_equal(got[1], scipy.special.erf(v))
    np.testing.assert_array_equal(got[3], v[::-1])
