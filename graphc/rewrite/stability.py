"""Stability rewrites: formulas that lose accuracy or overflow become the stable op.

`log(1 + x) -> log1p(x)`, `exp(x) - 1 -> expm1(x)`, `log1p(exp(x)) -> softplus(x)`,
`log(exp(x)) -> x`, `log(sigmoid(x)) -> -softplus(-x)`, `log(softmax(x)) -> log_softmax(x)`,
and cross-entropy written out over a softmax becomes the fused `softmax_cross_entropy`.
"""

from __future__ import annotations

from graphc import ops
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ops.elementwise import Add, Exp, Log, Log1p, Mul, Neg, Sigmoid, Sub
from graphc.ops.nn import LogSoftmax, Softmax
from graphc.ops.reduce import Sum
from graphc.rewrite.engine import rule
from graphc.rewrite.patterns import coerce, is_fill, is_op


@rule("stability", Log)
def log_one_plus_to_log1p(n: Node) -> Node | None:
    """log(1 + x) is log1p(x), exact for small x."""
    if not is_op(n, Log) or not is_op(n.inputs[0], Add):
        return None
    a, b = n.inputs[0].inputs
    if is_fill(a, 1):
        return coerce(ops.log1p(b), n)
    if is_fill(b, 1):
        return coerce(ops.log1p(a), n)
    return None


@rule("stability", Sub)
def exp_minus_one_to_expm1(n: Node) -> Node | None:
    """exp(x) - 1 is expm1(x), exact for small x."""
    if not is_op(n, Sub) or not is_op(n.inputs[0], Exp) or not is_fill(n.inputs[1], 1):
        return None
    return coerce(ops.expm1(n.inputs[0].inputs[0]), n)


@rule("stability", Log1p)
def log1p_of_exp_to_softplus(n: Node) -> Node | None:
    """log1p(exp(x)) is softplus(x), which does not overflow for large x."""
    if is_op(n, Log1p) and is_op(n.inputs[0], Exp):
        return coerce(ops.softplus(n.inputs[0].inputs[0]), n)
    return None


@rule("stability", Log)
def log_of_exp_to_x(n: Node) -> Node | None:
    """log(exp(x)) is x (no overflow for x > 709)."""
    if is_op(n, Log) and is_op(n.inputs[0], Exp):
        return n.inputs[0].inputs[0]
    return None


@rule("stability", Log)
def log_sigmoid_to_neg_softplus(n: Node) -> Node | None:
    """log(sigmoid(x)) is -softplus(-x): no log(0) for very negative x."""
    if is_op(n, Log) and is_op(n.inputs[0], Sigmoid):
        return coerce(ops.neg(ops.softplus(ops.neg(n.inputs[0].inputs[0]))), n)
    return None


@rule("stability", Log)
def log_softmax_to_log_softmax(n: Node) -> Node | None:
    """log(softmax(x)) is log_softmax(x): no log(0) when a probability underflows."""
    if is_op(n, Log) and is_op(n.inputs[0], Softmax):
        s = n.inputs[0]
        return coerce(ops.log_softmax(s.inputs[0], s.op.axis), n)
    return None


def _cross_entropy(total: Node, negated: bool) -> Node | None:
    """The fused op for sum(y * log_softmax(x)) over the last axis (negated or not)."""
    if not is_op(total, Sum) or total.op.keepdims:
        return None
    prod = total.inputs[0]
    if not is_op(prod, Mul) or prod.ndim == 0 or total.op.axis != (prod.ndim - 1,):
        return None
    for y, ls in (prod.inputs, prod.inputs[::-1]):
        if not negated and is_op(ls, Neg):
            ls, negated_here = ls.inputs[0], True
        else:
            negated_here = negated
        if not negated_here or not is_op(ls, LogSoftmax):
            continue
        x = ls.inputs[0]
        if ls.op.axis % x.ndim != x.ndim - 1 or not types.is_float(y.dtype):
            continue
        if not types.shape_eq(y.shape, x.shape):
            continue
        return ops.softmax_cross_entropy(x, y)
    return None


@rule("stability", Neg, Sum)
def cross_entropy_of_softmax_to_fused(n: Node) -> Node | None:
    """-sum(y * log_softmax(x), -1) (what log(softmax) rewrites to) is softmax_cross_entropy."""
    if is_op(n, Neg):
        r = _cross_entropy(n.inputs[0], True)
    elif is_op(n, Sum):
        r = _cross_entropy(n, False)
    else:
        r = None
    return None if r is None else coerce(r, n)
