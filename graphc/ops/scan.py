"""Scans along an axis: cumsum, cumprod, sort and argsort, and prod's gradient.

No gradient here divides by x, so zeros in the input are ordinary values, at every order:

- cumsum is linear; its adjoint is the cumsum taken from the other end (`reverse`).
- prod's gradient is the product of the other entries, `prod_{k != j} x_k`, formed as the
  exclusive cumulative products from both sides (`left_j = x_0 ... x_{j-1}`,
  `right_j = x_{j+1} ... x_{n-1}`), multiplied.
- cumprod's gradient is `left_j * s_j` with `s_j = g_j + x_{j+1} s_{j+1}`, a first-order
  linear recurrence. `recurrence(a, b)` (`h_i = a_i h_{i-1} + b_i`) is an op of its own whose
  derivatives are recurrences again, so every order costs O(n) along the axis and stays exact
  where entries are 0.
- sort's gradient moves the cotangent back through the sorting permutation
  (`permute_along(g, argsort(x), inverse=True)`: NumPy's put_along_axis), and its tangent
  through the permutation itself (take_along_axis). Ties: the stable argsort decides which
  entry a sorted position reads, so the gradient at a tie goes to the earlier entry first.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import sympy

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Op, register
from graphc.ir.params import AXIS, FLAG, param
from graphc.ops import symbolic
from graphc.ops.arrange import pad
from graphc.ops.base import all_batched, atomic, build, graph_of, lift
from graphc.ops.elementwise import ones_like, zeros_like
from graphc.ops.shape import getitem, reshape, transpose

MAX_SYMPY_SORT = 64  # the longest axis to_sympy writes a sort over (a network of n**2 / 2 min/max)


class _AlongAxis(Op):
    """An op over one axis (normalised to be >= 0) that keeps the input's shape."""

    axis: int

    def check_axis(self, x):
        if x.ndim == 0:
            raise ShapeError(f"{self.name} needs at least one axis, got a scalar")
        if not 0 <= self.axis < x.ndim:
            raise ShapeError(f"{self.name}: axis {self.axis} is out of range for "
                             f"{types.fmt_shape(x.shape)}")

    def batch(self, node, ins, m):
        op = dataclasses.replace(self, axis=self.axis + 1)
        return node.graph.apply(op, all_batched(ins, m))


def shift(x: Node, axis: int, later: bool, fill: float) -> Node:
    """`x` moved one step along `axis`, `fill` in the freed place: `later` gives
    out[i] = x[i - 1] (out[0] = fill), else out[i] = x[i + 1] (out[-1] = fill)."""
    lead = (slice(None),) * axis
    if later:
        part = getitem(x, lead + (slice(None, -1),))
        widths = tuple((1, 0) if k == axis else (0, 0) for k in range(x.ndim))
    else:
        part = getitem(x, lead + (slice(1, None),))
        widths = tuple((0, 1) if k == axis else (0, 0) for k in range(x.ndim))
    return pad(part, widths, fill)


def _flipped(fn, x, axis, reverse):
    """`fn(x, axis)` computed from the end of the axis when `reverse`."""
    if not reverse:
        return fn(x, axis=axis)
    return np.flip(fn(np.flip(x, axis), axis=axis), axis)


@register
@dataclasses.dataclass(frozen=True)
class Cumsum(_AlongAxis):
    """Running sums along `axis` (from the end when `reverse`); linear, and its adjoint is
    the running sum from the other end."""

    name: ClassVar[str] = "cumsum"
    linear: ClassVar[bool] = True
    sympy = symbolic.run_forward
    axis: int = param(AXIS, 0)
    reverse: bool = param(FLAG, False)

    def infer(self, x):
        self.check_axis(x)
        return x.shape, np.cumsum(np.ones(1, x.dtype)).dtype

    def forward(self, x):
        return _flipped(np.cumsum, x, self.axis, self.reverse)

    def bprop(self, inputs, out, g, i):
        return build(Cumsum(self.axis, not self.reverse), g)

    def jvp(self, inputs, out, t, i):
        return build(self, t)


