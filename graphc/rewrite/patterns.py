"""Small matchers and builders shared by the rule files: constants, fills, type coercion."""

from __future__ import annotations

import numpy as np

from graphc import ops
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Constant, Op


def const_value(n: Node) -> np.ndarray | None:
    """The value of a constant node, else None."""
    return n.op.value if isinstance(n.op, Constant) else None


def is_fill(n: Node, v: float) -> bool:
    """True when every entry of `n` is `v`: a constant, or a shape move of one (an op that
    `rearranges` its input, such as a broadcast seed too large to fold), with at least one
    entry."""
    while n.op.rearranges:
        n = n.inputs[0]
    if not isinstance(n.op, Constant):
        return False
    fill = n.op.fill()
    return fill is not None and fill == v


def scalar_const(n: Node) -> float | None:
    """The number held by a constant with a single entry, else None."""
    c = const_value(n)
    if c is None or c.size != 1:
        return None
    return c.reshape(()).item()


def is_op(n: Node, *ops: type[Op]) -> bool:
    """Whether `n`'s op is one of the op classes `ops` (a rule's pattern names ops by class)."""
    return isinstance(n.op, ops)


def coerce(r: Node, like: Node) -> Node:
    """`r` cast to `like`'s dtype and broadcast to its shape: a rewrite keeps the node's type."""
    if r.dtype != like.dtype:
        r = ops.cast(r, like.dtype)
    if not types.shape_eq(r.shape, like.shape):
        r = ops.broadcast_to(r, like.shape)
    return r


def constant_like(n: Node, value) -> Node:
    """A constant of `n`'s dtype holding `value` (broadcast later by the consumer)."""
    return n.graph.constant(np.asarray(value, dtype=n.dtype))


def broadcasts_to(shapes, target) -> bool:
    """True when `shapes` broadcast together to exactly `target`."""
    try:
        return types.shape_eq(types.broadcast_shapes(*shapes), target)
    except ValueError:
        return False
