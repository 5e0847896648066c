"""Algebraic simplification: the ones, zeros, negations and shape moves that `grad` emits.

Every rule here gives the same value as the node it replaces, with two documented exceptions
of IEEE detail: `x + 0 -> x` and `0 - x -> -x` may flip the sign of a zero result, and
regrouping scalar products (`c1 * (c2 * x) -> (c1*c2) * x`) may change the last bit.
`x * 0 -> 0` fires only where `x` is finite by construction (an integer or boolean, a finite
constant, or the output of an op whose class declares it `bounded`, such as tanh, sigmoid,
sin, cos, sign or softmax, reached through ops declared `finite_preserving`), because NaN * 0
and Inf * 0 are NaN. Each rule names the op classes it matches: `@rule("algebra", Mul)`.
"""

from __future__ import annotations

import numpy as np

from graphc import ops
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ops.base import Elementwise
from graphc.ops.elementwise import (
    Add,
    AddN,
    Cast,
    Div,
    Mul,
    Neg,
    Pow,
    Square,
    StopGradient,
    Sub,
)
from graphc.ops.linalg import MatMul
from graphc.ops.reduce import Sum
from graphc.ops.shape import BroadcastTo, ExpandDims, Reshape, Squeeze, Transpose
from graphc.rewrite.engine import rule
from graphc.rewrite.patterns import (
    broadcasts_to,
    coerce,
    const_value,
    constant_like,
    is_fill,
    is_op,
    scalar_const,
)


def is_finite(n: Node, depth: int = 8) -> bool:
    """True when every entry of `n` is finite for every input: the guard of `x * 0 -> 0`."""
    stack = [(n, 0)]
    while stack:
        x, d = stack.pop()
        if not types.is_float(x.dtype):
            continue
        c = const_value(x)
        if c is not None:
            if not np.all(np.isfinite(c)):
                return False
            continue
        if x.op.bounded:
            continue
        if x.op.finite_preserving and d < depth:  # a boolean input (where's) passes above
            stack.extend((a, d + 1) for a in x.inputs)
            continue
        return False
    return True


def _binary(n: Node, op: type):
    return n.inputs if isinstance(n.op, op) and len(n.inputs) == 2 else None


@rule("algebra", Mul)
def mul_by_one_to_x(n: Node) -> Node | None:
    """x * 1 and 1 * x are x."""
    if (ab := _binary(n, Mul)) is None:
        return None
    a, b = ab
    if is_fill(b, 1):
        return coerce(a, n)
    if is_fill(a, 1):
        return coerce(b, n)
    return None


@rule("algebra", Div)
def div_by_one_to_x(n: Node) -> Node | None:
    """x / 1 is x."""
    if (ab := _binary(n, Div)) is None or not is_fill(ab[1], 1):
        return None
    return coerce(ab[0], n)


@rule("algebra", Add, Sub)
def add_zero_to_x(n: Node) -> Node | None:
    """x + 0, 0 + x and x - 0 are x (a zero result may lose its sign)."""
    ab = _binary(n, Add) or _binary(n, Sub)
    if ab is None:
        return None
    a, b = ab
    if is_fill(b, 0):
        return coerce(a, n)
    if isinstance(n.op, Add) and is_fill(a, 0):
        return coerce(b, n)
    return None


@rule("algebra", Sub)
def zero_minus_x_to_neg(n: Node) -> Node | None:
    """0 - x is -x."""
    if (ab := _binary(n, Sub)) is None or not is_fill(ab[0], 0):
        return None
    return coerce(ops.neg(ab[1]), n)


@rule("algebra", Mul)
def mul_by_zero_to_zeros(n: Node) -> Node | None:
    """x * 0 is 0 where x is finite by construction (NaN * 0 is NaN)."""
    if (ab := _binary(n, Mul)) is None:
        return None
    a, b = ab
    for zero, other in ((b, a), (a, b)):
        if is_fill(zero, 0) and is_finite(other):
            return coerce(zero, n)
    return None


