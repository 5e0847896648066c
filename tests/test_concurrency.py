"""Compiled functions and Hessian operators called from many threads at once give the
results they give alone. (Graph building is single-threaded per graph, as documented.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import graphc as gc


def test_compiled_function_is_thread_safe():
    g = gc.Graph()
    X = g.input("X", shape=("batch", 6))
    W = g.input("W", shape=(6, 3))
    z = gc.sum(gc.tanh(X @ W) ** 2)
    f = gc.function([X, W], [z, gc.grad(z, W)])
    rng = np.random.default_rng(0)
    cases = [(rng.standard_normal((b, 6)), rng.standard_normal((6, 3))) for b in range(1, 33)]
    alone = [f(*c) for c in cases]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda c: f(*c), cases * 4))
    for k, res in enumerate(together):
        want = alone[k % len(cases)]
        for a, b in zip(res, want):
            np.testing.assert_array_equal(a, b)


def test_hessian_operator_is_thread_safe():
    g = gc.Graph()
    w = g.input("w", shape=(5,))
    A = np.random.default_rng(1).standard_normal((5, 5))
    loss = gc.sum(gc.softplus(g.constant(A) @ w)) + 0.5 * gc.sum(w * w)
    w0 = np.linspace(-1, 1, 5)
    H = gc.hessian_operator(loss, w, at={w: w0})
    s = 1 / (1 + np.exp(-(A @ w0)))
    dense = A.T @ np.diag(s * (1 - s)) @ A + np.eye(5)
    vs = [np.random.default_rng(k).standard_normal(5) for k in range(64)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(H.matvec, vs))
    for v, hv in zip(vs, results):
        np.testing.assert_allclose(np.ravel(hv), dense @ v, rtol=1e-12, atol=1e-12)