@register
@dataclasses.dataclass(frozen=True)
class Cumprod(_AlongAxis):
    """Running products along `axis` (from the end when `reverse`). Gradient without division:
    with y = cumprod(x), d/dx_j = left_j * s_j, left_j = y_{j-1} (1 for j = 0) and
    s_j = g_j + x_{j+1} s_{j+1} (a reverse `recurrence`); exact where entries are 0."""

    name: ClassVar[str] = "cumprod"
    sympy = symbolic.run_forward
    axis: int = param(AXIS, 0)
    reverse: bool = param(FLAG, False)

    def infer(self, x):
        self.check_axis(x)
        return x.shape, np.cumprod(np.ones(1, x.dtype)).dtype

    def forward(self, x):
        return _flipped(np.cumprod, x, self.axis, self.reverse)

    def bprop(self, inputs, out, g, i):
        x = inputs[0]
        if not types.is_float(x.dtype):
            return None
        later = not self.reverse  # the direction the products run
        before = shift(out, self.axis, later, 1.0)  # product of the entries before j
        s = recurrence(shift(x, self.axis, not later, 0.0), g, self.axis, not self.reverse)
        return before * s

    def jvp(self, inputs, out, t, i):
        if not types.is_float(inputs[0].dtype):
            return None
        before = shift(out, self.axis, not self.reverse, 1.0)
        return recurrence(inputs[0], t * before, self.axis, self.reverse)


@register
@dataclasses.dataclass(frozen=True)
class Recurrence(_AlongAxis):
    """The first-order linear recurrence h_i = a_i h_{i-1} + b_i along `axis` (h_0 = b_0;
    from the end when `reverse`: h_i = a_i h_{i+1} + b_i). Cumprod's derivatives are made of
    it, and its own are again: with `bar = recurrence(a shifted back, g, other direction)`,
    d/db is `bar` and d/da is `h shifted forward * bar`; the tangent is
    `recurrence(a, t_b + t_a * h shifted forward)`."""

    name: ClassVar[str] = "recurrence"
    arity: ClassVar[int] = 2
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward
    axis: int = param(AXIS, 0)
    reverse: bool = param(FLAG, False)

    def infer(self, a, b):
        self.check_axis(b)
        if not types.shape_eq(a.shape, b.shape):
            raise ShapeError(f"recurrence: the coefficients {types.fmt_shape(a.shape)} and the "
                             f"terms {types.fmt_shape(b.shape)} differ in shape")
        return b.shape, np.result_type(a.dtype, b.dtype)

    def forward(self, a, b):
        a, b = np.moveaxis(a, self.axis, 0), np.moveaxis(b, self.axis, 0)
        out = np.empty(b.shape, np.result_type(a, b))  # object arrays too (to_sympy)
        order = range(len(b) - 1, -1, -1) if self.reverse else range(len(b))
        h = None
        for i in order:
            h = b[i] if h is None else a[i] * h + b[i]  # h_0 = b_0: no 0 * a_0 (inf * 0)
            out[i] = h
        return np.moveaxis(out, 0, self.axis)

    def _adjoint(self, a, g):
        return recurrence(shift(a, self.axis, self.reverse, 0.0), g, self.axis,
                          not self.reverse)

    def _previous(self, out):
        return shift(out, self.axis, not self.reverse, 0.0)  # h_{i-1} (h_{i+1} reversed)

    def bprop(self, inputs, out, g, i):
        if not types.is_float(inputs[i].dtype):
            return None
        bar = self._adjoint(inputs[0], g)
        return bar if i == 1 else self._previous(out) * bar

    def jvp(self, inputs, out, t, i):
        if not types.is_float(inputs[i].dtype):
            return None
        return recurrence(inputs[0], t if i == 1 else t * self._previous(out), self.axis,
                          self.reverse)


def recurrence(a: Node, b: Node, axis: int, reverse: bool = False) -> Node:
    """h_i = a_i h_{i-1} + b_i along `axis` (from the end when `reverse`), a node."""
    g = graph_of(a, b, caller="recurrence")
    return g.apply(Recurrence(axis, bool(reverse)), [lift(a, g), lift(b, g)])


