"""Random graphs with scans and conds equal their unrolled graphs: value, gradient and
Hessian-vector products in both modes, and the loop graph's gradient passes central
differences (gc.check_grad). Bounded: 25 examples, no deadline, well under 30 s."""

from __future__ import annotations

import numpy as np
from hypothesis import given, note, settings

import graphc as gc
from tests.loops.unroll import close
from tests.property.loop_graphs import build, loop_plans


def _derivatives(lg, at_seed: int = 0):
    z = lg.loss()
    g = lg.graph
    rng = np.random.default_rng(at_seed)
    at = lg.values(rng)
    vs = [g.constant(rng.standard_normal(x.shape)) for x in lg.inputs]
    grads = gc.grad(z, lg.inputs)
    hv_f = gc.hvp(z, lg.inputs, vs, mode="forward")
    hv_r = gc.hvp(z, lg.inputs, vs, mode="reverse")
    f = gc.function(lg.inputs, [z, *grads, *hv_f, *hv_r])
    return f(*(at[x] for x in lg.inputs)), z, at


@settings(max_examples=25, deadline=None)
@given(loop_plans())
def test_loops_and_conds_equal_their_unrolled_graphs(plan):
    note(f"plan: {plan}")
    looped, unrolled = build(plan, loops=True), build(plan, loops=False)
    assert looped.loops >= 1
    assert [o.shape for o in looped.outputs] == [o.shape for o in unrolled.outputs]
    got, z, at = _derivatives(looped)
    want, _, _ = _derivatives(unrolled)
    for k, (a, b) in enumerate(zip(got, want)):
        note(f"output {k}")
        close(a, b, rtol=1e-9, atol=1e-12)   # inputs O(1): zeros agree to rounding
    gc.check_grad(z, looped.inputs, at=at, order=1, tol=1e-5)
