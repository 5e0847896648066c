"""Exports of very deep graphs: no recursion limit, and text that grows linearly."""

import contextlib
import math
import re

import numpy as np
import pytest
import sympy

import graphc as gc

DEPTH = 5000


def nested_scopes(depth: int):
    """A graph whose nodes sit at scope depths 1, depth / 2 and depth, all under `s/s/...`."""
    g = gc.Graph("deep")
    x = g.input("x")
    placed = {}
    with contextlib.ExitStack() as scopes:
        for level in range(1, depth + 1):
            scopes.enter_context(g.scope("s"))
            if level in (1, depth // 2, depth):
                placed[level] = gc.sin(x if not placed else placed[max(placed)])
    return g, placed


def test_to_dot_groups_5000_nested_scopes():
    g, placed = nested_scopes(DEPTH)
    text = gc.to_dot(g, group_scopes=True)
    lines = text.splitlines()
    assert text.count("subgraph ") == DEPTH
    assert text.count("{") == text.count("}") == DEPTH + 1  # and the digraph's own
    opened = 0  # every node sits inside exactly as many clusters as its scope is deep
    for line in lines:
        opened += line.count("{") - line.count("}")
        m = re.match(r"\s*n(\d+) \[", line)
        if m:
            node = g.nodes[int(m.group(1))]
            assert opened - 1 == (node.scope.count("/") + 1 if node.scope else 0)
    assert {int(m) for m in re.findall(r"^\s*n(\d+) \[", text, re.M)} == {
        n.index for n in g.nodes}
    ids = re.findall(r'subgraph "(cluster_[^"]*)"', text)
    assert len(set(ids)) == DEPTH
    # indentation and cluster ids stay short: the text is linear in depth, apart from the
    # node names, which spell their scope
    names = sum(2 * len(n.name) for n in g.nodes)
    assert len(text) - names < 250 * DEPTH
    assert max(len(i) for i in ids) < 100


def test_to_dot_names_shallow_clusters_by_path():
    g = gc.Graph()
    x = g.input("x")
    with g.scope("a"), g.scope("bb"):
        gc.sin(x)
    text = gc.to_dot(g, group_scopes=True, cluster_roles=False)
    assert '"cluster_1a"' in text and '"cluster_1a_2bb"' in text


def numeric(expr, env: dict) -> float:
    """A sympy expression's value, walking it with an explicit stack (sympy's evalf recurses)."""
    done: dict[int, float] = {}
    stack = [(expr, False)]
    while stack:
        e, ready = stack.pop()
        if id(e) in done:
            continue
        if ready:
            vals = [done[id(a)] for a in e.args]
            if isinstance(e, sympy.sin):
                done[id(e)] = math.sin(vals[0])
            elif isinstance(e, sympy.Add):
                done[id(e)] = math.fsum(vals)
            elif isinstance(e, sympy.Mul):
                done[id(e)] = math.prod(vals)
            elif isinstance(e, sympy.Pow):
                done[id(e)] = vals[0] ** vals[1]
            else:
                raise AssertionError(f"unexpected {type(e).__name__}")
        elif isinstance(e, sympy.Symbol):
            done[id(e)] = env[e.name]
        elif isinstance(e, sympy.Number):
            done[id(e)] = float(e)
        else:
            stack.append((e, True))
            stack.extend((a, False) for a in e.args)
    return done[id(expr)]


def sin_depth(expr) -> tuple[int, object]:
    depth = 0
    while isinstance(expr, sympy.sin):
        expr, depth = expr.args[0], depth + 1
    return depth, expr


def test_to_sympy_of_a_5000_deep_sin_chain():
    g = gc.Graph()
    x = g.input("x")
    y = x
    for _ in range(DEPTH):
        y = gc.sin(y)
    expr = gc.to_sympy(y)
    depth, inner = sin_depth(expr)
    assert depth == DEPTH and inner == sympy.Symbol("x", real=True)
    want = 0.7
    for _ in range(DEPTH):
        want = np.sin(want)
    assert numeric(expr, {"x": 0.7}) == pytest.approx(want, rel=1e-13)


def test_to_sympy_of_a_deep_mixed_chain():
    g = gc.Graph()
    x = g.input("x")
    y = x
    for _ in range(2000):
        y = gc.sin(y) * 1.0001 + 0.01
    want = 0.3
    for _ in range(2000):
        want = np.sin(want) * 1.0001 + 0.01
    assert numeric(gc.to_sympy(y), {"x": 0.3}) == pytest.approx(want, rel=1e-12)


def test_to_sympy_of_a_long_product_chain_stays_simplified():
    g = gc.Graph()
    x = g.input("x")
    y = x
    for _ in range(DEPTH):
        y = y * 1.0001
    expr = gc.to_sympy(y)
    assert expr == sympy.Rational(10001, 10000) ** DEPTH * sympy.Symbol("x", real=True)


def test_shallow_chains_are_still_evaluated():
    g = gc.Graph()
    x = g.input("x")
    expr = gc.to_sympy(gc.sin(gc.sin(x * 0.0)) + x + x)
    assert expr == 2 * sympy.Symbol("x", real=True)
