"""The Deep Learning book's networks: XOR (6.1) and the figure 6.11 MLP (6.5.7), whose graphc
gradients must equal a hand-written Algorithm 6.4 back-propagation."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.demo import build_mlp, synthetic_data

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0.0, 1.0, 1.0, 0.0])


def xor_network():
    g = gc.Graph("xor")
    X = g.input("X", shape=(4, 2))
    y = g.input("y", shape=(4,))
    W = g.input("W", shape=(2, 2))
    c = g.input("c", shape=(2,))
    w = g.input("w", shape=(2,))
    b = g.input("b")
    f = gc.relu(X @ W + c) @ w + b
    J = gc.mean(gc.square(f - y))
    return (X, y, W, c, w, b), f, J


def test_xor_exact_solution_and_zero_gradient_there():
    (X, y, W, c, w, b), f, J = xor_network()
    exact = {W: np.ones((2, 2)), c: np.array([0.0, -1.0]), w: np.array([1.0, -2.0]), b: 0.0}
    grads = gc.grad(J, [W, c, w, b])
    fn = gc.function([X, y, W, c, w, b], [f, J, *grads])
    out = fn(XOR_X, XOR_Y, *exact.values())
    np.testing.assert_array_equal(out[0], XOR_Y)
    assert float(out[1]) == 0.0
    for gr in out[2:]:
        np.testing.assert_array_equal(gr, 0.0)


def test_xor_learned_by_gradient_descent():
    (X, y, W, c, w, b), f, J = xor_network()
    grads = gc.grad(J, [W, c, w, b])
    step = gc.function([X, y, W, c, w, b], [J, *grads])
    rng = np.random.default_rng(3)
    params = [rng.uniform(0.1, 1.0, (2, 2)), rng.uniform(-0.1, 0.1, 2),
              rng.uniform(0.1, 1.0, 2), 0.0]
    params[1] = np.array([0.0, -0.5])
    params[2] = np.array([1.0, -1.0])
    for _ in range(3000):
        loss, *gs = step(XOR_X, XOR_Y, *params)
        params = [p - 0.1 * gr for p, gr in zip(params, gs)]
    assert float(loss) < 1e-6
    np.testing.assert_allclose(gc.function([X, W, c, w, b], f)(XOR_X, *params), XOR_Y, atol=1e-3)


def algorithm_6_4(X, y, W1, W2, lam):
    """Hand-written back-propagation for figure 6.11 (the book's Algorithm 6.4)."""
    n = X.shape[0]
    U1 = X @ W1
    H = np.maximum(U1, 0.0)
    U2 = H @ W2
    P = np.exp(U2 - U2.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    J = -np.log(P[np.arange(n), y]).mean() + lam * ((W1 ** 2).sum() + (W2 ** 2).sum())
    G = P.copy()
    G[np.arange(n), y] -= 1.0
    G /= n                                    # g <- grad wrt U2
    dW2 = H.T @ G + 2 * lam * W2
    G = (G @ W2.T) * (U1 > 0)                 # g <- grad wrt U1 (relu')
    dW1 = X.T @ G + 2 * lam * W1
    return J, dW1, dW2


def test_figure_6_11_mlp_gradients_equal_algorithm_6_4():
    X_val, y_val = synthetic_data()
    g, (X, y, W1, W2), J = build_mlp(d=X_val.shape[1], weight_decay=1e-3)
    dW1, dW2 = gc.grad(J, [W1, W2])
    rng = np.random.default_rng(5)
    W1v, W2v = rng.standard_normal(W1.shape), rng.standard_normal(W2.shape)
    got = gc.function([X, y, W1, W2], [J, dW1, dW2])(X_val, y_val, W1v, W2v)
    want = algorithm_6_4(X_val, y_val, W1v, W2v, 1e-3)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_cross_entropy_is_stable_for_logits_of_magnitude_1e3():
    g = gc.Graph()
    logits = g.input("logits", shape=(2, 3))
    labels = np.array([0, 2])
    loss = gc.softmax_cross_entropy(logits, labels).sum()
    dlogits = gc.grad(loss, logits)
    L = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 999.0, 1000.0]])
    val, gl = gc.function([logits], [loss, dlogits])(L)
    assert float(val) == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-14)
    assert np.isfinite(gl).all()
    want = np.array([[0.0, 0.0, 0.0], [0.0, 1 / (1 + np.e), -1 / (1 + np.e)]])
    np.testing.assert_allclose(gl, want, atol=1e-15)


def test_demo_runs_and_writes_dot(tmp_path, capsys):
    from graphc.demo import main
    out = tmp_path / "mlp.dot"
    assert main(["--out", str(out), "--steps", "5"]) == 0
    text = capsys.readouterr().out
    assert "loss J =" in text and "relative error" in text
    assert out.read_text().lstrip().startswith("digraph")