@rule("algebra", Mul)
def mul_by_minus_one_to_neg(n: Node) -> Node | None:
    """x * -1 is -x."""
    if (ab := _binary(n, Mul)) is None:
        return None
    a, b = ab
    if is_fill(b, -1):
        return coerce(ops.neg(a), n)
    if is_fill(a, -1):
        return coerce(ops.neg(b), n)
    return None


@rule("algebra", Neg)
def neg_neg_to_x(n: Node) -> Node | None:
    """--x is x."""
    if is_op(n, Neg) and is_op(n.inputs[0], Neg):
        return n.inputs[0].inputs[0]
    return None


@rule("algebra", Add, Sub)
def add_neg_to_sub(n: Node) -> Node | None:
    """a + (-b) is a - b, (-a) + b is b - a, and a - (-b) is a + b."""
    if (ab := _binary(n, Add)) is not None:
        a, b = ab
        if is_op(b, Neg):
            return coerce(ops.sub(a, b.inputs[0]), n)
        if is_op(a, Neg):
            return coerce(ops.sub(b, a.inputs[0]), n)
    if (ab := _binary(n, Sub)) is not None and is_op(ab[1], Neg):
        return coerce(ops.add(ab[0], ab[1].inputs[0]), n)
    return None


@rule("algebra", Mul)
def mul_same_to_square(n: Node) -> Node | None:
    """x * x is square(x)."""
    if (ab := _binary(n, Mul)) is None or ab[0] is not ab[1]:
        return None
    return coerce(ops.square(ab[0]), n)


@rule("algebra", Pow)
def pow_const_to_simpler(n: Node) -> Node | None:
    """x ** 2 is square(x), x ** 1 is x, x ** 0 is 1 (NumPy: nan ** 0 is 1 too)."""
    if (ab := _binary(n, Pow)) is None or ab[1].ndim != 0:
        return None
    p = scalar_const(ab[1])
    if p == 2:
        return coerce(ops.square(ab[0]), n)
    if p == 1:
        return coerce(ab[0], n)
    if p == 0:
        return coerce(constant_like(n, 1), n)
    return None


@rule("algebra", Mul, Neg)
def scalar_products_to_product(n: Node) -> Node | None:
    """c1 * (c2 * x) is (c1*c2) * x, and -(c * x) is (-c) * x, for scalar constants."""
    if is_op(n, Neg):
        inner = n.inputs[0]
        if (ab := _binary(inner, Mul)) is None:
            return None
        for c, x in (ab, ab[::-1]):
            if c.ndim == 0 and scalar_const(c) is not None:
                return coerce(ops.mul(x, constant_like(c, -const_value(c))), n)
        return None
    if (ab := _binary(n, Mul)) is None:
        return None
    for c1, inner in (ab, ab[::-1]):
        if c1.ndim != 0 or scalar_const(c1) is None:
            continue
        if is_op(inner, Neg):
            return coerce(ops.mul(inner.inputs[0], constant_like(c1, -const_value(c1))), n)
        if (cd := _binary(inner, Mul)) is None:
            continue
        for c2, x in (cd, cd[::-1]):
            if c2.ndim == 0 and scalar_const(c2) is not None:
                prod = np.multiply(const_value(c1), const_value(c2), dtype=n.dtype)
                return coerce(ops.mul(x, constant_like(n, prod)), n)
    return None


@rule("algebra", AddN)
def add_n_zeros_to_add_n(n: Node) -> Node | None:
    """Zero terms of an add_n are dropped; an add_n of one term is that term."""
    if not is_op(n, AddN):
        return None
    terms = [x for x in n.inputs if not is_fill(x, 0)]
    if len(terms) == len(n.inputs) and len(terms) > 1:
        return None
    if not terms:
        return coerce(n.inputs[0], n)
    return coerce(ops.add_n(terms), n)