def product_of_others(x: Node, axes: tuple[int, ...]) -> Node:
    """For each entry, the product of the other entries over `axes` (x's shape): prod's
    gradient, from cumulative products taken from both sides, no division."""
    if not axes:
        return ones_like(x)
    sizes = [x.shape[a] for a in axes]
    if any(isinstance(d, int) and d == 0 for d in sizes):
        return zeros_like(x)
    if len(axes) == 1:
        return _others_along(x, axes[0])
    keep = [a for a in range(x.ndim) if a not in axes]
    moved = transpose(x, tuple(keep + list(axes)))
    rows = reshape(moved, tuple(x.shape[a] for a in keep) + (-1,))
    done = reshape(_others_along(rows, len(keep)), moved.shape)
    return transpose(done, tuple(int(a) for a in np.argsort(keep + list(axes))))


def _others_along(x: Node, axis: int) -> Node:
    before = shift(cumprod(x, axis), axis, True, 1.0)
    after = shift(build(Cumprod(axis, True), x), axis, False, 1.0)
    return before * after


def _sorting_network(row: list) -> list:
    """A row of sympy values sorted ascending by odd-even transposition (n rounds of
    compare-exchange with Min and Max): exact for any values."""
    v = list(row)
    for r in range(len(v)):
        for k in range(r % 2, len(v) - 1, 2):
            v[k], v[k + 1] = sympy.Min(v[k], v[k + 1]), sympy.Max(v[k], v[k + 1])
    return v


@register
@dataclasses.dataclass(frozen=True)
class Sort(_AlongAxis):
    """Entries in ascending order along `axis`; the gradient goes back through the sorting
    permutation (a tie sends it to the earlier entry, as the stable argsort orders them)."""

    name: ClassVar[str] = "sort"
    fresh: ClassVar[bool] = True
    rearranges: ClassVar[bool] = True
    finite_preserving: ClassVar[bool] = True
    axis: int = param(AXIS, 0)

    def infer(self, x):
        self.check_axis(x)
        return x.shape, x.dtype

    def forward(self, x):
        return np.sort(x, axis=self.axis, kind="stable")

    def bprop(self, inputs, out, g, i):
        x = inputs[0]
        if not types.is_float(x.dtype):
            return None
        return permute_along(g, build(ArgSort(self.axis), x), self.axis, inverse=True)

    def jvp(self, inputs, out, t, i):
        x = inputs[0]
        if not types.is_float(x.dtype):
            return None
        return permute_along(t, build(ArgSort(self.axis), x), self.axis)

    def sympy(self, node, x):
        if x.shape[self.axis] > MAX_SYMPY_SORT:
            raise GraphError(f"to_sympy: sort along an axis of {x.shape[self.axis]} entries "
                             f"(at most {MAX_SYMPY_SORT}: it is written as a sorting network)")
        return symbolic.along(self.axis, x, _sorting_network)


@register
@dataclasses.dataclass(frozen=True)
class ArgSort(_AlongAxis):
    """The indices that sort `axis` ascending (stable: ties keep their order); integer, no
    gradient."""

    name: ClassVar[str] = "argsort"
    differentiable: ClassVar[bool] = False
    fresh: ClassVar[bool] = True
    axis: int = param(AXIS, 0)

    def infer(self, x):
        self.check_axis(x)
        return x.shape, np.dtype(np.intp)

    def forward(self, x):
        return np.argsort(x, axis=self.axis, kind="stable")

    def sympy(self, node, x):
        if all(isinstance(v, sympy.Number) for v in x.flat):  # of constants: a constant
            return self.forward(np.asarray(x, dtype=np.float64))
        raise GraphError(f"to_sympy: node {node.name!r} is an argsort, which has no sympy "
                         "function (an index that depends on the order of symbols); write "
                         "its input's sort with gc.sort, whose sympy form is Min/Max")


