"""Constants made in the graph from a shape: zeros, ones, full, eye, arange, linspace.

Unlike `g.constant(array)`, these hold no array: their sizes are parameters, and a size may be
symbolic (`g.zeros(("n", 3))`, `g.arange("n")`), bound when a compiled function is called by
the inputs that carry the same dimension (the op is resolved per call, like any op with a
symbolic parameter). Static ones of at most `graphc.rewrite.fold.MAX_FOLD` entries fold into
constants when compiled. No gradient flows through them: they read no input.

Build them in a graph with `g.zeros(shape)` (methods of `Graph`, which this module registers
in `Graph.creators`: the IR imports nothing above itself), or with `gc.zeros(shape, like=x)`,
in the graph of the node `x`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import sympy

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Graph, Node, user_source_line
from graphc.ir.op import Op, register
from graphc.ir.params import DTYPE, FLAG, INT, NUMBER, NUMBER_OR_SIZE, SHAPE, SIZE, param
from graphc.ops import symbolic

F64 = np.dtype(np.float64)


class _Creation(Op):
    """An op of no inputs whose value is made from its parameters."""

    arity: ClassVar[int] = 0
    differentiable: ClassVar[bool] = False
    shape_only: ClassVar[bool] = True  # reads no value: a static one folds to a constant
    finite_preserving: ClassVar[bool] = True  # finite: its parameters are finite numbers
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward

    def cost(self, node):
        return 0.0


@register
@dataclasses.dataclass(frozen=True)
class Zeros(_Creation):
    """Zeros of `shape`."""

    name: ClassVar[str] = "zeros"
    bounded: ClassVar[bool] = True
    shape: tuple = param(SHAPE, ())
    dtype: np.dtype = param(DTYPE, F64)

    def infer(self):
        return self.shape, self.dtype

    def forward(self):
        return np.zeros(self.shape, self.dtype)


@register
@dataclasses.dataclass(frozen=True)
class Ones(_Creation):
    """Ones of `shape`."""

    name: ClassVar[str] = "ones"
    bounded: ClassVar[bool] = True
    shape: tuple = param(SHAPE, ())
    dtype: np.dtype = param(DTYPE, F64)

    def infer(self):
        return self.shape, self.dtype

    def forward(self):
        return np.ones(self.shape, self.dtype)


@register
@dataclasses.dataclass(frozen=True)
class Full(_Creation):
    """`value` in every entry of `shape`."""

    name: ClassVar[str] = "full"
    bounded: ClassVar[bool] = True
    shape: tuple = param(SHAPE, ())
    value: float = param(NUMBER, 0.0)
    dtype: np.dtype = param(DTYPE, F64)

    def infer(self):
        return self.shape, self.dtype

    def forward(self):
        return np.full(self.shape, self.value, self.dtype)


@register
@dataclasses.dataclass(frozen=True)
class Eye(_Creation):
    """`n` x `m` with ones on diagonal `k` (above the main one for k > 0), zeros elsewhere."""

    name: ClassVar[str] = "eye"
    bounded: ClassVar[bool] = True
    n: int = param(SIZE, 1)
    m: int = param(SIZE, 1)
    k: int = param(INT, 0)
    dtype: np.dtype = param(DTYPE, F64)

    def infer(self):
        return (self.n, self.m), self.dtype

    def forward(self):
        return np.eye(self.n, self.m, self.k, self.dtype)


@register
@dataclasses.dataclass(frozen=True)
class Arange(_Creation):
    """start, start + step, ... up to `stop` (excluded), as np.arange; `stop` may be symbolic
    when `start` is an int and `step` is 1 (then there are stop - start entries)."""

    name: ClassVar[str] = "arange"
    start: float = param(NUMBER, 0)
    stop: float = param(NUMBER_OR_SIZE, 1)
    step: float = param(NUMBER, 1)
    dtype: np.dtype = param(DTYPE, np.dtype(np.int64))

    def infer(self):
        if self.step == 0:
            raise ShapeError("arange: step must not be 0")
        if isinstance(self.stop, sympy.Expr):
            if type(self.start) is not int or self.step != 1:
                raise ShapeError(f"arange: a symbolic stop ({self.stop}) needs an int start "
                                 f"and step 1, got start={self.start!r}, step={self.step!r}")
            return (types.as_dim(self.stop - self.start),), self.dtype
        if all(type(v) is int for v in (self.start, self.stop, self.step)):
            n = -((self.start - self.stop) // self.step)  # ceil, exactly
        else:  # NumPy's own: ceil((stop - start) / step) in double precision
            n = math.ceil((self.stop - self.start) / self.step)
        return (max(n, 0),), self.dtype

    def forward(self):
        return np.arange(self.start, self.stop, self.step, dtype=self.dtype)


@register
@dataclasses.dataclass(frozen=True)
class Linspace(_Creation):
    """`num` evenly spaced values from `start` to `stop` (included unless not `endpoint`)."""

    name: ClassVar[str] = "linspace"
    start: float = param(NUMBER, 0.0)
    stop: float = param(NUMBER, 1.0)
    num: int = param(SIZE, 50)
    endpoint: bool = param(FLAG, True)
    dtype: np.dtype = param(DTYPE, F64)

    def infer(self):
        return (self.num,), self.dtype

    def forward(self):
        return np.linspace(self.start, self.stop, self.num, self.endpoint, dtype=self.dtype)


# -- builders: in a graph (g.zeros), or in the graph of a node (gc.zeros(..., like=x)) ------
def _shape(name: str, shape) -> types.Shape:
    try:
        return types.as_shape(shape)
    except (ValueError, TypeError) as e:
        raise ShapeError(f"{name}: {e}") from None


def _size(name: str, what: str, d) -> types.Dim:
    try:
        return types.as_dim(d)
    except (ValueError, TypeError) as e:
        raise ShapeError(f"{name}: {what}: {e}") from None


def _dtype(name: str, dtype, default=F64) -> np.dtype:
    try:
        return default if dtype is None else types.as_dtype(dtype)
    except (ValueError, TypeError) as e:
        raise ShapeError(f"{name}: {e}") from None


def _number(name: str, what: str, v):
    """A Python number for a parameter: NumPy scalars become Python's, text and nodes fail."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and math.isfinite(v):
        return float(v)
    raise ShapeError(f"{name}: {what} must be a finite number, got {v!r}"
                     + (" (a node: use gc.broadcast_to)" if isinstance(v, Node) else ""))


