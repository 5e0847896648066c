"""The backends' contract: the extra to install when a library is missing, checked calls on
foreign arrays (nothing computed to check them), the ops a namespace cannot run refused by
name, and the GPU path where a GPU and CuPy are present."""

from __future__ import annotations

import sys

import array_api_strict as xps
import dask
import dask.array as da
import numpy as np
import pytest

import graphc as gc


def mlp(batch="batch"):
    g = gc.Graph("mlp")
    X = g.input("X", shape=(batch, 5))
    y = g.input("y", shape=(batch,), dtype="int64")
    W1, W2 = g.input("W1", shape=(5, 7)), g.input("W2", shape=(7, 3))
    loss = gc.softmax_cross_entropy(gc.tanh(X @ W1) @ W2, y).mean()
    return [X, y, W1, W2], [loss, *gc.grad(loss, [W1, W2])]


def values(rng, n=12):
    return [rng.standard_normal((n, 5)), rng.integers(0, 3, n), rng.standard_normal((5, 7)),
            rng.standard_normal((7, 3))]


@pytest.mark.parametrize("backend, module, extra", [("dask", "dask", "dask"),
                                                     ("cupy", "cupy", "gpu"),
                                                     ("array_api", "array_api_compat",
                                                      "array-api")])
def test_a_missing_library_names_the_extra_to_install(monkeypatch, backend, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    ins, outs = mlp()
    with pytest.raises(gc.GraphError, match=rf'pip install "graphc\[{extra}\]"'):
        gc.function(ins, outs, backend=backend)


def test_the_array_api_backend_runs_on_numpy_and_strict_arrays_alike(rng):
    ins, outs = mlp()
    vals = values(rng)
    want = gc.function(ins, outs)(*vals)
    f = gc.function(ins, outs, backend="array_api")
    for got in (f(*vals), f(*[xps.asarray(v) for v in vals])):
        for a, b in zip(got, want):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-15)
    assert "xp.tanh(" in f.source and "np." not in f.source


def test_calls_on_foreign_arrays_are_checked_without_computing(rng):
    ins, outs = mlp()
    f = gc.function(ins, outs, backend="dask")
    X, y, W1, W2 = values(rng)
    poisoned = da.from_array(X, chunks=4).map_blocks(_never, dtype=float)
    with pytest.raises(gc.InputError, match="'W1'.*axis 1 is 6, not 7"):
        f(poisoned, y, np.zeros((5, 6)), W2)  # a wrong size found from shapes alone
    with pytest.raises(gc.InputError, match="'y'.*dimension batch is 12"):
        f(poisoned, da.from_array(y[:10], chunks=5), W1, W2)
    g = gc.function(ins, outs, backend="array_api")
    with pytest.raises(gc.InputError, match="mix array libraries"):
        g(xps.asarray(X), y, W1, da.from_array(W2))
    with pytest.raises(gc.InputError, match="does not cast safely"):
        g(xps.asarray(X), xps.asarray(y.astype(np.float64)), W1, W2)


def _never(block):
    raise AssertionError("a check computed a chunk")


def test_an_op_the_standard_lacks_is_refused_by_name(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    f = gc.function([x], gc.erf(x) * 2.0, backend="array_api")
    with pytest.raises(gc.GraphError, match=r"'erf_1' \(erf.*array_api_strict.*special "
                                            "functions are not in the standard"):
        f(xps.asarray(np.zeros(3)))
    # Dask maps SciPy's ufunc over the chunks
    d = gc.function([x], gc.erf(x) * 2.0, backend="dask")
    np.testing.assert_allclose(d(da.from_array(np.linspace(-1, 1, 3), chunks=2)),
                               gc.function([x], gc.erf(x) * 2.0)(np.linspace(-1, 1, 3)))


def test_dask_compute_false_gives_lazy_arrays_and_the_numpy_source_is_unchanged(rng):
    ins, outs = mlp()
    vals = values(rng)
    f = gc.function(ins, outs, backend="dask")
    lazy = f(da.from_array(vals[0], chunks=4), da.from_array(vals[1], chunks=4), *vals[2:],
             compute=False)
    assert all(isinstance(a, da.Array) for a in lazy)
    want = gc.function(ins, outs)(*vals)
    for a, b in zip(lazy, want):
        np.testing.assert_allclose(a.compute(scheduler="threads"), b, rtol=1e-12)
    assert "xp." not in gc.function(ins, outs).source  # backend="numpy" is as it was


def _gpu():
    cupy = pytest.importorskip("cupy", reason="backend='cupy' needs CuPy and a GPU")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("backend='cupy' needs a GPU; CuPy finds none")
    except cupy.cuda.runtime.CUDARuntimeError as e:
        pytest.skip(f"backend='cupy' needs a GPU: {e}")
    return cupy


def test_cupy_backend_runs_the_graph_on_the_gpu(rng):
    cupy = _gpu()
    ins, outs = mlp()
    vals = values(rng)
    want = gc.function(ins, outs)(*vals)
    got = gc.function(ins, outs, backend="cupy")(*[cupy.asarray(v) for v in vals])
    for a, b in zip(got, want):
        assert isinstance(a, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=1e-10)


def test_krylov_operators_take_dask_data_and_move_to_new_data(rng):
    ins, _ = mlp()
    X, y, W1, W2 = ins
    loss = gc.softmax_cross_entropy(gc.tanh(X @ W1) @ W2, y).mean() + 1e-3 * gc.sum(W2 * W2)
    vals = values(rng, n=16)
    lazy = [da.from_array(vals[0], chunks=(4, 5)), da.from_array(vals[1], chunks=4)]
    at = {X: lazy[0], y: lazy[1], W1: vals[2], W2: vals[3]}
    p = rng.standard_normal(W2.size)
    with dask.config.set(scheduler="threads"):
        H = gc.hessian_operator(loss, W2, at=at)
        want = gc.hessian_operator(loss, W2, at={X: vals[0], y: vals[1], W1: vals[2],
                                                 W2: vals[3]})
        np.testing.assert_allclose(H @ p, want @ p, rtol=1e-12)
        more = values(rng, n=8)
        H.update({X: da.from_array(more[0], chunks=(4, 5)), y: more[1]})
        want.update({X: more[0], y: more[1]})
        np.testing.assert_allclose(H @ p, want @ p, rtol=1e-12)
        obj = gc.objective(loss, W2, at=at)
        ref = gc.objective(loss, W2, at={X: vals[0], y: vals[1], W1: vals[2], W2: vals[3]})
        theta = rng.standard_normal(W2.size)
        assert obj.fun(theta) == pytest.approx(ref.fun(theta), rel=1e-12)
        np.testing.assert_allclose(obj.jac(theta), ref.jac(theta), rtol=1e-12, atol=1e-15)
        with pytest.raises(gc.InputError, match="'X'.*axis 1"):
            obj.with_data({X: da.zeros((8, 4), chunks=4)})
