"""NumPy functions on nodes (graphc/ops/numpy_dispatch.py): every ufunc graphc has, the
functions with axis/keepdims, arrays and nodes mixed, and the clear errors for what graphc has
not (out=, dtype=, a missing function, np.asarray of a node). Values are checked against NumPy
on the same arrays."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import graphc as gc
from graphc import ops
from graphc.ops import numpy_dispatch
from graphc.ops.numpy_dispatch import build_tables, tables

SHAPE = (3, 4)


def values(rng, shape=SHAPE):
    """In (0.2, 0.9): inside every elementwise op's domain (log, sqrt, arcsin, ...)."""
    return rng.uniform(0.2, 0.9, shape)


def same_node(a: gc.Node, b: gc.Node) -> bool:
    """Built alike: the same op (parameters included), input shapes and result type."""
    return (a.op == b.op and a.shape == b.shape and a.dtype == b.dtype
            and [x.shape for x in a.inputs] == [x.shape for x in b.inputs])


UFUNCS = sorted(tables().ufuncs.items(), key=lambda kv: kv[0].__name__)


@pytest.mark.parametrize("ufunc,entry", UFUNCS, ids=[u.__name__ for u, _ in UFUNCS])
def test_every_ufunc_graphc_has_builds_the_gc_node_and_computes_numpys_value(rng, ufunc,
                                                                            entry):
    gc_name, gc_fn = entry
    g = gc.Graph()
    if ufunc is np.matmul:
        shapes = [(3, 4), (4, 2)]
    else:
        shapes = [SHAPE, (SHAPE[-1],)][:ufunc.nin]  # the second operand broadcasts
    nodes = [g.input(f"x{k}", shape=s) for k, s in enumerate(shapes)]
    vals = [values(rng, s) for s in shapes]
    y = ufunc(*nodes)
    assert isinstance(y, gc.Node) and same_node(y, gc_fn(*nodes)), gc_name
    got = gc.eval(y, dict(zip(nodes, vals)))
    np.testing.assert_allclose(got, ufunc(*vals), rtol=1e-13, atol=0)
    # an array (or a number) in any position: the node is built, NumPy's value comes out
    for k in range(ufunc.nin):
        mixed = [vals[j] if j == k else nodes[j] for j in range(ufunc.nin)]
        if ufunc.nin == 1:
            continue
        y = ufunc(*mixed)
        feed = {n: v for j, (n, v) in enumerate(zip(nodes, vals)) if j != k}
        np.testing.assert_allclose(gc.eval(y, feed), ufunc(*vals), rtol=1e-13, atol=0)


def test_the_ufunc_table_holds_the_elementwise_ops_of_the_api():
    names = {u.__name__ for u in tables().ufuncs}
    assert {"sin", "cos", "tan", "tanh", "exp", "log", "log1p", "expm1", "sqrt", "square",
            "absolute", "sign", "add", "subtract", "multiply", "divide", "negative", "power",
            "maximum", "minimum", "matmul", "equal", "not_equal", "less", "less_equal",
            "greater", "greater_equal"} <= names


def test_operators_with_an_array_on_the_left(rng):
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    a, v = values(rng), values(rng)
    for y, want in [(a + x, a + v), (a - x, a - v), (a * x, a * v), (a / x, a / v),
                    (a ** x, a ** v), (np.float64(2.0) * x, 2.0 * v),
                    (np.float32(2.0) - x, 2.0 - v), (a.T @ x, a.T @ v)]:
        assert isinstance(y, gc.Node)
        np.testing.assert_allclose(y.eval({x: v}), want, rtol=1e-13)
    less = a < x
    assert less.dtype == np.bool_
    np.testing.assert_array_equal(less.eval({x: v}), a < v)


AXES = [None, 0, 1, -1, (0, 1)]


