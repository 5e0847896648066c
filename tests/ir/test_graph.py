"""The graph IR: append-only topological order, shapes, names, scopes, networkx view."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import sympy

import graphc as gc


def test_insertion_order_is_topological_and_acyclic():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = gc.exp(x) * x
    z = y.sum() + 1.0
    gc.grad(z, x)
    pos = {n: k for k, n in enumerate(g.nodes)}
    assert all(pos[i] < pos[n] for n in g.nodes for i in n.inputs)
    dg = g.to_networkx()
    assert nx.is_directed_acyclic_graph(dg)
    assert dg.number_of_nodes() == len(g.nodes)
    assert list(nx.topological_sort(dg))  # networkx agrees it is a DAG
    attrs = dg.nodes[z.name]
    assert attrs["op"] == "add" and attrs["shape"] == () and attrs["role"] == "forward"
    assert attrs["dtype"] == np.float64


def test_symbolic_dimensions_from_strings():
    g = gc.Graph()
    X = g.input("X", shape=("batch", 4))
    W = g.input("W", shape=(4, 2))
    h = X @ W
    batch = sympy.Symbol("batch", integer=True, positive=True)
    assert h.shape == (batch, 2)
    assert X.mean(axis=0).shape == (4,)
    got = gc.eval(h.mean(), {X: np.ones((7, 4)), W: np.ones((4, 2))})
    assert float(got) == 4.0


def test_shape_error_names_op_shapes_and_user_line():
    g = gc.Graph()
    a = g.input("a", shape=(3, 4))
    b = g.input("b", shape=(5, 2))
    with pytest.raises(gc.ShapeError) as info:
        a @ b  # noqa: B018
    msg = str(info.value)
    assert "matmul" in msg and "(3, 4)" in msg and "(5, 2)" in msg
    assert __file__ in msg


def test_failed_build_leaves_graph_unchanged():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    column = 2.0 * x.reshape(3, 1)
    n = len(g.nodes)
    with pytest.raises(gc.ShapeError):
        x + np.ones(5)  # the lifted constant must not stay behind
    with pytest.raises(gc.ShapeError):
        gc.concatenate([x, column, 1.0])
    assert len(g.nodes) == n


def test_mixing_graphs_is_refused():
    x = gc.Graph("one").input("x")
    y = gc.Graph("two").input("y")
    with pytest.raises(gc.GraphError, match="'y'.*'two'"):
        x + y  # noqa: B018


def test_names_scopes_and_repr():
    g = gc.Graph("net")
    with g.scope("layer1"):
        W = g.input("W", shape=(2, 2))
        h = gc.tanh(W)
    assert W.name == "layer1/W" and h.name.startswith("layer1/tanh")
    assert g["layer1/W"] is W
    with pytest.raises(gc.GraphError, match="already"):
        with g.scope("layer1"):
            g.input("W")
    r = repr(h)
    assert "tanh" in r and "(2, 2)" in r and "layer1/W" in r


def test_nodes_hash_by_identity_and_compare_symbolically():
    g = gc.Graph()
    x = g.input("x")
    eq = x == 1.0
    assert isinstance(eq, gc.Node) and eq.dtype == np.bool_
    assert len({x, x, eq}) == 2
    with pytest.raises(TypeError, match="truth value"):
        bool(eq)


def test_numpy_arrays_on_the_left_use_reflected_operators():
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    y = np.array([1.0, 2.0]) * x - np.array([1.0, 1.0])
    assert isinstance(y, gc.Node)
    np.testing.assert_array_equal(y.eval({x: np.array([3.0, 4.0])}), [2.0, 7.0])
    assert (1.0 - x).shape == (2,) and (2.0 ** x).shape == (2,)


def test_python_scalars_keep_float32():
    g = gc.Graph()
    x = g.input("x", shape=(2,), dtype="float32")
    assert (x * 2.0 + 1).dtype == np.float32
    assert gc.grad((x * x).sum(), x).dtype == np.float32
