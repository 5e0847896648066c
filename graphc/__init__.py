"""graphc: a symbol-to-symbol graph compiler with back-propagation in the graph itself.

The public surface of ../shared/API.md: build a graph, differentiate it (new nodes in the same
graph), compile and run it on NumPy values.
"""

from graphc.autodiff import check_grad, grad, hessian, hvp, jacobian, jvp, remat, vjp
from graphc.compile import Function, eval, function
from graphc.errors import (
    DisconnectedError,
    GradCheckError,
    GraphcError,
    GraphError,
    InputError,
    LoadError,
    NonFiniteError,
    ShapeError,
)
from graphc.export import GraphvizError, debugprint, load, render, save, to_dot
from graphc.export.sympy_bridge import from_sympy, to_sympy
from graphc.ir import Graph, Node, Op, register
from graphc.krylov import Objective, hessian_operator, objective
from graphc.ops import (
    abs,
    add,
    add_n,
    broadcast_to,
    cast,
    concatenate,
    cos,
    diag,
    div,
    dot,
    einsum,
    equal,
    exp,
    expand_dims,
    expm1,
    getitem,
    greater,
    greater_equal,
    less,
    less_equal,
    linalg,  # gc.linalg.inv, gc.linalg.slogdet: NumPy's names
    log,
    log1p,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mul,
    neg,
    not_equal,
    one_hot,
    ones_like,
    outer,
    pow,
    relu,
    reshape,
    sigmoid,
    sign,
    sin,
    softmax,
    softmax_cross_entropy,
    softplus,
    split,
    sqrt,
    square,
    squeeze,
    stack,
    stop_gradient,
    sub,
    sum,
    swapaxes,
    tan,
    tanh,
    tensordot,
    trace,
    transpose,
    where,
    zeros_like,
)
from graphc.ops.custom import apply, elementwise

__version__ = "0.1.0"

__all__ = [
    "Graph", "Node", "Op", "register", "grad", "vjp", "check_grad", "function", "Function", "eval",
    "GraphcError", "GraphError", "ShapeError", "InputError", "DisconnectedError", "LoadError",
    "NonFiniteError", "GradCheckError", "to_dot",
    "render", "GraphvizError", "debugprint", "save", "load",
    "abs", "add", "add_n", "broadcast_to", "cast", "concatenate", "cos", "diag", "div", "dot",
    "equal", "exp", "expand_dims", "expm1", "getitem", "greater", "greater_equal", "less",
    "less_equal", "log", "log1p", "log_softmax", "logsumexp", "matmul", "max", "maximum",
    "mean", "min", "minimum", "mul", "neg", "not_equal", "one_hot", "ones_like", "outer", "pow",
    "relu", "reshape", "sigmoid", "sign", "sin", "softmax", "softmax_cross_entropy",
    "softplus", "split", "sqrt", "square", "squeeze", "stack", "stop_gradient", "sub", "sum",
    "swapaxes", "remat", "tan", "tanh", "trace", "transpose", "where", "zeros_like", "linalg",
    "jvp", "hvp", "jacobian", "hessian", "hessian_operator", "objective", "Objective",
    "elementwise", "apply", "to_sympy", "from_sympy",
    "einsum", "tensordot",
]
