"""`gc.vmap`: every op of the case table batched against a Python loop of the unbatched graph
(values, per-example gradients, batched tangents), per-example gradients of an MLP with
clipping (DP-SGD) against per-example `gc.grad` calls and JAX, vmap of hvp, nesting, grad of
vmap, in_axes/out_axes, and the errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import graphc as gc
from graphc.ir import types
from tests.ops.cases import CASES, Case

M = 3  # rows of every batch


def ids(cases):
    return [c.id or c.op for c in cases]


def rows(case: Case, rng, k: int, m: int = M) -> np.ndarray:
    """m samples of input k, stacked on a new leading axis."""
    return np.stack([case.sample(rng, k) for _ in range(m)])


def unbatched(case: Case):
    """The case's graph on one row: inputs and output."""
    g = gc.Graph(case.id or case.op)
    xs = [g.input(f"x{k}", shape=s, dtype=case.dtype) for k, s in enumerate(case.shapes)]
    return g, xs, case.build(*xs)


def rtol(case: Case) -> float:
    return 1e-5 if case.dtype == "float32" else 1e-9


@pytest.mark.parametrize("optimize", [False, True], ids=["raw", "optimized"])
@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_vmap_of_every_case_equals_a_loop(case, optimize, rng):
    g = gc.Graph("batched")
    Xs = [g.input(f"X{k}", shape=(M, *s), dtype=case.dtype) for k, s in enumerate(case.shapes)]
    out = gc.vmap(case.build)(*Xs)
    _, xs, y = unbatched(case)
    assert out.shape == (M, *y.shape) and out.dtype == y.dtype
    vals = [rows(case, rng, k) for k in range(len(Xs))]
    got = gc.function(Xs, [out], optimize=optimize)(*vals)[0]
    f = gc.function(xs, [y])
    want = np.stack([f(*[v[i] for v in vals])[0] for i in range(M)])
    np.testing.assert_allclose(got, want, rtol=rtol(case), atol=rtol(case))


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_vmap_with_axes_elsewhere_and_unmapped_arguments(case, rng):
    """Input 0 mapped along its last axis (a scalar input: along a new one), the others
    shared by every row (in_axes None), the batch axis of the result last."""
    g = gc.Graph("batched")
    s0 = case.shapes[0]
    X0 = g.input("X0", shape=(*s0, M), dtype=case.dtype)
    rest = [g.input(f"x{k}", shape=s, dtype=case.dtype) for k, s in enumerate(case.shapes)
            if k > 0]
    in_axes = (-1, *(None for _ in rest))
    out = gc.vmap(case.build, in_axes=in_axes, out_axes=-1)(X0, *rest)
    _, xs, y = unbatched(case)
    assert out.shape == (*y.shape, M)
    v0 = np.moveaxis(rows(case, rng, 0), 0, -1)
    others = [case.sample(rng, k) for k in range(1, len(case.shapes))]
    got = gc.function([X0, *rest], [out])(v0, *others)[0]
    f = gc.function(xs, [y])
    want = np.stack([f(v0[..., i], *others)[0] for i in range(M)], axis=-1)
    np.testing.assert_allclose(got, want, rtol=rtol(case), atol=rtol(case))


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_vmap_of_grad_of_every_case_is_per_example_gradients(case, rng):
    g = gc.Graph("batched")
    Xs = [g.input(f"X{k}", shape=(M, *s), dtype=case.dtype) for k, s in enumerate(case.shapes)]

    def per_example(*xs):
        return gc.grad(case.build(*xs).sum(), list(xs))

    grads = gc.vmap(per_example)(*Xs)
    assert [gr.shape for gr in grads] == [X.shape for X in Xs]
    _, xs, y = unbatched(case)
    f = gc.function(xs, gc.grad(y.sum(), xs))
    vals = [rows(case, rng, k) for k in range(len(Xs))]
    got = gc.function(Xs, grads)(*vals)
    for k, gk in enumerate(got):
        want = np.stack([f(*[v[i] for v in vals])[k] for i in range(M)])
        np.testing.assert_allclose(gk, want, rtol=rtol(case), atol=rtol(case))


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_vmap_of_jvp_of_every_case_pushes_many_tangents(case, rng):
    """Unbatched primals, a batch of tangents (forward mode over a batch of directions)."""
    g, xs, y = unbatched(case)
    Ts = [g.input(f"T{k}", shape=(M, *x.shape), dtype=case.dtype) for k, x in enumerate(xs)]
    tangents = gc.vmap(lambda *ts: gc.jvp(y, xs, list(ts)))(*Ts)
    assert tangents.shape == (M, *y.shape)
    at = [case.sample(rng, k) for k in range(len(xs))]
    ts = [rng.standard_normal(T.shape).astype(case.dtype) for T in Ts]
    got = gc.function([*xs, *Ts], [tangents])(*at, *ts)[0]
    one = [g.input(f"t{k}", shape=x.shape, dtype=case.dtype) for k, x in enumerate(xs)]
    f = gc.function([*xs, *one], [gc.jvp(y, xs, one)])
    want = np.stack([f(*at, *[t[i] for t in ts])[0] for i in range(M)])
    np.testing.assert_allclose(got, want, rtol=rtol(case), atol=rtol(case))