@pytest.mark.parametrize("fn", [np.sum, np.mean, np.max, np.min, np.amax, np.amin])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_with_axis_and_keepdims(rng, fn, axis, keepdims):
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    v = rng.standard_normal(SHAPE)
    y = fn(x, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(y.eval({x: v}), fn(v, axis=axis, keepdims=keepdims), rtol=1e-13)
    y = fn(x, axis)  # positionally
    np.testing.assert_allclose(y.eval({x: v}), fn(v, axis), rtol=1e-13)


def test_ufunc_reduce_and_outer(rng):
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    u = g.input("u", shape=(3,))
    v, w = rng.standard_normal(SHAPE), rng.standard_normal(3)
    feed = {x: v, u: w}
    for y, want in [(np.add.reduce(x), np.add.reduce(v)),
                    (np.add.reduce(x, axis=1, keepdims=True), np.add.reduce(v, 1, keepdims=True)),
                    (np.maximum.reduce(x, axis=None), np.maximum.reduce(v, axis=None)),
                    (np.minimum.reduce(x), np.minimum.reduce(v)),
                    (np.multiply.outer(u, x), np.multiply.outer(w, v)),
                    (np.subtract.outer(w, u), np.subtract.outer(w, w))]:
        np.testing.assert_allclose(gc.eval(y, feed), want, rtol=1e-13)


def test_shape_functions_and_products(rng):
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    m = g.input("m", shape=(3, 3))
    u = g.input("u", shape=(4,))
    v, mv, uv = rng.standard_normal(SHAPE), rng.standard_normal((3, 3)) + 3 * np.eye(3), \
        rng.standard_normal(4)
    c = rng.standard_normal(SHAPE) > 0
    feed = {x: v, m: mv, u: uv}
    cases = [
        (np.reshape(x, (4, 3)), np.reshape(v, (4, 3))),
        (np.reshape(x, shape=(2, -1)), np.reshape(v, shape=(2, -1))),
        (np.reshape(x, (12,), order="C"), v.reshape(12)),  # NumPy's default: accepted
        (np.transpose(x), v.T),
        (np.transpose(x, (1, 0)), v.T),
        (np.swapaxes(x, 0, 1), v.T),
        (np.swapaxes(x, axis1=1, axis2=0), v.T),
        (np.expand_dims(x, 1), np.expand_dims(v, 1)),
        (np.squeeze(np.expand_dims(x, 0)), v),
        (np.broadcast_to(u, (2, 4)), np.broadcast_to(uv, (2, 4))),
        (np.concatenate([x, v]), np.concatenate([v, v])),
        (np.concatenate([x, x], axis=1), np.concatenate([v, v], axis=1)),
        (np.stack([x, v, x]), np.stack([v, v, v])),
        (np.stack([x, x], axis=-1), np.stack([v, v], axis=-1)),
        (np.dot(x, u), np.dot(v, uv)),
        (np.dot(mv, x), np.dot(mv, v)),
        (np.matmul(m, x), mv @ v),
        (np.outer(u, u), np.outer(uv, uv)),
        (np.where(c, x, 0.0), np.where(c, v, 0.0)),
        (np.where(x > 0, x, -x), np.abs(v)),
        (np.trace(m), np.trace(mv)),
        (np.trace(m, offset=0), np.trace(mv)),
        (np.diag(m), np.diag(mv)),
        (np.diag(u), np.diag(uv)),
        (np.zeros_like(x), np.zeros_like(v)),
        (np.ones_like(x), np.ones_like(v)),
        (np.linalg.inv(m), np.linalg.inv(mv)),
        (np.linalg.slogdet(m)[1], np.linalg.slogdet(mv)[1]),
        (np.split(x, 2, axis=1)[1], np.split(v, 2, axis=1)[1]),
    ]
    for y, want in cases:
        assert isinstance(y, gc.Node)
        np.testing.assert_allclose(gc.eval(y, feed), want, rtol=1e-12, atol=1e-14)


def test_np_functions_build_the_same_nodes_as_gc_and_differentiate(rng):
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    W = g.input("W", shape=(2, 3))
    assert same_node(np.sum(x, axis=0), gc.sum(x, axis=0))
    assert same_node(np.dot(W, x), gc.dot(W, x))
    assert same_node(np.concatenate([x, x]), gc.concatenate([x, x]))
    assert same_node(np.where(x > 0, x, 0.0), gc.where(x > 0, x, 0.0))
    loss = np.sum(np.tanh(np.dot(W, x)) ** 2)
    v, wv = rng.standard_normal(SHAPE), rng.standard_normal((2, 3))
    assert gc.check_grad(loss, [x, W], at={x: v, W: wv}, order=2) < 1e-6
    want = gc.grad(gc.sum(gc.tanh(gc.dot(W, x)) ** 2), W).eval({x: v, W: wv})
    np.testing.assert_allclose(gc.grad(loss, W).eval({x: v, W: wv}), want, rtol=1e-13)


def test_introspection_reads_the_static_shape():
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    assert np.shape(x) == SHAPE and np.ndim(x) == 2 and np.size(x) == 12
    assert np.size(x, 1) == 4
    assert len(g) == 1  # no node built


# -- errors ------------------------------------------------------------------------------------
def test_out_is_refused_clearly():
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    with pytest.raises(gc.GraphError, match=r"np\.sum\(\.\.\., out=\.\.\.\): a graph node has "
                                            "no buffer"):
        np.sum(x, out=np.zeros(4))
    with pytest.raises(gc.GraphError, match=r"np\.exp\(\.\.\., out=\.\.\.\)"):
        np.exp(x, out=np.zeros(SHAPE))
    a = np.zeros(SHAPE)
    with pytest.raises(gc.GraphError, match=r"np\.add\(\.\.\., out=\.\.\.\).*a \+= x"):
        a += x
    np.testing.assert_array_equal(a, 0.0)
    np.sum(x, out=None)  # NumPy's default: fine


def test_keywords_graphc_lacks_are_refused_clearly():
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    positive = x > 0
    n = len(g)
    with pytest.raises(gc.GraphError, match=r"np\.sum\(\.\.\., dtype=.*gc\.sum\(x, axis=None, "
                                            r"keepdims=False\) has no 'dtype'"):
        np.sum(x, dtype=np.float32)
    with pytest.raises(gc.GraphError, match=r"np\.sum\(\.\.\., where=.*no 'where'"):
        np.sum(x, where=np.ones(SHAPE, bool))
    with pytest.raises(gc.GraphError, match=r"np\.exp\(\.\.\., dtype=.*'dtype' is not "
                                            "supported"):
        np.exp(x, dtype=np.float32)
    with pytest.raises(gc.GraphError, match=r"np\.add\(\.\.\., where=.*'where' is not"):
        np.add(x, 1.0, where=np.ones(SHAPE, bool))
    with pytest.raises(gc.GraphError, match=r"np\.reshape\(\.\.\., order='F'\)"):
        np.reshape(x, (4, 3), order="F")
    with pytest.raises(gc.GraphError, match=r"np\.trace\(\.\.\., offset=1\)"):
        np.trace(x, offset=1)
    with pytest.raises(gc.GraphError, match=r"np\.where: gc\.where\(cond, x, y\) needs 'x'"):
        np.where(positive)
    assert len(g) == n  # the refused calls built nothing
    np.add(x, 1.0, where=True)  # NumPy's default: fine


def test_a_function_graphc_has_not_names_it_and_the_closest():
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    with pytest.raises(gc.GraphError, match=r"np\.nansum has no graphc counterpart.*closest "
                                            r"graphc function.* gc\.sum"):
        np.nansum(x)
    with pytest.raises(gc.GraphError, match=r"np\.fmax has no graphc counterpart.*gc\.max"):
        np.fmax(x, 1.0)
    with pytest.raises(gc.GraphError, match=r"np\.divide\.accumulate has no graphc"):
        np.divide.accumulate(x)
    with pytest.raises(gc.GraphError, match=r"np\.linalg\.matrix_power has no graphc"):
        np.linalg.matrix_power(x, 2)


def test_np_asarray_and_np_array_of_a_node_explain_it_has_no_value():
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    for convert in (np.asarray, np.array, np.ascontiguousarray):
        with pytest.raises(gc.GraphError, match=r"node 'x' is symbolic: it has no value until "
                                                r"the graph runs.*gc\.eval\(x, feed\)"):
            convert(x)
    with pytest.raises(gc.GraphError, match="holding graph nodes; build it with gc.stack"):
        gc.add([x, 1.0], x)


# -- the table follows graphc.ops ----------------------------------------------------------------
def test_a_new_op_with_a_numpy_name_is_picked_up(monkeypatch, rng):
    def hypot(x, y):
        return gc.sqrt(x * x + y * y)

    def nanmean(x, axis=None, keepdims=False):
        return gc.mean(x, axis, keepdims)

    def cumsum(x, axis, strange):  # a required parameter NumPy never passes
        return x

    def einsum(subscripts, *operands):
        assert subscripts == "ij,j->i"
        return gc.matmul(*operands)

    for f in (hypot, nanmean, cumsum, einsum):
        monkeypatch.setattr(ops, f.__name__, f, raising=False)
    monkeypatch.setattr(ops, "__all__", [*ops.__all__, "hypot", "nanmean", "cumsum", "einsum"])
    monkeypatch.setattr(numpy_dispatch, "_TABLES", build_tables())
    g = gc.Graph()
    x = g.input("x", shape=SHAPE)
    u = g.input("u", shape=(4,))
    v, uv = values(rng), values(rng, (4,))
    np.testing.assert_allclose(np.hypot(x, v).eval({x: v}), np.hypot(v, v), rtol=1e-13)
    np.testing.assert_allclose(np.nanmean(x, axis=1, keepdims=True).eval({x: v}),
                               v.mean(axis=1, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(gc.eval(np.einsum("ij,j->i", x, u), {x: v, u: uv}), v @ uv,
                               rtol=1e-13)
    with pytest.raises(gc.GraphError, match=r"np\.einsum\(\.\.\., optimize=True\)"):
        np.einsum("ij,j->i", x, u, optimize=True)
    with pytest.raises(gc.GraphError, match=r"np\.cumsum on graph nodes: gc\.cumsum\(x, axis, "
                                            r"strange\) needs 'strange'.*call the graphc "
                                            "function directly"):
        np.cumsum(x)


def test_every_translation_pairs_numpys_array_argument_first():
    for np_fn, tr in tables().functions.items():
        first_np = next(iter(inspect.signature(np_fn).parameters))
        first_gc = next(iter(tr.gc_sig.parameters))
        spread = inspect.Parameter.VAR_POSITIONAL
        if (tr.gc_sig.parameters[first_gc].kind is spread
                or inspect.signature(np_fn).parameters[first_np].kind is spread):
            # np.meshgrid(*xi), np.einsum(*operands): NumPy's positionals spread from the first
            assert tr.pairs.get(first_np) == "*0", tr.np_name
            continue
        assert tr.pairs.get(first_np) == first_gc, tr.np_name
