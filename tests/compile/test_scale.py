"""Graphs wide and deep enough to reach Python's parser limits if code nested, compiled with and
without rewrites, their gradients and HVPs against closed forms (issue 14).

The 16,667-term wide sum (10^5 forward nodes) and the 10^6-node chain run in bench/limits.py;
here the sizes keep the suite quick while reaching past every fixed limit of the parser
(nesting 200, and the 1,000-node graphs that used to fail with `too many nested parentheses`).
"""

from __future__ import annotations

import ast
import sys

import numpy as np
import pytest

import graphc as gc
from tests.compile.test_fusion_security import wide_problem


def nesting(source: str) -> int:
    """The deepest chain of nested expressions in a source (walked without recursion)."""
    deepest = 0
    stack = [(node, 0) for node in ast.parse(source).body]
    while stack:
        node, depth = stack.pop()
        depth += isinstance(node, ast.expr)
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in ast.iter_child_nodes(node))
    return deepest


@pytest.mark.parametrize("optimize", [True, False], ids=["optimize", "as-built"])
@pytest.mark.parametrize("m", [160, 1667])
def test_wide_sum_gradient_and_hvp_to_float64_precision(m, optimize, rng):
    x, v, z, oracle = wide_problem(m, 16, rng)
    f = gc.function([x, v], [gc.grad(z, x), gc.hvp(z, x, v)], optimize=optimize)
    assert nesting(f.source) <= 8  # one statement per node, whatever the width
    for _ in range(2):
        xv, vv = rng.uniform(-2, 2, 16), rng.standard_normal(16)
        grad, hvp = f(xv, vv)
        want_grad, want_hvp = oracle(xv, vv)
        np.testing.assert_allclose(grad, want_grad, rtol=0, atol=1e-12 * abs(want_grad).max())
        np.testing.assert_allclose(hvp, want_hvp, rtol=0, atol=1e-12 * abs(want_hvp).max())


def chain(depth_nodes: int):
    """y <- sin(y)/2 + y/2 until the graph has `depth_nodes` nodes: a path as deep as the
    graph is large, the shape bench/limits.py builds."""
    g = gc.Graph("deep")
    x, v = g.input("x", shape=(4,)), g.input("v", shape=(4,))
    y, steps = x, 0
    while len(g.nodes) < depth_nodes:
        y = gc.sin(y) * 0.5 + y * 0.5
        steps += 1
    return x, v, gc.sum(y), steps


def chain_oracle(xv, vv, steps):
    """Value, gradient and Hessian-vector product of the chain by the chain rule, by hand:
    each step is elementwise, so the Hessian is diagonal."""
    y, d, dd = xv.copy(), np.ones_like(xv), np.zeros_like(xv)  # y, dy/dx, d2y/dx2
    for _ in range(steps):
        s, c = np.sin(y), np.cos(y)
        # y' = (sin y + y)/2: first derivative (c + 1)/2, second -s/2
        dd = 0.5 * (c + 1) * dd + (-0.5 * s) * d * d
        d = 0.5 * (c + 1) * d
        y = 0.5 * s + 0.5 * y
    return y.sum(), d, dd * vv


@pytest.mark.parametrize("optimize", [True, False], ids=["optimize", "as-built"])
def test_deep_chain_compiles_without_recursion(optimize, rng):
    x, v, z, steps = chain(6_000)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # the default: a recursive pass anywhere would fail here
    try:
        f = gc.function([x, v], [z, gc.grad(z, x), gc.hvp(z, x, v)], optimize=optimize)
    finally:
        sys.setrecursionlimit(limit)
    assert nesting(f.source) <= 8
    xv, vv = rng.uniform(-1, 1, 4), rng.standard_normal(4)
    got = f(xv, vv)
    for a, b in zip(got, chain_oracle(xv, vv, steps)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
