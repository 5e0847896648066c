"""einsum, tensordot and gc.linalg beyond the op table: NumPy's semantics subscript by
subscript, the errors, compiled against uncompiled code, the blocked Cholesky gradient against
its formula, the conventions at kinks (norm at 0, repeated eigenvalues), files and labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg

import graphc as gc
from graphc.export import json as gjson
from graphc.ops.factor import BLOCK, CholeskyGrad
from tests.ops.cases import CASES as ALL_CASES
from tests.ops.cases_linalg import CASES, spd

L = gc.linalg

# -- einsum: NumPy's semantics --------------------------------------------------------------------

SUBSCRIPTS = [
    ("ij,jk->ik", [(3, 4), (4, 2)]), ("ij,jk", [(3, 4), (4, 2)]), ("ii", [(3, 3)]),
    ("ii->i", [(3, 3)]), ("ij->ji", [(3, 4)]), ("ij->", [(3, 4)]), ("i,i", [(3,), (3,)]),
    ("i,j->ij", [(3,), (2,)]), ("ij,ij->ij", [(1, 3), (2, 3)]),
    ("...j,...j->...", [(1, 3), (2, 3)]), ("...ij,jk", [(5, 2, 3), (3, 4)]),
    ("bhqd,bhkd->bhqk", [(2, 2, 5, 4), (2, 2, 5, 4)]), ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)]),
    ("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 2)]), ("Ab,bA", [(2, 3), (3, 2)]),
    ("ba", [(2, 3)]), ("Ba", [(2, 3)]), ("aB", [(2, 3)]), ("iij,jk->ik", [(3, 3, 4), (4, 2)]),
    ("ijk,k->", [(2, 3, 4), (4,)]), ("i,,i", [(3,), (), (3,)]), (",ij", [(), (2, 3)]),
    ("...,...", [(2, 3), (3,)]), ("ij...,jk...->ik...", [(2, 3, 4), (3, 5, 4)]),
    ("ijk,jil->kl", [(2, 3, 4), (3, 2, 5)]), ("ii,ij->j", [(3, 3), (3, 4)]), ("...", [(2, 3)]),
    ("i...i", [(3, 2, 3)]), ("ij, jk -> ki", [(2, 3), (3, 4)]),
    ("i,i,i,i", [(3,), (3,), (3,), (3,)]),
    ("ij,jk,kl,lm,mi->", [(3, 4), (4, 5), (5, 2), (2, 6), (6, 3)]),
    ("ij,k,k", [(2, 3), (4,), (4,)]),
]


@pytest.mark.parametrize("subscripts, shapes", SUBSCRIPTS, ids=[s for s, _ in SUBSCRIPTS])
def test_einsum_matches_numpy_compiled_or_not(subscripts, shapes, rng):
    g = gc.Graph()
    xs = [g.input(f"x{k}", shape=s) for k, s in enumerate(shapes)]
    y = gc.einsum(subscripts, *xs)
    vals = [rng.standard_normal(s) for s in shapes]
    want = np.einsum(subscripts, *vals)
    assert y.shape == np.shape(want)
    for optimize in (True, False):
        got = gc.function(xs, y, optimize=optimize)(*vals)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        assert not any(np.shares_memory(got, v) for v in vals)


@pytest.mark.parametrize("axes, shapes", [
    (2, [(2, 3, 4), (3, 4, 5)]), (0, [(2,), (3,)]), (1, [(2, 3), (3, 4)]),
    (([1, 0], [0, 1]), [(2, 3), (3, 2)]), (([-1], [0]), [(2, 3), (3, 2)]),
    ((2, 0), [(2, 3, 4), (4, 5)]),
])
def test_tensordot_matches_numpy(axes, shapes, rng):
    g = gc.Graph()
    a, b = (g.input(n, shape=s) for n, s in zip("ab", shapes))
    va, vb = (rng.standard_normal(s) for s in shapes)
    np.testing.assert_allclose(gc.tensordot(a, b, axes).eval({a: va, b: vb}),
                               np.tensordot(va, vb, axes), rtol=1e-12)


@pytest.mark.parametrize("call, error, message", [
    (lambda a, b: gc.einsum("ij,jk,kl->il", a, b), gc.ShapeError, "3 terms for 2 operands"),
    (lambda a, b: gc.einsum("ijk,jk->ik", a, b), gc.ShapeError, "operand 0 has 2 axes"),
    (lambda a, b: gc.einsum("ij,ij->ij", a, b), gc.ShapeError,
     r"label 'i' has size 2 in operand 0 but 4 in operand 1 \(shapes \(2, 3\), \(4, 3\)\)"),
    (lambda a, b: gc.einsum("i2,jk->ik", a, b), gc.GraphError, "letters a-z, A-Z"),
    (lambda a, b: gc.einsum("ij,jk->iz", a, b), gc.GraphError, "'z' is not in any operand"),
    (lambda a, b: gc.einsum("ij,jk->ii", a, b), gc.GraphError, "an output label repeats"),
    (lambda a, b: gc.einsum("...j,jk->k", a, b), gc.ShapeError, "no '...'"),
    (lambda a, b: gc.einsum("ij->i->j", a), gc.GraphError, "more than one '->'"),
    (lambda a, b: gc.einsum(["ij"], a), gc.GraphError, "must be a str"),
    (lambda a, b: gc.tensordot(a, b, axes=3), gc.ShapeError, "axes=3"),
    (lambda a, b: gc.tensordot(a, b, axes=([0], [0])), gc.ShapeError, "axis 0 of a has length 2"),
    (lambda a, b: gc.tensordot(a, b, axes="x"), gc.GraphError, "an int or a pair"),
])
def test_einsum_and_tensordot_errors_name_the_call(call, error, message):
    g = gc.Graph()
    a, b = g.input("a", shape=(2, 3)), g.input("b", shape=(4, 3))
    before = len(g.nodes)
    with pytest.raises(error, match=message) as info:
        call(a, b)
    assert str(info.value).startswith(("einsum", "tensordot")) and "test_linalg.py" in str(
        info.value)
    assert len(g.nodes) == before


def test_einsum_labels_show_the_subscripts_in_drawings_and_text():
    g = gc.Graph()
    a, b = g.input("a", shape=(2, 3)), g.input("b", shape=(3, 4))
    y = gc.einsum("ij,jk->ik", a, b)
    assert y.op.label() == "einsum(ij,jk->ik)"
    assert "einsum(ij,jk->ik)" in gc.debugprint(y) and "einsum(ij,jk->ik)" in gc.to_dot(y)
    assert "einsum(ij,jk->ik)" in gc.function([a, b], y).source


def test_einsum_parameters_are_labels_and_files_refuse_bad_ones(tmp_path):
    g = gc.Graph()
    a, b = g.input("a", shape=(2, 3)), g.input("b", shape=(3, 4))
    y = gc.einsum("ij,jk->ik", a, b)
    assert y.op.params() == {"subscripts": ((8, 9), (9, 10)), "output": (8, 10)}
    gc.grad(gc.sum(y * y), [a, b])
    text = gjson.dumps(g)
    assert gjson.dumps(gc.load(gc.save(g, tmp_path / "e.json"))) == text
    doc = json.loads(text)
    node = next(n for n in doc["nodes"] if n["op"] == "einsum")
    for bad in ([[8, 52], [9, 10]], [["i", "j"], [9, 10]], [[8, -1], [9, 10]]):
        node["params"]["subscripts"] = bad
        with pytest.raises(gc.LoadError, match="einsum"):
            gjson.loads(json.dumps(doc))
    node["params"]["subscripts"] = [[8, 9], [9, 10]]
    node["params"]["output"] = [8, 8]
    with pytest.raises(gc.LoadError, match="distinct labels"):
        gjson.loads(json.dumps(doc))


# -- compiled against uncompiled, every case --------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id or c.op for c in CASES])
def test_optimized_equals_unoptimized_with_gradients(case, rng):
    g = gc.Graph()
    xs = [g.input(f"x{k}", shape=s) for k, s in enumerate(case.shapes)]
    y = case.build(*xs)
    z = gc.sum(y * g.constant(rng.standard_normal(y.shape)))
    outs = [y, *gc.grad(z, xs)]
    vals = [case.sample(rng, k) for k in range(len(xs))]
    fast = gc.function(xs, outs)(*vals)
    slow = gc.function(xs, outs, optimize=False)(*vals)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_the_linalg_cases_are_in_the_op_table():
    ids = {c.id for c in ALL_CASES}
    assert all(c.id in ids for c in CASES)


# -- the solves against NumPy and SciPy, with NumPy's batch rules --------------------------------


@pytest.mark.parametrize("n", [3, 40])  # NumPy's stacked solve, and SciPy's matrix by matrix
@pytest.mark.parametrize("a_batch, b_shape", [
    ((), ("n",)), ((), ("n", 2)), ((2,), ("n",)), ((2,), ("n", 2)), ((), (4, "n", 2)),
    ((2, 1), (4, "n", 1)),
])
def test_solves_follow_numpys_batch_rules(n, a_batch, b_shape, rng):
    a_shape = (*a_batch, n, n)
    b_shape = tuple(n if d == "n" else d for d in b_shape)
    g = gc.Graph()
    a, b = g.input("a", shape=a_shape), g.input("b", shape=b_shape)
    low = np.tril(rng.standard_normal(a_shape)) / np.sqrt(n) + 3 * np.eye(n)
    bv = rng.standard_normal(b_shape)
    full = low + 0.5 * np.swapaxes(np.tril(rng.standard_normal(a_shape), -1), -1, -2) / n
    want_tri = np.linalg.solve(low, bv)
    want_cho = np.linalg.solve(low @ np.swapaxes(low, -1, -2), bv)
    want_trans = np.linalg.solve(np.swapaxes(low, -1, -2), bv)
    got = gc.eval([L.solve_triangular(a, b, lower=True), L.cho_solve(a, b), L.solve(a, b),
                   L.solve_triangular(a, b, lower=True, trans=1)], {a: low, b: bv})
    np.testing.assert_allclose(got[0], want_tri, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], want_cho, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[2], want_tri, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[3], want_trans, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(L.solve(a, b).eval({a: full, b: bv}), np.linalg.solve(full, bv),
                               rtol=1e-10)


def test_triangular_solves_read_only_their_triangle(rng):
    g = gc.Graph()
    a, b = g.input("a", shape=(3, 3)), g.input("b", shape=(3,))
    low = np.tril(rng.standard_normal((3, 3))) + 3 * np.eye(3)
    junk = low + np.triu(rng.standard_normal((3, 3)), 1)
    bv = rng.standard_normal(3)
    for y in (L.solve_triangular(a, b, lower=True), L.cho_solve(a, b)):
        np.testing.assert_array_equal(y.eval({a: junk, b: bv}), y.eval({a: low, b: bv}))
        ga = gc.grad(gc.sum(y), a).eval({a: junk, b: bv})
        np.testing.assert_array_equal(np.triu(ga, 1), 0)  # nothing for the unread triangle
    upper = L.solve_triangular(a, b, trans="T")  # a^T x = b with a's upper triangle
    np.testing.assert_allclose(upper.eval({a: low.T, b: bv}),
                               scipy.linalg.solve_triangular(low.T, bv, trans=1), rtol=1e-12)
    pair = L.cho_solve((a, False), b)  # SciPy's (factor, lower) form, an upper factor
    np.testing.assert_allclose(pair.eval({a: low.T, b: bv}),
                               scipy.linalg.cho_solve((low.T, False), bv), rtol=1e-12)


# -- cholesky and its gradient op ---------------------------------------------------------------


def cholesky_grad_formula(low, lbar):
    """sym(L^-T Phi(L^T Lb) L^-1), written out with dense NumPy and SciPy."""
    p = np.tril(low.T @ np.tril(lbar))
    p[np.diag_indices_from(p)] *= 0.5
    x = scipy.linalg.solve_triangular(low, p, trans=1, lower=True)
    x = scipy.linalg.solve_triangular(low, x.T, trans=1, lower=True).T
    return (x + x.T) / 2


@pytest.mark.parametrize("n", [1, 5, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 7])
def test_blocked_cholesky_gradient_matches_the_formula(n, rng):
    a = spd(rng, (n, n)) * n
    low = np.linalg.cholesky(a)
    lbar = rng.standard_normal((n, n))
    want = cholesky_grad_formula(low, lbar)
    got = CholeskyGrad().forward(low, lbar)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    stacked = CholeskyGrad().forward(np.stack([low, low]), lbar)
    np.testing.assert_allclose(stacked[1], want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


def test_cholesky_gradient_is_symmetric_and_gives_the_inverse_for_the_log_determinant(rng):
    a = spd(rng, (5, 5))
    g = gc.Graph()
    x = g.input("x", shape=(5, 5))
    logdet = 2.0 * gc.sum(gc.log(gc.einsum("ii->i", L.cholesky(x))))
    np.testing.assert_allclose(logdet.eval({x: a}), np.linalg.slogdet(a)[1], rtol=1e-12)
    ga = gc.grad(logdet, x).eval({x: a})
    np.testing.assert_allclose(ga, np.linalg.inv(a), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ga, ga.T, atol=1e-14)


# -- conventions ---------------------------------------------------------------------------------


def test_norm_matches_numpy_for_every_order(rng):
    g = gc.Graph()
    v = g.input("v", shape=(5,))
    m = g.input("m", shape=(3, 4))
    t = g.input("t", shape=(2, 3, 4))
    vv, mv, tv = rng.standard_normal(5), rng.standard_normal((3, 4)), rng.standard_normal((2, 3, 4))
    vv[1] = 0.0
    for o in (None, 1, 2, np.inf, -np.inf, 0, 3, 0.5):
        assert float(L.norm(v, o).eval({v: vv})) == pytest.approx(np.linalg.norm(vv, o))
    for o in (None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf):
        assert float(L.norm(m, o).eval({m: mv})) == pytest.approx(np.linalg.norm(mv, o))
        for axis in ((2, 0), (1, 2)):
            for keep in (False, True):
                np.testing.assert_allclose(
                    L.norm(t, o, axis, keep).eval({t: tv}),
                    np.linalg.norm(tv, o, axis, keep), rtol=1e-12)
    np.testing.assert_allclose(L.norm(t).eval({t: tv}), np.linalg.norm(tv), rtol=1e-12)
    np.testing.assert_allclose(L.norm(t, axis=-1, keepdims=True).eval({t: tv}),
                               np.linalg.norm(tv, axis=-1, keepdims=True), rtol=1e-12)


def test_the_two_norms_gradient_at_zero_is_zero():
    g = gc.Graph()
    x = g.input("x", shape=(2, 3))
    at = {x: np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])}
    rows = L.norm(x, axis=1)
    np.testing.assert_allclose(gc.grad(gc.sum(rows), x).eval(at), [[0, 0, 0], [0.6, 0, 0.8]])
    np.testing.assert_allclose(gc.jvp(rows, x, np.ones((2, 3))).eval(at), [0.0, 1.4])
    np.testing.assert_array_equal(gc.grad(L.norm(x), x).eval({x: np.zeros((2, 3))}), 0.0)


@pytest.mark.parametrize("call, error, message", [
    (lambda m, v, s: L.cholesky(v), gc.ShapeError, r"cholesky needs square .* got \(3,\)"),
    (lambda m, v, s: L.solve(m, v), gc.ShapeError, r"solve needs square .* got \(3, 4\)"),
    (lambda m, v, s: L.solve_triangular(s, m), gc.ShapeError,
     r"solve_triangular: a is \(4, 4\) but b is \(3, 4\); b must be \(4,\) or \(\.\.\., 4, k\)"),
    (lambda m, v, s: L.cho_solve(s, v), gc.ShapeError, r"cho_solve: a is \(4, 4\) but b is"),
    (lambda m, v, s: L.solve_triangular(m, v, trans="X"), gc.GraphError, "trans must be"),
    (lambda m, v, s: L.cho_solve((m, True, 1), v), gc.GraphError, "a tuple of 3"),
    (lambda m, v, s: L.det(m), gc.ShapeError, r"det needs square .* got \(3, 4\)"),
    (lambda m, v, s: L.eigh(m, UPLO="X"), gc.GraphError, "UPLO"),
    (lambda m, v, s: L.svd(m, full_matrices=True), gc.GraphError, "full_matrices=True"),
    (lambda m, v, s: L.qr(m, mode="complete"), gc.GraphError, "only 'reduced'"),
    (lambda m, v, s: L.svd(v), gc.ShapeError, r"svd needs a float matrix"),
    (lambda m, v, s: L.norm(m, "nuc", axis=0), gc.GraphError, "not a vector norm"),
    (lambda m, v, s: L.norm(m, "xyz"), gc.GraphError, "not a matrix norm"),
    (lambda m, v, s: L.norm(m, 3), gc.GraphError, "not a matrix norm"),
    (lambda m, v, s: L.norm(m, axis=(0, 0)), gc.ShapeError, "two different axes"),
    (lambda m, v, s: L.norm(m, axis=2), gc.ShapeError, "norm: axis 2"),
])
def test_linalg_errors_name_the_call_and_leave_the_graph_alone(call, error, message):
    g = gc.Graph()
    m, v, s = g.input("m", shape=(3, 4)), g.input("v", shape=(3,)), g.input("s", shape=(4, 4))
    before = len(g.nodes)
    with pytest.raises(error, match=message) as info:
        call(m, v, s)
    assert "test_linalg.py" in str(info.value)
    assert len(g.nodes) == before


def test_repeated_eigenvalues_eigenvalue_gradients_stay_finite_vector_ones_do_not():
    """The documented caveat: at a repeated eigenvalue the eigenvectors are not unique and
    their derivative divides by w_j - w_i = 0; the eigenvalues' is fine."""
    a = np.diag([1.0, 1.0, 2.0])
    g = gc.Graph()
    x = g.input("x", shape=(3, 3))
    w, v = L.eigh(x)
    np.testing.assert_allclose(gc.grad(gc.sum(w), x).eval({x: a}), np.eye(3))
    np.testing.assert_allclose(gc.grad(w[2], x).eval({x: a}), np.diag([0.0, 0.0, 1.0]),
                               atol=1e-15)
    with np.errstate(all="ignore"):
        assert not np.isfinite(gc.grad(gc.sum(v * g.constant(np.arange(9.0).reshape(3, 3))),
                                       x).eval({x: a})).all()


