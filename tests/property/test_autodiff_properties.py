"""Properties of derivatives over random graphs: gradients and Hessian-vector products against
finite differences, forward against reverse mode, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note

import graphc as gc
from tests.property.graphs import random_graphs


@given(random_graphs())
def test_gradient_and_second_order_match_finite_differences(rg):
    note(f"program: {rg.program}")
    z = rg.loss()
    at = rg.values(np.random.default_rng(0))
    gc.check_grad(z, rg.inputs, at=at, order=2, tol=1e-5)


@given(random_graphs())
def test_evaluation_is_deterministic(rg):
    note(f"program: {rg.program}")
    z = rg.loss()
    grads = gc.grad(z, rg.inputs)
    at = rg.values(np.random.default_rng(1))
    f = gc.function(rg.inputs, [z, *grads])
    first = f(**{x.name: v for x, v in at.items()})
    again = f(**{x.name: v for x, v in at.items()})
    for a, b in zip(first, again):
        assert a.tobytes() == b.tobytes()


@given(random_graphs())
def test_jvp_and_vjp_satisfy_the_dot_product_identity(rg):
    if not hasattr(gc, "jvp"):
        pytest.skip("forward mode not built yet")
    note(f"program: {rg.program}")
    rng = np.random.default_rng(2)
    at = rg.values(rng)
    y = rg.outputs[0]
    g = rg.graph
    vs = [g.constant(rng.standard_normal(x.shape)) for x in rg.inputs]
    u = g.constant(rng.standard_normal(tuple(int(d) for d in y.shape)))
    jv = gc.jvp(y, rg.inputs, vs)
    jtu = gc.vjp(y, rg.inputs, u)
    f = gc.function(rg.inputs, [jv, *jtu])
    jv_val, *jtu_vals = f(*at.values())
    lhs = float(np.sum(u.op.value * jv_val))
    rhs = sum(float(np.sum(a * v.op.value)) for a, v in zip(jtu_vals, vs))
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-9)
