"""The op library: every op declared once with forward, shape rule, bprop and jvp."""

# scatter registers scatter_add; factor and spectral register gc.linalg's ops
from graphc.ops import factor, operators, scatter, spectral  # noqa: F401
from graphc.ops.einsum import einsum, tensordot
from graphc.ops.elementwise import (
    abs,
    add,
    add_n,
    cast,
    cos,
    div,
    equal,
    exp,
    expm1,
    greater,
    greater_equal,
    less,
    less_equal,
    log,
    log1p,
    maximum,
    minimum,
    mul,
    neg,
    not_equal,
    ones_like,
    pow,
    relu,
    sigmoid,
    sign,
    sin,
    softplus,
    sqrt,
    square,
    stop_gradient,
    sub,
    tan,
    tanh,
    where,
    zeros_like,
)
from graphc.ops.linalg import diag, dot, matmul, outer, trace
from graphc.ops.nn import log_softmax, logsumexp, one_hot, softmax, softmax_cross_entropy
from graphc.ops.reduce import max, mean, min, sum, sum_to
from graphc.ops.shape import (
    broadcast_to,
    concatenate,
    expand_dims,
    getitem,
    reshape,
    split,
    squeeze,
    stack,
    swapaxes,
    transpose,
)

operators.install()

__all__ = [
    "abs", "add", "add_n", "cast", "cos", "div", "equal", "exp", "expm1", "greater",
    "greater_equal", "less", "less_equal", "log", "log1p", "maximum", "minimum", "mul",
    "neg", "not_equal",
    "ones_like", "pow", "relu", "sigmoid", "sign", "sin", "softplus", "sqrt", "square",
    "stop_gradient", "sub", "tan", "tanh", "where", "zeros_like", "diag", "dot", "matmul",
    "outer", "trace", "log_softmax", "logsumexp", "one_hot", "softmax", "softmax_cross_entropy",
    "max", "mean", "min", "sum", "sum_to", "broadcast_to", "concatenate", "expand_dims",
    "getitem", "reshape", "split", "squeeze", "stack", "swapaxes", "transpose", "einsum",
    "tensordot",
]
