"""The oracle for every loop test: the same step function applied in a Python loop, which builds
the unrolled graph (T copies of the body) that a loop must equal in value and in every
derivative; and the comparison the loop tests share."""

from __future__ import annotations

import numpy as np

import graphc as gc

RTOL = 1e-10


def close(got, want, rtol=RTOL, atol=0.0):
    """Relative agreement measured against the size of the oracle (entries near zero inside a
    large array are not held to a relative bound of their own); `atol` for oracles that are
    zero up to rounding."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, (got.shape, want.shape)
    if not want.size:
        return
    diff = np.max(np.abs(got - want))
    scale = max(np.max(np.abs(want)), 1e-300)
    assert diff <= rtol * scale + atol, \
        f"relative error {diff / scale:.3e} > {rtol:.0e} (absolute {diff:.3e})"


def _leaves(v):
    return list(v) if isinstance(v, (tuple, list)) else [v]


def _like(structure, leaves):
    if isinstance(structure, (tuple, list)):
        return type(structure)(leaves)
    return leaves[0]


def unrolled_scan(step, init, xs=None, length=None, checkpoint=None, reverse=False):
    """`gc.scan`'s contract, built step by step: (final carry, ys stacked on axis 0);
    `checkpoint` changes nothing here (it is only how a scan's gradient stores its carries)."""
    x_leaves = None if xs is None else _leaves(xs)
    T = length if x_leaves is None else int(x_leaves[0].shape[0])
    carry = init
    ys_per_step = [None] * T
    y_struct = None
    for t in (reversed(range(T)) if reverse else range(T)):
        x = None if xs is None else _like(xs, [a[t] for a in x_leaves])
        carry, y = step(carry, x)
        if y is not None:
            y_struct = y
            ys_per_step[t] = _leaves(y)
    if y_struct is None:
        return carry, None
    stacked = [gc.stack([ys_per_step[t][k] for t in range(T)])
               for k in range(len(_leaves(y_struct)))]
    return carry, _like(y_struct, stacked)


def unrolled_fori_loop(lower, upper, body, init):
    carry = init
    g = _leaves(init)[0].graph
    for i in range(lower, upper):
        carry = body(g.constant(i), carry)
    return carry