# -- per-example gradients (DP-SGD) ---------------------------------------------------------------
def mlp(g, sizes, batch):
    X = g.input("X", shape=(batch, sizes[0]))
    y = g.input("y", shape=(batch,), dtype="int64")
    Ws = [g.input(f"W{k}", shape=(a, b)) for k, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    bs = [g.input(f"b{k}", shape=(b,)) for k, b in enumerate(sizes[1:])]
    return X, y, Ws, bs


def mlp_loss(x, label, Ws, bs):
    h = x
    for k, (W, b) in enumerate(zip(Ws, bs)):
        h = h @ W + b
        if k < len(Ws) - 1:
            h = gc.tanh(h)
    return gc.softmax_cross_entropy(h, label)


def mlp_values(rng, sizes, batch):
    X = rng.standard_normal((batch, sizes[0]))
    y = rng.integers(0, sizes[-1], batch)
    Ws = [rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(sizes, sizes[1:])]
    bs = [rng.standard_normal(b) * 0.1 for b in sizes[1:]]
    return X, y, Ws, bs


def clipped(grads, clip):
    """Each example's gradient scaled to norm at most `clip` (over all parameters)."""
    norm = gc.sqrt(gc.add_n([(gr * gr).sum() for gr in grads]))
    scale = gc.minimum(clip / norm, 1.0)
    return [gr * scale for gr in grads]


def test_dp_sgd_per_example_clipped_gradients_equal_a_loop_of_grad(rng):
    sizes, batch, clip = [6, 5, 3], 7, 0.5
    g = gc.Graph("dp_sgd")
    X, y, Ws, bs = mlp(g, sizes, batch)
    params = [*Ws, *bs]
    per_ex = gc.vmap(lambda xb, yb: clipped(gc.grad(mlp_loss(xb, yb, Ws, bs), params), clip),
                     in_axes=(0, 0))(X, y)
    noisy_mean = [p.mean(axis=0) for p in per_ex]  # DP-SGD's update, before its noise
    Xv, yv, Wv, bv = mlp_values(rng, sizes, batch)
    feed = {X: Xv, y: yv, **dict(zip(Ws, Wv)), **dict(zip(bs, bv))}
    got = gc.eval(per_ex + noisy_mean, feed)

    h = gc.Graph("one")
    x1 = h.input("x", shape=(sizes[0],))
    y1 = h.input("y", shape=(), dtype="int64")
    W1 = [h.input(f"W{k}", shape=W.shape) for k, W in enumerate(Ws)]
    b1 = [h.input(f"b{k}", shape=b.shape) for k, b in enumerate(bs)]
    one = gc.function([x1, y1, *W1, *b1],
                      clipped(gc.grad(mlp_loss(x1, y1, W1, b1), [*W1, *b1]), clip))
    loop = [one(Xv[i], yv[i], *Wv, *bv) for i in range(batch)]
    for k in range(len(params)):
        want = np.stack([r[k] for r in loop])
        np.testing.assert_allclose(got[k], want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[len(params) + k], want.mean(axis=0), rtol=1e-10,
                                   atol=1e-12)
    norms = np.sqrt(sum((got[k] ** 2).sum(axis=tuple(range(1, got[k].ndim)))
                        for k in range(len(params))))
    assert np.all(norms <= clip * (1 + 1e-12)) and np.any(np.isclose(norms, clip))


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
def test_dp_sgd_per_example_gradients_equal_jax_vmap_grad(rng):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    sizes, batch, clip = [6, 5, 3], 7, 0.5
    g = gc.Graph("dp_sgd")
    X, y, Ws, bs = mlp(g, sizes, batch)
    params = [*Ws, *bs]
    per_ex = gc.vmap(lambda xb, yb: clipped(gc.grad(mlp_loss(xb, yb, Ws, bs), params), clip),
                     in_axes=(0, 0))(X, y)
    Xv, yv, Wv, bv = mlp_values(rng, sizes, batch)
    got = gc.eval(per_ex, {X: Xv, y: yv, **dict(zip(Ws, Wv)), **dict(zip(bs, bv))})

    def loss(ps, x, label):
        n = len(ps) // 2
        h = x
        for k in range(n):
            h = h @ ps[k] + ps[n + k]
            if k < n - 1:
                h = jnp.tanh(h)
        return -jax.nn.log_softmax(h)[label]

    def clipped_grad(ps, x, label):
        gs = jax.grad(loss)(ps, x, label)
        norm = jnp.sqrt(sum(jnp.sum(gr * gr) for gr in gs))
        return [gr * jnp.minimum(clip / norm, 1.0) for gr in gs]

    want = jax.vmap(clipped_grad, in_axes=(None, 0, 0))([*Wv, *bv], Xv, yv)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-10, atol=1e-12)


