"""Cases for the contractions (einsum, tensordot) and gc.linalg, merged into tests/ops/cases.py.

Every case is checked by the op table's tests: first and second order against finite
differences, jvp against vjp (the dot-product test), jacobian and hessian, save/load, to_sympy
(where SymPy has the function). The samplers keep each op where it is smooth: symmetric
positive definite matrices well away from singular for cholesky and cho_solve, eigenvalues
and singular values at least 0.5 apart (and away from 0) for eigh and svd, triangular
matrices with a dominant diagonal for the triangular solves. Symmetric inputs are built in the
case as `a + a^T`, so the finite differences move along symmetric directions, the ones
cholesky's and eigh's derivatives are defined for. Eigenvectors and singular vectors are
defined up to sign, so the cases use them through sign-free expressions (squares, u s vh).
"""

from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.ops.factor import CholeskyGrad
from tests.ops.cases import Case, both, well_conditioned

L = gc.linalg

# ops whose `to_sympy` refuses (SymPy has no closed form): the sympy round trip expects the
# GraphError instead of a value for any case whose graph holds one
NO_SYMPY = {"eigh", "svd", "qr"}
NON_DIFFERENTIABLE = {"matrix_mask"}


def _stack(rng, shape, one):
    """`one(rng, n)` for each matrix of a stack of square (n, n) matrices."""
    out = np.empty(shape)
    for idx in np.ndindex(*shape[:-2]):
        out[idx] = one(rng, shape[-1])
    return out


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def half_spd(rng, shape):
    """a with a + a^T symmetric positive definite, eigenvalues in [1, 3]."""
    def one(rng, n):
        q = _orthogonal(rng, n)
        return q @ np.diag(rng.uniform(1.0, 3.0, n)) @ q.T / 2
    return _stack(rng, shape, one)


def half_distinct(rng, shape):
    """a with a + a^T symmetric with eigenvalues at least 0.8 apart (some negative)."""
    def one(rng, n):
        q = _orthogonal(rng, n)
        w = np.arange(n) * 1.3 - 1.0 + rng.uniform(0, 0.5, n)
        return q @ np.diag(w) @ q.T / 2
    return _stack(rng, shape, one)


def spd(rng, shape):
    return half_spd(rng, shape) * 2


def lower_factor(rng, shape):
    """Lower triangular, diagonal in [1.5, 2.5]: a Cholesky factor of a well-conditioned
    matrix (and a triangular system that is well conditioned)."""
    def one(rng, n):
        return np.tril(rng.standard_normal((n, n)) * 0.4, -1) + np.diag(rng.uniform(1.5, 2.5, n))
    return _stack(rng, shape, one)


def upper_factor(rng, shape):
    return np.swapaxes(lower_factor(rng, shape), -1, -2)


def spread_singular(rng, shape):
    """(m, n) matrices with singular values 1, 1.7, 2.4, ... (distinct, away from 0)."""
    m, n = shape[-2:]
    k = min(m, n)
    out = np.empty(shape)
    for idx in np.ndindex(*shape[:-2]):
        u = _orthogonal(rng, m)[:, :k]
        v = _orthogonal(rng, n)[:, :k]
        out[idx] = (u * (1.0 + 0.7 * np.arange(k)[::-1] + rng.uniform(0, 0.2, k))) @ v.T
    return out


def sym(a):
    return a + gc.swapaxes(a, -1, -2)


def _sin_sum(u, s, vh):
    """A sign-free function of all three SVD results: sum_i sin(s_i) u_i vh_i."""
    return (u * gc.expand_dims(gc.sin(s), -2)) @ vh


