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


def test_the_gradient_side_is_computed_once_per_point(rng, monkeypatch):
    loss, nodes, vals = logistic_regression(rng)
    X, t, w, b = nodes
    obj = gc.objective(loss, [w, b], at=vals)
    calls = []
    point = obj._prog.point
    monkeypatch.setattr(obj._prog, "point", lambda *a: calls.append(1) or point(*a))
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


# -- issue 14, item 6: operators built once and re-pointed -------------------------------------
def small_mlp():
    """A 4-6-3 tanh MLP with mean softmax cross-entropy; the batch axis is symbolic."""
    g = gc.Graph("mlp")
    X = g.input("X", shape=("m", 4))
    y = g.input("y", shape=("m",), dtype="int64")
    W1, b1 = g.input("W1", shape=(4, 6)), g.input("b1", shape=(6,))
    W2, b2 = g.input("W2", shape=(6, 3)), g.input("b2", shape=(3,))
    loss = gc.softmax_cross_entropy(gc.tanh(X @ W1 + b1) @ W2 + b2, y).mean()
    return loss, (X, y), [W1, b1, W2, b2]


def mlp_point(rng, data, params, batch=16):
    X, y = data
    return {X: rng.standard_normal((batch, 4)), y: rng.integers(0, 3, batch),
            **{p: 0.5 * rng.standard_normal(p.shape) for p in params}}


def fd_hessian(loss, data, params, at):
    """The dense Hessian by central differences of the compiled gradient (the oracle)."""
    X, y = data
    grad_f = gc.function([X, y, *params], gc.grad(loss, params))
    theta = np.concatenate([at[p].ravel() for p in params])
    cuts = np.cumsum([at[p].size for p in params])[:-1]

    def flat_grad(th):
        parts = [q.reshape(at[p].shape) for q, p in zip(np.split(th, cuts), params)]
        return np.concatenate([a.ravel() for a in grad_f(at[X], at[y], *parts)])

    eps = 1e-5
    cols = [(flat_grad(theta + eps * e) - flat_grad(theta - eps * e)) / (2 * eps)
            for e in np.eye(theta.size)]
    return np.stack(cols, axis=1)


def test_update_moves_the_operator_to_new_data_and_parameters(rng):
    loss, nodes, vals = logistic_regression(rng)
    X, t, w, b = nodes
    H = gc.hessian_operator(loss, [w, b], at=vals)
    for _ in range(3):
        new = {X: rng.standard_normal((60, 5)), t: (rng.random(60) < 0.5).astype(float),
               w: rng.standard_normal(5), b: rng.standard_normal(1)}
        assert H.update(at=new) is H
        np.testing.assert_allclose(H @ np.eye(6), logreg_hessian(new, nodes), rtol=1e-12,
                                   atol=1e-14)
    # a partial update keeps the other inputs' values; names work as keys
    only_w = {**new, w: rng.standard_normal(5)}
    H.update(at={"w": only_w[w]})
    np.testing.assert_allclose(H @ np.eye(6), logreg_hessian(only_w, nodes), rtol=1e-12,
                               atol=1e-14)