def test_per_example_gradients_cost_linear_in_the_batch():
    """The gradient graph is built once on stand-ins and batched: the same number of nodes
    for every batch size (a Jacobian of the loss vector, or a loop, grows with it)."""
    counts = []
    for batch in (4, 16, 64):
        g = gc.Graph("size")
        X, y, Ws, bs = mlp(g, [8, 6, 3], batch)
        n = len(g)
        per_ex = gc.vmap(lambda xb, yb: gc.grad(mlp_loss(xb, yb, Ws, bs), Ws))(X, y)
        counts.append(len(g) - n)
        cost = gc.autodiff.second_order.cost(per_ex)
        assert cost < 40 * batch * (8 * 6 + 6 * 3 + 6 + 3)  # flops linear in the batch
    assert counts[0] == counts[1] == counts[2]


# -- vmap of hvp, nesting, grad of vmap ---------------------------------------------------------
@pytest.mark.parametrize("mode", ["forward", "reverse", "auto"])
def test_vmap_of_hvp_over_ten_probes_equals_ten_hvps(mode, rng):
    g = gc.Graph("hutchinson")
    x = g.input("x", shape=(5,))
    A = g.input("A", shape=(5, 5))
    z = (gc.tanh(A @ x) ** 2).sum() + (gc.sin(x) * x).sum()
    V = g.input("V", shape=(10, 5))
    HV = gc.vmap(lambda v: gc.hvp(z, x, v, mode=mode))(V)
    v1 = g.input("v", shape=(5,))
    one = gc.function([x, A, v1], [gc.hvp(z, x, v1, mode=mode)])
    xv, Av, Vv = rng.standard_normal(5), rng.standard_normal((5, 5)), rng.standard_normal((10, 5))
    got = gc.eval(HV, {x: xv, A: Av, V: Vv})
    want = np.stack([one(xv, Av, Vv[i])[0] for i in range(10)])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    H = gc.eval(gc.hessian(z, x), {x: xv, A: Av})
    np.testing.assert_allclose(got, Vv @ H.T, rtol=1e-10, atol=1e-12)
    # Hutchinson's trace estimate from the batched products
    trace = (V * HV).sum() / 10.0
    np.testing.assert_allclose(trace.eval({x: xv, A: Av, V: Vv}),
                               np.mean(np.sum(Vv * (Vv @ H.T), axis=1)), rtol=1e-12)


