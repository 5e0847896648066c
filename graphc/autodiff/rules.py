"""Calling an op's derivative rules, with their results checked where they are used.

PyTensor validates every `L_op` result and autograd checks each VJP's vector space; here a
`bprop` or `jvp` result must be a node of the consumer's graph (numbers and arrays are lifted),
of a float dtype, and of a shape that fits: a cotangent must un-broadcast to its input's shape
and a tangent must broadcast to its output's shape. A user op whose rule gets this wrong fails
right here, with an error naming the op, the node, the input index and both shapes, instead of
later in some `reshape` that names neither.
"""

from __future__ import annotations

import numpy as np

from graphc import ops
from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Output


def bprop(C: Node, D, i: int) -> Node | None:
    """C.op's cotangent for input i, summed down to that input's shape and cast to its dtype.

    A multi-output C gets D as a list (one cotangent per output) and its output views as
    `out`; a view's own rule returns the list for its apply node, D in its slot."""
    V = C.inputs[i]
    if isinstance(C.op, Output):
        return C.op.bprop(C.inputs, C, D, i)
    out = C.graph.views(C) if C.op.multi else C
    G_i = _checked(C, i, "bprop", C.op.bprop(C.inputs, out, D, i))
    if G_i is None:
        return None
    try:
        G_i = ops.sum_to(G_i, V.shape)
    except ShapeError:
        raise ShapeError(
            f"{C.op.name}.bprop for input {i} of node {C.name!r} returned shape "
            f"{types.fmt_shape(G_i.shape)}, which does not reduce to the input's shape "
            f"{types.fmt_shape(V.shape)}") from None
    return G_i if G_i.dtype == V.dtype else ops.cast(G_i, V.dtype)


def jvp(N: Node, t, i: int):
    """N.op's tangent of its output due to the tangent `t` of input i, of N's shape and dtype.

    For a multi-output N, a list: one tangent per output (each checked against that output's
    view), None where zero; a view's `t` is that list."""
    if N.op.multi:
        outs = N.graph.views(N)
        cs = N.op.jvp(N.inputs, outs, t, i)
        if not isinstance(cs, (list, tuple)) or len(cs) != len(outs):
            raise GraphError(f"{N.op.name}.jvp for input {i} of node {N.name!r} must return a "
                             f"list of {len(outs)} tangents (None where zero), got {cs!r}")
        return [None if c is None else _fit(o, i, _checked(N, i, "jvp", c), N)
                for o, c in zip(outs, cs)]
    c = _checked(N, i, "jvp", N.op.jvp(N.inputs, N, t, i))
    if c is None:
        return None
    return _fit(N, i, c, N)


def jvp_many(N: Node, ts: list):
    """N.op's tangents from all its inputs' tangents at once (`ts`, None where zero), for an
    op that declares `jvp_many` (a loop: one tangent loop for every input, not one per
    input). Checked like `jvp`; a list for a multi-output N, else a node or None."""
    if N.op.multi:
        outs = N.graph.views(N)
        cs = N.op.jvp_many(N.inputs, outs, ts)
        if not isinstance(cs, (list, tuple)) or len(cs) != len(outs):
            raise GraphError(f"{N.op.name}.jvp_many of node {N.name!r} must return a list of "
                             f"{len(outs)} tangents (None where zero), got {cs!r}")
        return [None if c is None else _fit(o, 0, _checked(N, 0, "jvp_many", c), N)
                for o, c in zip(outs, cs)]
    c = _checked(N, 0, "jvp_many", N.op.jvp_many(N.inputs, N, ts))
    return None if c is None else _fit(N, 0, c, N)


def _fit(N: Node, i: int, c: Node, C: Node) -> Node:
    """A tangent `c` for output node N (of C's op), broadcast to N's shape, in N's dtype."""
    if not types.shape_eq(c.shape, N.shape):
        try:
            fits = types.shape_eq(types.broadcast_shapes(c.shape, N.shape), N.shape)
        except ValueError:
            fits = False
        if not fits:
            raise ShapeError(
                f"{C.op.name}.jvp for input {i} of node {N.name!r} returned shape "
                f"{types.fmt_shape(c.shape)}, which does not broadcast to the output's shape "
                f"{types.fmt_shape(N.shape)}")
        c = ops.broadcast_to(c, N.shape)  # e.g. x + b with only b's tangent
    return c if c.dtype == N.dtype else ops.cast(c, N.dtype)


def _checked(C: Node, i: int, rule: str, result) -> Node | None:
    if result is None:
        return None
    where = f"{C.op.name}.{rule} for input {i} of node {C.name!r}"
    if not isinstance(result, Node):
        if isinstance(result, (int, float, np.ndarray, np.generic)) and not isinstance(
                result, bool):
            return C.graph.constant(np.asarray(result, dtype=C.dtype if types.is_float(
                C.dtype) else np.float64))  # (a multi-output C's dtype is TUPLE: float64)
        raise GraphError(f"{where} returned {type(result).__name__}; a rule must return a "
                         "graph node (built from ops, so it can be differentiated again) or None")
    if result.graph is not C.graph:
        raise GraphError(f"{where} returned node {result.name!r} of graph "
                         f"{result.graph.name!r}, not of {C.graph.name!r}")
    if not types.is_float(result.dtype):
        raise GraphError(f"{where} returned a {result.dtype} node {result.name!r}; derivatives "
                         "are floats")
    return result
