"""Hypothesis: on random small graphs (and their gradients and Hessian-vector products),
`optimize=True` computes what `optimize=False` computes."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import graphc as gc

UNARY = [
    lambda x: gc.tanh(x), lambda x: -x, lambda x: gc.neg(-x), lambda x: x * 1.0,
    lambda x: x + 0.0, lambda x: x * x, lambda x: x ** 2.0, lambda x: gc.log(1.0 + x * x),
    lambda x: gc.log(gc.sigmoid(x)), lambda x: gc.log(1.0 - gc.sigmoid(x)),
    lambda x: gc.exp(gc.tanh(x)) - 1.0, lambda x: gc.log(gc.exp(x) + gc.sigmoid(x)),
    lambda x: 2.0 * (3.0 * x), lambda x: gc.sin(x) * 0.0, lambda x: gc.transpose(gc.transpose(x)),
    lambda x: x.reshape(-1).reshape(x.shape), lambda x: gc.stop_gradient(x) * x,
    lambda x: gc.sum(gc.broadcast_to(x, (2,) + x.shape), axis=0),
    lambda x: gc.softmax(x) if x.ndim else x,
]
BINARY = [
    lambda x, y: x + y, lambda x, y: x - y, lambda x, y: x * y, lambda x, y: x + (-y),
    lambda x, y: x / (2.0 + gc.sin(y)), lambda x, y: gc.add_n([x, y, x]) if x.shape == y.shape
    else x * y,
]


@st.composite
def programs(draw):
    steps = draw(st.lists(st.tuples(st.booleans(), st.integers(0, 99), st.integers(0, 99),
                                    st.integers(0, 99)), min_size=1, max_size=10))
    shape = draw(st.sampled_from([(3,), (2, 3), ()]))
    return shape, steps


@given(programs(), st.integers(0, 2**32 - 1))
def test_optimized_matches_unoptimized(program, seed):
    shape, steps = program
    g = gc.Graph()
    x = g.input("x", shape=shape)
    v = g.input("v", shape=shape)
    nodes = [x, gc.cos(x)]
    for binary, k, a, b in steps:
        if binary:
            nodes.append(BINARY[k % len(BINARY)](nodes[a % len(nodes)], nodes[b % len(nodes)]))
        else:
            nodes.append(UNARY[k % len(UNARY)](nodes[a % len(nodes)]))
    z = gc.sum(nodes[-1]) + gc.sum(nodes[len(nodes) // 2])
    gx = gc.grad(z, x)
    hv = gc.grad(gc.sum(gx * v), x)
    outs = [z, gx, hv, nodes[-1]]
    rng = np.random.default_rng(seed)
    xv, vv = rng.uniform(-1.5, 1.5, shape), rng.standard_normal(shape)
    fast = gc.function([x, v], outs)
    slow = gc.function([x, v], outs, optimize=False)
    with np.errstate(all="ignore"):
        for a, b in zip(fast(xv, vv), slow(xv, vv)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
