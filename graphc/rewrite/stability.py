"""Stability rewrites: formulas that lose accuracy or overflow become the stable op.

`log(1 + x) -> log1p(x)`, `exp(x) - 1 -> expm1(x)`, `log1p(exp(x)) -> softplus(x)`,
`log(exp(x)) -> x`, `log(sigmoid(x)) -> -softplus(-x)`, `log(1 - sigmoid(x)) -> -softplus(x)`,
`log(softmax(x)) -> log_softmax(x)`, and cross-entropy written out over a softmax becomes the
fused `softmax_cross_entropy`.

The gradient of such a formula is built before these rules run, from the formula as written:
through `log(u)` it is `g * (1 / u)`, and the chain rule then multiplies by u's own derivative,
which often holds u as a factor (sigmoid' = s * (1 - s), exp' = exp). At saturation u is 0 (or
inf) and the product is `inf * 0 = NaN`. `quotients_times_denominators_to_products` cancels the
factor: `(a / d + b / e) * (d * e) -> a * e + b * d`, so the binary cross-entropy written out
by hand has finite, correct gradients at logits of +-800 once compiled.
"""

from __future__ import annotations

from graphc import ops
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ops.elementwise import Add, AddN, Div, Exp, Log, Log1p, Mul, Neg, Sigmoid, Sub
from graphc.ops.nn import LogSoftmax, Softmax
from graphc.ops.reduce import Sum
from graphc.rewrite.engine import rule
from graphc.rewrite.patterns import coerce, constant_like, is_fill, is_op


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


@rule("stability", Log, Log1p)
def log_one_minus_sigmoid_to_neg_softplus(n: Node) -> Node | None:
    """log(1 - sigmoid(x)) and log1p(-sigmoid(x)) are -softplus(x): no log(0) for large x."""
    if is_op(n, Log) and is_op(n.inputs[0], Sub):
        one, s = n.inputs[0].inputs
        if is_fill(one, 1) and is_op(s, Sigmoid):
            return coerce(ops.neg(ops.softplus(s.inputs[0])), n)
    if is_op(n, Log1p) and is_op(n.inputs[0], Neg) and is_op(n.inputs[0].inputs[0], Sigmoid):
        return coerce(ops.neg(ops.softplus(n.inputs[0].inputs[0].inputs[0])), n)
    return None


# -- cancelling a denominator against the same factor: the chain rule through log and div --
MAX_TERMS = 8  # a sum is searched for quotients up to this many terms
MAX_DEPTH = 6  # and products and sums are looked into this many levels deep
_SUMS = (AddN, Add, Sub, Neg)
_PRODUCTS = (Neg, Mul, Div)


def _terms(n: Node) -> list[tuple[int, Node]] | None:
    """`n` as a signed sum [(+1 or -1, term)], read through add_n, add, sub and neg."""
    if not isinstance(n.op, _SUMS):
        return [(1, n)]  # the common case, answered at once
    out, stack = [], [(n, 1, 0)]
    while stack:
        x, sign, depth = stack.pop()
        if depth < MAX_DEPTH and is_op(x, AddN, Add, Sub, Neg) and types.is_float(x.dtype):
            signs = (-1,) if is_op(x, Neg) else (1, -1) if is_op(x, Sub) else (1,) * len(x.inputs)
            stack.extend((a, sign * s, depth + 1) for a, s in zip(x.inputs[::-1], signs[::-1]))
        else:
            out.append((sign, x))
            if len(out) > MAX_TERMS:
                return None
    return out


def _monomial(n: Node) -> tuple[int, list[Node], list[Node]]:
    """`n` as sign * prod(numerators) / prod(denominators), read through mul, neg and div (a
    denominator is kept whole); factors that are all ones are dropped."""
    if not isinstance(n.op, _PRODUCTS):
        return 1, ([] if is_fill(n, 1) else [n]), []  # the common case, answered at once
    sign, nums, dens, stack = 1, [], [], [(n, 0)]
    while stack:
        x, depth = stack.pop()
        if depth < MAX_DEPTH and is_op(x, Neg):
            sign = -sign
            stack.append((x.inputs[0], depth + 1))
        elif depth < MAX_DEPTH and is_op(x, Mul):
            stack.extend((a, depth + 1) for a in x.inputs[::-1])
        elif depth < MAX_DEPTH and is_op(x, Div):
            stack.append((x.inputs[0], depth + 1))
            dens.append(x.inputs[1])
        elif not is_fill(x, 1):
            nums.append(x)
    return sign, nums, dens


def _without(xs: list[Node], x: Node) -> list[Node] | None:
    """`xs` less one occurrence of the node `x` (by identity: `==` builds a node), or None."""
    for k, y in enumerate(xs):
        if y is x:
            return xs[:k] + xs[k + 1:]
    return None


def _product(nums: list[Node], dens: list[Node], like: Node) -> Node:
    r = nums[0] if nums else constant_like(like, 1)
    for x in nums[1:]:
        r = ops.mul(r, x)
    for x in dens:
        r = ops.div(r, x)
    return r


@rule("stability", Mul)
def quotients_times_denominators_to_products(n: Node) -> Node | None:
    """(a / d) * (d * r) is a * r, and (a / d + b / e + c) * (d * e) is a * e + b * d +
    c * (d * e): a denominator cancels against the same node among the other side's factors.
    This is the form the chain rule gives through log (`g * (1 / u)` times u's derivative,
    which holds u when u is sigmoid or exp), and the product is `inf * 0 = NaN` where u is 0
    or inf. A term with no such denominator is multiplied by the other side as it is; at
    least half of the terms must cancel, so the graph does not grow (each one that cancels
    loses a division). The value is the same up to rounding wherever the product was
    finite."""
    if not is_op(n, Mul) or len(n.inputs) != 2 or not types.is_float(n.dtype):
        return None
    for p, q in (n.inputs, n.inputs[::-1]):
        terms = _terms(p)
        if not terms:
            continue
        monomials = [_monomial(t) for _, t in terms]
        if not any(dens for _, _, dens in monomials):
            continue  # no quotient at all (nearly every product): nothing is built
        q_sign, q_nums, q_dens = _monomial(q)
        cancels = [next((d for d in t_dens if _without(q_nums, d) is not None), None)
                   for _, _, t_dens in monomials]
        if 2 * sum(d is not None for d in cancels) < len(terms):
            continue
        built = []
        for (sign, t), (t_sign, t_nums, t_dens), d in zip(terms, monomials, cancels):
            if d is None:
                built.append((sign, ops.mul(t, q)))
                continue
            dens = _without(t_dens, d) + q_dens
            built.append((sign * t_sign * q_sign,
                          _product(t_nums + _without(q_nums, d), dens, n)))
        total = None
        for sign, t in built:
            if total is None:
                total = t if sign > 0 else ops.neg(t)
            else:
                total = ops.add(total, t) if sign > 0 else ops.sub(total, t)
        return coerce(total, n)
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
