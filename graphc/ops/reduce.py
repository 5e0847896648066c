"""Reductions over axes (sum, prod, max, min; argmax, argmin, any, all, which let no gradient
through), mean, var and std derived from them, and `sum_to`, the one place where
broadcasting is undone. prod's gradient, the product of the other entries, is built from
cumulative products (scan.py), so zeros need no division."""

from __future__ import annotations

import builtins  # sum max min any all are the API's names here; builtins.all is the builtin
import dataclasses
import math
from typing import ClassVar

import numpy as np
import sympy

from graphc.errors import ShapeError
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Op, register
from graphc.ir.params import AXES, AXIS, DTYPE, FLAG, param
from graphc.ops import symbolic
from graphc.ops.base import as_float_dtype, atomic, build, graph_of, lift
from graphc.ops.elementwise import cast, equal, not_equal, sqrt, where
from graphc.ops.shape import broadcast_to, expand_dims, reshape

# A sum over a leading or trailing axis of at most this many float entries is generated as a
# dot product with a vector of ones (Sum.emit_numpy).
SMALL_SUM = 1024


class _Reduce(Op):
    axis: tuple
    keepdims: bool

    def infer(self, x):
        if self.keepdims:
            shape = tuple(1 if k in self.axis else d for k, d in enumerate(x.shape))
        else:
            shape = tuple(d for k, d in enumerate(x.shape) if k not in self.axis)
        for k in self.axis:
            if k >= x.ndim:
                raise ShapeError(f"{self.name}: axis {k} is out of range for "
                                 f"{types.fmt_shape(x.shape)}")
        return shape, self.result_dtype(x.dtype)

    def result_dtype(self, dtype):
        return dtype

    def keep(self, v: Node) -> Node:
        """A reduced node with the reduced axes put back as length 1."""
        return v if self.keepdims or not self.axis else expand_dims(v, self.axis)

    def batch(self, node, ins, m):
        op = dataclasses.replace(self, axis=tuple(a + 1 for a in self.axis))
        return node.graph.apply(op, [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class Sum(_Reduce):
    """Sum over axes; the cotangent is broadcast back over them."""

    name: ClassVar[str] = "sum"
    linear: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward
    axis: tuple = param(AXES, ())
    keepdims: bool = param(FLAG, False)

    def result_dtype(self, dtype):
        return np.sum(np.ones(1, dtype)).dtype

    def forward(self, x):
        return np.sum(x, axis=self.axis, keepdims=self.keepdims)

    def emit_numpy(self, node, args, ctx):
        """`np.add.reduce`; over the one axis of a vector, or the first or last axis of a
        small float matrix, a dot product with ones (same dtype): ~0.3 us a call against
        ~0.85 us for np.add.reduce's set-up."""
        axis = ctx.literal(tuple(self.axis))
        if not self.axis or axis is None or not isinstance(self.keepdims, bool):
            return None
        x = node.inputs[0]
        if (not self.keepdims and x.dtype in (np.float32, np.float64) and node.dtype == x.dtype
                and x.ndim in (1, 2) and len(self.axis) == 1
                and builtins.all(isinstance(d, int) for d in x.shape)
                and math.prod(x.shape) <= SMALL_SUM):
            a = int(self.axis[0]) % x.ndim
            size = int(x.shape[a])
            vec = np.ones(size, x.dtype)
            vec.flags.writeable = False
            ones = ctx.bind(f"_ones_{size}_{ctx.identifier(x.dtype.str)}", vec,
                            key=("ones", size, x.dtype))
            return f"{args[0]}.dot({ones})" if a == x.ndim - 1 else f"{ones}.dot({args[0]})"
        if not self.keepdims:  # positional arguments: ~0.1 us less per call
            return f"np.add.reduce({args[0]}, {axis})"
        return f"np.add.reduce({args[0]}, axis={axis}, keepdims=True)"

    def bprop(self, inputs, out, g, i):
        return broadcast_to(self.keep(g), inputs[0].shape)

    def jvp(self, inputs, out, t, i):
        return build(self, t)


class _Extremum(_Reduce):
    """max/min: the gradient is shared equally among the entries that attain the extremum."""

    def _share(self, x, out):
        mask = cast(equal(x, self.keep(out)), x.dtype)
        return mask / _sum(mask, self.axis, keepdims=True)

    def bprop(self, inputs, out, g, i):
        x = inputs[0]
        return None if not types.is_float(x.dtype) else self._share(x, out) * self.keep(g)

    def jvp(self, inputs, out, t, i):
        x = inputs[0]
        if not types.is_float(x.dtype):
            return None
        return _sum(self._share(x, out) * t, self.axis, self.keepdims)


@register
@dataclasses.dataclass(frozen=True)
class Max(_Extremum):
    """Largest entry over axes; ties share the gradient equally."""

    name: ClassVar[str] = "max"
    fresh: ClassVar[bool] = True
    axis: tuple = param(AXES, ())
    keepdims: bool = param(FLAG, False)

    def forward(self, x):
        return np.max(x, axis=self.axis, keepdims=self.keepdims)

    def sympy(self, node, x):
        return symbolic.over_axes(x, self.axis, self.keepdims, lambda r: sympy.Max(*r))


@register
@dataclasses.dataclass(frozen=True)
class Min(_Extremum):
    """Smallest entry over axes; ties share the gradient equally."""

    name: ClassVar[str] = "min"
    fresh: ClassVar[bool] = True
    axis: tuple = param(AXES, ())
    keepdims: bool = param(FLAG, False)

    def forward(self, x):
        return np.min(x, axis=self.axis, keepdims=self.keepdims)

    def sympy(self, node, x):
        return symbolic.over_axes(x, self.axis, self.keepdims, lambda r: sympy.Min(*r))


@register
@dataclasses.dataclass(frozen=True)
class Count(Op):
    """How many entries `axis` of the input spans, as a float scalar.

    It lets `mean` divide by a size known only at run time (a symbolic dimension).
    """

    name: ClassVar[str] = "count"
    differentiable: ClassVar[bool] = False
    shape_only: ClassVar[bool] = True
    axis: tuple = param(AXES, ())
    dtype: np.dtype = param(DTYPE, np.dtype(np.float64))

    def infer(self, x):
        for k in self.axis:
            if k >= x.ndim:
                raise ShapeError(f"count: axis {k} is out of range for "
                                 f"{types.fmt_shape(x.shape)}")
        return (), self.dtype

    def forward(self, x):
        return np.asarray(np.prod([x.shape[a] for a in self.axis]), dtype=self.dtype)

    def sympy(self, node, x):
        return symbolic.object_array(sympy.Integer(math.prod(x.shape[a] for a in self.axis)))

    def batch(self, node, ins, m):  # the same count for every row
        count = node.graph.apply(Count(tuple(a + 1 for a in self.axis), self.dtype), [ins[0][0]])
        return broadcast_to(count, (m,))


def _axes(name, x, axis):
    try:
        return types.normalize_axes(axis, x.ndim)
    except ValueError as e:
        raise ShapeError(f"{name} over {types.fmt_shape(x.shape)}: {e}") from None


def _reduce(cls, name, x, axis, keepdims):
    x = lift(x, graph_of(x))
    return build(cls(_axes(name, x, axis), bool(keepdims)), x)


def _sum(x, axis=None, keepdims=False):
    return _reduce(Sum, "sum", x, axis, keepdims)


@atomic
def sum(x, axis=None, keepdims=False):  # noqa: A001 - the API's name, as in NumPy
    """Sum over `axis` (None: all axes)."""
    return _sum(x, axis, keepdims)


@atomic
def max(x, axis=None, keepdims=False):  # noqa: A001
    """Largest entry over `axis`."""
    return _reduce(Max, "max", x, axis, keepdims)


@atomic
def min(x, axis=None, keepdims=False):  # noqa: A001
    """Smallest entry over `axis`."""
    return _reduce(Min, "min", x, axis, keepdims)


@atomic
def mean(x, axis=None, keepdims=False):
    """Average over `axis`: a sum divided by the count (derived, not an op of its own)."""
    axes = _axes("mean", x, axis)
    total = _sum(x, axes, keepdims)
    n = types.size(tuple(x.shape[a] for a in axes))
    dtype = as_float_dtype(total.dtype)
    if isinstance(n, int):
        return total * x.graph.constant(np.asarray(1.0 / n, dtype=dtype)) if n else total / 0.0
    return total / build(Count(axes, dtype), x)


def sum_to(v: Node, shape: types.Shape) -> Node:
    """Undo broadcasting: sum `v` down to `shape`, which it was broadcast from.

    Leading axes that broadcasting added are summed away; axes where `shape` has 1 and `v`
    does not are summed with keepdims. This is the single place grad un-broadcasts.
    """
    if types.shape_eq(v.shape, shape):
        return v
    lead = v.ndim - len(shape)
    if lead < 0:
        raise ShapeError(f"cannot sum {types.fmt_shape(v.shape)} down to "
                         f"{types.fmt_shape(shape)}")
    axes = tuple(range(lead)) + tuple(
        lead + k for k, d in enumerate(shape)
        if isinstance(d, int) and d == 1 and not types.dim_eq(v.shape[lead + k], 1))
    out = _sum(v, axes, keepdims=True) if axes else v
    if lead:
        out = reshape(out, shape)
    if not types.shape_eq(out.shape, shape):
        raise ShapeError(f"cannot sum {types.fmt_shape(v.shape)} down to "
                         f"{types.fmt_shape(shape)}")
    return out


# -- products: the gradient is built from cumulative products (scan.py) -----------------
@register
@dataclasses.dataclass(frozen=True)
class Prod(_Reduce):
    """Product over axes; d/dx_j is the product of the other entries, formed from exclusive
    cumulative products from both sides (no division: exact with zeros, every order)."""

    name: ClassVar[str] = "prod"
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward
    axis: tuple = param(AXES, ())
    keepdims: bool = param(FLAG, False)

    def result_dtype(self, dtype):
        return np.prod(np.ones(1, dtype)).dtype

    def forward(self, x):
        return np.asarray(np.prod(x, axis=self.axis, keepdims=self.keepdims))

    def bprop(self, inputs, out, g, i):
        from graphc.ops.scan import product_of_others

        x = inputs[0]
        if not types.is_float(x.dtype):
            return None
        return self.keep(g) * product_of_others(x, self.axis)

    def jvp(self, inputs, out, t, i):
        from graphc.ops.scan import product_of_others

        x = inputs[0]
        if not types.is_float(x.dtype):
            return None
        return _sum(t * product_of_others(x, self.axis), self.axis, self.keepdims)


@atomic
def prod(x, axis=None, keepdims=False):
    """Product over `axis` (None: all axes); its gradient is the product of the other
    entries, exact where entries are 0.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> gc.grad(gc.prod(x), x).eval({x: np.array([2.0, 0.0, 3.0])})
        array([0., 6., 0.])
    """
    return _reduce(Prod, "prod", x, axis, keepdims)



# -- statistics, derived: var and std ------------------------------------------------------
@atomic
def var(x, axis=None, ddof=0, keepdims=False):
    """Variance over `axis`: the mean squared deviation, divided by n - ddof instead of n
    (derived from mean, square and sum, so every order differentiates).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(4,))
        >>> float(gc.var(x, ddof=1).eval({x: np.array([1.0, 2.0, 3.0, 6.0])}))
        4.666666666666667
    """
    x = lift(x, graph_of(x, caller="var"))
    if type(ddof) is not int or ddof < 0:
        raise ShapeError(f"var: ddof must be an int >= 0, got {ddof!r}")
    axes = _axes("var", x, axis)
    if not types.is_float(x.dtype):
        x = cast(x, np.float64)
    deviation = x - mean(x, axes, keepdims=True)
    total = _sum(deviation * deviation, axes, keepdims)
    n = types.size(tuple(x.shape[a] for a in axes))
    if isinstance(n, int):  # as NumPy: divided by max(n - ddof, 0) (inf, or nan for 0/0)
        return total / x.graph.constant(np.asarray(builtins.max(n - ddof, 0), dtype=x.dtype))
    count = build(Count(axes, x.dtype), x)
    return total / (count - float(ddof) if ddof else count)


@atomic
def std(x, axis=None, ddof=0, keepdims=False):
    """Standard deviation, sqrt(var(x, axis, ddof)). Where the variance is 0 the gradient is
    0 (like abs'(0) = 0; the bare sqrt would give 0 * inf = NaN): docs/ops.md.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> float(gc.std(x).eval({x: np.array([1.0, 2.0, 3.0])}))
        0.816496580927726
        >>> gc.grad(gc.std(x), x).eval({x: np.full(3, 2.0)})
        array([0., 0., 0.])
    """
    v = var(x, axis, ddof, keepdims)
    spread = not_equal(v, 0.0)  # NaN stays NaN; only an exact 0 takes the guarded branch
    return where(spread, sqrt(where(spread, v, 1.0)), 0.0)


# -- index and truth reductions: no gradient -----------------------------------------------
class _ArgExtremum(Op):
    """The index of the first extreme entry along one axis: integer, no gradient."""

    differentiable: ClassVar[bool] = False
    fresh: ClassVar[bool] = True
    axis: int
    keepdims: bool

    def infer(self, x):
        if not 0 <= self.axis < x.ndim:
            raise ShapeError(f"{self.name}: axis {self.axis} is out of range for "
                             f"{types.fmt_shape(x.shape)}")
        if self.keepdims:
            shape = tuple(1 if k == self.axis else d for k, d in enumerate(x.shape))
        else:
            shape = tuple(d for k, d in enumerate(x.shape) if k != self.axis)
        return shape, np.dtype(np.intp)

    def forward(self, x):
        return np.asarray(type(self).fn(x, axis=self.axis, keepdims=self.keepdims))

    def sympy(self, node, x):
        """Piecewise((0, x0 is an extremum), (1, x1 is one), ..., (n - 1, True)): the first
        condition that holds picks the first extreme entry, as NumPy does."""
        beats = type(self).beats

        def first(row):
            n = len(row)
            pieces = [(k, sympy.And(*[beats(row[k], row[j]) for j in range(n) if j != k]))
                      for k in range(n - 1)]
            return sympy.Piecewise(*pieces, (n - 1, True))

        return symbolic.over_axes(x, (self.axis,), self.keepdims, first)

    def batch(self, node, ins, m):
        return node.graph.apply(dataclasses.replace(self, axis=self.axis + 1), [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class ArgMax(_ArgExtremum):
    """Index of the largest entry along `axis` (the first at a tie)."""

    name: ClassVar[str] = "argmax"
    fn = staticmethod(np.argmax)
    beats = staticmethod(lambda a, b: a >= b)
    axis: int = param(AXIS, 0)
    keepdims: bool = param(FLAG, False)


@register
@dataclasses.dataclass(frozen=True)
class ArgMin(_ArgExtremum):
    """Index of the smallest entry along `axis` (the first at a tie)."""

    name: ClassVar[str] = "argmin"
    fn = staticmethod(np.argmin)
    beats = staticmethod(lambda a, b: a <= b)
    axis: int = param(AXIS, 0)
    keepdims: bool = param(FLAG, False)


class _Truth(_Reduce):
    """any/all over axes: a boolean, no gradient."""

    differentiable: ClassVar[bool] = False
    fresh: ClassVar[bool] = True

    def result_dtype(self, dtype):
        return np.dtype(np.bool_)

    def forward(self, x):
        return np.asarray(type(self).fn(x, axis=self.axis, keepdims=self.keepdims))

    def sympy(self, node, x):
        boolean = node.inputs[0].dtype.kind == "b"
        join = type(self).join
        return symbolic.over_axes(x, self.axis, self.keepdims, lambda r: join(
            *[v if boolean else sympy.Ne(v, 0) for v in r]))


@register
@dataclasses.dataclass(frozen=True)
class Any(_Truth):
    """Whether any entry over the axes is nonzero (True)."""

    name: ClassVar[str] = "any"
    fn = staticmethod(np.any)
    join = staticmethod(sympy.Or)
    axis: tuple = param(AXES, ())
    keepdims: bool = param(FLAG, False)


@register
@dataclasses.dataclass(frozen=True)
class All(_Truth):
    """Whether every entry over the axes is nonzero (True)."""

    name: ClassVar[str] = "all"
    fn = staticmethod(np.all)
    join = staticmethod(sympy.And)
    axis: tuple = param(AXES, ())
    keepdims: bool = param(FLAG, False)


def _arg_extremum(cls, name, x, axis, keepdims):
    x = lift(x, graph_of(x, caller=name))
    if x.dtype.kind == "b":
        x = cast(x, np.int8)
    if axis is None:  # NumPy: the index into the flattened array
        flat = build(cls(0, False), reshape(x, (-1,)))
        return reshape(flat, (1,) * x.ndim) if keepdims else flat
    if x.ndim == 0:
        raise ShapeError(f"{name}: a scalar has no axis {axis}; use axis=None")
    (ax,) = _axes(name, x, int(axis))
    return build(cls(ax, bool(keepdims)), x)


@atomic
def argmax(x, axis=None, keepdims=False):
    """Index of the largest entry (over the flattened array when `axis` is None); no gradient.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2, 3))
        >>> gc.argmax(x, axis=1).eval({x: np.array([[1.0, 5.0, 5.0], [7.0, 0.0, 2.0]])})
        array([1, 0])
    """
    return _arg_extremum(ArgMax, "argmax", x, axis, keepdims)


@atomic
def argmin(x, axis=None, keepdims=False):
    """Index of the smallest entry (over the flattened array when `axis` is None); no gradient."""
    return _arg_extremum(ArgMin, "argmin", x, axis, keepdims)


@atomic
def any(x, axis=None, keepdims=False):  # noqa: A001 - the API's name, as in NumPy
    """Whether any entry over `axis` is nonzero; boolean, no gradient.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2, 2))
        >>> gc.any(x > 1.0, axis=0).eval({x: np.array([[0.0, 2.0], [0.5, 0.0]])})
        array([False,  True])
    """
    return _reduce(Any, "any", x, axis, keepdims)


@atomic
def all(x, axis=None, keepdims=False):  # noqa: A001 - the API's name, as in NumPy
    """Whether every entry over `axis` is nonzero; boolean, no gradient."""
    return _reduce(All, "all", x, axis, keepdims)