def test_eigh_reads_the_triangle_numpy_reads(rng):
    a = rng.standard_normal((3, 3))
    g = gc.Graph()
    x = g.input("x", shape=(3, 3))
    for uplo in ("L", "U"):
        w, _ = L.eigh(x, UPLO=uplo)
        np.testing.assert_allclose(w.eval({x: a}), np.linalg.eigh(a, UPLO=uplo)[0], rtol=1e-12)


def test_symbolic_sizes(rng):
    g = gc.Graph()
    a = g.input("a", shape=("n", "n"))
    b = g.input("b", shape=("n", "k"))
    x = L.cho_solve(L.cholesky(a), b) + L.solve(a, b) + gc.einsum("ij,jk->ik", a, b)
    assert [str(d) for d in x.shape] == ["n", "k"]
    za = spd(rng, (4, 4))
    zb = rng.standard_normal((4, 2))
    want = 2 * np.linalg.solve(za, zb) + za @ zb
    np.testing.assert_allclose(gc.function([a, b], x)(za, zb), want, rtol=1e-10)
    ga = gc.function([a, b], gc.grad(gc.sum(x), a))(za, zb)
    assert ga.shape == (4, 4) and np.isfinite(ga).all()
    wide = g.input("w", shape=("n", "k"))
    with pytest.raises(gc.ShapeError, match="min"):
        L.svd(wide)
