"""Rearranging ops: pad, tile, repeat, flip, roll, triu, tril; moveaxis and meshgrid derive
from transpose, reshape and broadcast_to.

Each is linear in its input (pad is affine: its constant does not move), so its `jvp` applies
the op itself to the tangent and its `bprop` is the adjoint: pad's is a slice, tile's and
repeat's a sum over the copies, flip's a flip, roll's the opposite roll, triu's and tril's the
same mask. Sizes may be symbolic (`pad` of an `("n",)` input has `n + 2` entries).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import sympy

from graphc.errors import ShapeError
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Op, register
from graphc.ir.params import AXES, AXIS, COUNT, COUNTS, INT, INTS, NUMBER, PAIRS, param
from graphc.ops import symbolic
from graphc.ops.base import atomic, build, graph_of, lift
from graphc.ops.reduce import sum as _sum
from graphc.ops.shape import broadcast_to, getitem, reshape, transpose


def _dim(d) -> types.Dim:
    """A size computed from sizes: an int, or a sympy expression made a dimension."""
    return d if isinstance(d, int) else types.as_dim(sympy.sympify(d))


class _Rearrange(Op):
    """A linear op of one input: the tangent goes through the op itself; written in sympy by
    its own forward on object arrays."""

    linear: ClassVar[bool] = True
    finite_preserving: ClassVar[bool] = True
    sympy = symbolic.run_forward

    def jvp(self, inputs, out, t, i):
        return build(self, t)


@register
@dataclasses.dataclass(frozen=True)
class Pad(Op):
    """`value` around each axis: `pad_width[k] = (before, after)` entries on axis k (NumPy's
    mode "constant"). Affine in x: the gradient is the slice of the cotangent where x sits."""

    name: ClassVar[str] = "pad"
    finite_preserving: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward
    pad_width: tuple = param(PAIRS, ())
    value: float = param(NUMBER, 0.0)

    def infer(self, x):
        if len(self.pad_width) != x.ndim:
            raise ShapeError(f"pad: {len(self.pad_width)} (before, after) pairs for the "
                             f"{x.ndim} axes of {types.fmt_shape(x.shape)}")
        return tuple(_dim(d + b + a) for d, (b, a) in zip(x.shape, self.pad_width)), x.dtype

    def forward(self, x):
        return np.pad(x, self.pad_width, constant_values=self.value)

    def bprop(self, inputs, out, g, i):
        return getitem(g, tuple(slice(b, -a if a else None) for b, a in self.pad_width))

    def jvp(self, inputs, out, t, i):
        return build(Pad(self.pad_width, 0.0), t)  # the padding is constant

    def batch(self, node, ins, m):
        return node.graph.apply(Pad(((0, 0), *self.pad_width), self.value), [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class Tile(_Rearrange):
    """NumPy's tile with one count per axis; the adjoint sums the copies."""

    name: ClassVar[str] = "tile"
    rearranges: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    reps: tuple = param(COUNTS, ())

    def infer(self, x):
        if len(self.reps) != x.ndim:
            raise ShapeError(f"tile: {len(self.reps)} counts for the {x.ndim} axes of "
                             f"{types.fmt_shape(x.shape)}")
        return tuple(_dim(d * r) for d, r in zip(x.shape, self.reps)), x.dtype

    def forward(self, x):
        return np.tile(x, self.reps)

    def bprop(self, inputs, out, g, i):
        x = inputs[0]
        split = tuple(v for r, d in zip(self.reps, x.shape) for v in (r, d))  # (r0, d0, ...)
        return _sum(reshape(g, split), tuple(range(0, 2 * x.ndim, 2)))

    def batch(self, node, ins, m):
        return node.graph.apply(Tile((1, *self.reps)), [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class Repeat(_Rearrange):
    """Each entry `repeats` times along `axis`; the adjoint sums each run of copies."""

    name: ClassVar[str] = "repeat"
    rearranges: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    repeats: int = param(COUNT, 1)
    axis: int = param(AXIS, 0)

    def infer(self, x):
        if not 0 <= self.axis < x.ndim:
            raise ShapeError(f"repeat: axis {self.axis} is out of range for "
                             f"{types.fmt_shape(x.shape)}")
        shape = list(x.shape)
        shape[self.axis] = _dim(shape[self.axis] * self.repeats)
        return tuple(shape), x.dtype

    def forward(self, x):
        return np.repeat(x, self.repeats, axis=self.axis)

    def bprop(self, inputs, out, g, i):
        shape = inputs[0].shape
        runs = (*shape[:self.axis], shape[self.axis], self.repeats, *shape[self.axis + 1:])
        return _sum(reshape(g, runs), self.axis + 1)

    def batch(self, node, ins, m):
        return node.graph.apply(Repeat(self.repeats, self.axis + 1), [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class Flip(_Rearrange):
    """Reverse the order of the entries along `axis`; its own adjoint."""

    name: ClassVar[str] = "flip"
    rearranges: ClassVar[bool] = True
    axis: tuple = param(AXES, ())

    def infer(self, x):
        if self.axis and self.axis[-1] >= x.ndim:
            raise ShapeError(f"flip: axis {self.axis[-1]} is out of range for "
                             f"{types.fmt_shape(x.shape)}")
        return x.shape, x.dtype

    def forward(self, x):
        return np.flip(x, self.axis)

    def emit_numpy(self, node, args, ctx):
        index = ctx.literal(tuple(slice(None, None, -1) if k in self.axis else slice(None)
                                  for k in range(node.ndim)))
        return None if index is None else f"{args[0]}[{index}]"

    def bprop(self, inputs, out, g, i):
        return build(self, g)

    def cost(self, node):
        return 0.0  # a view

    def batch(self, node, ins, m):
        return node.graph.apply(Flip(tuple(a + 1 for a in self.axis)), [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class Roll(_Rearrange):
    """Entries shifted cyclically by `shift[k]` along `axis[k]`; the adjoint rolls back."""

    name: ClassVar[str] = "roll"
    rearranges: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    shift: tuple = param(INTS, ())
    axis: tuple = param(AXES, ())

    def infer(self, x):
        if len(self.shift) != len(self.axis):
            raise ShapeError(f"roll: {len(self.shift)} shifts for {len(self.axis)} axes")
        if self.axis and self.axis[-1] >= x.ndim:
            raise ShapeError(f"roll: axis {self.axis[-1]} is out of range for "
                             f"{types.fmt_shape(x.shape)}")
        return x.shape, x.dtype

    def forward(self, x):
        return np.roll(x, self.shift, self.axis) if self.axis else np.array(x)

    def bprop(self, inputs, out, g, i):
        return build(Roll(tuple(-s for s in self.shift), self.axis), g)

    def batch(self, node, ins, m):
        return node.graph.apply(Roll(self.shift, tuple(a + 1 for a in self.axis)),
                                [ins[0][0]])


class _Triangle(_Rearrange):
    """The entries on and above (triu) or below (tril) diagonal `k` of the last two axes,
    zeros elsewhere: a mask, so the adjoint is the same mask."""

    fresh: ClassVar[bool] = True
    k: int

    def infer(self, x):
        if x.ndim < 2:
            raise ShapeError(f"{self.name} needs a matrix (or a stack of them), got "
                             f"{types.fmt_shape(x.shape)}")
        return x.shape, x.dtype

    def forward(self, x):
        return type(self).fn(x, self.k)

    def bprop(self, inputs, out, g, i):
        return build(self, g)

    def batch(self, node, ins, m):  # the last two axes stay the last two
        return node.graph.apply(self, [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class Triu(_Triangle):
    """Upper triangle: entries (i, j) with j - i >= k kept."""

    name: ClassVar[str] = "triu"
    fn = staticmethod(np.triu)
    k: int = param(INT, 0)


@register
@dataclasses.dataclass(frozen=True)
class Tril(_Triangle):
    """Lower triangle: entries (i, j) with j - i <= k kept."""

    name: ClassVar[str] = "tril"
    fn = staticmethod(np.tril)
    k: int = param(INT, 0)


# -- public functions ----------------------------------------------------------------------
def _ints(name: str, what: str, value) -> tuple[int, ...]:
    """`value` (an int or a sequence of ints) as a tuple of ints, or a ShapeError."""
    items = (value,) if isinstance(value, (int, np.integer)) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if items is None or not all(isinstance(v, (int, np.integer)) and not isinstance(
            v, (bool, np.bool_)) for v in items):
        raise ShapeError(f"{name}: {what} must be an int or a sequence of ints, got {value!r}")
    return tuple(int(v) for v in items)


def _int(name: str, what: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise ShapeError(f"{name}: {what} must be an int, got {value!r}")
    return int(value)


def _axis(name: str, x: Node, axis: int) -> int:
    try:
        return types.normalize_axis(axis, x.ndim)
    except ValueError as e:
        raise ShapeError(f"{name} of {types.fmt_shape(x.shape)}: {e}") from None


@atomic
def pad(x, pad_width, constant_values=0):
    """`x` with `constant_values` added around its axes (NumPy's pad, mode "constant").

    `pad_width` is NumPy's: an int (every side), a pair `(before, after)` (every axis) or one
    pair per axis. The gradient is the cotangent's slice where `x` sits.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> gc.pad(x, (1, 2)).eval({x: np.array([5.0, 6.0])})
        array([0., 5., 6., 0., 0.])
    """
    x = lift(x, graph_of(x, caller="pad"))
    if isinstance(constant_values, Node) or not isinstance(
            constant_values, (bool, int, float, np.bool_, np.integer, np.floating)):
        raise ShapeError(f"pad: constant_values must be a number, got {constant_values!r} "
                         "(for a node value, pad with 0 and add it where gc.pad(ones) is 0)")
    value = float(constant_values)
    if not np.isfinite(value):
        raise ShapeError(f"pad: constant_values must be finite, got {constant_values!r}")
    try:
        widths = np.broadcast_to(np.asarray(pad_width), (x.ndim, 2))
    except ValueError:
        raise ShapeError(f"pad: pad_width {pad_width!r} is not an int, a (before, after) pair "
                         f"or one pair per axis of {types.fmt_shape(x.shape)}") from None
    if widths.dtype.kind not in "iu" or (widths < 0).any():
        raise ShapeError(f"pad: pad_width must hold ints >= 0, got {pad_width!r}")
    widths = tuple((int(b), int(a)) for b, a in widths)
    if not any(b or a for b, a in widths):
        return x
    return build(Pad(widths, value), x)


@atomic
def tile(x, reps):
    """`x` repeated `reps[k]` times along axis k (NumPy's tile: the shorter of `reps` and the
    shape is padded with leading 1s).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> gc.tile(x, (2, 2)).eval({x: np.array([1.0, 2.0])})
        array([[1., 2., 1., 2.],
               [1., 2., 1., 2.]])
    """
    x = lift(x, graph_of(x, caller="tile"))
    reps = _ints("tile", "reps", reps)
    if any(r < 0 for r in reps):
        raise ShapeError(f"tile: reps must be >= 0, got {reps}")
    if len(reps) > x.ndim:
        x = reshape(x, (1,) * (len(reps) - x.ndim) + tuple(x.shape))
    reps = (1,) * (x.ndim - len(reps)) + reps
    return x if all(r == 1 for r in reps) else build(Tile(reps), x)


@atomic
def repeat(x, repeats, axis=None):
    """Each entry `repeats` times along `axis` (NumPy's repeat; None: of the flattened array).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2, 2))
        >>> gc.repeat(x, 2, axis=0).eval({x: np.array([[1.0, 2.0], [3.0, 4.0]])})
        array([[1., 2.],
               [1., 2.],
               [3., 4.],
               [3., 4.]])
    """
    x = lift(x, graph_of(x, caller="repeat"))
    if not isinstance(repeats, (int, np.integer)) or isinstance(repeats, (bool, np.bool_)) \
            or repeats < 0:
        raise ShapeError(f"repeat: repeats must be an int >= 0 (one count for every entry), "
                         f"got {repeats!r}")
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    return build(Repeat(int(repeats), _axis("repeat", x, axis)), x)


@atomic
def flip(x, axis=None):
    """`x` with the order of its entries reversed along `axis` (None: every axis).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> gc.flip(x).eval({x: np.array([1.0, 2.0, 3.0])})
        array([3., 2., 1.])
    """
    x = lift(x, graph_of(x, caller="flip"))
    try:
        axes = types.normalize_axes(axis, x.ndim)
    except ValueError as e:
        raise ShapeError(f"flip of {types.fmt_shape(x.shape)}: {e}") from None
    return build(Flip(axes), x) if axes else x


@atomic
def roll(x, shift, axis=None):
    """Entries shifted cyclically by `shift` along `axis` (NumPy's roll; None: the flattened
    array, shape kept).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(4,))
        >>> gc.roll(x, 1).eval({x: np.array([1.0, 2.0, 3.0, 4.0])})
        array([4., 1., 2., 3.])
    """
    x = lift(x, graph_of(x, caller="roll"))
    shifts = _ints("roll", "shift", shift)
    if axis is None:
        if len(shifts) != 1:
            raise ShapeError(f"roll: with axis=None, shift must be one int, got {shift!r}")
        flat = reshape(x, (-1,))
        return reshape(build(Roll(shifts, (0,)), flat), x.shape)
    axes = tuple(_axis("roll", x, a) for a in _ints("roll", "axis", axis))
    if len(shifts) == 1:
        shifts = shifts * len(axes)
    if len(shifts) != len(axes):
        raise ShapeError(f"roll: {len(shifts)} shifts for {len(axes)} axes")
    total: dict[int, int] = {}
    for a, s in zip(axes, shifts):  # NumPy: shifts along a repeated axis add up
        total[a] = total.get(a, 0) + s
    axes = tuple(sorted(total))
    return build(Roll(tuple(total[a] for a in axes), axes), x)


@atomic
def moveaxis(x, source, destination):
    """`x` with axes `source` moved to `destination` (a transpose; NumPy's moveaxis).

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph()
        >>> gc.moveaxis(g.input("x", shape=(2, 3, 4)), 0, -1).shape
        (3, 4, 2)
    """
    x = lift(x, graph_of(x, caller="moveaxis"))
    source = tuple(_axis("moveaxis", x, a) for a in _ints("moveaxis", "source", source))
    destination = tuple(_axis("moveaxis", x, a)
                        for a in _ints("moveaxis", "destination", destination))
    if len(source) != len(destination) or len(set(source)) != len(source) \
            or len(set(destination)) != len(destination):
        raise ShapeError(f"moveaxis: source {source} and destination {destination} must be "
                         "distinct axes, as many of each")
    order = [a for a in range(x.ndim) if a not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return transpose(x, tuple(order))


@atomic
def triu(x, k=0):
    """The upper triangle of the last two axes (entries with j - i >= k), zeros below.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2, 2))
        >>> gc.triu(x).eval({x: np.array([[1.0, 2.0], [3.0, 4.0]])})
        array([[1., 2.],
               [0., 4.]])
    """
    return build(Triu(_int("triu", "k", k)), x)


@atomic
def tril(x, k=0):
    """The lower triangle of the last two axes (entries with j - i <= k), zeros above."""
    return build(Tril(_int("tril", "k", k)), x)


@atomic
def meshgrid(*xi, indexing="xy"):
    """Coordinate arrays from 1-D coordinate vectors (NumPy's meshgrid): a tuple of nodes,
    each a reshape and broadcast_to of its vector. `indexing="xy"` swaps the first two axes
    of the result (Cartesian), `"ij"` does not (matrix).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x, y = g.input("x", shape=(3,)), g.input("y", shape=(2,))
        >>> X, Y = gc.meshgrid(x, y)
        >>> X.shape, Y.eval({y: np.array([5.0, 6.0])}).tolist()
        ((2, 3), [[5.0, 5.0, 5.0], [6.0, 6.0, 6.0]])
    """
    if indexing not in ("xy", "ij"):
        raise ShapeError(f"meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    if not xi:
        return ()
    g = graph_of(*xi, caller="meshgrid")
    like = next(v for v in xi if isinstance(v, Node))
    vectors = [reshape(lift(v, g, like), (-1,)) for v in xi]
    axes = list(range(len(vectors)))
    if indexing == "xy" and len(vectors) > 1:
        axes[0], axes[1] = 1, 0
    shape = [None] * len(vectors)
    for v, a in zip(vectors, axes):
        shape[a] = v.shape[0]
    shape = tuple(shape)
    return tuple(broadcast_to(reshape(v, tuple(v.shape[0] if k == a else 1
                                               for k in range(len(shape)))), shape)
                 for v, a in zip(vectors, axes))

