"""Programs built from einsum and gc.linalg against closed forms written in NumPy/SciPy:

(a) the negative log marginal likelihood of a Gaussian process with an RBF kernel, through
    cholesky, a triangular solve or cho_solve and the log-determinant from the factor's
    diagonal: value and hyperparameter gradient against the textbook formulas, the Hessian
    against finite differences of the closed-form gradient;
(b) scaled dot-product attention written with einsum: gradient against hand-written NumPy
    backpropagation, Hessian-vector products against finite differences of it;
(c) eigh and svd on small matrices against NumPy, with the gradients of their classic
    functions (trace, largest eigenvalue, nuclear norm, spectral norm).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import graphc as gc

# -- (a) Gaussian-process marginal likelihood ----------------------------------------------------


def gp_data(rng, n=12, d=2):
    x = rng.uniform(-2.0, 2.0, (n, d))
    y = np.sin(x[:, 0]) + 0.5 * np.cos(2 * x[:, 1]) + 0.1 * rng.standard_normal(n)
    return x, y


def gp_nll_numpy(theta, x, y):
    """Value and gradient of 0.5 y^T K^-1 y + 0.5 log|K| + n/2 log 2 pi, by the closed forms:
    d/d theta = 0.5 tr((K^-1 - alpha alpha^T) dK/d theta), alpha = K^-1 y."""
    ell, sf2, sn2 = theta
    n = len(y)
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    kern = sf2 * np.exp(-0.5 * sq / ell**2)
    k = kern + sn2 * np.eye(n)
    low = scipy.linalg.cholesky(k, lower=True)
    alpha = scipy.linalg.cho_solve((low, True), y)
    value = 0.5 * y @ alpha + np.log(np.diag(low)).sum() + 0.5 * n * np.log(2 * np.pi)
    w = scipy.linalg.cho_solve((low, True), np.eye(n)) - np.outer(alpha, alpha)
    dk = [kern * sq / ell**3, kern / sf2, np.eye(n)]
    return value, np.array([0.5 * np.sum(w * d) for d in dk])


def gp_nll_graph(x_val, n, variant):
    g = gc.Graph("gp")
    theta = g.input("theta", shape=(3,))
    y = g.input("y", shape=(n,))
    x = g.constant(x_val, name="X")
    ell, sf2, sn2 = theta[0], theta[1], theta[2]
    diff = gc.expand_dims(x, 1) - gc.expand_dims(x, 0)
    sq = gc.einsum("ijd,ijd->ij", diff, diff)
    k = sf2 * gc.exp(sq * (-0.5 / (ell * ell))) + sn2 * g.constant(np.eye(n))
    low = gc.linalg.cholesky(k)
    if variant == "cho_solve":
        fit = 0.5 * gc.sum(y * gc.linalg.cho_solve(low, y))
    else:
        v = gc.linalg.solve_triangular(low, y, lower=True)
        fit = 0.5 * gc.sum(v * v)
    logdet = gc.sum(gc.log(gc.einsum("ii->i", low)))
    nll = fit + logdet + 0.5 * n * np.log(2 * np.pi)
    return g, theta, y, nll


@pytest.mark.parametrize("variant", ["cho_solve", "solve_triangular"])
def test_gp_negative_log_likelihood_and_gradient_match_the_closed_forms(variant, rng):
    x, y = gp_data(rng)
    theta = np.array([0.8, 1.3, 0.2])
    g, th, yy, nll = gp_nll_graph(x, len(y), variant)
    grad = gc.grad(nll, th)
    want_value, want_grad = gp_nll_numpy(theta, x, y)
    for optimize in (True, False):
        value, gv = gc.function([th, yy], [nll, grad], optimize=optimize)(theta, y)
        assert float(value) == pytest.approx(want_value, rel=1e-12)
        np.testing.assert_allclose(gv, want_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variant", ["cho_solve", "solve_triangular"])
def test_gp_hessian_matches_finite_differences_of_the_closed_form_gradient(variant, rng):
    x, y = gp_data(rng)
    theta = np.array([0.8, 1.3, 0.2])
    g, th, yy, nll = gp_nll_graph(x, len(y), variant)
    hess = gc.function([th, yy], gc.hessian(nll, th))(theta, y)
    eps = 1e-5
    fd = np.stack([(gp_nll_numpy(theta + eps * e, x, y)[1] - gp_nll_numpy(theta - eps * e, x, y)[1])
                   / (2 * eps) for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(hess, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-10, atol=1e-12)
    for mode in ("forward", "reverse"):  # each column of H by an HVP agrees too
        hv = gc.function([th, yy], gc.hvp(nll, th, g.constant(np.eye(3)[1]), mode=mode))
        np.testing.assert_allclose(hv(theta, y), hess[:, 1], rtol=1e-9, atol=1e-12)


def test_gp_gradient_at_n_200_runs_the_blocked_cholesky_gradient(rng):
    """n > BLOCK: cholesky_grad's blocked algorithm (several blocks) against the closed form."""
    x, y = gp_data(rng, n=200)
    theta = np.array([0.9, 1.1, 0.3])
    g, th, yy, nll = gp_nll_graph(x, len(y), "cho_solve")
    value, gv = gc.function([th, yy], [nll, gc.grad(nll, th)])(theta, y)
    want_value, want_grad = gp_nll_numpy(theta, x, y)
    assert float(value) == pytest.approx(want_value, rel=1e-11)
    np.testing.assert_allclose(gv, want_grad, rtol=1e-8)


# -- (b) attention ------------------------------------------------------------------------------