def test_nested_vmap_maps_two_axes(rng):
    g = gc.Graph()
    A = g.input("A", shape=(2, 3, 4))
    b = g.input("b", shape=(4,))
    out = gc.vmap(gc.vmap(lambda r: gc.softmax(r * b) @ r))(A)
    Av, bv = rng.standard_normal((2, 3, 4)), rng.standard_normal(4)
    p = np.exp(Av * bv)
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(out.eval({A: Av, b: bv}), (p * Av).sum(-1), rtol=1e-12)
    # the inner function mapped over the second axis, the outer over the first
    cols = gc.vmap(gc.vmap(lambda r: r.sum() * 2.0, in_axes=1), in_axes=0)(A)
    np.testing.assert_allclose(cols.eval({A: Av}), Av.sum(axis=1) * 2.0, rtol=1e-12)


def test_nested_vmap_of_grad_gives_per_example_per_task_gradients(rng):
    g = gc.Graph()
    X = g.input("X", shape=(2, 3, 4))  # 2 tasks of 3 examples
    w = g.input("w", shape=(4,))
    per = gc.vmap(gc.vmap(lambda x: gc.grad(gc.tanh(x @ w) ** 2, w)))(X)
    Xv, wv = rng.standard_normal((2, 3, 4)), rng.standard_normal(4)
    t = np.tanh(Xv @ wv)
    np.testing.assert_allclose(per.eval({X: Xv, w: wv}), (2 * t * (1 - t * t))[..., None] * Xv,
                               rtol=1e-12)


def test_grad_of_vmap_and_grad_of_vmap_of_grad(rng):
    g = gc.Graph()
    X = g.input("X", shape=(4, 3))
    W = g.input("W", shape=(3, 2))
    s = gc.vmap(lambda x: gc.tanh(x @ W).sum())(X).sum()
    gW = gc.grad(s, W)
    Xv, Wv = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    np.testing.assert_allclose(gW.eval({X: Xv, W: Wv}),
                               Xv.T @ (1 - np.tanh(Xv @ Wv) ** 2), rtol=1e-12)
    # second order: the gradient of the per-example gradients' squared norm (as in gradient
    # penalties), against finite differences
    per = gc.vmap(lambda x: gc.grad(gc.tanh(x @ W).sum(), W))(X)
    penalty = (per * per).sum()
    gc.check_grad(penalty, [W, X], at={X: Xv, W: Wv}, order=2)


def test_vmap_of_remat_and_of_multi_output_ops(rng):
    g = gc.Graph()
    X = g.input("X", shape=(3, 4, 4))
    W = g.input("W", shape=(4, 4))
    out = gc.vmap(lambda a: gc.remat(lambda b: gc.tanh(b @ W), a).sum()
                  + gc.linalg.slogdet(a + 4.0 * gc.linalg.inv(W @ W.T + 4.0))[1])(X)
    Xv, Wv = rng.standard_normal((3, 4, 4)), rng.standard_normal((4, 4))
    want = [np.tanh(Xv[i] @ Wv).sum()
            + np.linalg.slogdet(Xv[i] + 4.0 * np.linalg.inv(Wv @ Wv.T + 4.0))[1]
            for i in range(3)]
    np.testing.assert_allclose(out.eval({X: Xv, W: Wv}), want, rtol=1e-10)


def test_vmap_over_a_symbolic_batch_axis(rng):
    g = gc.Graph()
    X = g.input("X", shape=("n", 3))
    W = g.input("W", shape=(3, 2))
    per = gc.vmap(lambda x: gc.grad(gc.logsumexp(x @ W), W))(X)
    assert types.fmt_shape(per.shape) == "(n, 3, 2)"
    f = gc.function([X, W], [per])
    for n in (1, 5):
        Xv, Wv = rng.standard_normal((n, 3)), rng.standard_normal((3, 2))
        z = Xv @ Wv
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        np.testing.assert_allclose(f(Xv, Wv)[0], Xv[:, :, None] * p[:, None, :], rtol=1e-12)


