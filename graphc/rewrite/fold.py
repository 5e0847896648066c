"""Constant folding: a node whose value is known before any input is fed becomes a constant.

Two cases: every input is a constant (run the op's forward once, now), or the op reads only its
input's static shape (its class declares it `shape_only`: `zeros_like`, `ones_like`,
`eye_like`, `count`). Only ops declared `pure` fold. Folding stops at
`MAX_FOLD` entries so that a graph never bakes in a large array it did not have, and the size
is checked before anything is allocated: a shape-only op is run on a zero-strided view of one
element, so `zeros_like` of a (10**6, 10**6) input compiles without touching its size.
"""

from __future__ import annotations

import numpy as np

from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Constant, Input, Output
from graphc.rewrite.engine import rule

MAX_FOLD = 1 << 16


def _foldable(n: Node) -> bool:
    """A static shape of at most MAX_FOLD entries and no symbolic parameter."""
    return (types.is_static(n.shape) and types.concrete_size(n.shape) <= MAX_FOLD
            and not n.op.free_symbols())


def _fold(n: Node, values) -> Node | None:
    if not _foldable(n):
        return None
    try:
        v = n.op.forward(*values)
    except Exception:  # noqa: BLE001 - it fails at run time too; leave it to say so there
        return None
    v = np.asarray(v)
    if v.shape != n.shape or v.size > MAX_FOLD or not np.can_cast(v.dtype, n.dtype, "same_kind"):
        return None
    return n.graph.constant(v.astype(n.dtype, copy=False))


@rule("fold")
def constant_inputs_to_constant(n: Node) -> Node | None:
    """An op over constants only is evaluated once, at compile time."""
    if not n.inputs or isinstance(n.op, (Constant, Input, Output)) or not n.op.pure:
        return None  # (a view reads a tuple, which is never a constant)
    if n.op.multi:
        return None  # a tuple is not a constant: its views stay views
    if not all(isinstance(x.op, Constant) for x in n.inputs):
        return None
    return _fold(n, [x.op.value for x in n.inputs])


@rule("fold", where=lambda op: op.shape_only and op.pure)
def shape_only_op_to_constant(n: Node) -> Node | None:
    """zeros_like, ones_like, eye_like, count of a static shape are constants."""
    if (not n.op.shape_only or not n.op.pure
            or any(not types.is_static(x.shape) for x in n.inputs) or not _foldable(n)):
        return None
    # the op reads only its input's shape and dtype: one element, viewed at the input's shape,
    # stands for it, so nothing of the input's size is allocated
    return _fold(n, [np.broadcast_to(np.zeros((), x.dtype), tuple(x.shape)) for x in n.inputs])