def attention_numpy(q, k, v, w):
    """Loss sum(w * softmax(q k^T / sqrt(d)) v) and its gradients, backpropagated by hand."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = q @ np.swapaxes(k, -1, -2) * scale
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out = p @ v
    d_out = w
    d_p = d_out @ np.swapaxes(v, -1, -2)
    d_v = np.swapaxes(p, -1, -2) @ d_out
    d_s = p * (d_p - (d_p * p).sum(-1, keepdims=True)) * scale
    d_q = d_s @ k
    d_k = np.swapaxes(d_s, -1, -2) @ q
    return float((out * w).sum()), [d_q, d_k, d_v]


def attention_graph(shape):
    g = gc.Graph("attention")
    q, k, v = (g.input(name, shape=shape) for name in "qkv")
    w = g.input("w", shape=shape)
    scores = gc.einsum("bhqd,bhkd->bhqk", q, k) * (1.0 / np.sqrt(shape[-1]))
    out = gc.einsum("bhqk,bhkd->bhqd", gc.softmax(scores, axis=-1), v)
    return g, [q, k, v], w, gc.sum(out * w)


def test_attention_gradient_matches_hand_written_backprop(rng):
    shape = (2, 2, 5, 4)
    g, qkv, w, loss = attention_graph(shape)
    vals = [rng.standard_normal(shape) for _ in range(4)]
    want_loss, want_grads = attention_numpy(*vals)
    for optimize in (True, False):
        got = gc.function([*qkv, w], [loss, *gc.grad(loss, qkv)], optimize=optimize)(*vals)
        assert float(got[0]) == pytest.approx(want_loss, rel=1e-12)
        for a, b in zip(got[1:], want_grads):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_attention_hvp_matches_finite_differences_of_the_gradient(mode, rng):
    shape = (2, 2, 5, 4)
    g, qkv, w, loss = attention_graph(shape)
    vals = [rng.standard_normal(shape) for _ in range(4)]
    dirs = [rng.standard_normal(shape) for _ in range(3)]
    hv = gc.function([*qkv, w], gc.hvp(loss, qkv, [g.constant(d) for d in dirs], mode=mode))
    got = hv(*vals)
    eps = 1e-5
    plus = attention_numpy(*[x + eps * d for x, d in zip(vals, dirs)], vals[3])[1]
    minus = attention_numpy(*[x - eps * d for x, d in zip(vals, dirs)], vals[3])[1]
    for a, p, m in zip(got, plus, minus):
        np.testing.assert_allclose(a, (p - m) / (2 * eps), rtol=1e-6, atol=1e-8)


# -- (c) eigh and svd against NumPy --------------------------------------------------------------


def test_eigh_matches_numpy_and_its_classic_gradients(rng):
    a = rng.standard_normal((4, 4))
    a = a + a.T
    g = gc.Graph()
    x = g.input("x", shape=(4, 4))
    w, v = gc.linalg.eigh(x)
    wv, vv = gc.eval([w, v], {x: a})
    want_w, want_v = np.linalg.eigh(a)
    np.testing.assert_allclose(wv, want_w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.abs(vv), np.abs(want_v), atol=1e-12)  # columns up to sign
    np.testing.assert_allclose((vv * wv) @ vv.T, a, atol=1e-12)
    g_trace, g_top = gc.function([x], [gc.grad(gc.sum(w), x), gc.grad(w[-1], x)])(a)
    np.testing.assert_allclose(g_trace, np.eye(4), atol=1e-12)  # sum of eigenvalues = trace
    np.testing.assert_allclose(g_top, np.outer(want_v[:, -1], want_v[:, -1]), atol=1e-12)


def test_eigh_batched_matches_numpy(rng):
    a = rng.standard_normal((2, 3, 3, 3))
    a = a + np.swapaxes(a, -1, -2)
    g = gc.Graph()
    x = g.input("x", shape=a.shape)
    w, v = gc.linalg.eigh(x)
    wv, vv = gc.eval([w, v], {x: a})
    np.testing.assert_allclose(wv, np.linalg.eigvalsh(a), atol=1e-12)
    np.testing.assert_allclose(np.einsum("...ij,...j,...kj->...ik", vv, wv, vv), a, atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (2, 4, 3)])
def test_svd_matches_numpy_and_its_classic_gradients(shape, rng):
    a = rng.standard_normal(shape)
    g = gc.Graph()
    x = g.input("x", shape=shape)
    u, s, vh = gc.linalg.svd(x)
    uv, sv, vhv = gc.eval([u, s, vh], {x: a})
    want_u, want_s, want_vh = np.linalg.svd(a, full_matrices=False)
    np.testing.assert_allclose(sv, want_s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.abs(uv), np.abs(want_u), atol=1e-12)
    np.testing.assert_allclose(np.abs(vhv), np.abs(want_vh), atol=1e-12)
    np.testing.assert_allclose((uv * sv[..., None, :]) @ vhv, a, atol=1e-12)
    nuclear, spectral = gc.sum(s), gc.sum(s[..., 0])
    g_nuc, g_top = gc.function([x], [gc.grad(nuclear, x), gc.grad(spectral, x)])(a)
    np.testing.assert_allclose(g_nuc, want_u @ want_vh, atol=1e-12)  # d sum(s) = U V^T
    np.testing.assert_allclose(g_top, want_u[..., :, :1] @ want_vh[..., :1, :], atol=1e-12)
    if len(shape) == 2:
        for ord_ in ("nuc", 2, -2):
            assert float(gc.linalg.norm(x, ord_).eval({x: a})) == pytest.approx(
                np.linalg.norm(a, ord_), rel=1e-12)