@rule("algebra", AddN)
def add_n_repeated_to_scaled(n: Node) -> Node | None:
    """add_n(a, a, b) is 2 * a + b: a term that merging made repeat is scaled once."""
    if not is_op(n, AddN) or len(set(n.inputs)) == len(n.inputs):
        return None
    counts: dict[Node, int] = {}
    for x in n.inputs:
        counts[x] = counts.get(x, 0) + 1
    terms = [x if k == 1 else x * constant_like(n, k) for x, k in counts.items()]
    return coerce(ops.add_n(terms), n)


@rule("algebra", Transpose)
def transpose_transpose_to_transpose(n: Node) -> Node | None:
    """transpose(transpose(x, a), b) is one transpose (or x itself)."""
    if not (is_op(n, Transpose) and is_op(n.inputs[0], Transpose)):
        return None
    inner = n.inputs[0]
    axes = tuple(inner.op.axes[a] for a in n.op.axes)
    return ops.transpose(inner.inputs[0], axes)


RESHAPES = (Reshape, ExpandDims, Squeeze)  # the C-order moves: a chain of them is one reshape


@rule("algebra", *RESHAPES)
def reshape_chain_to_reshape(n: Node) -> Node | None:
    """A chain of reshape, expand_dims and squeeze is one reshape (or x itself)."""
    if not is_op(n, *RESHAPES):
        return None
    x = n.inputs[0]
    if types.shape_eq(x.shape, n.shape):
        return x
    if not is_op(x, *RESHAPES):
        return None
    return ops.reshape(x.inputs[0], n.shape)


@rule("algebra", StopGradient)
def stop_gradient_to_x(n: Node) -> Node | None:
    """stop_gradient is the identity when the graph runs (its work was done by grad)."""
    return n.inputs[0] if is_op(n, StopGradient) else None


@rule("algebra", Cast)
def cast_to_same_dtype_to_x(n: Node) -> Node | None:
    """A cast to the dtype the value already has is the value."""
    return n.inputs[0] if is_op(n, Cast) and n.inputs[0].dtype == n.dtype else None


@rule("algebra")
def broadcast_into_elementwise_to_implicit(n: Node) -> Node | None:
    """f(broadcast_to(x, s), y) is f(x, y) when NumPy's own broadcasting gives the same shape."""
    if not n.op.elementwise or len(n.inputs) < 2:  # an op of the elementwise kind
        return None
    ins = list(n.inputs)
    changed = False
    for k, x in enumerate(ins):
        if not is_op(x, BroadcastTo):
            continue
        trial = ins[:k] + [x.inputs[0]] + ins[k + 1:]
        if broadcasts_to([t.shape for t in trial], n.shape):
            ins, changed = trial, True
    if not changed:
        return None
    return n.graph.apply(n.op, ins)


@rule("algebra", Sum)
def sum_of_broadcast_to_scaled_sum(n: Node) -> Node | None:
    """sum(broadcast_to(x, s)) over every broadcast axis is a smaller sum of x times a count."""
    if not is_op(n, Sum) or not is_op(n.inputs[0], BroadcastTo):
        return None
    b = n.inputs[0]
    x, s = b.inputs[0], b.shape
    axes = set(n.op.axis)
    lead = len(s) - x.ndim
    spread = {a for a in range(len(s))
              if a < lead or (isinstance(x.shape[a - lead], int) and x.shape[a - lead] == 1
                              and not types.dim_eq(s[a], 1))}
    if not spread <= axes or any(not isinstance(s[a], int) for a in spread):
        return None
    factor = int(np.prod([s[a] for a in spread], dtype=np.int64))
    real = tuple(a - lead for a in sorted(axes - spread))
    r = ops.sum(x, real, keepdims=True) if real else x
    r = r * constant_like(n, factor)
    return coerce(ops.reshape(r, n.shape), n)


@rule("algebra", *RESHAPES)
def reshape_of_kept_sum_to_sum(n: Node) -> Node | None:
    """reshape(sum(x, axis, keepdims=True)) to the shape without the kept axes is sum(x, axis):
    the form `grad` gives a bias's gradient (one NumPy call instead of two)."""
    if not is_op(n, *RESHAPES) or not is_op(n.inputs[0], Sum):
        return None
    s = n.inputs[0]
    if not s.op.keepdims or not s.op.axis:
        return None
    dropped = tuple(d for k, d in enumerate(s.shape) if k not in s.op.axis)
    if not types.shape_eq(dropped, n.shape):
        return None
    return coerce(ops.sum(s.inputs[0], s.op.axis), n)


