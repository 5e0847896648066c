"""`f.graph` (what a compiled function runs, after every rewrite) saves and loads back for each
workload of bench/compiler.py, at smaller sizes, and the reloaded graph computes the same bits.

The compiler's own ops (scatter_add, fused cross-entropy, dots from sums of squares) are
registered ops like any other, so an optimized graph is a graph like any other."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


def xor(rng):
    g = gc.Graph("xor")
    X, y = g.input("X", (4, 2)), g.input("y", (4,))
    W, c, w, b = g.input("W", (2, 2)), g.input("c", (2,)), g.input("w", (2,)), g.input("b")
    loss = gc.mean(gc.square(y - (gc.relu(X @ W + c) @ w + b)))
    feed = [np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float), np.array([0, 1, 1, 0], float),
            rng.standard_normal((2, 2)), rng.standard_normal(2), rng.standard_normal(2),
            np.array(0.1)]
    return [X, y, W, c, w, b], [loss, *gc.grad(loss, [W, c, w, b])], feed


def mlp(rng, n=16, d=12, h=8, k=5):
    g = gc.Graph("mlp")
    X, y = g.input("X", (n, d)), g.input("y", (n,), "int64")
    W1, W2, V1, V2 = (g.input(s, sh) for s, sh in
                      [("W1", (d, h)), ("W2", (h, k)), ("V1", (d, h)), ("V2", (h, k))])
    J = gc.softmax_cross_entropy(gc.relu(X @ W1) @ W2, y).mean() + 1e-3 * (
        gc.sum(gc.square(W1)) + gc.sum(gc.square(W2)))
    outs = [J, *gc.grad(J, [W1, W2]), *gc.hvp(J, [W1, W2], [V1, V2])]
    feed = [rng.standard_normal((n, d)), rng.integers(0, k, n), *(
        rng.standard_normal(s) * 0.3 for s in [(d, h), (h, k), (d, h), (h, k)])]
    return [X, y, W1, W2, V1, V2], outs, feed


def rosenbrock(rng, n=50):
    g = gc.Graph("rosen")
    x, p = g.input("x", (n,)), g.input("p", (n,))
    z = gc.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1.0 - x[:-1]) ** 2.0)
    return [x, p], [z, gc.grad(z, x), gc.hvp(z, x, p)], [rng.uniform(-1, 1, n),
                                                         rng.standard_normal(n)]


def tanh_chain(rng, depth=20, width=6):
    g = gc.Graph("chain")
    W, x = g.input("W", (depth, width, width)), g.input("x", (width,))
    h = x
    for k in range(depth):
        h = gc.tanh(W[k] @ h)
    z = gc.sum(h)
    return [W, x], [z, *gc.grad(z, [W, x])], [
        rng.standard_normal((depth, width, width)) / np.sqrt(width), rng.standard_normal(width)]


def wide(rng, n_ops=300, width=16):
    g = gc.Graph("wide")
    x, v = g.input("x", (width,)), g.input("v", (width,))
    unary = [gc.sin, gc.cos, gc.tanh, gc.sigmoid, gc.softplus, lambda a: a * a]
    nodes = [x, gc.sin(x)]
    while len(g.nodes) < n_ops:
        a = nodes[rng.integers(len(nodes))]
        if rng.random() < 0.5:
            nodes.append(unary[rng.integers(len(unary))](a))
        else:
            b = nodes[rng.integers(len(nodes))]
            nodes.append(a * b if rng.random() < 0.5 else a + 0.5 * b)
    z = gc.sum(nodes[-1]) + gc.sum(gc.add_n(nodes[-50:]))
    return [x, v], [z, gc.grad(z, x), gc.hvp(z, x, v)], [
        rng.standard_normal(width) * 0.5, rng.standard_normal(width)]


@pytest.mark.parametrize("workload", [xor, mlp, rosenbrock, tanh_chain, wide],
                         ids=lambda w: w.__name__)
def test_the_compiled_graph_saves_loads_and_computes_the_same(workload, rng, tmp_path):
    inputs, outputs, feed = workload(rng)
    f = gc.function(inputs, outputs)
    g2 = gc.load(gc.save(f.graph, tmp_path / "f.json"))
    assert len(g2.nodes) == len(f.graph.nodes)
    assert [n.op.name for n in g2.nodes] == [n.op.name for n in f.graph.nodes]
    f2 = gc.function([g2[x.name] for x in inputs], [g2[y.name] for y in outputs],
                     optimize=False)
    for a, b in zip(f(*feed), f2(*feed)):
        np.testing.assert_array_equal(a, b)