@register
@dataclasses.dataclass(frozen=True)
class PermuteAlong(_AlongAxis):
    """x's entries moved along `axis` by the permutation `p` (one per row, integer, x's
    shape): out = take_along_axis(x, p), or with `inverse` out such that
    take_along_axis(out, p) = x (put_along_axis). Linear in x: each direction is the other's
    adjoint. `p` must be a permutation of each row (argsort makes one); no gradient flows to
    it."""

    name: ClassVar[str] = "permute_along"
    arity: ClassVar[int] = 2
    linear: ClassVar[bool] = True  # in x; p only says where entries go
    rearranges: ClassVar[bool] = True
    finite_preserving: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    axis: int = param(AXIS, 0)
    inverse: bool = param(FLAG, False)

    def infer(self, x, p):
        self.check_axis(x)
        if p.dtype.kind not in "iu":
            raise ShapeError(f"permute_along: the permutation must be integer, got {p.dtype}")
        if not types.shape_eq(x.shape, p.shape):
            raise ShapeError(f"permute_along: the permutation {types.fmt_shape(p.shape)} and "
                             f"the values {types.fmt_shape(x.shape)} differ in shape")
        return x.shape, x.dtype

    def forward(self, x, p):
        if not self.inverse:
            return np.take_along_axis(x, p, axis=self.axis)
        out = np.zeros_like(x)
        np.put_along_axis(out, p, x, axis=self.axis)
        return out

    def bprop(self, inputs, out, g, i):
        if i == 1 or not types.is_float(inputs[0].dtype):
            return None
        return permute_along(g, inputs[1], self.axis, inverse=not self.inverse)

    def jvp(self, inputs, out, t, i):
        if i == 1 or not types.is_float(inputs[0].dtype):
            return None
        return permute_along(t, inputs[1], self.axis, inverse=self.inverse)

    def sympy(self, node, x, p):
        if not all(isinstance(v, (int, np.integer, sympy.Integer)) for v in p.flat):
            raise GraphError(f"to_sympy: node {node.name!r} moves entries by a permutation "
                             "that depends on the inputs (sort's gradient, an argsort): sympy "
                             "has no function for it")
        return self.forward(x, p.astype(np.intp))  # a known permutation: move the entries


def permute_along(x, p, axis: int, inverse: bool = False) -> Node:
    """x's entries moved along `axis` by the permutation `p` (see PermuteAlong)."""
    g = graph_of(x, p, caller="permute_along")
    x, p = lift(x, g), lift(p, g)
    return g.apply(PermuteAlong(types.normalize_axis(axis, x.ndim), bool(inverse)), [x, p])


# -- public functions ----------------------------------------------------------------------
def _along(name: str, x, axis):
    """`x` as a node and `axis` normalised; axis None flattens first (NumPy's cumsum)."""
    x = lift(x, graph_of(x, caller=name))
    if axis is None:
        return reshape(x, (-1,)), 0
    if x.ndim == 0:
        raise ShapeError(f"{name}: a scalar has no axis {axis}")
    try:
        return x, types.normalize_axis(int(axis), x.ndim)
    except ValueError as e:
        raise ShapeError(f"{name} of {types.fmt_shape(x.shape)}: {e}") from None


@atomic
def cumsum(x, axis=None):
    """Running sums along `axis` (None: of the flattened array), as np.cumsum.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(4,))
        >>> gc.cumsum(x).eval({x: np.array([1.0, 2.0, 3.0, 4.0])})
        array([ 1.,  3.,  6., 10.])
    """
    x, ax = _along("cumsum", x, axis)
    return build(Cumsum(ax), x)


@atomic
def cumprod(x, axis=None):
    """Running products along `axis` (None: of the flattened array), as np.cumprod; its
    gradient is exact where entries are 0.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> y = gc.cumprod(x)
        >>> gc.grad(y.sum(), x).eval({x: np.array([2.0, 0.0, 3.0])})
        array([1., 8., 0.])
    """
    x, ax = _along("cumprod", x, axis)
    return build(Cumprod(ax), x)


@atomic
def sort(x, axis=-1):
    """Entries sorted ascending along `axis` (None: the flattened array); the gradient goes
    back through the sorting permutation.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> y = gc.sort(x)
        >>> v = np.array([3.0, 1.0, 2.0])
        >>> y.eval({x: v})
        array([1., 2., 3.])
        >>> gc.grad((y * np.array([1.0, 10.0, 100.0])).sum(), x).eval({x: v})
        array([100.,   1.,  10.])
    """
    x, ax = _along("sort", x, axis)
    return build(Sort(ax), x)


@atomic
def argsort(x, axis=-1):
    """The indices that sort `axis` ascending (stable); integer, no gradient.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> gc.argsort(x).eval({x: np.array([3.0, 1.0, 2.0])})
        array([1, 2, 0])
    """
    x, ax = _along("argsort", x, axis)
    return build(ArgSort(ax), x)