def test_update_does_not_read_the_callers_arrays_later(rng):
    loss, nodes, vals = logistic_regression(rng)
    X, t, w, b = nodes
    H = gc.hessian_operator(loss, [w, b], at=vals)
    new = {X: rng.standard_normal((60, 5)), t: vals[t], w: rng.standard_normal(5), b: vals[b]}
    H.update(at=new)
    want = logreg_hessian(new, nodes)
    new[X][:] = 0.0   # a loader that refills its buffer in place
    new[w][:] = 7.0
    np.testing.assert_allclose(H @ np.eye(6), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_products_after_update_match_finite_differences_on_an_mlp(rng, mode):
    loss, data, params = small_mlp()
    H = gc.hessian_operator(loss, params, at=mlp_point(rng, data, params), mode=mode)
    assert H.mode == mode
    for batch in (16, 9):  # the batch axis is symbolic: a smaller last minibatch works too
        at = mlp_point(rng, data, params, batch)
        H.update(at=at)
        want = fd_hessian(loss, data, params, at)
        np.testing.assert_allclose(H @ np.eye(H.shape[0]), want, rtol=1e-6, atol=1e-8)


def test_with_data_gives_the_objective_at_new_data_sharing_the_program(rng):
    loss, nodes, vals = logistic_regression(rng)
    X, t, w, b = nodes
    obj = gc.objective(loss, [w, b], at=vals)
    theta = obj.x0 + 0.3
    before = (obj.fun(theta), obj.jac(theta), obj.hessp(theta, np.ones(6)))
    data = {X: rng.standard_normal((60, 5)), t: (rng.random(60) < 0.5).astype(float)}
    moved = obj.with_data(data)
    assert moved is not obj and moved._prog is obj._prog
    np.testing.assert_array_equal(moved.x0, obj.x0)
    fresh = gc.objective(loss, [w, b], at={**vals, **data})
    assert fresh._prog is obj._prog  # built and compiled once per (loss, wrt, mode)
    at_theta = {**data, w: theta[:5], b: theta[5:]}
    assert moved.fun(theta) == pytest.approx(fresh.fun(theta), rel=1e-15)
    np.testing.assert_allclose(moved.jac(theta), fresh.jac(theta), rtol=1e-15)
    np.testing.assert_allclose(moved.hess_operator(theta) @ np.eye(6),
                               logreg_hessian(at_theta, nodes), rtol=1e-12, atol=1e-14)
    for e in np.eye(6):
        np.testing.assert_allclose(moved.hessp(theta, e), logreg_hessian(at_theta, nodes) @ e,
                                   rtol=1e-12, atol=1e-14)
    # the first objective still answers at its own data
    assert obj.fun(theta) == before[0]
    np.testing.assert_array_equal(obj.jac(theta), before[1])
    np.testing.assert_array_equal(obj.hessp(theta, np.ones(6)), before[2])


def test_operators_and_objectives_of_one_loss_compile_once(rng, monkeypatch):
    import graphc.krylov as krylov

    loss, nodes, vals = logistic_regression(rng)
    X, t, w, b = nodes
    H = gc.hessian_operator(loss, [w, b], at=vals)
    compiled = []
    real = krylov.Function
    monkeypatch.setattr(krylov, "Function", lambda *a, **k: compiled.append(a) or real(*a, **k))
    size = len(loss.graph.nodes)
    H2 = gc.hessian_operator(loss, [w, b], at={**vals, w: vals[w] + 1.0})
    obj = gc.objective(loss, [w, b], at=vals)
    H3 = obj.with_data({X: vals[X][::-1].copy()}).hess_operator(obj.x0)
    assert compiled == [] and len(loss.graph.nodes) == size
    assert H2._program is H._program is obj._prog is H3._program
    gc.hessian_operator(loss, [w, b], at=vals, mode="reverse")  # another mode: its own program
    assert len(compiled) == 2


def test_hundreds_of_minibatches_add_no_nodes(rng):
    loss, data, params = small_mlp()
    X, y = data
    g = loss.graph
    at = mlp_point(rng, data, params)
    H = gc.hessian_operator(loss, params, at=at)
    obj = gc.objective(loss, params, at=at)
    sizes = (len(g.nodes), len(g.inputs), len(g.cache))
    theta = obj.x0.copy()
    for _ in range(300):
        X_b, y_b = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
        H.update(at={X: X_b, y: y_b})
        step = obj.with_data({X: X_b, y: y_b})
        p, info = sla.cg(step.hess_operator(theta), -step.jac(theta), maxiter=3)
        theta = theta + 0.01 * p
    assert (len(g.nodes), len(g.inputs), len(g.cache)) == sizes
    cuts = np.cumsum([at[q].size for q in params])[:-1]
    last = {X: X_b, y: y_b, **{q: part.reshape(at[q].shape)
                               for q, part in zip(params, np.split(theta, cuts))}}
    np.testing.assert_allclose(step.hess_operator(theta) @ np.eye(H.shape[0]),
                               fd_hessian(loss, data, params, last), rtol=1e-6, atol=1e-8)


def bad_updates(nodes, vals):
    X, t, w, b = nodes
    return [
        ({X: np.ones((60, 4))}, gc.InputError,
         r"hessian_operator.update: input 'X': expected shape \(60, 5\).*got shape \(60, 4\)"),
        ({t: np.ones(59)}, gc.InputError, r"update: input 't'.*\(60,\).*\(59,\)"),
        ({X: np.ones((60, 5)), t: np.ones(59)}, gc.InputError, "'t'"),  # X is not applied
        ({w: np.ones(6)}, gc.InputError, r"update: input 'w'.*\(5,\).*\(6,\)"),
        ({w: np.ones(5, dtype=complex)}, gc.InputError, r"'w'.*complex128"),
        ({t: ["a"] * 60}, gc.InputError, r"'t'.*<U1"),
        ({"nope": 1.0}, gc.GraphError, "update: `at` key 'nope' names no node"),
        ({3: 1.0}, gc.GraphError, "must be a graph node"),
        ([(X, vals[X])], gc.GraphError, "`at` must map"),
    ]


def test_bad_updates_raise_clear_errors_and_leave_the_operator_usable(rng, monkeypatch):
    loss, nodes, vals = logistic_regression(rng)
    X, t, w, b = nodes
    H = gc.hessian_operator(loss, [w, b], at=vals)
    want = logreg_hessian(vals, nodes)
    product = X @ w  # a node, but not an input
    size = len(loss.graph.nodes)
    for at, error, message in bad_updates(nodes, vals) + [
            ({product: 1.0}, gc.GraphError, "is not an input node")]:
        with pytest.raises(error, match=message):
            H.update(at=at)
        assert len(loss.graph.nodes) == size
        np.testing.assert_allclose(H @ np.eye(6), want, rtol=1e-12, atol=1e-14)
    # a failure in the forward and gradient pass itself changes nothing either
    def fail(*a):
        raise gc.InputError("node 'boom' failed at run time")

    monkeypatch.setattr(H._program, "point", fail)
    with pytest.raises(gc.InputError, match="hessian_operator.update: node 'boom'"):
        H.update(at={X: rng.standard_normal((60, 5)), w: np.zeros(5)})
    monkeypatch.undo()
    np.testing.assert_allclose(H @ np.eye(6), want, rtol=1e-12, atol=1e-14)
    moved = {**vals, w: np.zeros(5)}
    np.testing.assert_allclose(H.update(at={w: np.zeros(5)}) @ np.eye(6),
                               logreg_hessian(moved, nodes), rtol=1e-12, atol=1e-14)


def test_bad_data_for_with_data_raises_and_leaves_the_objective_usable(rng):
    loss, nodes, vals = logistic_regression(rng)
    X, t, w, b = nodes
    obj = gc.objective(loss, [w, b], at=vals)
    before = obj.jac(obj.x0)
    with pytest.raises(gc.InputError, match=r"objective.with_data: 'w' is a parameter"):
        obj.with_data({w: np.ones(5)})
    for at, error, message in bad_updates(nodes, vals):
        if isinstance(at, dict) and any(key is w for key in at):
            continue  # parameters are refused before their values are looked at
        message = message.replace("hessian_operator.update", "objective.with_data")
        with pytest.raises(error, match=message.replace("update:", "with_data:")):
            obj.with_data(at)
    np.testing.assert_array_equal(obj.jac(obj.x0), before)


def test_symbolic_batch_sizes_must_agree_across_the_data(rng):
    loss, data, params = small_mlp()
    X, y = data
    H = gc.hessian_operator(loss, params, at=mlp_point(rng, data, params))
    with pytest.raises(gc.InputError, match=r"update: input 'y': dimension m is 16 \(bound by "
                                            r"input 'X'\).*length 9"):
        H.update(at={y: np.zeros(9, dtype=int)})
    with pytest.raises(gc.InputError, match="'y'.*length 8"):
        H.update(at={X: np.ones((9, 4)), y: np.zeros(8, dtype=int)})
    H.update(at={X: np.ones((9, 4)), y: np.zeros(9, dtype=int)})  # both at once: fine


def test_cg_and_minres_with_an_updated_operator(rng):
    loss, nodes, vals = logistic_regression(rng)
    X, t, w, b = nodes
    H = gc.hessian_operator(loss, [w, b], at=vals)
    new = {X: 2.0 * rng.standard_normal((60, 5)), t: (rng.random(60) < 0.7).astype(float),
           w: rng.standard_normal(5), b: np.array([-0.4])}
    H.update(at=new)
    dense = logreg_hessian(new, nodes)
    rhs = rng.standard_normal(6)
    want = np.linalg.solve(dense, rhs)
    sol, info = sla.cg(H, rhs, rtol=1e-12, atol=0.0)
    assert info == 0
    np.testing.assert_allclose(sol, want, rtol=1e-9)
    sol, info = sla.minres(H, rhs, rtol=1e-12)
    np.testing.assert_allclose(sol, want, rtol=1e-7)
    # damped, as a Hessian-free step solves (H + lambda I) p = -g
    damped = sla.LinearOperator(H.shape, matvec=lambda v: H @ v + 0.5 * v, dtype=float)
    sol, info = sla.cg(damped, rhs, rtol=1e-12, atol=0.0)
    np.testing.assert_allclose(sol, np.linalg.solve(dense + 0.5 * np.eye(6), rhs), rtol=1e-9)


def test_float32_parameters_give_float64_products(rng):
    g = gc.Graph("f32")
    x = g.input("x", shape=(3,), dtype="float32")
    a = g.input("a", shape=(3,), dtype="float32")
    H = gc.hessian_operator((a * x ** 3).sum(), x, at={x: np.ones(3, np.float32),
                                                       a: np.ones(3, np.float32)})
    out = H @ np.array([1.0, 2.0, 3.0])
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [6.0, 12.0, 18.0], rtol=1e-6)
    H.update(at={x: np.array([1.0, -1.0, 2.0], np.float32)})
    np.testing.assert_allclose(H @ np.ones(3), [6.0, -6.0, 12.0], rtol=1e-6)
    with pytest.raises(gc.InputError, match=r"'a'.*float64.*does not cast safely"):
        H.update(at={a: np.ones(3)})


