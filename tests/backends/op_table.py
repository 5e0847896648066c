"""The op table (tests/ops/cases.py) run on another backend: each case's forward, gradient
and Hessian-vector product against the NumPy backend's, or a clear GraphError for an op the
backend's table lists as missing (graphc/compile/xp_forms.py)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.compile import xp_forms
from graphc.ir import walk
from tests.ops.cases import CASES

CASE_IDS = [c.id or c.op for c in CASES]


def program(case, rng):
    """(inputs, outputs, values): the case's output, the gradient of <u, out> and its HVP."""
    g = gc.Graph(case.id or case.op)
    xs = [g.input(f"x{k}", shape=s, dtype=case.dtype) for k, s in enumerate(case.shapes)]
    out = case.build(*xs)
    values = [case.sample(rng, k) for k in range(len(xs))]
    u = g.constant(rng.standard_normal(out.shape).astype(out.dtype))
    loss = gc.sum(out * u)
    grads = gc.grad(loss, xs)
    outputs = [out, *grads]
    if case.order >= 2:
        vs = [g.constant(rng.standard_normal(x.shape).astype(case.dtype)) for x in xs]
        outputs += gc.hvp(loss, xs, vs)
    return xs, outputs, values


def missing_ops(function, fam: str) -> dict[str, str]:
    """The ops of a compiled graph that the family's table lists as missing."""
    found = {}
    for n in walk.ancestors(function.graph.outputs if hasattr(function.graph, "outputs")
                            else function.schedule.outputs):
        reason = xp_forms.missing(n.op.name, fam)
        if reason is not None:
            found[n.op.name] = reason
    return found


def check(case, rng, backend: str, to_backend, fam: str, family_fixed: bool):
    xs, outputs, values = program(case, rng)
    expected = gc.function(xs, outputs)(*values)
    tol = 1e-12 if case.dtype == "float64" else 1e-5
    reference = gc.function(xs, outputs)
    missing = missing_ops(reference, fam)
    if missing:
        with pytest.raises(gc.GraphError, match="|".join(missing)):
            f = gc.function(xs, outputs, backend=backend)
            f(*[to_backend(v) for v in values])
        return sorted(missing)
    f = gc.function(xs, outputs, backend=backend)
    got = f(*[to_backend(v) for v in values])
    for k, (a, b) in enumerate(zip(got, expected)):
        a = np.asarray(a)
        assert a.shape == np.shape(b), (k, a.shape, np.shape(b))
        scale = max(1.0, float(np.max(np.abs(b))) if np.size(b) else 1.0)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=f"output {k}")
    return []
