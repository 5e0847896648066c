"""Shape ops: reshape, broadcast, axes, joins and basic indexing. All linear, so each one's
`jvp` applies the op itself to the tangent and its `bprop` is the adjoint shape move."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import sympy

from graphc.errors import ShapeError
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import MultiOp, Op, register
from graphc.ir.params import AXES, AXIS, COUNTS, INDEX, PERMUTATION, SHAPE, param
from graphc.ops import symbolic
from graphc.ops.base import all_batched, atomic, build, graph_of, lift, pad_batched, shift_axis
from graphc.ops.elementwise import zeros_like


class _Linear(Op):
    """A shape move of one input: linear (the tangent goes through the op itself), a view
    (NumPy copies nothing, so it costs nothing), finite where its input is, and written in
    sympy by its own forward on object arrays."""

    linear: ClassVar[bool] = True
    finite_preserving: ClassVar[bool] = True
    sympy = symbolic.run_forward

    def jvp(self, inputs, out, t, i):
        return build(self, t)

    def cost(self, node):
        return 0.0


def _as_reshape(node, args, ctx) -> str | None:
    """`x.reshape(shape)` to the node's static shape: NumPy code for a shape move that keeps
    the entries' order (reshape, expand_dims, squeeze)."""
    shape = ctx.literal(tuple(node.shape))
    return None if shape is None else f"{args[0]}.reshape({shape})"


