"""Every op's bprop and jvp against central finite differences, first and second order."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ir import walk
from graphc.ops import sum_to
from tests.ops.cases import CASES, Case


def build(case: Case, rng):
    g = gc.Graph(case.id or case.op)
    xs = [g.input(f"x{k}", shape=s, dtype=case.dtype) for k, s in enumerate(case.shapes)]
    out = case.build(*xs)
    at = {x: case.sample(rng, k) for k, x in enumerate(xs)}
    return g, xs, out, at


def ids(cases):
    return [c.id or c.op for c in cases]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_bprop_matches_finite_differences(case, rng):
    g, xs, out, at = build(case, rng)
    err = gc.check_grad(out, xs, at=at, order=case.order, tol=case.tol)
    assert err < case.tol


def push_tangents(out, xs, tangents):
    """Forward mode from the op rules alone: each node's tangent is the sum of its ops' jvp
    contributions, broadcast to its shape."""
    table = dict(zip(xs, tangents))
    for n in walk.ancestors([out]):
        if n in table:
            continue
        if n.op.multi:  # one tangent per output, summed slot by slot; views pick theirs
            views = n.graph.views(n)
            slots = [[] for _ in views]
            for i, x in enumerate(n.inputs):
                if table.get(x) is not None:
                    for k, c in enumerate(n.op.jvp(n.inputs, views, table[x], i)):
                        if c is not None:
                            slots[k].append(c)
            table[n] = [gc.add_n(p) if p else None for p in slots]
            continue
        parts = []
        for i, x in enumerate(n.inputs):
            t = table.get(x)
            if t is not None:
                c = n.op.jvp(n.inputs, n, t, i)
                if c is not None:
                    parts.append(gc.broadcast_to(c, n.shape) if c.shape != n.shape else c)
        table[n] = gc.add_n(parts) if parts else None
    return table[out]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_jvp_matches_finite_differences_and_vjp(case, rng):
    g, xs, out, at = build(case, rng)
    vs = [rng.standard_normal(x.shape).astype(case.dtype) for x in xs]
    tangent = push_tangents(out, xs, [g.constant(v) for v in vs])
    assert tangent is not None
    f = gc.function(xs, [out, tangent])
    base = [at[x] for x in xs]
    y0, jv = f(*base)
    eps = 1e-4 if case.dtype == "float64" else 1e-2
    plus = f(*[b + eps * v for b, v in zip(base, vs)])[0]
    minus = f(*[b - eps * v for b, v in zip(base, vs)])[0]
    np.testing.assert_allclose(jv, (plus - minus) / (2 * eps), rtol=case.tol, atol=case.tol / 10)
    # The dot-product test: <u, J v> = <J^T u, v>.
    u = rng.standard_normal(np.shape(y0))
    jtu = gc.vjp(out, xs, u)
    jtu_vals = gc.function(xs, jtu)(*base)
    lhs = float(np.sum(u * jv))
    rhs = sum(float(np.sum(a * v)) for a, v in zip(jtu_vals, vs))
    assert lhs == pytest.approx(rhs, rel=case.tol * 1e-4, abs=1e-12)


def test_sum_to_undoes_broadcasting():
    g = gc.Graph()
    v = g.input("v", shape=(2, 3, 4))
    a = sum_to(v, (3, 1))
    b = sum_to(v, (4,))
    val = np.arange(24.0).reshape(2, 3, 4)
    got_a, got_b = gc.function([v], [a, b])(val)
    np.testing.assert_allclose(got_a, val.sum(axis=(0, 2))[:, None])
    np.testing.assert_allclose(got_b, val.sum(axis=(0, 1)))
