"""gc.ggn_operator, gc.empirical_fisher_operator, gc.jacobian_operator and batches= (issue 18).

Oracles: dense matrices assembled from gc.jacobian and gc.hessian (a separate graph with
static shapes, built the same way), the Fisher information computed as an exact expectation
over the model's predictive distribution, and the closed-form Hessian of logistic regression.
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import scipy.sparse.linalg as sla

import graphc as gc

N, D, H_, C = 12, 4, 5, 3  # examples, inputs, hidden units, classes


# -- models ------------------------------------------------------------------------------------
def mlp(batch=N, head="softmax", reduce="mean"):
    """A D-H-C tanh MLP. head "softmax": cross-entropy on integer labels; "squared": 1/2 the
    squared error against real targets. Returns (loss, logits, per-example loss, data, params)."""
    g = gc.Graph("mlp")
    X = g.input("X", shape=(batch, D))
    if head == "softmax":
        y = g.input("y", shape=(batch,), dtype="int64")
    else:
        y = g.input("y", shape=(batch, C))
    W1, b1 = g.input("W1", shape=(D, H_)), g.input("b1", shape=(H_,))
    W2, b2 = g.input("W2", shape=(H_, C)), g.input("b2", shape=(C,))
    z = gc.tanh(X @ W1 + b1) @ W2 + b2
    per = (gc.softmax_cross_entropy(z, y) if head == "softmax"
           else 0.5 * ((z - y) ** 2).sum(axis=1))
    loss = per.mean() if reduce == "mean" else per.sum()
    return loss, z, per, (X, y), [W1, b1, W2, b2]


def mlp_values(rng, head="softmax", batch=N):
    params = [0.7 * rng.standard_normal((D, H_)), 0.1 * rng.standard_normal(H_),
              0.7 * rng.standard_normal((H_, C)), 0.1 * rng.standard_normal(C)]
    X = rng.standard_normal((batch, D))
    y = rng.integers(0, C, batch) if head == "softmax" else rng.standard_normal((batch, C))
    return X, y, params


def at_of(data, params, X, y, values):
    return {data[0]: X, data[1]: y, **dict(zip(params, values))}


def logreg(batch=N):
    g = gc.Graph("logreg")
    X = g.input("X", shape=(batch, D))
    t = g.input("t", shape=(batch,))
    w, b = g.input("w", shape=(D,)), g.input("b", shape=(1,))
    z = X @ w + b
    per = gc.softplus(z) - t * z
    return per.mean(), z, per, (X, t), [w, b]


def logreg_values(rng, batch=N):
    return (rng.standard_normal((batch, D)), (rng.random(batch) < 0.5).astype(float),
            [rng.standard_normal(D), np.array([0.3])])


# -- dense oracles from gc.jacobian / gc.hessian ------------------------------------------------
def flat_jacobian(y, params, feed):
    """d y / d params as a (y.size, n) matrix."""
    blocks = gc.eval(gc.jacobian(y, params), feed)
    size = int(np.prod(y.shape))
    return np.hstack([b.reshape(size, -1) for b in blocks])


def flat_hessian(z, wrt, feed):
    blocks = gc.eval([h for row in gc.hessian(z, wrt) for h in row], feed)
    sizes = [int(np.prod(x.shape)) for x in wrt]
    k = len(wrt)
    return np.block([[blocks[i * k + j].reshape(sizes[i], sizes[j]) for j in range(k)]
                     for i in range(k)])


def dense_ggn(loss, z, params, feed):
    J = flat_jacobian(z, params, feed)
    HL = flat_hessian(loss, [z], feed)
    return J.T @ HL @ J


MODELS = {"mlp": (mlp, mlp_values), "logreg": (logreg, logreg_values)}


def model(name, rng, batch=N):
    build, values = MODELS[name]
    loss, z, per, data, params = build(batch)
    X, y, vals = values(rng, batch=batch)
    return loss, z, per, data, params, at_of(data, params, X, y, vals)


# -- every operator's matrix equals the dense oracle ---------------------------------------------
@pytest.mark.parametrize("name", ["mlp", "logreg"])
def test_operators_equal_the_dense_matrices_of_gc_jacobian_and_gc_hessian(rng, name):
    loss, z, per, data, params, at = model(name, rng)
    n = sum(int(np.prod(p.shape)) for p in params)
    eye = np.eye(n)
    H = gc.hessian_operator(loss, params, at=at)
    np.testing.assert_allclose(H @ eye, flat_hessian(loss, params, at), rtol=1e-10, atol=1e-12)
    for mode in ("forward", "reverse"):
        G = gc.ggn_operator(loss, z, params, at=at, mode=mode)
        assert G.shape == (n, n) and G.mode == mode
        np.testing.assert_allclose(G @ eye, dense_ggn(loss, z, params, at), rtol=1e-10,
                                   atol=1e-12)
    F = gc.empirical_fisher_operator(per, params, at=at)
    Jl = flat_jacobian(per, params, at)
    np.testing.assert_allclose(F @ eye, Jl.T @ Jl / N, rtol=1e-10, atol=1e-12)
    J = gc.jacobian_operator(z, params, at=at)
    Jz = flat_jacobian(z, params, at)
    assert J.shape == Jz.shape
    np.testing.assert_allclose(J @ eye, Jz, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(J.T @ np.eye(Jz.shape[0]), Jz.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(J.rmatvec(np.ones(Jz.shape[0])), Jz.sum(axis=0), rtol=1e-10)


def test_logistic_regression_ggn_is_its_hessian_in_closed_form(rng):
    """Binary cross-entropy on a linear model: H = GGN = [X 1]^T diag(p (1 - p)) [X 1] / N."""
    loss, z, per, (X, t), params, at = model("logreg", rng)
    A = np.hstack([at[X], np.ones((N, 1))])
    p = 1 / (1 + np.exp(-(at[X] @ at[params[0]] + at[params[1]])))
    want = A.T @ (A * (p * (1 - p))[:, None]) / N
    G = gc.ggn_operator(loss, z, params, at=at)
    np.testing.assert_allclose(G @ np.eye(D + 1), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gc.hessian_operator(loss, params, at=at) @ np.eye(D + 1), want,
                               rtol=1e-12, atol=1e-14)


# -- the GGN is the Fisher where theory says so ---------------------------------------------------
def test_ggn_of_softmax_cross_entropy_is_the_fisher(rng):
    """F = (1/N) sum_n E_{c ~ softmax(z_n)} [g_nc g_nc^T], g_nc = grad log softmax(z_n)_c: the
    expectation taken exactly, over all C classes, from first derivatives only."""
    loss, z, per, data, params, at = model("mlp", rng)
    logp = gc.log_softmax(z)
    scores = flat_jacobian(logp, params, at).reshape(N, C, -1)
    probs = np.exp(gc.eval(logp, at))
    fisher = np.einsum("nc,nci,ncj->ij", probs, scores, scores) / N
    G = gc.ggn_operator(loss, z, params, at=at)
    n = fisher.shape[0]
    np.testing.assert_allclose(G @ np.eye(n), fisher, rtol=1e-10, atol=1e-12)
    # it does not depend on the labels, as the Fisher does not
    G.update(at={data[1]: (at[data[1]] + 1) % C})
    np.testing.assert_allclose(G @ np.eye(n), fisher, rtol=1e-10, atol=1e-12)
    # while the Hessian does, and differs from it
    H = gc.hessian_operator(loss, params, at=at) @ np.eye(n)
    assert np.abs(H - fisher).max() > 1e-3


def test_ggn_of_squared_error_is_the_fisher_of_a_unit_gaussian(rng):
    """For y ~ N(z, I) the score in the outputs is y - z, of covariance I: F = (1/N) sum_n
    J_n^T J_n. Checked against that, and against a Monte Carlo Fisher over sampled targets."""
    loss, z, per, data, params = mlp(head="squared")
    X, y, vals = mlp_values(rng, head="squared")
    at = at_of(data, params, X, y, vals)
    J = flat_jacobian(z, params, at)  # rows n * C + c
    fisher = J.T @ J / N
    G = gc.ggn_operator(loss, z, params, at=at)
    n = fisher.shape[0]
    np.testing.assert_allclose(G @ np.eye(n), fisher, rtol=1e-10, atol=1e-12)
    # Monte Carlo: per-example scores J_n^T (y_n - z_n) at targets drawn from the model
    grad_per = gc.function([*data, *params], gc.jacobian(per, params))
    z_val = gc.eval(z, at)
    draws = 4000
    total = np.zeros((n, n))
    for _ in range(draws // 100):
        Y = z_val[None] + rng.standard_normal((100, N, C))
        for Yk in Y:
            S = np.hstack([b.reshape(N, -1) for b in grad_per(X, Yk, *vals)])  # per-ex grads
            total += S.T @ S
    mc = total / (draws * N)
    assert np.abs(mc - fisher).max() < 0.1 * np.abs(fisher).max()
    np.testing.assert_allclose(G.update(at={data[1]: 0 * y}) @ np.eye(n), fisher, rtol=1e-10,
                               atol=1e-12)


def test_empirical_fisher_is_the_mean_outer_product_of_per_example_gradients(rng):
    """Oracle: per-example gradients from gc.vmap of gc.grad, outer products summed."""
    g = gc.Graph("vmap")
    w = g.input("w", shape=(D,))
    X = g.input("X", shape=(N, D))
    t = g.input("t", shape=(N,))

    def loss_of(x, tn):
        s = gc.sum(x * w)
        return gc.softplus(s) - tn * s

    per_ex = gc.vmap(lambda x, tn: gc.grad(loss_of(x, tn), w), in_axes=(0, 0))(X, t)
    per = gc.softplus(X @ w) - t * (X @ w)
    at = {w: rng.standard_normal(D), X: rng.standard_normal((N, D)),
          t: (rng.random(N) < 0.5).astype(float)}
    G = gc.eval(per_ex, at)
    F = gc.empirical_fisher_operator(per, w, at=at)
    np.testing.assert_allclose(F @ np.eye(D), G.T @ G / N, rtol=1e-12, atol=1e-14)


# -- data sets: batches= ------------------------------------------------------------------------
def split(at, data, sizes):
    """The data of `at` cut into consecutive batches of the given sizes."""
    X, y = data
    ends = np.cumsum([0, *sizes])
    return [{X: at[X][a:b], y: at[y][a:b]} for a, b in zip(ends[:-1], ends[1:])]


def test_data_set_operators_equal_the_full_batch_ones(rng):
    """A sum-reduced loss: the batches' products add up to the full-batch product exactly;
    the batch axis is symbolic, so the batches may differ in size."""
    loss, z, per, data, params = mlp(batch="m", reduce="sum")
    X, y, vals = mlp_values(rng)
    at = at_of(data, params, X, y, vals)
    par = dict(zip(params, vals))
    batches = split(at, data, [5, 4, 3])
    n = sum(v.size for v in vals)
    eye = np.eye(n)
    for make in (lambda **k: gc.hessian_operator(loss, params, **k),
                 lambda **k: gc.ggn_operator(loss, z, params, **k)):
        full, batched = make(at=at) @ eye, make(at=par, batches=batches) @ eye
        np.testing.assert_allclose(batched, full, rtol=1e-10, atol=1e-12)
    # the empirical Fisher of each batch is its own mean: batches of equal size
    per_batches = split(at, data, [4, 4, 4])
    F = gc.empirical_fisher_operator(per, params, at=par, batches=per_batches)
    parts = [gc.empirical_fisher_operator(per, params, at={**par, **b}) @ eye
             for b in per_batches]
    np.testing.assert_allclose(F @ eye, sum(parts), rtol=1e-10, atol=1e-12)
    full_F = gc.empirical_fisher_operator(per, params, at=at) @ eye
    np.testing.assert_allclose(F @ eye, 3 * full_F, rtol=1e-10, atol=1e-12)  # N / 4 batches
    # the Jacobian of a quantity summed over the examples: the logits' column sums
    total = z.sum(axis=0)
    J = gc.jacobian_operator(total, params, at=par, batches=batches)
    full_J = gc.jacobian_operator(total, params, at=at)
    assert J.shape == full_J.shape == (C, n)
    np.testing.assert_allclose(J @ eye, full_J @ eye, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(J.T @ np.eye(C), (full_J @ eye).T, rtol=1e-10, atol=1e-12)


def test_a_mean_loss_over_batches_is_the_sum_of_the_per_batch_means(rng):
    loss, z, per, data, params = mlp(batch="m")
    X, y, vals = mlp_values(rng)
    at = at_of(data, params, X, y, vals)
    par = dict(zip(params, vals))
    batches = split(at, data, [6, 6])
    n = sum(v.size for v in vals)
    H = gc.hessian_operator(loss, params, at=par, batches=batches)
    full = gc.hessian_operator(loss, params, at=at)
    np.testing.assert_allclose(H @ np.eye(n), 2 * (full @ np.eye(n)), rtol=1e-10, atol=1e-12)
    G = gc.ggn_operator(loss, z, params, at=par, batches=split(at, data, [5, 7]))
    want = sum(gc.ggn_operator(loss, z, params, at={**par, **b}) @ np.eye(n)
               for b in split(at, data, [5, 7]))
    np.testing.assert_allclose(G @ np.eye(n), want, rtol=1e-10, atol=1e-12)


def test_objective_over_batches_sums_loss_gradient_and_products(rng):
    loss, z, per, data, params = mlp(batch="m", reduce="sum")
    X, y, vals = mlp_values(rng)
    at = at_of(data, params, X, y, vals)
    par = dict(zip(params, vals))
    full = gc.objective(loss, params, at=at)
    obj = gc.objective(loss, params, at=par, batches=split(at, data, [7, 5]))
    np.testing.assert_array_equal(obj.x0, full.x0)
    theta = full.x0 + 0.05 * rng.standard_normal(full.x0.size)
    assert obj.fun(theta) == pytest.approx(full.fun(theta), rel=1e-12)
    np.testing.assert_allclose(obj.jac(theta), full.jac(theta), rtol=1e-10, atol=1e-12)
    p = rng.standard_normal(theta.size)
    np.testing.assert_allclose(obj.hessp(theta, p), full.hessp(theta, p), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(obj.hess_operator(theta) @ p, full.hessp(theta, p), rtol=1e-10,
                               atol=1e-12)
    res = sla.cg(obj.hess_operator(theta), p, maxiter=3)[0]
    assert np.all(np.isfinite(res))


def test_a_generator_of_batches_is_read_only_as_it_is_used(rng):
    """A loader class whose __iter__ makes the batches afresh: nothing is held between
    passes, and a progress bar (tqdm) shows each pass when asked for."""
    loss, z, per, data, params = mlp(batch="m", reduce="sum")
    X, y, vals = mlp_values(rng)
    at = at_of(data, params, X, y, vals)
    made = []

    class Loader:
        def __len__(self):
            return 3

        def __iter__(self):
            for b in split(at, data, [4, 4, 4]):
                made.append(1)
                yield b

    G = gc.ggn_operator(loss, z, params, at=dict(zip(params, vals)), batches=Loader(),
                        progress=True)
    v = rng.standard_normal(G.shape[0])
    err = io.StringIO()
    stderr, sys.stderr = sys.stderr, err
    try:
        out = G @ v
    finally:
        sys.stderr = stderr
    np.testing.assert_allclose(out, gc.ggn_operator(loss, z, params, at=at) @ v, rtol=1e-10)
    assert len(made) == 1 + 3  # the first batch, read once to check it; then one pass
    assert "ggn_operator: batches" in err.getvalue() and "/3 " in err.getvalue()


# -- bad batches ------------------------------------------------------------------------------
def test_bad_batches_raise_clear_errors(rng):
    loss, z, per, data, params = mlp(batch="m")
    X, y = data
    Xv, yv, vals = mlp_values(rng)
    at = at_of(data, params, Xv, yv, vals)
    par = dict(zip(params, vals))
    g = loss.graph
    size = len(g.nodes)
    good = split(at, data, [6, 6])
    cases = [
        ((b for b in good), gc.GraphError, "must be re-iterable.*generator is an iterator"),
        (iter(good), gc.GraphError, "re-iterable"),
        (good[0], gc.GraphError, r"got one dict; pass \[feed\]"),
        (42, gc.GraphError, "int, which is not iterable"),
        ([], gc.GraphError, "gave no batch"),
        ([good[0], (Xv, yv)], gc.GraphError, "batch 1 must be a dict.*got tuple"),
        ([{X: Xv}], gc.InputError, r"batch 0 has no value for data input 'y' \(shape \(m,\)\)"),
        ([good[0], {**good[1], params[0]: vals[0]}], gc.InputError,
         "batch 1 feeds 'W1', a parameter"),
        ([{**good[0], "nope": 1}], gc.GraphError, "batch 0 key 'nope' names no node"),
        ([good[0], {X: Xv[:3], y: yv[:4]}], gc.InputError,
         r"batch 1: input 'y': dimension m is 3 \(bound by input 'X'\)"),
        ([good[0], {X: Xv[:, :2], y: yv}], gc.InputError, r"batch 1: input 'X'.*\(m, 4\)"),
    ]
    for batches, error, message in cases:
        with pytest.raises(error, match=message):
            H = gc.hessian_operator(loss, params, at=par, batches=batches)
            H @ np.ones(H.shape[0])
    with pytest.raises(gc.InputError, match="batch 0 feeds 'X', which `at` holds already"):
        gc.ggn_operator(loss, z, params, at={**par, X: Xv}, batches=good)
    # a loader whose iterator is shared: the second pass finds it used up
    shared = iter(good)

    class OneShot:
        def __iter__(self):
            return shared

    G = gc.ggn_operator(loss, z, params, at=par, batches=OneShot())
    v = np.ones(G.shape[0])
    G @ v  # the first pass: the batch the constructor did not read
    with pytest.raises(gc.GraphError, match="pass 2 over batches gave 0 batches, the first 1"):
        G @ v
    # update and with_data refuse the data inputs; the operator still works
    H = gc.hessian_operator(loss, params, at=par, batches=good)
    before = H @ v
    with pytest.raises(gc.InputError, match="update: 'X' is a data input, fed by the batches"):
        H.update(at={X: Xv})
    np.testing.assert_array_equal(H @ v, before)
    H.update(at={params[1]: vals[1] + 1.0})
    assert not np.allclose(H @ v, before)
    obj = gc.objective(loss, params, at=par, batches=good)
    with pytest.raises(gc.InputError, match="with_data: 'y' is a data input"):
        obj.with_data({y: yv})
    gc.ggn_operator(loss, z, params, at=par, batches=good)  # built: the nodes stay
    built = len(g.nodes)
    assert built > size
    with pytest.raises(gc.InputError):
        gc.empirical_fisher_operator(per, params, at=par, batches=[{X: Xv}])
    assert len(g.nodes) == built  # a bad first batch removes what was built for it


def test_bad_arguments_to_the_curvature_operators(rng):
    loss, z, per, data, params, at = model("mlp", rng)
    g = loss.graph
    size = len(g.nodes)
    with pytest.raises(gc.ShapeError, match=r"ggn_operator: loss must be a scalar, got node "
                                            r"'softmax_cross_entropy\w*' of shape \(12,\)"):
        gc.ggn_operator(per, z, params, at=at)
    with pytest.raises(gc.GraphError, match="ggn_operator: outputs must be a node"):
        gc.ggn_operator(loss, [], params, at=at)
    with pytest.raises(gc.GraphError, match="outputs node 'y' has dtype int64"):
        gc.ggn_operator(loss, data[1], params, at=at)
    with pytest.raises(gc.ShapeError, match="per_example_loss must be a vector.*shape \\(\\)"):
        gc.empirical_fisher_operator(loss, params, at=at)
    with pytest.raises(gc.GraphError, match="jacobian_operator: `at` has no value for wrt node "
                                            "'W2'"):
        gc.jacobian_operator(z, params, at={k: v for k, v in at.items() if k is not params[2]})
    with pytest.raises(gc.GraphError, match="must be an input node"):
        gc.jacobian_operator(z, [params[0] * 2.0], at=at)
    size += 2  # the product above and its constant
    with pytest.raises(gc.GraphError, match="mode must be one of"):
        gc.ggn_operator(loss, z, params, at=at, mode="sideways")
    assert len(g.nodes) == size
    J = gc.jacobian_operator(z, params, at=at)
    with pytest.raises(gc.InputError, match=r"the vector must hold .* in shape \(36,\) \(the "
                                            rf"flattened {z.name!r}\), got shape \(5,\)"):
        J.rmatvec(np.ones(5))


# -- the operators' mechanics -------------------------------------------------------------------
def test_jacobian_operator_passes_the_dot_product_test_and_follows_ys_size(rng):
    loss, z, per, data, params = mlp(batch="m")
    X, y, vals = mlp_values(rng)
    at = at_of(data, params, X, y, vals)
    J = gc.jacobian_operator([z, per], params, at=at)
    n = sum(v.size for v in vals)
    assert J.shape == (N * C + N, n)
    u, v = rng.standard_normal(J.shape[0]), rng.standard_normal(n)
    assert u @ (J @ v) == pytest.approx((J.T @ u) @ v, rel=1e-12)
    J.update(at={data[0]: X[:5], data[1]: y[:5]})
    assert J.shape == (5 * C + 5, n)
    static = mlp(batch=5)
    feed = at_of(static[3], static[4], X[:5], y[:5], vals)
    want = np.vstack([flat_jacobian(static[1], static[4], feed),
                      flat_jacobian(static[2], static[4], feed)])
    np.testing.assert_allclose(J @ np.eye(n), want, rtol=1e-10, atol=1e-12)
    # complex vectors and columns, as for the Hessian
    np.testing.assert_allclose(J @ (v + 1j * v), (1 + 1j) * (want @ v), rtol=1e-12)
    assert J.matvec(v[:, None]).shape == (5 * C + 5, 1)


def test_operators_of_one_loss_compile_once_and_update(rng, monkeypatch):
    import graphc.krylov as krylov

    loss, z, per, data, params, at = model("mlp", rng)
    G = gc.ggn_operator(loss, z, params, at=at)
    F = gc.empirical_fisher_operator(per, params, at=at)
    compiled = []
    real = krylov.Function
    monkeypatch.setattr(krylov, "Function", lambda *a, **k: compiled.append(a) or real(*a, **k))
    size = len(loss.graph.nodes)
    G2 = gc.ggn_operator(loss, z, params, at=at)
    F2 = gc.empirical_fisher_operator(per, params, at=at)
    assert compiled == [] and len(loss.graph.nodes) == size
    assert G2._program is G._program and F2._program is F._program
    X2, y2, vals2 = mlp_values(rng)
    moved = at_of(data, params, X2, y2, vals2)
    G.update(at=moved)
    n = G.shape[0]
    np.testing.assert_allclose(G @ np.eye(n), dense_ggn(loss, z, params, moved), rtol=1e-10,
                               atol=1e-12)


def test_the_ggn_product_part_runs_only_what_changes_with_the_vector(rng):
    """Per product: J v (3 matmuls: X V1, R(h) W2, h V2), H_L, and J^T (3: the two weight
    cotangents and the hidden one), as the hand-written Gauss-Newton product; the forward
    pass and the softmax stay in the point part."""
    loss, z, per, data, params, at = model("mlp", rng)
    G = gc.ggn_operator(loss, z, params, at=at)
    product = G._program.product
    ops_run = [n.op.name for n in product.graph.nodes]
    assert ops_run.count("matmul") == 6, ops_run
    assert "tanh" not in ops_run and "exp" not in ops_run and "log_softmax" not in ops_run
    F = gc.empirical_fisher_operator(per, params, at=at)
    assert [n.op.name for n in F._program.product.graph.nodes].count("matmul") == 6


def test_krylov_solvers_run_on_the_curvature_operators(rng):
    loss, z, per, data, params, at = model("mlp", rng)
    G = gc.ggn_operator(loss, z, params, at=at)
    n = G.shape[0]
    dense = dense_ggn(loss, z, params, at)
    top = sla.eigsh(G, k=3, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), np.linalg.eigvalsh(dense)[-3:], rtol=1e-8)
    assert np.linalg.eigvalsh(dense).min() > -1e-12  # positive semi-definite
    rhs = rng.standard_normal(n)
    sol, info = sla.cg(sla.LinearOperator((n, n), matvec=lambda v: G @ v + 0.1 * v), rhs,
                       rtol=1e-12, atol=0.0)
    np.testing.assert_allclose(sol, np.linalg.solve(dense + 0.1 * np.eye(n), rhs), rtol=1e-8)
