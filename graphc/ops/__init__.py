"""The op library: every op declared once with forward, shape rule, bprop and jvp."""

# scatter registers scatter_add; factor and spectral register gc.linalg's ops
from graphc.ops import factor, numpy_dispatch, operators, scatter, spectral  # noqa: F401
from graphc.ops.arrange import flip, meshgrid, moveaxis, pad, repeat, roll, tile, tril, triu
from graphc.ops.conv import avg_pool, conv, max_pool
from graphc.ops.creation import arange, eye, full, linspace, ones, zeros
from graphc.ops.einsum import einsum, tensordot
from graphc.ops.elementwise import (
    abs,
    add,
    add_n,
    arccos,
    arccosh,
    arcsin,
    arcsinh,
    arctan,
    arctan2,
    arctanh,
    cast,
    ceil,
    clip,
    cos,
    cosh,
    div,
    equal,
    erf,
    erfc,
    exp,
    exp2,
    expm1,
    floor,
    greater,
    greater_equal,
    hypot,
    less,
    less_equal,
    log,
    log1p,
    log2,
    log10,
    logaddexp,
    maximum,
    minimum,
    mod,
    mul,
    neg,
    not_equal,
    ones_like,
    pow,
    reciprocal,
    relu,
    round,
    sigmoid,
    sign,
    sin,
    sinh,
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
from graphc.ops.indexing import getitem, segment_sum, take, take_along_axis  # x[...]
from graphc.ops.linalg import diag, dot, matmul, outer, trace
from graphc.ops.nn import log_softmax, logsumexp, one_hot, softmax, softmax_cross_entropy
from graphc.ops.reduce import (
    all,
    any,
    argmax,
    argmin,
    max,
    mean,
    min,
    prod,
    std,
    sum,
    sum_to,
    var,
)
from graphc.ops.scan import argsort, cumprod, cumsum, sort
from graphc.ops.shape import (
    broadcast_to,
    concatenate,
    expand_dims,
    reshape,
    split,
    squeeze,
    stack,
    swapaxes,
    transpose,
)

operators.install()
numpy_dispatch.install()

__all__ = [
    "abs", "add", "add_n", "cast", "cos", "div", "equal", "exp", "expm1", "greater",
    "greater_equal", "less", "less_equal", "log", "log1p", "maximum", "minimum", "mul",
    "neg", "not_equal",
    "ones_like", "pow", "relu", "sigmoid", "sign", "sin", "softplus", "sqrt", "square",
    "stop_gradient", "sub", "tan", "tanh", "where", "zeros_like", "diag", "dot", "matmul",
    "outer", "trace", "log_softmax", "logsumexp", "one_hot", "softmax", "softmax_cross_entropy",
    "max", "mean", "min", "sum", "sum_to", "broadcast_to", "concatenate", "expand_dims",
    "getitem", "reshape", "split", "squeeze", "stack", "swapaxes", "transpose",
    "avg_pool", "conv", "max_pool",
    "segment_sum", "take", "take_along_axis",
    # more elementwise, reductions, scans, shape ops and constants (issue 15)
    "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "ceil", "clip",
    "cosh", "erf", "erfc", "exp2", "floor", "hypot", "log2", "log10", "logaddexp", "mod",
    "reciprocal", "round", "sinh", "all", "any", "argmax", "argmin", "prod", "std", "var",
    "argsort", "cumprod", "cumsum", "sort", "flip", "meshgrid", "moveaxis", "pad", "repeat",
    "roll", "tile", "tril", "triu", "arange", "eye", "full", "linspace", "ones", "zeros",
    "getitem", "reshape", "split", "squeeze", "stack", "swapaxes", "transpose", "einsum",
    "tensordot",
]