CASES: list[Case] = [
    # -- einsum and tensordot ------------------------------------------------------------------
    Case("einsum", lambda a, b: gc.einsum("ij,jk->ik", a, b), [(3, 4), (4, 2)], id="einsum_mm"),
    Case("einsum", lambda a, b: gc.einsum("ij,jk", a, b), [(3, 4), (4, 2)],
         id="einsum_implicit"),
    Case("einsum", lambda a: gc.einsum("ii", a), [(3, 3)], id="einsum_trace"),
    Case("einsum", lambda a: gc.einsum("ii->i", a), [(3, 3)], id="einsum_diagonal"),
    Case("einsum", lambda a: gc.einsum("iji->j", a) * gc.einsum("ijk->kj", a)[1],
         [(3, 2, 3)], id="einsum_repeated_and_transpose"),
    Case("einsum", lambda a, b: gc.einsum("bhqd,bhkd->bhqk", a, b), [(2, 2, 3, 4), (2, 2, 5, 4)],
         id="einsum_attention_scores"),
    Case("einsum", lambda a, b: gc.einsum("...ij,...jk->...ik", a, b), [(2, 3, 4), (4, 2)],
         id="einsum_ellipsis_broadcast"),
    Case("einsum", lambda a, b: gc.einsum("ij,ij->j", a, b), [(1, 3), (2, 3)],
         id="einsum_length1_broadcast"),
    Case("einsum", lambda a, b, c: gc.einsum("ij,jk,kl->il", a, b, c),
         [(2, 3), (3, 4), (4, 2)], id="einsum_chain3"),
    Case("einsum", lambda a, b: gc.einsum("i,j->ij", a, b) + gc.einsum("i,i", a, a),
         [(3,), (4,)], id="einsum_outer_and_dot"),
    Case("einsum", lambda a, b: gc.einsum("ijk,jil->kl", a, b), [(2, 3, 4), (3, 2, 2)],
         id="einsum_two_contracted"),
    Case("einsum", lambda a, b: gc.einsum("ij,k->ij", a, b), [(2, 3), (4,)],
         id="einsum_summed_alone"),
    Case("einsum", lambda a, b: gc.tensordot(a, b, axes=([1, 2], [1, 0])),
         [(2, 3, 4), (4, 3, 2)], id="tensordot_pairs"),
    Case("einsum", lambda a, b: gc.tensordot(a, b), [(2, 3, 4), (3, 4)], id="tensordot_2"),
    # -- cholesky and its gradient op ----------------------------------------------------------
    Case("cholesky", lambda a: L.cholesky(sym(a)), [(3, 3)], [half_spd]),
    Case("cholesky", lambda a: L.cholesky(sym(a)), [(2, 3, 3)], [half_spd],
         id="cholesky_batched"),
    Case("cholesky", lambda a: gc.sum(gc.log(gc.einsum("...ii->...i", L.cholesky(sym(a))))),
         [(4, 4)], [half_spd], id="cholesky_logdet"),
    Case("cholesky_grad", lambda lo, lb: gc.apply(CholeskyGrad(), lo, lb), [(3, 3), (3, 3)],
         [lower_factor]),
    Case("cholesky_grad", lambda lo, lb: gc.apply(CholeskyGrad(), lo, lb),
         [(2, 3, 3), (3, 3)], [lower_factor], id="cholesky_grad_batched"),
    # -- solves --------------------------------------------------------------------------------
    Case("solve_triangular", lambda a, b: L.solve_triangular(a, b, lower=True), [(3, 3), (3,)],
         [lower_factor]),
    Case("solve_triangular", lambda a, b: L.solve_triangular(a, b, trans=1), [(3, 3), (3, 2)],
         [upper_factor], id="solve_triangular_upper_trans"),
    Case("solve_triangular", lambda a, b: L.solve_triangular(a, b, lower=True),
         [(2, 3, 3), (3,)], [lower_factor], id="solve_triangular_batched_vector"),
    Case("solve_triangular", lambda a, b: L.solve_triangular(a, b, True, trans="T"),
         [(3, 3), (2, 3, 2)], [lower_factor], id="solve_triangular_broadcast_b"),
    Case("solve", lambda a, b: L.solve(a, b), [(3, 3), (3,)], [well_conditioned]),
    Case("solve", lambda a, b: L.solve(a, b), [(2, 3, 3), (3, 2)], [well_conditioned],
         id="solve_batched"),
    Case("cho_solve", lambda c, b: L.cho_solve(c, b), [(3, 3), (3,)], [lower_factor]),
    Case("cho_solve", lambda c, b: L.cho_solve(c, b), [(2, 3, 3), (2, 3, 2)], [lower_factor],
         id="cho_solve_batched"),
    Case("cho_solve", lambda a, b: L.cho_solve(L.cholesky(sym(a)), b), [(3, 3), (3,)],
         [half_spd], id="cho_solve_of_cholesky"),
    Case("cho_solve", lambda u, b: L.cho_solve((u, False), b), [(3, 3), (3,)], [upper_factor],
         id="cho_solve_upper_pair"),
    # -- determinants, inverse -----------------------------------------------------------------
    Case("det", L.det, [(3, 3)], [well_conditioned]),
    Case("det", L.det, [(2, 3, 3)], [well_conditioned], id="det_batched"),
    Case("inv", L.inv, [(3, 1, 2, 2)], [well_conditioned], id="inv_batched_4d"),
    Case("slogdet", lambda a: both(L.slogdet(a), lambda s, ld: s * ld), [(2, 2, 3, 3)],
         [well_conditioned], id="slogdet_batched_4d"),
    # -- eigh, svd, qr -------------------------------------------------------------------------
    Case("eigh", lambda a: L.eigh(sym(a))[0], [(3, 3)], [half_distinct], id="eigh_values"),
    Case("eigh", lambda a: L.eigh(sym(a))[1] ** 2, [(3, 3)], [half_distinct],
         id="eigh_vectors"),
    Case("eigh", lambda a: both(L.eigh(sym(a)), lambda w, v: gc.sin(gc.expand_dims(w, -2)) * v
                                @ gc.swapaxes(v, -1, -2)),
         [(2, 3, 3)], [half_distinct], id="eigh_both_batched"),
    Case("svd", lambda a: L.svd(a)[1], [(4, 3)], [spread_singular], id="svd_values"),
    Case("svd", lambda a: _sin_sum(*L.svd(a)), [(4, 3)], [spread_singular], id="svd_tall"),
    Case("svd", lambda a: _sin_sum(*L.svd(a)), [(3, 5)], [spread_singular], id="svd_wide"),
    Case("svd", lambda a: L.svd(a)[0] ** 2, [(4, 3)], [spread_singular], id="svd_u_only"),
    Case("svd", lambda a: L.svd(a)[2] ** 2, [(2, 3, 4)], [spread_singular], id="svd_vh_batched"),
    Case("qr", lambda a: both(L.qr(a), lambda q, r: gc.sin(q) + gc.sum(r * r)), [(4, 3)],
         [spread_singular], id="qr_tall"),
    Case("qr", lambda a: L.qr(a)[1], [(3, 3)], [spread_singular], id="qr_square_r"),
    Case("qr", lambda a: both(L.qr(a), lambda q, r: gc.sum(q * 2.0) + gc.sin(r)), [(3, 5)],
         [spread_singular], id="qr_wide"),
    Case("qr", lambda a: gc.sin(L.qr(a)[0]), [(2, 4, 3)], [spread_singular],
         id="qr_batched_q"),
    # -- norm ----------------------------------------------------------------------------------
    Case("norm", L.norm, [(3, 4)], id="norm_frobenius"),
    Case("norm", lambda x: L.norm(x, axis=1), [(3, 4)], id="norm_axis"),
    Case("norm", lambda x: L.norm(x, "fro", axis=(0, 2), keepdims=True), [(3, 2, 4)],
         id="norm_fro_keepdims"),
    Case("norm", lambda x: L.norm(x, 1, axis=0) + L.norm(x, np.inf, axis=0), [(3, 4)],
         [lambda rng, s: (rng.permutation(12).reshape(s) + 1.0) * 0.15 * rng.choice([-1, 1], s)],
         id="norm_1_inf"),
    Case("norm", lambda x: L.norm(x, 2) + L.norm(x, "nuc"), [(3, 4)], [spread_singular],
         id="norm_2_nuc"),
    Case("norm", lambda x: L.norm(x, 3.0, axis=-1), [(2, 4)],
         [lambda rng, s: rng.choice([-1.0, 1.0], s) * rng.uniform(0.3, 1.5, s)], id="norm_p"),
]