def _make(graph: Graph, op: Op) -> Node:
    if not isinstance(graph, Graph):
        raise GraphError(f"{op.name}: expected a gc.Graph, got {type(graph).__name__}")
    return graph.apply(op, [])


def zeros_in(graph: Graph, shape, dtype="float64") -> Node:
    return _make(graph, Zeros(_shape("zeros", shape), _dtype("zeros", dtype)))


def ones_in(graph: Graph, shape, dtype="float64") -> Node:
    return _make(graph, Ones(_shape("ones", shape), _dtype("ones", dtype)))


def full_in(graph: Graph, shape, fill_value, dtype=None) -> Node:
    value = _number("full", "fill_value", fill_value)
    return _make(graph, Full(_shape("full", shape), value,
                             _dtype("full", dtype, np.asarray(value).dtype)))


def eye_in(graph: Graph, N, M=None, k=0, dtype="float64") -> Node:
    n = _size("eye", "N", N)
    m = n if M is None else _size("eye", "M", M)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise ShapeError(f"eye: k must be an int, got {k!r}")
    return _make(graph, Eye(n, m, int(k), _dtype("eye", dtype)))


def arange_in(graph: Graph, start, stop=None, step=1, dtype=None) -> Node:
    if stop is None:
        start, stop = 0, start
    if isinstance(stop, (str, sympy.Expr)):
        stop = _size("arange", "stop", stop)
        if isinstance(stop, int):
            stop = _number("arange", "stop", stop)
    else:
        stop = _number("arange", "stop", stop)
    start, step = _number("arange", "start", start), _number("arange", "step", step)
    ints = all(type(v) is int or isinstance(v, sympy.Expr) for v in (start, stop, step))
    default = np.arange(1).dtype if ints else F64  # NumPy's: int64 for ints, else float64
    return _make(graph, Arange(start, stop, step, _dtype("arange", dtype, default)))


def linspace_in(graph: Graph, start, stop, num=50, endpoint=True, dtype=None) -> Node:
    return _make(graph, Linspace(float(_number("linspace", "start", start)),
                                 float(_number("linspace", "stop", stop)),
                                 _size("linspace", "num", num), bool(endpoint),
                                 _dtype("linspace", dtype)))


def _in_graph_of(like, name: str) -> Graph:
    """The graph of `like`, the node that says where to build (no default graph)."""
    if like is None:
        raise GraphError(f"{name}: graphc has no default graph; build it in a graph with "
                         f"g.{name}(...), or pass like=<a node> to build it in that node's "
                         f"graph (at {user_source_line()})")
    if not isinstance(like, Node):
        raise GraphError(f"{name}: like must be a graph node (its graph gets the {name}), got "
                         f"{type(like).__name__} (at {user_source_line()})")
    return like.graph


def zeros(shape, dtype="float64", like=None) -> Node:
    """Zeros of `shape` (a str entry is a symbolic size) in the graph of the node `like`.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=("n", 2))
        >>> (x + gc.zeros(("n", 2), like=x)).eval({x: np.ones((3, 2))}).shape
        (3, 2)
    """
    return zeros_in(_in_graph_of(like, "zeros"), shape, dtype)


def ones(shape, dtype="float64", like=None) -> Node:
    """Ones of `shape` (a str entry is a symbolic size) in the graph of the node `like`."""
    return ones_in(_in_graph_of(like, "ones"), shape, dtype)


def full(shape, fill_value, dtype=None, like=None) -> Node:
    """`fill_value` in every entry of `shape`, in the graph of the node `like`; the dtype is
    NumPy's for the value unless given."""
    return full_in(_in_graph_of(like, "full"), shape, fill_value, dtype)


def eye(N, M=None, k=0, dtype="float64", like=None) -> Node:
    """The N x M identity (ones on diagonal k), in the graph of the node `like`."""
    return eye_in(_in_graph_of(like, "eye"), N, M, k, dtype)


def arange(start, stop=None, step=1, dtype=None, like=None) -> Node:
    """start, start + step, ... below stop, as np.arange, in the graph of the node `like`;
    `gc.arange("n", like=x)` counts 0 .. n - 1 for the size n that x's input binds.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=("n",))
        >>> (x * gc.arange("n", like=x)).eval({x: np.ones(4)})
        array([0., 1., 2., 3.])
    """
    return arange_in(_in_graph_of(like, "arange"), start, stop, step, dtype)


def linspace(start, stop, num=50, endpoint=True, dtype=None, like=None) -> Node:
    """`num` evenly spaced values from start to stop, in the graph of the node `like`."""
    return linspace_in(_in_graph_of(like, "linspace"), start, stop, num, endpoint, dtype)


Graph.creators.update(zeros=zeros_in, ones=ones_in, full=full_in, eye=eye_in,
                      arange=arange_in, linspace=linspace_in)