# -- arguments and results ----------------------------------------------------------------------
def test_arrays_are_lifted_and_unmapped_arguments_are_shared(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    table = rng.standard_normal((4, 3))
    out = gc.vmap(lambda row, v, s: (row * v).sum() + s, in_axes=(0, None, None))(table, x, 2.0)
    xv = rng.standard_normal(3)
    np.testing.assert_allclose(out.eval({x: xv}), table @ xv + 2.0, rtol=1e-12)


def test_results_tuples_lists_and_out_axes(rng):
    g = gc.Graph()
    X = g.input("X", shape=(4, 3))
    c = g.input("c", shape=())
    a, b = gc.vmap(lambda x: (x * 2.0, x.sum() + c), out_axes=(1, 0))(X)
    assert a.shape == (3, 4) and b.shape == (4,)
    lst = gc.vmap(lambda x: [c * 1.0])(X)  # a result that does not depend on the row
    assert isinstance(lst, list) and lst[0].shape == (4,)
    Xv = rng.standard_normal((4, 3))
    av, bv, lv = gc.eval([a, b, lst[0]], {X: Xv, c: 1.5})
    np.testing.assert_allclose(av, (Xv * 2).T)
    np.testing.assert_allclose(bv, Xv.sum(1) + 1.5)
    np.testing.assert_allclose(lv, np.full(4, 1.5))
    same = gc.vmap(lambda x: c * 3.0, out_axes=None)(X)  # unbatched result kept as it is
    assert same.shape == ()


def test_errors_name_the_argument_and_leave_the_graph_unchanged():
    g = gc.Graph()
    X = g.input("X", shape=(4, 3))
    y = g.input("y", shape=(5,))
    s = g.input("s", shape=())
    n = len(g)
    with pytest.raises(gc.ShapeError, match=r"argument 1 \('y'.*5 entries.*argument 0 \('X'"):
        gc.vmap(lambda a, b: a.sum() + b)(X, y)
    with pytest.raises(gc.ShapeError, match=r"argument 0 \('s'\) is a scalar"):
        gc.vmap(lambda a: a)(s)
    with pytest.raises(gc.ShapeError, match="in_axes 2 is out of range"):
        gc.vmap(lambda a: a, in_axes=2)(X)
    with pytest.raises(gc.GraphError, match="in_axes has 1 entries but 2 arguments"):
        gc.vmap(lambda a, b: a, in_axes=(0,))(X, y)
    with pytest.raises(gc.GraphError, match="maps no argument"):
        gc.vmap(lambda a: a, in_axes=None)(X)
    with pytest.raises(gc.GraphError, match="out_axes None"):
        gc.vmap(lambda a: a * 2.0, out_axes=None)(X)
    with pytest.raises(gc.ShapeError, match=r"out_axes 3 is out of range .* rank 2"):
        gc.vmap(lambda a: a * 2.0, out_axes=3)(X)
    with pytest.raises(gc.GraphError, match="must return a graph node"):
        gc.vmap(lambda a: 3.0)(X)
    with pytest.raises(gc.GraphError, match="at least one argument must be a graph node"):
        gc.vmap(lambda a: a)(np.ones((2, 2)))
    with pytest.raises(gc.GraphError, match="in_axes must hold ints or None"):
        gc.vmap(lambda a: a, in_axes="0")
    with pytest.raises(gc.ShapeError, match="matmul"):
        gc.vmap(lambda a: a @ y)(X)  # the function's own error comes through
    assert len(g) == n


def test_user_op_without_a_batching_rule_runs_row_by_row(rng):
    """The general rule for an op with no `batch` hook: one application per row."""
    from tests.autodiff.test_custom_rules import solve

    g = gc.Graph()
    A = g.input("A", shape=(3, 3))
    B = g.input("B", shape=(4, 3))
    X = gc.vmap(lambda b: solve(A, b), in_axes=0)(B)
    Av = np.eye(3) * 3 + rng.standard_normal((3, 3)) * 0.3
    Bv = rng.standard_normal((4, 3))
    np.testing.assert_allclose(X.eval({A: Av, B: Bv}), np.linalg.solve(Av, Bv.T).T,
                               rtol=1e-12)
