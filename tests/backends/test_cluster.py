"""graphc's Dask path on a real cluster: a `dask.distributed.LocalCluster` of two worker
processes, one thread each, started once for this module.

processes=True: each worker is a separate process behind a nanny, as on a real cluster, so
what runs there is what crosses a process boundary (the tasks, the scattered parameters, the
persisted point part), and a worker can be killed and restarted by its nanny; threads in
one process would share memory and hide both.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import dask.array as da
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse.linalg as sla
from distributed import Client, LocalCluster

import graphc as gc

N, D = 2_000, 6


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)
    with Client(cluster) as c:
        yield c
    cluster.close()


def logistic(d=D):
    g = gc.Graph("logreg")
    X = g.input("X", shape=("batch", d))
    y = g.input("y", shape=("batch",))
    w = g.input("w", shape=(d,))
    z = X @ w
    loss = gc.mean(gc.softplus(z) - y * z) + 1e-2 * gc.sum(w * w)
    return X, y, w, loss


def data(rng, n=N, d=D):
    X = rng.standard_normal((n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ rng.standard_normal(d)))).astype(float)
    return X, y


def embedded(graph, shape) -> int:
    """How many tasks of a Dask graph carry an ndarray of `shape` inside them."""
    count, stack = 0, list(dict(graph).values())
    while stack:
        v = stack.pop()
        if isinstance(v, np.ndarray) and v.shape == shape:
            count += 1
        elif isinstance(v, (tuple, list)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif hasattr(v, "args"):  # dask's Task objects
            stack.extend(getattr(v, "args", ()))
            stack.extend(getattr(v, "kwargs", {}).values())
            stack.append(getattr(v, "value", None))
    return count


def test_loss_gradient_and_hvp_over_chunks_equal_numpy(client, rng):
    X, y, w, loss = logistic()
    v = X.graph.input("v", shape=(D,))
    outs = [loss, gc.grad(loss, w), gc.hvp(loss, w, v)]
    Xv, yv = data(rng)
    wv, vv = rng.standard_normal(D), rng.standard_normal(D)
    want = gc.function([X, y, w, v], outs)(Xv, yv, wv, vv)
    f = gc.function([X, y, w, v], outs, backend="dask")
    Xd, yd = da.from_array(Xv, chunks=(250, D)), da.from_array(yv, chunks=250)
    got = f(Xd, yd, wv, vv)
    for a, b in zip(got, want):
        assert isinstance(a, np.ndarray)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # lazily: Dask arrays whose graph holds each parameter once, read by every chunk's task
    lazy = f(Xd, yd, wv, vv, compute=False)
    assert all(isinstance(a, da.Array) for a in lazy)
    assert embedded(lazy[2].__dask_graph__(), (D,)) == 2  # w and v, one key each
    np.testing.assert_allclose(lazy[2].compute(), want[2], rtol=1e-12)


def test_hessian_operator_with_dask_data_in_cg_and_trust_krylov(client, rng):
    X, y, w, loss = logistic()
    Xv, yv = data(rng)
    Xd, yd = da.from_array(Xv, chunks=(400, D)).persist(), da.from_array(yv, chunks=400)
    w0 = 0.1 * rng.standard_normal(D)
    H = gc.hessian_operator(loss, w, at={X: Xd, y: yd, w: w0})
    Hn = gc.hessian_operator(loss, w, at={X: Xv, y: yv, w: w0})
    dense = np.column_stack([Hn @ e for e in np.eye(D)])
    b = rng.standard_normal(D)
    x, info = sla.cg(H, b, rtol=1e-12, atol=0.0)
    assert info == 0
    np.testing.assert_allclose(x, np.linalg.solve(dense, b), rtol=1e-9)

    obj = gc.objective(loss, w, at={X: Xd, y: yd, w: np.zeros(D)})
    res = scipy.optimize.minimize(obj.fun, obj.x0, jac=obj.jac, hessp=obj.hessp,
                                  method="trust-krylov", options={"gtol": 1e-7})
    ref_obj = gc.objective(loss, w, at={X: Xv, y: yv, w: np.zeros(D)})
    ref = scipy.optimize.minimize(ref_obj.fun, ref_obj.x0, jac=ref_obj.jac,
                                  hessp=ref_obj.hessp, method="trust-krylov",
                                  options={"gtol": 1e-7})
    assert res.success and ref.success
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-10, atol=1e-12)
    assert np.linalg.norm(obj.jac(res.x)) < 1e-7


def _slow_rows(block, delay):
    time.sleep(delay)  # a chunk read from slow storage: the product takes a while
    return block


def test_a_worker_killed_during_a_matvec_gives_the_right_product_or_a_clear_error(client, rng):
    X, y, w, loss = logistic()
    Xv, yv = data(rng, n=4_000)
    Xd = da.from_array(Xv, chunks=(200, D)).map_blocks(_slow_rows, 0.05, dtype=float)
    yd = da.from_array(yv, chunks=200)
    w0 = rng.standard_normal(D)
    H = gc.hessian_operator(loss, w, at={X: Xd, y: yd, w: w0})
    want = gc.hessian_operator(loss, w, at={X: Xv, y: yv, w: w0}) @ np.ones(D)
    outcome = {}

    def matvec():
        try:
            outcome["value"] = H @ np.ones(D)
        except gc.GraphcError as e:  # a clear error, never a silently wrong product
            outcome["error"] = e

    runner = threading.Thread(target=matvec)
    runner.start()
    time.sleep(0.4)  # tasks are running on both workers
    victim = next(iter(client.run(os.getpid).values()))
    os.kill(victim, signal.SIGKILL)  # its nanny starts a new worker
    runner.join(timeout=120)
    assert not runner.is_alive()
    if "value" in outcome:
        np.testing.assert_allclose(outcome["value"], want, rtol=1e-12)
    else:
        assert "Dask" in str(outcome["error"])
    client.wait_for_workers(2, timeout=60)
    np.testing.assert_allclose(H @ np.ones(D), want, rtol=1e-12)  # and the next one is right