@register
@dataclasses.dataclass(frozen=True)
class Reshape(_Linear):
    """New shape, same entries in C order."""

    name: ClassVar[str] = "reshape"
    rearranges: ClassVar[bool] = True
    shape: tuple = param(SHAPE, ())

    def infer(self, x):
        if not types.dim_eq(types.size(self.shape), x.size):
            raise ShapeError(f"reshape: cannot reshape {types.fmt_shape(x.shape)} "
                             f"({x.size} entries) to {types.fmt_shape(self.shape)}")
        return self.shape, x.dtype

    def forward(self, x):
        return x.reshape(self.shape)

    def emit_numpy(self, node, args, ctx):
        return _as_reshape(node, args, ctx)

    def bprop(self, inputs, out, g, i):
        return reshape(g, inputs[0].shape)

    def batch(self, node, ins, m):
        return node.graph.apply(Reshape((m, *self.shape)), [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class BroadcastTo(_Linear):
    """NumPy broadcast to `shape`; the adjoint sum is done centrally by `grad`."""

    name: ClassVar[str] = "broadcast_to"
    rearranges: ClassVar[bool] = True
    shape: tuple = param(SHAPE, ())

    def infer(self, x):
        try:
            full = types.broadcast_shapes(x.shape, self.shape)
        except ValueError:
            full = None
        if full is None or not types.shape_eq(full, self.shape):
            raise ShapeError(f"broadcast_to: {types.fmt_shape(x.shape)} does not broadcast "
                             f"to {types.fmt_shape(self.shape)}")
        return self.shape, x.dtype

    def forward(self, x):
        return np.broadcast_to(x, self.shape)

    def emit_numpy(self, node, args, ctx):
        shape = ctx.literal(tuple(node.shape))
        return None if shape is None else f"np.broadcast_to({args[0]}, {shape})"

    def bprop(self, inputs, out, g, i):
        return g  # summed down to the input's shape by grad's unbroadcast

    def batch(self, node, ins, m):
        x = pad_batched(ins[0][0], len(self.shape))
        return node.graph.apply(BroadcastTo((m, *self.shape)), [x])


@register
@dataclasses.dataclass(frozen=True)
class ExpandDims(_Linear):
    """Insert axes of length 1 at `axis` (positions in the result)."""

    name: ClassVar[str] = "expand_dims"
    rearranges: ClassVar[bool] = True
    axis: tuple = param(AXES, ())

    def infer(self, x):
        ndim = x.ndim + len(self.axis)
        shape = list(x.shape)
        for a in types.normalize_axes(self.axis, ndim):
            shape.insert(a, 1)
        return tuple(shape), x.dtype

    def forward(self, x):
        return np.expand_dims(x, self.axis)

    def emit_numpy(self, node, args, ctx):
        return _as_reshape(node, args, ctx)

    def bprop(self, inputs, out, g, i):
        return squeeze(g, self.axis)

    def batch(self, node, ins, m):
        return node.graph.apply(ExpandDims(tuple(a + 1 for a in self.axis)), [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class Squeeze(_Linear):
    """Remove axes of length 1."""

    name: ClassVar[str] = "squeeze"
    rearranges: ClassVar[bool] = True
    axis: tuple = param(AXES, ())

    def infer(self, x):
        axes = types.normalize_axes(self.axis, x.ndim)
        for a in axes:
            if not (isinstance(x.shape[a], int) and x.shape[a] == 1):
                raise ShapeError(f"squeeze: axis {a} of {types.fmt_shape(x.shape)} has "
                                 f"length {x.shape[a]}, not 1")
        return tuple(d for k, d in enumerate(x.shape) if k not in axes), x.dtype

    def forward(self, x):
        return np.squeeze(x, self.axis)

    def emit_numpy(self, node, args, ctx):
        return _as_reshape(node, args, ctx)

    def bprop(self, inputs, out, g, i):
        return expand_dims(g, self.axis)

    def batch(self, node, ins, m):
        return node.graph.apply(Squeeze(tuple(a + 1 for a in self.axis)), [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class Transpose(_Linear):
    """Permute axes; the adjoint applies the inverse permutation."""

    name: ClassVar[str] = "transpose"
    rearranges: ClassVar[bool] = True
    axes: tuple = param(PERMUTATION, ())

    def infer(self, x):
        if sorted(self.axes) != list(range(x.ndim)):
            raise ShapeError(f"transpose: axes {self.axes} are not a permutation of "
                             f"the {x.ndim} axes of {types.fmt_shape(x.shape)}")
        return tuple(x.shape[a] for a in self.axes), x.dtype

    def forward(self, x):
        return np.transpose(x, self.axes)

    def emit_numpy(self, node, args, ctx):
        axes = ctx.literal(tuple(self.axes))
        return None if axes is None else f"{args[0]}.transpose({axes})"

    def bprop(self, inputs, out, g, i):
        return transpose(g, tuple(int(a) for a in np.argsort(self.axes)))

    def batch(self, node, ins, m):
        return node.graph.apply(Transpose((0, *(a + 1 for a in self.axes))), [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class Concatenate(Op):
    """Join along an existing axis; the adjoint slices the cotangent back apart."""

    name: ClassVar[str] = "concatenate"
    arity: ClassVar[None] = None
    linear: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward
    axis: int = param(AXIS, 0)

    def infer(self, *xs):
        if not xs:
            raise ShapeError("concatenate needs at least one input")
        first = xs[0]
        ax = types.normalize_axis(self.axis, first.ndim) if first.ndim else None
        if ax is None:
            raise ShapeError("concatenate: zero-dimensional inputs cannot be joined")
        total = 0
        for x in xs:
            if x.ndim != first.ndim or not all(
                    types.dim_eq(a, b) for k, (a, b) in enumerate(zip(x.shape, first.shape))
                    if k != ax):
                raise ShapeError("concatenate: shapes " + ", ".join(
                    types.fmt_shape(y.shape) for y in xs) + f" differ off axis {self.axis}")
            total = total + x.shape[ax]
        shape = list(first.shape)
        shape[ax] = types.as_dim(sympy.sympify(total)) if not isinstance(total, int) else total
        return tuple(shape), np.result_type(*(x.dtype for x in xs))

    def forward(self, *xs):
        return np.concatenate(xs, axis=self.axis)

    def _piece(self, inputs, v, i):
        ax = self.axis % inputs[0].ndim
        start = sum((x.shape[ax] for x in inputs[:i]), 0)
        index = (slice(None),) * ax + (slice(start, start + inputs[i].shape[ax]),)
        return getitem(v, index)

    def bprop(self, inputs, out, g, i):
        return self._piece(inputs, g, i)

    def jvp(self, inputs, out, t, i):
        parts = [t if k == i else zeros_like(x) for k, x in enumerate(inputs)]
        return concatenate(parts, axis=self.axis)

    def batch(self, node, ins, m):
        return node.graph.apply(Concatenate(shift_axis(self.axis)), all_batched(ins, m))


@register
@dataclasses.dataclass(frozen=True)
class Split(MultiOp):
    """NumPy's split at the points `indices` along `axis`: one result per piece. Linear: the
    tangent is split alike and the adjoint joins the cotangents (zeros for a piece with none)."""

    name: ClassVar[str] = "split"
    linear: ClassVar[bool] = True
    indices: tuple = param(COUNTS, ())  # ascending cut points, each at most the axis' size
    axis: int = param(AXIS, 0)

    def infer(self, x):
        if not x.ndim:
            raise ShapeError("split: a zero-dimensional input cannot be split")
        ax = types.normalize_axis(self.axis, x.ndim)
        d = x.shape[ax]
        if not isinstance(d, int):
            raise ShapeError(f"split along axis {self.axis} of {types.fmt_shape(x.shape)}: "
                             "the size along the axis must be static")
        points = (0, *self.indices, d)
        if any(b < a for a, b in zip(points, points[1:])):
            raise ShapeError(f"split of {types.fmt_shape(x.shape)}: the indices "
                             f"{self.indices} must ascend within 0..{d} along axis {self.axis}")
        return [(x.shape[:ax] + (b - a,) + x.shape[ax + 1:], x.dtype)
                for a, b in zip(points, points[1:])]

    def forward(self, x):
        return tuple(np.split(x, list(self.indices), axis=self.axis))

    def emit_numpy(self, node, args, ctx):
        indices, axis = ctx.literal(self.indices), ctx.literal(self.axis)
        return f"np.split({args[0]}, {indices}, axis={axis})"

    def sympy(self, node, x):
        return tuple(np.split(x, list(self.indices), axis=self.axis))

    def bprop(self, inputs, outs, gs, i):
        if all(g is None for g in gs):
            return None
        parts = [zeros_like(o) if g is None else g for o, g in zip(outs, gs)]
        return concatenate(parts, axis=self.axis) if len(parts) > 1 else parts[0]

    def jvp(self, inputs, outs, t, i):
        return list(t.graph.views(t.graph.apply(self, [t])))

    def batch(self, node, ins, m):
        (x, _), = ins
        axis = self.axis % node.inputs[0].ndim + 1
        return list(x.graph.views(x.graph.apply(Split(self.indices, axis), [x])))


@register
@dataclasses.dataclass(frozen=True)
class Stack(Op):
    """Join along a new axis."""

    name: ClassVar[str] = "stack"
    arity: ClassVar[None] = None
    linear: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward
    axis: int = param(AXIS, 0)

    def infer(self, *xs):
        if not xs:
            raise ShapeError("stack needs at least one input")
        for x in xs:
            if not types.shape_eq(x.shape, xs[0].shape):
                raise ShapeError("stack: shapes " + ", ".join(
                    types.fmt_shape(y.shape) for y in xs) + " differ")
        ax = types.normalize_axis(self.axis, xs[0].ndim + 1)
        shape = list(xs[0].shape)
        shape.insert(ax, len(xs))
        return tuple(shape), np.result_type(*(x.dtype for x in xs))

    def forward(self, *xs):
        return np.stack(xs, axis=self.axis)

    def bprop(self, inputs, out, g, i):
        ax = self.axis % out.ndim
        return getitem(g, (slice(None),) * ax + (i,))

    def jvp(self, inputs, out, t, i):
        parts = [t if k == i else zeros_like(x) for k, x in enumerate(inputs)]
        return stack(parts, axis=self.axis)

    def batch(self, node, ins, m):
        return node.graph.apply(Stack(shift_axis(self.axis)), all_batched(ins, m))


def _index_shape(shape: types.Shape, index: tuple) -> types.Shape:
    """Result shape of basic indexing (ints, slices, None, one Ellipsis)."""
    n_real = sum(1 for e in index if e is not None and e is not Ellipsis)
    if sum(1 for e in index if e is Ellipsis) > 1:
        raise ShapeError("an index can only have one Ellipsis")
    if n_real > len(shape):
        raise ShapeError(f"too many indices ({n_real}) for shape {types.fmt_shape(shape)}")
    if Ellipsis in index:
        k = index.index(Ellipsis)
        index = index[:k] + (slice(None),) * (len(shape) - n_real) + index[k + 1:]
    else:
        index = index + (slice(None),) * (len(shape) - n_real)
    out: list = []
    axis = 0
    for e in index:
        if e is None:
            out.append(1)
            continue
        d = shape[axis]
        axis += 1
        if isinstance(e, int):
            if isinstance(d, int) and not -d <= e < d:
                raise ShapeError(f"index {e} is out of bounds for an axis of length {d}")
            continue
        if isinstance(d, int) and all(isinstance(v, int) or v is None
                                      for v in (e.start, e.stop, e.step)):
            out.append(len(range(*e.indices(d))))
            continue
        if e.step not in (None, 1):
            raise ShapeError(f"a step of {e.step} on the symbolic dimension {d} is not "
                             "supported")
        start = 0 if e.start is None else e.start
        stop = d if e.stop is None else e.stop
        start = d + start if isinstance(start, int) and start < 0 else start
        stop = d + stop if isinstance(stop, int) and stop < 0 else stop
        out.append(types.as_dim(sympy.sympify(stop - start)))
    return tuple(out)


def _normalize_index(index) -> tuple:
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for e in index:
        if isinstance(e, (bool, np.bool_)):
            raise ShapeError("boolean indices are not supported; use gc.where")
        if isinstance(e, (int, np.integer)):
            out.append(int(e))
        elif isinstance(e, slice):
            parts = []
            for v in (e.start, e.stop, e.step):
                if isinstance(v, (int, np.integer)):
                    v = int(v)
                elif v is not None and not isinstance(v, sympy.Expr):
                    raise ShapeError(f"slice bounds must be ints, got {v!r}")
                parts.append(v)
            if parts[2] == 0:
                raise ShapeError("slice step cannot be zero")
            out.append(slice(*parts))
        elif e is None or e is Ellipsis:
            out.append(e)
        else:
            raise ShapeError(f"only basic indexing (ints, slices, None, ...) is supported, "
                             f"got {type(e).__name__}: {e!r}")
    return tuple(out)


@register
@dataclasses.dataclass(frozen=True)
class GetItem(_Linear):
    """Basic indexing `x[index]`: ints, slices, None and Ellipsis."""

    name: ClassVar[str] = "getitem"
    index: tuple = param(INDEX, ())

    def infer(self, x):
        return _index_shape(x.shape, self.index), x.dtype

    def forward(self, x):
        return x[self.index]

    def emit_numpy(self, node, args, ctx):
        index = ctx.literal(tuple(self.index))
        return None if index is None else f"{args[0]}[{index}]"

    def bprop(self, inputs, out, g, i):
        return build(ScatterIndex(self.index), g, inputs[0])

    def batch(self, node, ins, m):
        return node.graph.apply(GetItem((slice(None), *self.index)), [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class ScatterIndex(Op):
    """Zeros shaped like the second input, with the first written at `index`: getitem's adjoint.

    The second input only lends its shape and dtype; no gradient flows to it.
    """

    name: ClassVar[str] = "scatter_index"
    arity: ClassVar[int] = 2
    linear: ClassVar[bool] = True  # in the values; the second input lends only its shape
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward
    index: tuple = param(INDEX, ())

    def infer(self, v, like):
        want = _index_shape(like.shape, self.index)
        if not types.shape_eq(want, v.shape):
            raise ShapeError(f"scatter_index: values of shape {types.fmt_shape(v.shape)} do not "
                             f"fit index of shape {types.fmt_shape(want)}")
        return like.shape, like.dtype

    def forward(self, v, like):
        out = np.zeros(like.shape, like.dtype)
        out[self.index] = v
        return out

    def bprop(self, inputs, out, g, i):
        return getitem(g, self.index) if i == 0 else None

    def jvp(self, inputs, out, t, i):
        return build(self, t, inputs[1]) if i == 0 else None

    def batch(self, node, ins, m):
        op = ScatterIndex((slice(None), *self.index))
        return node.graph.apply(op, all_batched(ins, m))


# -- public functions ----------------------------------------------------------------------
def _target_shape(x: Node, shape) -> types.Shape:
    """`shape` with its one -1 replaced by what the size of `x` implies."""
    if isinstance(shape, (int, np.integer, str)):
        shape = (shape,)
    shape = tuple(shape)
    if sum(1 for d in shape if isinstance(d, (int, np.integer)) and d == -1) > 1:
        raise ShapeError(f"reshape: only one -1 allowed in {shape}")
    if any(isinstance(d, (int, np.integer)) and d == -1 for d in shape):
        known = types.size(types.as_shape(
            [d for d in shape if not (isinstance(d, (int, np.integer)) and d == -1)]))
        missing = sympy.sympify(x.size) / known
        if not missing.is_integer:
            raise ShapeError(f"reshape: cannot reshape {types.fmt_shape(x.shape)} to {shape}")
        shape = tuple(missing if isinstance(d, (int, np.integer)) and d == -1 else d
                      for d in shape)
    try:
        return types.as_shape(shape)
    except ValueError as e:
        raise ShapeError(f"reshape: {e}") from None


@atomic
def reshape(x, shape):
    """`x` with a new shape (one entry may be -1)."""
    shape = _target_shape(x, shape)
    if types.shape_eq(shape, x.shape):
        return x
    return build(Reshape(shape), x)


@atomic
def broadcast_to(x, shape):
    """`x` broadcast to `shape`, NumPy rules."""
    try:
        shape = types.as_shape(shape)
    except ValueError as e:
        raise ShapeError(f"broadcast_to: {e}") from None
    x = lift(x, graph_of(x))
    if types.shape_eq(shape, x.shape):
        return x
    return build(BroadcastTo(shape), x)


@atomic
def expand_dims(x, axis):
    """Insert length-1 axes at `axis` (an int or a tuple)."""
    axis = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    try:
        axis = types.normalize_axes(axis, x.ndim + len(axis))
    except ValueError as e:
        raise ShapeError(f"expand_dims of {types.fmt_shape(x.shape)}: {e}") from None
    return build(ExpandDims(axis), x)


@atomic
def squeeze(x, axis=None):
    """Remove length-1 axes (all of them when `axis` is None)."""
    if axis is None:
        axis = tuple(k for k, d in enumerate(x.shape) if isinstance(d, int) and d == 1)
    axis = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if not axis:
        return x
    try:
        axis = types.normalize_axes(axis, x.ndim)
    except ValueError as e:
        raise ShapeError(f"squeeze of {types.fmt_shape(x.shape)}: {e}") from None
    return build(Squeeze(axis), x)


@atomic
def transpose(x, axes=None):
    """Permute axes; reverses them when `axes` is None."""
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    try:
        axes = tuple(types.normalize_axis(a, x.ndim) for a in axes)
    except ValueError as e:
        raise ShapeError(f"transpose of {types.fmt_shape(x.shape)}: {e}") from None
    if sorted(axes) != list(range(x.ndim)):
        raise ShapeError(f"transpose of {types.fmt_shape(x.shape)}: axes {axes} are not a "
                         f"permutation of 0..{x.ndim - 1}")
    if axes == tuple(range(x.ndim)):
        return x
    return build(Transpose(axes), x)


@atomic
def swapaxes(x, a, b):
    """`x` with axes `a` and `b` exchanged (a transpose)."""
    try:
        a, b = types.normalize_axis(a, x.ndim), types.normalize_axis(b, x.ndim)
    except ValueError as e:
        raise ShapeError(f"swapaxes of {types.fmt_shape(x.shape)}: {e}") from None
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, tuple(axes))


@atomic
def concatenate(xs, axis=0):
    """Join a list of nodes along an existing axis."""
    g = graph_of(xs)
    return g.apply(Concatenate(int(axis)), [lift(x, g) for x in xs])


@atomic
def split(x, indices_or_sections, axis=0) -> tuple[Node, ...]:
    """NumPy's split: a tuple of nodes, one per piece, all read from one `split` node.

    `indices_or_sections` is a number of equal pieces or a list of cut points along `axis`
    (negative points count from the end; points past the end give empty pieces).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(5,))
        >>> a, b = gc.split(x, [2])
        >>> b.eval({x: np.arange(5.0)})
        array([2., 3., 4.])
    """
    g = graph_of(x)
    x = lift(x, g)
    if not x.ndim:
        raise ShapeError("split: a zero-dimensional input cannot be split")
    try:
        ax = types.normalize_axis(int(axis), x.ndim)
    except ValueError as e:
        raise ShapeError(f"split of {types.fmt_shape(x.shape)}: {e}") from None
    d = x.shape[ax]
    if not isinstance(d, int):
        raise ShapeError(f"split along axis {axis} of {types.fmt_shape(x.shape)}: the size "
                         "along the axis must be static")
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or d % k:
            raise ShapeError(f"split: {d} entries along axis {axis} do not divide into {k} "
                             "equal pieces")
        points = tuple(range(d // k, d, d // k))
    else:
        points, last = [], 0
        for p in indices_or_sections:
            p = int(p)
            p = min(max(p + d if p < 0 else p, 0), d)
            last = max(last, p)  # NumPy: a point before the previous one gives an empty piece
            points.append(last)
        points = tuple(points)
    return g.views(g.apply(Split(points, ax), [x]))


@atomic
def stack(xs, axis=0):
    """Join a list of same-shape nodes along a new axis."""
    g = graph_of(xs)
    return g.apply(Stack(int(axis)), [lift(x, g) for x in xs])


@atomic
def getitem(x, index):
    """Basic indexing: `x[1]`, `x[:, 2:5]`, `x[None, ..., 0]`."""
    index = _normalize_index(index)
    if all(isinstance(e, slice) and e == slice(None) for e in index):
        return x
    return build(GetItem(index), x)