@rule("algebra", *RESHAPES)
def squeeze_of_matmul_of_expand_dims_to_matmul(n: Node) -> Node | None:
    """squeeze(expand_dims(a, 0) @ B) is a @ B and squeeze(A @ expand_dims(b, -1)) is A @ b,
    for a vector a or b and a matrix: NumPy's own 1-D matmul, the form `grad` gives."""
    if not is_op(n, *RESHAPES) or not is_op(n.inputs[0], MatMul):
        return None
    a, b = n.inputs[0].inputs
    if (is_op(a, *RESHAPES) and a.inputs[0].ndim == 1 and a.ndim == 2 and b.ndim == 2
            and types.dim_eq(a.shape[0], 1)):
        r = ops.matmul(a.inputs[0], b)
    elif (is_op(b, *RESHAPES) and b.inputs[0].ndim == 1 and b.ndim == 2 and a.ndim == 2
            and types.dim_eq(b.shape[1], 1)):
        r = ops.matmul(a, b.inputs[0])
    else:
        return None
    return coerce(r, n) if types.shape_eq(r.shape, n.shape) else None


@rule("algebra")
def uniform_constant_to_scalar(n: Node) -> Node | None:
    """f(c, x) with a float constant c whose entries are all one value v is f(v, x) when the
    other operands alone give the result's shape (a folded broadcast seed such as `mean`'s
    1/n), so scalar rules such as `c1 * (c2 * x)` can fire."""
    if not isinstance(n.op, Elementwise) or len(n.inputs) < 2:
        return None
    ins = list(n.inputs)
    changed = False
    for k, x in enumerate(ins):
        c = const_value(x)
        if c is None or c.ndim == 0 or c.size == 0 or c.dtype.kind != "f":
            continue
        v = c.reshape(-1)[0]
        if not (np.all(c == v) and np.all(np.signbit(c) == np.signbit(v))):
            continue
        shapes = [t.shape for t in ins[:k]] + [()] + [t.shape for t in ins[k + 1:]]
        if broadcasts_to(shapes, n.shape):
            ins[k] = n.graph.constant(np.asarray(v, dtype=c.dtype))
            changed = True
    if not changed:
        return None
    return n.graph.apply(n.op, ins)


@rule("algebra", Mul)
def mul_by_cast_bool_to_mul(n: Node) -> Node | None:
    """x * cast(b) for a boolean b is x * b when the product keeps x's float dtype: the
    multiply converts True and False to 1 and 0 itself (relu's derivative mask)."""
    if (ab := _binary(n, Mul)) is None:
        return None
    for k in (0, 1):
        c, x = ab[k], ab[1 - k]
        if (is_op(c, Cast) and c.inputs[0].dtype == np.bool_ and types.is_float(x.dtype)
                and x.dtype == n.dtype):
            b = c.inputs[0]
            return coerce(ops.mul(x, b) if k else ops.mul(b, x), n)
    return None


@rule("algebra", Sum)
def sum_of_square_to_dot(n: Node) -> Node | None:
    """sum(square(x)) over every axis of a float64 x is x·x, one BLAS dot over x's entries:
    no temporary the size of x and no second pass (a weight-decay term, a squared norm). The
    dot adds in BLAS's order, not NumPy's pairwise order: float32 is left alone, where that
    difference would show."""
    if not is_op(n, Sum) or not is_op(n.inputs[0], Square) or n.op.keepdims:
        return None
    x = n.inputs[0].inputs[0]
    if (x.dtype != np.float64 or n.dtype != np.float64 or x.ndim == 0
            or set(n.op.axis) != set(range(x.ndim)) or not types.is_static(x.shape)):
        return None
    flat = ops.reshape(x, (types.concrete_size(x.shape),))
    return coerce(ops.matmul(flat, flat), n)