def test_the_product_part_runs_only_what_changes_with_the_vector(rng):
    """Views and inputs are not fed across the point/product boundary, point-only factors are
    multiplied once per point, and a bias tangent is added without np.broadcast_to."""
    loss, data, params = small_mlp()
    X, y = data
    at = mlp_point(rng, data, params)
    H = gc.hessian_operator(loss, params, at=at, mode="forward")
    product = H._program.product
    fed = [n.name for n in product.inputs]
    assert "X" in fed and "W2" in fed and not any("transpose" in name for name in fed)
    ops_run = [n.op.name for n in product.graph.nodes]
    assert "broadcast_to" not in ops_run and "neg" not in ops_run, ops_run
    assert ops_run.count("matmul") == 8  # as many as the hand-written R-op
    np.testing.assert_allclose(H @ np.eye(H.shape[0]), fd_hessian(loss, data, params, at),
                               rtol=1e-6, atol=1e-8)


def test_large_elementwise_point_values_are_recomputed_in_the_product():
    from graphc.compile import fusion

    g = gc.Graph("rosen")
    x = g.input("x", shape=(5000,))
    rng = np.random.default_rng(5)
    x0 = rng.uniform(-1.5, 1.5, 5000)
    H = gc.hessian_operator(rosenbrock(x), x, at={x: x0})
    p = rng.standard_normal(5000)
    np.testing.assert_allclose(H @ p, scipy.optimize.rosen_hess_prod(x0, p), rtol=1e-12)
    if fusion.enabled():  # one fused kernel over x and the vector: nothing else is fed
        assert [n.name for n in H._program.product.inputs] == ["x", "v(x)"]
    H.update(at={x: x0[::-1].copy()})
    np.testing.assert_allclose(H @ p, scipy.optimize.rosen_hess_prod(x0[::-1], p), rtol=1e-12)
