"""gc.hessian_operator and gc.objective with SciPy's Krylov solvers and optimizers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse.linalg as sla

import graphc as gc


def logistic_regression(rng, n=60, d=5, lam=0.3):
    """L2-regularised logistic regression with two parameter tensors, weights and bias."""
    g = gc.Graph("logreg")
    X = g.input("X", shape=(n, d))
    t = g.input("t", shape=(n,))
    w = g.input("w", shape=(d,))
    b = g.input("b", shape=(1,))
    logits = X @ w + b
    loss = (gc.softplus(logits) - t * logits).mean() + lam * ((w * w).sum() + (b * b).sum())
    vals = {X: rng.standard_normal((n, d)), t: (rng.random(n) < 0.4).astype(float),
            w: rng.standard_normal(d), b: np.array([0.2])}
    return loss, (X, t, w, b), vals


def logreg_hessian(vals, nodes, lam=0.3):
    """The Hessian by hand: [X 1]^T diag(p (1 - p)) [X 1] / n + 2 lam I."""
    X, t, w, b = nodes
    Xv = vals[X]
    A = np.hstack([Xv, np.ones((len(Xv), 1))])
    p = 1 / (1 + np.exp(-(Xv @ vals[w] + vals[b])))
    return A.T @ (A * (p * (1 - p))[:, None]) / len(Xv) + 2 * lam * np.eye(A.shape[1])


def test_cg_on_logistic_regression_reaches_the_dense_solution(rng):
    loss, nodes, vals = logistic_regression(rng)
    X, t, w, b = nodes
    H = gc.hessian_operator(loss, [w, b], at=vals)
    dense = logreg_hessian(vals, nodes)
    assert H.shape == (6, 6)
    np.testing.assert_allclose(H @ np.eye(6), dense, rtol=1e-12, atol=1e-14)
    rhs = rng.standard_normal(6)
    sol, info = sla.cg(H, rhs, rtol=1e-12, atol=0.0)
    assert info == 0
    np.testing.assert_allclose(sol, np.linalg.solve(dense, rhs), rtol=1e-9)
    sol2, info2 = sla.minres(H, rhs, rtol=1e-12)
    np.testing.assert_allclose(sol2, sol, rtol=1e-7)


def test_eigsh_finds_the_top_eigenvalues_of_an_mlp_loss_hessian(rng):
    g = gc.Graph("mlp")
    X = g.input("X", shape=(16, 4))
    y = g.input("y", shape=(16,), dtype="int64")
    W1, b1 = g.input("W1", shape=(4, 6)), g.input("b1", shape=(6,))
    W2, b2 = g.input("W2", shape=(6, 3)), g.input("b2", shape=(3,))
    logits = gc.tanh(X @ W1 + b1) @ W2 + b2
    loss = gc.softmax_cross_entropy(logits, y).mean() + 1e-3 * ((W1 * W1).sum() + (W2 * W2).sum())
    params = [W1, b1, W2, b2]
    vals = {X: rng.standard_normal((16, 4)), y: rng.integers(0, 3, 16),
            W1: rng.standard_normal((4, 6)), b1: 0.1 * rng.standard_normal(6),
            W2: rng.standard_normal((6, 3)), b2: 0.1 * rng.standard_normal(3)}
    H = gc.hessian_operator(loss, params, at=vals)
    n = 4 * 6 + 6 + 6 * 3 + 3
    assert H.shape == (n, n)
    # Oracle: the dense Hessian by central differences of the gradient, entry by entry.
    grad_f = gc.function([X, y, *params], gc.grad(loss, params))
    theta = np.concatenate([vals[p].ravel() for p in params])
    cuts = np.cumsum([vals[p].size for p in params])[:-1]

    def flat_grad(th):
        parts = [q.reshape(vals[p].shape) for q, p in zip(np.split(th, cuts), params)]
        return np.concatenate([a.ravel() for a in grad_f(vals[X], vals[y], *parts)])

    eps = 1e-5
    dense = np.stack([(flat_grad(theta + eps * e) - flat_grad(theta - eps * e)) / (2 * eps)
                      for e in np.eye(n)], axis=1)
    want = np.sort(np.linalg.eigvalsh((dense + dense.T) / 2))[-3:]
    got = np.sort(sla.eigsh(H, k=3, which="LA", tol=1e-10)[0])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def rosenbrock(x):
    a, b = x[:-1], x[1:]
    return (100.0 * (b - a ** 2) ** 2 + (1.0 - a) ** 2).sum()


@pytest.mark.parametrize("method", ["trust-krylov", "Newton-CG"])
def test_minimize_converges_on_rosenbrock_in_100_dimensions(method):
    g = gc.Graph("rosen")
    x = g.input("x", shape=(100,))
    x0 = np.tile([-1.2, 1.0], 50)
    obj = gc.objective(rosenbrock(x), x, at={x: x0})
    np.testing.assert_array_equal(obj.x0, x0)
    assert obj.fun(x0) == pytest.approx(scipy.optimize.rosen(x0), rel=1e-14)
    np.testing.assert_allclose(obj.jac(x0), scipy.optimize.rosen_der(x0), rtol=1e-12)
    p = np.linspace(-1, 1, 100)
    np.testing.assert_allclose(obj.hessp(x0, p), scipy.optimize.rosen_hess_prod(x0, p),
                               rtol=1e-12)
    options = {"gtol": 1e-8} if method == "trust-krylov" else {"xtol": 1e-10, "maxiter": 5000}
    res = scipy.optimize.minimize(obj.fun, obj.x0, jac=obj.jac, hessp=obj.hessp, method=method,
                                  options=options)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, np.ones(100), atol=1e-6)
    # The same solver fed SciPy's own Rosenbrock derivatives needs as many steps (up to
    # rounding, which makes the paths drift apart slightly).
    ref = scipy.optimize.minimize(scipy.optimize.rosen, x0, jac=scipy.optimize.rosen_der,
                                  hessp=scipy.optimize.rosen_hess_prod, method=method,
                                  options=options)
    assert res.nit <= 1.2 * ref.nit + 5


def test_the_gradient_side_is_computed_once_per_point(rng):
    loss, nodes, vals = logistic_regression(rng)
    X, t, w, b = nodes
    obj = gc.objective(loss, [w, b], at=vals)
    calls = []
    point = obj._prog.point
    obj._prog.point = lambda *a: calls.append(1) or point(*a)
    theta = obj.x0 + 0.1
    H = obj.hess_operator(theta)
    for _ in range(5):
        H @ rng.standard_normal(6)
    obj.fun(theta), obj.jac(theta), obj.hessp(theta, np.ones(6))
    assert len(calls) == 1
    obj.hessp(theta + 1.0, np.ones(6))
    assert len(calls) == 2
    moved = dict(vals)
    moved[w], moved[b] = theta[:5] + 1.0, theta[5:] + 1.0
    np.testing.assert_allclose(obj.hessp(theta + 1.0, np.eye(6)[2]),
                               logreg_hessian(moved, nodes)[:, 2], rtol=1e-12)


def test_matvec_returns_fresh_writable_arrays(rng):
    loss, nodes, vals = logistic_regression(rng)
    H = gc.hessian_operator(loss, [nodes[2], nodes[3]], at=vals, mode="reverse")
    v = np.ones(6)
    a = H.matvec(v)
    b = H.matvec(v)
    assert a is not b and a.flags.writeable and not np.shares_memory(a, b)
    a[:] = 0.0
    np.testing.assert_allclose(H.matvec(v), b)
    np.testing.assert_allclose(np.ravel(H.matvec(v[:, None])), b)   # a column works too
    np.testing.assert_allclose(H.matmat(np.stack([v, 2 * v], 1)), np.stack([b, 2 * b], 1))


def test_bad_arguments_raise_clear_errors_and_leave_the_graph_alone(rng):
    loss, (X, t, w, b), vals = logistic_regression(rng)
    g = loss.graph
    n = len(g.nodes)
    with pytest.raises(gc.GraphError, match="no value for wrt node 'w'"):
        gc.hessian_operator(loss, [w, b], at={X: vals[X], t: vals[t], b: vals[b]})
    with pytest.raises(gc.InputError, match="'t'"):
        gc.hessian_operator(loss, [w, b], at={X: vals[X], w: vals[w], b: vals[b]})
    with pytest.raises(gc.GraphError, match="must be an input node"):
        gc.objective(loss, [X @ w], at=vals)
    n += 1  # the matmul above
    with pytest.raises(gc.InputError, match=r"'w'.*\(5,\)"):
        gc.objective(loss, [w, b], at={**vals, w: np.ones(4)})
    assert len(g.nodes) == n
    obj = gc.objective(loss, [w, b], at=vals)
    with pytest.raises(gc.InputError, match=r"shape \(6,\).*'w', 'b'"):
        obj.fun(np.ones(5))


# -- issue 12, finding 20: complex, non-numeric and oddly shaped vectors --------------------
def test_complex_vectors_give_the_complex_product(rng):
    loss, nodes, vals = logistic_regression(rng)
    H = gc.hessian_operator(loss, [nodes[2], nodes[3]], at=vals)
    dense = logreg_hessian(vals, nodes)
    a, b = rng.standard_normal(6), rng.standard_normal(6)
    out = H @ (a + 1j * b)
    assert np.iscomplexobj(out) and out.shape == (6,)
    np.testing.assert_allclose(out, dense @ a + 1j * (dense @ b), rtol=1e-12)
    col = H.matvec((a + 1j * b)[:, None])
    assert col.shape == (6, 1)
    np.testing.assert_allclose(col[:, 0], out, rtol=1e-15)
    np.testing.assert_allclose(H.matmat(np.stack([a + 1j * b, 1j * a], 1)),
                               np.stack([out, 1j * (dense @ a)], 1), rtol=1e-12)
    # a complex shift, as eigsh's shift-invert or gmres with complex systems use
    shift = 0.5 + 0.25j
    shifted = sla.LinearOperator((6, 6), matvec=lambda v: H @ v - shift * v, dtype=complex)
    rhs = a + 1j * b
    sol, info = sla.gmres(shifted, rhs, rtol=1e-12, atol=0.0)
    assert info == 0
    np.testing.assert_allclose(sol, np.linalg.solve(dense - shift * np.eye(6), rhs), rtol=1e-8)
    obj = gc.objective(loss, [nodes[2], nodes[3]], at=vals)
    np.testing.assert_allclose(obj.hessp(obj.x0, 1j * a), 1j * (dense @ a), rtol=1e-12)
    with pytest.raises(gc.InputError, match=r"objective: theta must hold real numbers.*"
                                            r"complex128"):
        obj.fun(obj.x0 + 1j)


@pytest.mark.parametrize("vector, came", [
    (np.array(list("abcdef")), "dtype <U1"),
    (["1", "2", "3", "4", "5", "x"], "dtype <U1"),
    (np.array([b"a"] * 6), "dtype |S1"),
    ([None] * 6, "holding NoneType None, not a number"),
    ([1.0, 2.0, 3.0, 4.0, 5.0, object()], "holding object"),
    ([1.0, [2.0, 3.0]], "does not convert"),
    (np.ones(5), r"shape \(5,\)"),
    (np.ones((6, 2)), r"shape \(6, 2\)"),
    (np.ones((1, 6)), r"shape \(1, 6\)"),
    (np.ones((6, 1, 1)), r"shape \(6, 1, 1\)"),
    ("abcdef", "dtype <U6"),
])
def test_bad_vectors_are_input_errors_naming_operator_shape_and_kind(rng, vector, came):
    loss, nodes, vals = logistic_regression(rng)
    H = gc.hessian_operator(loss, [nodes[2], nodes[3]], at=vals)
    with pytest.raises(gc.InputError, match=r"hessian_operator: the vector must hold real or "
                                            r"complex numbers in shape \(6,\) \(the flattened "
                                            rf"'w', 'b'\), got .*{came}"):
        H.matvec(vector)
    if not (isinstance(vector, np.ndarray) and vector.ndim == 2):  # H @ 2-D is a matmat
        with pytest.raises(ValueError):  # what SciPy's callers catch
            H @ vector
