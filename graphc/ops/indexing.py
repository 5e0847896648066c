"""Gathers and scatters with index arrays: NumPy's advanced indexing and its adjoints.

The gradient of a gather is a scatter-add and the gradient of a scatter-add a gather, both
graph ops, so every order works:

| op | computes | bprop for the float input(s) |
|---|---|---|
| `take` | `np.take(x, idx, axis)` | `segment_sum` of g along axis |
| `segment_sum` | `out[..., ids[k], ...] += data[..., k, ...]`, from zeros | `take` of g |
| `take_along_axis` | `np.take_along_axis(x, idx, axis)` | `add_along_axis` of g, from zeros |
| `add_along_axis` | x, with v added at idx along axis | x: g; v: `take_along_axis` of g |
| `gather` | `x[index]`, two or more advanced entries | `at_add` of g, from zeros |
| `at_add` | `x.at[index].add(v)`: repeated indices accumulate | x: g; v: `gather` of g |
| `at_set` | `x.at[index].set(v)`: the last write wins | x: g, 0 where written; v: g where v lands |
| `last_write` | where each write of `at_set` lands (a mask) | none: it reads indices only |

`x[idx]` with one index array (and slices, None, Ellipsis) is `take` after basic indexing;
with several (or an array and ints) it is `gather`, whose parameters are the basic index with a
full-slice placeholder at each array's position (`index`) and those positions (`at`); the
arrays are its operands. A constant boolean mask is turned into its `np.nonzero` int arrays
at build time; a boolean node is refused (the result's size would depend on its values).

Indices follow NumPy: negative ones count from the end, and an index outside `[-n, n)` is an
error, never wrapped or clipped. Constant indices are checked when the node is built
(`ShapeError`). Indices fed at call time are checked by each op without a pass of its own
where the work checks them anyway: `np.take`, fancy indexing and `np.add.at` raise on an
index out of range, and the scatter kernel tests each index before it writes (into the op's
own new buffer); only then are the indices searched for the bad one. Where a result would
be silently wrong instead (several arrays folded into one flat position, the bincount
fallback, `add_along_axis`, `last_write`), their min and max are checked first. Either way an
out-of-range index raises `InputError` naming the index operand, the node and the line that
built it.

Scatter-adds go through one kernel, `out[p, ids[k], c] += v[p, k, c]` over an array viewed
as (before, indexed, after): a numba loop above `KERNEL_MIN` entries (no on-disk cache, so no
file is trusted; compiled once per dtype per process), `np.add.at` below it or without numba
(or with GRAPHC_FUSION=0), `np.bincount` for large float64 scatters then. Chosen by
measurement (docs/performance.md): on a 50,000 x 128 table and 8,192 ids the numba kernel
takes 8.6 ms (1.7 ms of it the scatter itself, the rest first touches of the zeroed
pages), `np.bincount` over flat positions 15 ms, sort and `np.add.reduceat` 31 ms (and not in
input order), `np.add.at` 31 ms.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from typing import ClassVar

import numpy as np
import sympy

from graphc.errors import GraphError, InputError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Constant, Op, entries, register
from graphc.ir.params import AXIS, COUNTS, FLAG, INDEX, SHAPE, SIZE, param
from graphc.ops.base import atomic, build, graph_of, lift, pad_batched

KERNEL_MIN = 256  # entries of v from which a scatter-add runs the numba kernel
_KERNEL_DTYPES = frozenset(np.dtype(t) for t in ("float64", "float32", "int64", "int32"))


# -- index checks ---------------------------------------------------------------------------
class IndexRangeError(IndexError):
    """An index outside [-n, n); `operand` is the op input that holds it."""

    def __init__(self, operand: int, text: str):
        super().__init__(text)
        self.operand = operand


def is_index_dtype(dtype: np.dtype) -> bool:
    return dtype.kind in "iu"


def check_range(idx: np.ndarray, n: int, operand: int, what: str) -> None:
    """Raise IndexRangeError unless every entry of `idx` lies in [-n, n) (NumPy's range)."""
    if idx.size == 0:
        return
    lo, hi = idx.min(), idx.max()
    if hi < n and (idx.dtype.kind == "u" or lo >= -n):
        return
    bad = (idx >= n) if idx.dtype.kind == "u" else (idx < -n) | (idx >= n)
    k = int(np.flatnonzero(bad.reshape(-1))[0])
    pos = tuple(int(p) for p in np.unravel_index(k, idx.shape))
    where = "" if not pos else f" at position {pos[0] if len(pos) == 1 else pos}"
    raise IndexRangeError(operand, f"index {idx.reshape(-1)[k]}{where} is out of bounds for "
                                   f"{what} of size {n} (valid: {-n} to {n - 1})")


def check_constant(node: Node, n, what: str, caller: str) -> None:
    """Build-time check of constant indices against a static size: ShapeError if one is out."""
    if not isinstance(node.op, Constant) or not isinstance(n, int):
        return
    try:
        check_range(np.asarray(node.op.value), n, 0, what)
    except IndexRangeError as e:
        raise ShapeError(f"{caller}: {e}") from None


def check_index_node(node: Node, caller: str, what: str = "indices") -> None:
    """Indices must be integer nodes: a float is a mistake, a boolean mask needs nonzero."""
    if node.dtype.kind == "b":
        raise ShapeError(f"{caller}: boolean {what} {node.name!r} are not supported (the "
                         "result's size would depend on their values); use gc.where")
    if not is_index_dtype(node.dtype):
        raise ShapeError(f"{caller}: {what} must be integers, got {node.dtype} node "
                         f"{node.name!r}")


def as_intp(idx: np.ndarray) -> np.ndarray:
    """Checked indices as NumPy's index type (a view when they already are)."""
    return np.ascontiguousarray(idx, dtype=np.intp)


def wide_unsigned(idx: np.ndarray) -> bool:
    """Unsigned indices NumPy cannot cast safely to its index type (uint64)."""
    return idx.dtype.kind == "u" and idx.dtype.itemsize >= np.dtype(np.intp).itemsize


def checked(run, idx: np.ndarray, n: int, operand: int, what: str):
    """`run()`, whose work raises IndexError on an index out of range; that error becomes an
    IndexRangeError naming the bad index (found only now). uint64 indices are checked first
    and cast, since NumPy refuses to take them."""
    if wide_unsigned(idx):
        check_range(idx, n, operand, what)
    try:
        return run()
    except IndexError:
        check_range(idx, n, operand, what)
        raise


# -- the scatter-add kernel -----------------------------------------------------------------
_numba_kernel = None
_KERNEL_LOCK = threading.Lock()


def _kernel():
    """The numba scatter-add loop, or None (numba missing or GRAPHC_FUSION=0). Not cached on
    disk: it compiles once per dtype per process (0.2-1 s), and no file is trusted."""
    global _numba_kernel
    if os.environ.get("GRAPHC_FUSION", "1") == "0":
        return None
    with _KERNEL_LOCK:
        if _numba_kernel is None:
            try:
                import numba
            except ImportError:
                _numba_kernel = False
                return None

            @numba.njit(nogil=True, cache=False)
            def scatter_add_rows(out, ids, v):  # pragma: no cover - compiled by numba
                n = out.shape[1]
                for p in range(out.shape[0]):
                    for k in range(ids.shape[0]):
                        j = ids[k]
                        if j < 0:
                            j += n
                        if j < 0 or j >= n:
                            return k  # never written out of bounds: the caller raises
                        for c in range(out.shape[2]):
                            out[p, j, c] += v[p, k, c]
                return -1

            _numba_kernel = scatter_add_rows
    return _numba_kernel or None


def scatter_add_rows(out: np.ndarray, ids: np.ndarray, v: np.ndarray) -> None:
    """`out[p, ids[k], c] += v[p, k, c]` in order of k (repeats accumulate); `out` is
    (P, N, C), `ids` (K,), `v` (P, K, C). An id outside [-N, N) raises IndexError, having
    written only into `out` (the caller's new buffer, then dropped)."""
    if v.dtype != out.dtype:
        v = v.astype(out.dtype)
    n = out.shape[1]
    kernel = _kernel() if v.size >= KERNEL_MIN and out.dtype in _KERNEL_DTYPES else None
    if kernel is not None:
        bad = kernel(out, as_intp(ids), np.ascontiguousarray(v))
        if bad >= 0:
            raise IndexError(f"index {ids[bad]} is out of bounds for size {n}")
    elif (v.size >= KERNEL_MIN and out.dtype == np.float64 and out.shape[0] == 1
          and out.size <= 8 * v.size):  # bincount makes an output of out's size
        c = out.shape[2]
        check_range(ids, n, 0, "the scatter")  # bincount would grow its output instead
        flat = (np.where(ids < 0, ids + n, ids).astype(np.intp)[:, None] * c
                + np.arange(c)).reshape(-1)
        out[0] += np.bincount(flat, v[0].reshape(-1), minlength=n * c).reshape(n, c)
    else:
        np.add.at(out, (slice(None), as_intp(ids)), v)


# -- the layout of an advanced index --------------------------------------------------------
def entry_axes(index: tuple, ndim: int) -> list:
    """The axis of x each entry of a (basic or advanced) index reads; None for None/Ellipsis."""
    n_real = sum(1 for e in index if e is not None and e is not Ellipsis)
    out, axis = [], 0
    for e in index:
        if e is Ellipsis:
            out.append(None)
            axis += ndim - n_real
        elif e is None:
            out.append(None)
        else:
            out.append(axis)
            axis += 1
    return out


def advanced_entries(index: tuple, at: tuple) -> list[int]:
    """Positions of the advanced entries: the arrays, and the ints when an array is present
    (NumPy treats an int beside an array as a 0-d array)."""
    arrays = set(at)
    return [k for k, e in enumerate(index) if k in arrays or (arrays and type(e) is int)]


def adjacent(adv: list[int]) -> bool:
    """NumPy puts the broadcast index dims in place when the advanced entries are next to
    each other in the index as written (an Ellipsis or None between them separates them),
    and first otherwise."""
    return not adv or adv == list(range(adv[0], adv[-1] + 1))


class _Like:
    """A stand-in node of a shape (GetItem's shape rule reads shape, ndim and dtype)."""

    def __init__(self, shape):
        self.shape, self.ndim, self.dtype = tuple(shape), len(shape), np.dtype(np.float64)


def indexed_shape(shape: types.Shape, index: tuple, at: tuple, idx_shapes, caller: str,
                  idx_nodes=()) -> types.Shape:
    """The shape of `x[index]` with the arrays (of `idx_shapes`) at positions `at`, by NumPy's
    rules; ShapeError naming `caller` when the index does not fit."""
    from graphc.ops.shape import GetItem

    n_real = sum(1 for e in index if e is not None and e is not Ellipsis)
    if n_real > len(shape):
        raise ShapeError(f"{caller}: too many indices ({n_real}) for shape "
                         f"{types.fmt_shape(shape)}")
    axes = entry_axes(index, len(shape))
    adv = advanced_entries(index, at)
    for k in adv:  # ints: static bounds; constant arrays: their values
        d = shape[axes[k]]
        e = index[k]
        if type(e) is int and isinstance(d, int) and not -d <= e < d:
            raise ShapeError(f"{caller}: index {e} is out of bounds for axis {axes[k]} of "
                             f"size {d}")
    for k, node in zip(at, idx_nodes):
        check_constant(node, shape[axes[k]], f"axis {axes[k]}", caller)
    if not at:
        return GetItem(index).infer(_Like(shape))[0]
    try:
        b = types.broadcast_shapes(*idx_shapes)
    except ValueError:
        raise ShapeError(f"{caller}: index arrays of shapes "
                         + ", ".join(types.fmt_shape(s) for s in idx_shapes)
                         + " do not broadcast together") from None
    # basic indexing with each advanced entry as a full slice, then its dims replaced by b
    basic = tuple(slice(None) if k in adv else e for k, e in enumerate(index))
    full = GetItem(basic).infer(_Like(shape))[0]
    pos, p = [], 0
    for k, e in enumerate(index):
        if k in adv:
            pos.append(p)
        if e is Ellipsis:
            p += len(shape) - n_real
        elif type(e) is not int or k in adv:
            p += 1
    rest = [d for j, d in enumerate(full) if j not in pos]
    if adjacent(adv):
        return tuple(rest[:pos[0]]) + b + tuple(rest[pos[0]:])
    return b + tuple(rest)


def flat_layout(shape: tuple, index: tuple, at: tuple, arrays: list):
    """The common layouts as one axis: full slices around adjacent advanced entries, no
    None. Returns (pre, n, post, ids, window, first) with x viewed as (pre, n, post), `ids`
    flat positions along its middle axis in C order of the broadcast indices (negatives kept
    for a single array), `window` the shape of x[index] and `first` the position of the
    broadcast index dims in it; None for other layouts."""
    if any(e is None for e in index):
        return None
    adv = advanced_entries(index, at)
    if not adv or not adjacent(adv):
        return None
    if any(type(e) is slice and e != slice(None) for e in index):
        return None
    axes = entry_axes(index, len(shape))
    first, m = axes[adv[0]], len(adv)
    pre, post = math.prod(shape[:first]), math.prod(shape[first + m:])
    dims = shape[first:first + m]
    by_pos = dict(zip(at, arrays))
    if m == 1 and adv[0] in by_pos:
        ids = by_pos[adv[0]]
        b = ids.shape
        ids = ids.reshape(-1)
    else:
        comps = []
        for k, d in zip(adv, dims):
            c = by_pos[k] if k in by_pos else np.asarray(index[k])
            if c.size and (c.max() >= d or (c.dtype.kind != "u" and c.min() < -d)):
                # folded into one flat position, it could land in range: refuse it here
                raise IndexError(f"index out of bounds for an axis of size {d}")
            comps.append(np.where(c < 0, c + d, c).astype(np.intp))
        b = np.broadcast_shapes(*(c.shape for c in comps))
        flat = np.zeros(b, np.intp)
        stride = 1
        for c, d in zip(reversed(comps), reversed(dims)):
            flat += c * stride
            stride *= d
        ids = flat.reshape(-1)
    window = tuple(shape[:first]) + tuple(b) + tuple(shape[first + m:])
    return pre, math.prod(dims), post, ids, window, first


def full_index(index: tuple, at: tuple, arrays) -> tuple:
    """The NumPy index: the basic one with each array at its position."""
    out = list(index)
    for k, a in zip(at, arrays):
        out[k] = a
    return tuple(out)


def check_arrays(shape, index, at, arrays, first_operand: int) -> None:
    """Each index array against the size of the axis it reads (IndexRangeError)."""
    axes = entry_axes(index, len(shape))
    for j, (k, a) in enumerate(zip(at, arrays)):
        check_range(a, shape[axes[k]], first_operand + j, f"axis {axes[k]}")


def checked_all(run, shape, index, at, arrays, first_operand: int):
    """`checked` for the arrays of an advanced index: IndexError from the work names the
    array at fault."""
    if any(wide_unsigned(a) for a in arrays):
        check_arrays(shape, index, at, arrays, first_operand)
    try:
        return run()
    except IndexError:
        check_arrays(shape, index, at, arrays, first_operand)
        raise


def intp_all(arrays) -> list:
    """Index arrays as C-ordered NumPy index arrays (NumPy's assignment then writes, and a
    repeated position keeps its last write, in C order of the broadcast indices)."""
    return [as_intp(a) for a in arrays]


def index_label(name: str, index: tuple, at: tuple, **more) -> str:
    """`gather(index=[idx0, :, idx1])`: the index as written, each array by its operand."""
    from graphc.ir.op import fmt_param

    parts = []
    for k, e in enumerate(index):
        parts.append(f"idx{at.index(k)}" if k in at else fmt_param(e))
    shown = [f"index=[{', '.join(parts)}]",
             *(f"{k}={fmt_param(v)}" for k, v in more.items() if v is not False)]
    return f"{name}({', '.join(shown)})"


def check_at(op, index: tuple, at: tuple) -> None:
    """`at` lists ascending positions of `index` that hold full-slice placeholders."""
    if any(b <= a for a, b in zip(at, at[1:])) or any(
            p >= len(index) or index[p] != slice(None) for p in at):
        raise GraphError(f"{op.name}: parameter at: expected ascending positions of full-slice "
                         f"placeholders in index {index}, got {at}")


def sympy_indices(args, positions, op_name: str) -> list:
    """For `to_sympy`: the index operands (object arrays of sympy integers) as int arrays."""
    out = list(args)
    for i in positions:
        a = np.asarray(args[i], dtype=object)
        if not all(isinstance(e, (int, sympy.Integer)) for e in a.reshape(-1)):
            raise GraphError(f"to_sympy: {op_name} needs constant indices; operand {i} is "
                             "symbolic")
        out[i] = np.array([int(e) for e in a.reshape(-1)], dtype=np.intp).reshape(a.shape)
    return out


class _Indexed(Op):
    """Shared by the ops here: the cost of what is read and `to_sympy` through the forward
    with constant indices. Each op declares, beside its forward, `fresh` (it returns a new
    array) and `emit_numpy = emit_named` (named run-time index errors)."""

    index_operands: ClassVar[tuple[int, ...] | None] = (1,)  # None: every input from the first
    first_index: ClassVar[int] = 1

    def positions(self, n_inputs: int) -> tuple[int, ...]:
        if self.index_operands is None:
            return tuple(range(self.first_index, n_inputs))
        return self.index_operands

    def sympy(self, node, *args):
        return self.forward(*sympy_indices(args, self.positions(len(args)), self.name))

    def cost(self, node) -> float:
        return 2 * entries(node.shape) + sum(entries(x.shape) for x in node.inputs[1:])


def emit_named(op, node, args, ctx):
    """The op's `emit_numpy`: its forward, bound with the names its errors give."""
    fn = ctx.bind(f"_{op.name}", NamedForward(op, node))
    return f"{fn}({', '.join(args)})"


class NamedForward:
    """An op's forward in generated code: an out-of-range index becomes an InputError that
    names the index operand, the node and the line that built it."""

    def __init__(self, op: Op, node: Node):
        self.forward = op.forward
        self.names = [x.name for x in node.inputs]
        self.kinds = ["input" if x.op.name == "input" else x.op.name for x in node.inputs]
        self.node = f"{node.op.name} node {node.name!r}, built at {node.source}"

    def __call__(self, *arrays):
        try:
            return self.forward(*arrays)
        except IndexRangeError as e:
            k = e.operand
            raise InputError(f"indices {self.names[k]!r} ({self.kinds[k]}): {e} ({self.node})"
                             ) from None


# -- take and segment_sum -------------------------------------------------------------------
@register
@dataclasses.dataclass(frozen=True)
class Take(_Indexed):
    """`np.take(x, idx, axis)`: the entries of x at idx along one axis (an embedding lookup).

    Linear in x: the tangent is taken alike, the cotangent summed back into x's rows by
    `segment_sum` (repeated indices accumulate). No gradient for the indices.
    """

    name: ClassVar[str] = "take"
    fresh: ClassVar[bool] = True
    emit_numpy = emit_named
    arity: ClassVar[int] = 2
    axis: int = param(AXIS, 0)

    def infer(self, x, idx):
        check_index_node(idx, "take")
        if not 0 <= self.axis < x.ndim:
            raise ShapeError(f"take: axis {self.axis} is out of range for "
                             f"{types.fmt_shape(x.shape)}")
        a = self.axis
        check_constant(idx, x.shape[a], f"axis {a}", "take")
        return x.shape[:a] + idx.shape + x.shape[a + 1:], x.dtype

    def forward(self, x, idx):
        a = self.axis
        if wide_unsigned(idx):
            check_range(idx, x.shape[a], 1, f"axis {a}")
            idx = as_intp(idx)
        try:
            out = np.take(x, idx, axis=a)  # raises on an index out of range
        except IndexError:
            check_range(idx, x.shape[a], 1, f"axis {a}")
            raise
        return out if type(out) is np.ndarray else np.asarray(out)

    def bprop(self, inputs, out, g, i):
        x, idx = inputs
        if i != 0 or not types.is_float(x.dtype):
            return None
        from graphc.ops.shape import reshape

        a = self.axis
        k = types.size(idx.shape)
        g = reshape(g, x.shape[:a] + (k,) + x.shape[a + 1:])
        ids = reshape(idx, (k,))
        return build(SegmentSum(x.shape[a], a), g, ids)

    def jvp(self, inputs, out, t, i):
        return build(self, t, inputs[1]) if i == 0 else None

    def batch(self, node, ins, m):
        (x, bx), (idx, bi) = ins
        if bi:
            return NotImplemented
        return node.graph.apply(Take(self.axis + 1), [x, idx])


@register
@dataclasses.dataclass(frozen=True)
class SegmentSum(_Indexed):
    """Sums of data's slices along `axis` grouped by id: `out[..., ids[k], ...] +=
    data[..., k, ...]` into zeros with `num_segments` slots (take's adjoint).

    Linear in data: the tangent is summed alike, the cotangent read back by `take`.
    """

    name: ClassVar[str] = "segment_sum"
    fresh: ClassVar[bool] = True
    emit_numpy = emit_named
    arity: ClassVar[int] = 2
    num_segments: object = param(SIZE, 1)
    axis: int = param(AXIS, 0)

    def infer(self, data, ids):
        check_index_node(ids, "segment_sum", "segment ids")
        if not 0 <= self.axis < data.ndim:
            raise ShapeError(f"segment_sum: axis {self.axis} is out of range for data of "
                             f"shape {types.fmt_shape(data.shape)}")
        a = self.axis
        if ids.ndim != 1 or not types.dim_eq(ids.shape[0], data.shape[a]):
            raise ShapeError(f"segment_sum: segment ids of shape {types.fmt_shape(ids.shape)} "
                             f"must be 1-D with one id per slice of data "
                             f"{types.fmt_shape(data.shape)} along axis {a}")
        check_constant(ids, self.num_segments, "num_segments", "segment_sum")
        return data.shape[:a] + (self.num_segments,) + data.shape[a + 1:], data.dtype

    def forward(self, data, ids):
        n = int(self.num_segments)
        a = self.axis
        pre, post = math.prod(data.shape[:a]), math.prod(data.shape[a + 1:])
        out = np.zeros(data.shape[:a] + (n,) + data.shape[a + 1:], data.dtype)
        v = np.ascontiguousarray(data).reshape(pre, len(ids), post)
        if out.dtype == object:  # to_sympy: sympy entries
            np.add.at(out.reshape(pre, n, post), (slice(None), ids), v)
            return out
        checked(lambda: scatter_add_rows(out.reshape(pre, n, post), ids, v), ids, n, 1,
                "num_segments")
        return out

    def bprop(self, inputs, out, g, i):
        if i != 0 or not types.is_float(inputs[0].dtype):
            return None
        return build(Take(self.axis), g, inputs[1])

    def jvp(self, inputs, out, t, i):
        return build(self, t, inputs[1]) if i == 0 else None

    def batch(self, node, ins, m):
        (d, bd), (ids, bi) = ins
        if bi:
            return NotImplemented
        return node.graph.apply(SegmentSum(self.num_segments, self.axis + 1), [d, ids])


# -- along an axis --------------------------------------------------------------------------
def along_shape(x_shape, idx_shape, axis: int, caller: str) -> types.Shape:
    """take_along_axis's result shape: idx along `axis`, x and idx broadcast elsewhere."""
    if len(idx_shape) != len(x_shape):
        raise ShapeError(f"{caller}: indices of shape {types.fmt_shape(idx_shape)} must have "
                         f"the rank of x {types.fmt_shape(x_shape)}")
    out = []
    for k, (d, e) in enumerate(zip(x_shape, idx_shape)):
        if k == axis:
            out.append(e)
            continue
        try:
            out.append(types.broadcast_shapes((d,), (e,))[0])
        except ValueError:
            raise ShapeError(f"{caller}: x {types.fmt_shape(x_shape)} and indices "
                             f"{types.fmt_shape(idx_shape)} do not broadcast off axis "
                             f"{axis}") from None
    return tuple(out)


def along_flat(shape: tuple, idx: np.ndarray, axis: int) -> tuple[np.ndarray, tuple]:
    """Flat C-order positions in x (of `shape`) of every entry of take_along_axis's result,
    and that result's shape; idx already checked."""
    out_shape = tuple(e if k == axis else max(d, e) if d == 1 or e == 1 else d
                      for k, (d, e) in enumerate(zip(shape, idx.shape)))
    n = shape[axis]
    strides = [math.prod(shape[k + 1:]) for k in range(len(shape))]
    flat = np.where(idx < 0, idx + n, idx).astype(np.intp) * strides[axis]
    for k, d in enumerate(shape):
        if k != axis and d > 1:
            flat = flat + (np.arange(d) * strides[k]).reshape(
                (1,) * k + (d,) + (1,) * (len(shape) - k - 1))
    return np.broadcast_to(flat, out_shape).reshape(-1), out_shape


@register
@dataclasses.dataclass(frozen=True)
class TakeAlongAxis(_Indexed):
    """`np.take_along_axis(x, idx, axis)`: per position, the entry of x at idx along axis.

    Linear in x: the cotangent is added back by `add_along_axis` (repeats accumulate).
    """

    name: ClassVar[str] = "take_along_axis"
    fresh: ClassVar[bool] = True
    emit_numpy = emit_named
    arity: ClassVar[int] = 2
    axis: int = param(AXIS, 0)

    def infer(self, x, idx):
        check_index_node(idx, "take_along_axis")
        if not 0 <= self.axis < x.ndim:
            raise ShapeError(f"take_along_axis: axis {self.axis} is out of range for "
                             f"{types.fmt_shape(x.shape)}")
        check_constant(idx, x.shape[self.axis], f"axis {self.axis}", "take_along_axis")
        return along_shape(x.shape, idx.shape, self.axis, "take_along_axis"), x.dtype

    def forward(self, x, idx):
        n, a = x.shape[self.axis], self.axis
        return checked(lambda: np.take_along_axis(
            x, as_intp(idx) if wide_unsigned(idx) else idx, axis=a), idx, n, 1, f"axis {a}")

    def bprop(self, inputs, out, g, i):
        x, idx = inputs
        if i != 0 or not types.is_float(x.dtype):
            return None
        return build(AddAlongAxis(self.axis, True), x, idx, g)

    def jvp(self, inputs, out, t, i):
        return build(self, t, inputs[1]) if i == 0 else None

    def batch(self, node, ins, m):
        from graphc.ops.shape import expand_dims

        (x, bx), (idx, bi) = ins
        if bi:
            return NotImplemented
        return node.graph.apply(TakeAlongAxis(self.axis + 1), [x, expand_dims(idx, 0)])


@register
@dataclasses.dataclass(frozen=True)
class AddAlongAxis(_Indexed):
    """x with v added at idx along axis (take_along_axis's adjoint); `zeros`: start from
    zeros, x lending only its shape and dtype. Linear in x and v together."""

    name: ClassVar[str] = "add_along_axis"
    fresh: ClassVar[bool] = True
    emit_numpy = emit_named
    arity: ClassVar[int] = 3
    linear: ClassVar[bool] = True
    axis: int = param(AXIS, 0)
    zeros: bool = param(FLAG, False)

    def infer(self, x, idx, v):
        check_index_node(idx, "add_along_axis")
        if not 0 <= self.axis < x.ndim:
            raise ShapeError(f"add_along_axis: axis {self.axis} is out of range for "
                             f"{types.fmt_shape(x.shape)}")
        check_constant(idx, x.shape[self.axis], f"axis {self.axis}", "add_along_axis")
        window = along_shape(x.shape, idx.shape, self.axis, "add_along_axis")
        fits_window(v, window, x.dtype, "add_along_axis")
        return x.shape, x.dtype

    def forward(self, x, idx, v):
        check_range(idx, x.shape[self.axis], 1, f"axis {self.axis}")
        flat, window = along_flat(x.shape, idx, self.axis)
        out = np.zeros(x.shape, x.dtype) if self.zeros else np.array(x, order="C")
        v = np.broadcast_to(v, window).reshape(1, -1, 1)
        if out.dtype == object:
            np.add.at(out.reshape(-1), flat, v.reshape(-1))
        else:
            scatter_add_rows(out.reshape(1, -1, 1), flat, v)
        return out

    def bprop(self, inputs, out, g, i):
        if i == 1 or not types.is_float(inputs[i].dtype) or (i == 0 and self.zeros):
            return None
        return g if i == 0 else build(TakeAlongAxis(self.axis), g, inputs[1])

    def jvp(self, inputs, out, t, i):
        if i == 1 or (i == 0 and self.zeros):
            return None
        if i == 0:
            return t
        return build(AddAlongAxis(self.axis, True), inputs[0], inputs[1], t)

    def batch(self, node, ins, m):
        from graphc.ops.shape import broadcast_to, expand_dims

        (x, bx), (idx, bi), (v, bv) = ins
        if bi:
            return NotImplemented
        x = x if bx else broadcast_to(x, (m, *x.shape))
        v = pad_batched(v, node.inputs[0].ndim) if bv else v
        return node.graph.apply(AddAlongAxis(self.axis + 1, self.zeros),
                                [x, expand_dims(idx, 0), v])


def fits_window(v: Node, window, dtype: np.dtype, caller: str) -> None:
    """The values of an update must broadcast to the window they go to, in x's dtype kind."""
    try:
        full = types.broadcast_shapes(v.shape, window)
    except ValueError:
        full = None
    if full is None or not types.shape_eq(full, window):
        raise ShapeError(f"{caller}: values of shape {types.fmt_shape(v.shape)} do not "
                         f"broadcast to the indexed shape {types.fmt_shape(window)}")
    if not np.can_cast(v.dtype, dtype, "same_kind"):
        raise ShapeError(f"{caller}: values of dtype {v.dtype} cannot be written into an "
                         f"array of dtype {dtype}")


# -- gather, at_add, at_set: NumPy's advanced indexing --------------------------------------
class _Advanced(_Indexed):
    """An op whose parameters are an advanced index: `index` with a full-slice placeholder
    at each array's position, `at` those positions; the arrays are the trailing operands."""

    arity: ClassVar[None] = None
    index_operands: ClassVar[None] = None
    index: tuple
    at: tuple

    def __post_init__(self):
        super().__post_init__()
        check_at(self, self.index, self.at)

    def label(self) -> str:
        more = {k: v for k, v in self.params().items() if k not in ("index", "at")}
        return index_label(self.name, self.index, self.at, **more)

    def split(self, inputs):
        """(the leading operands, the index operands), checked in number."""
        lead = inputs[:self.first_index]
        arrays = inputs[self.first_index:]
        if len(lead) != self.first_index or len(arrays) != len(self.at):
            raise ShapeError(f"{self.name}: {len(inputs)} operands given, expected "
                             f"{self.first_index} and {len(self.at)} index arrays")
        return lead, arrays

    def window(self, x_shape, arrays, caller):
        for a in arrays:
            check_index_node(a, caller)
        return indexed_shape(x_shape, self.index, self.at, [a.shape for a in arrays], caller,
                             arrays)

    def batched_op(self):
        """This op over inputs with a leading batch axis, or None where that would move the
        index's dims (advanced entries apart: NumPy puts their dims first)."""
        adv = advanced_entries(self.index, self.at)
        if not adjacent(adv):
            return None
        return dataclasses.replace(self, index=(slice(None), *self.index),
                                   at=tuple(p + 1 for p in self.at))


def read(x: Node, index: tuple, at: tuple, arrays) -> Node:
    """`x[index]` as graph ops: basic indexing without arrays, else a gather."""
    from graphc.ops.shape import getitem

    if not at:
        return getitem(x, index)
    return build(Gather(index, at), x, *arrays)


@register
@dataclasses.dataclass(frozen=True)
class Gather(_Advanced):
    """`x[index]` with two or more advanced entries (arrays, or an array and ints).

    Linear in x: the cotangent is added back by `at_add` from zeros (repeats accumulate).
    """

    name: ClassVar[str] = "gather"
    fresh: ClassVar[bool] = True
    emit_numpy = emit_named
    index: tuple = param(INDEX, ())
    at: tuple = param(COUNTS, ())

    def infer(self, x, *arrays):
        if not self.at:
            raise ShapeError("gather: needs at least one index array")
        (x,), arrays = self.split((x, *arrays))
        return self.window(x.shape, arrays, "gather"), x.dtype

    def forward(self, x, *arrays):
        def run():
            return np.array(x[full_index(self.index, self.at, intp_all(arrays))], copy=True)
        return checked_all(run, x.shape, self.index, self.at, arrays, 1)

    def bprop(self, inputs, out, g, i):
        if i != 0 or not types.is_float(inputs[0].dtype):
            return None
        return build(AtAdd(self.index, self.at, True), inputs[0], g, *inputs[1:])

    def jvp(self, inputs, out, t, i):
        return build(self, t, *inputs[1:]) if i == 0 else None

    def batch(self, node, ins, m):
        op = self.batched_op()
        if op is None or any(b for _, b in ins[1:]):
            return NotImplemented
        return node.graph.apply(op, [n for n, _ in ins])


class _Write(_Advanced):
    """A write of v at advanced-indexed positions of x (`at_add`, `at_set`): operands x, v and
    the index arrays, one batching rule for both."""

    def batch(self, node, ins, m):
        from graphc.ops.shape import broadcast_to

        op = self.batched_op()
        if op is None or any(b for _, b in ins[2:]):
            return NotImplemented
        (x, bx), (v, bv) = ins[:2]
        x = x if bx else broadcast_to(x, (m, *x.shape))
        window = indexed_shape(node.inputs[0].shape, self.index, self.at,
                               [a.shape for a in node.inputs[2:]], self.name)
        v = pad_batched(v, len(window)) if bv else v
        return node.graph.apply(op, [x, v, *(n for n, _ in ins[2:])])


@register
@dataclasses.dataclass(frozen=True)
class AtAdd(_Write):
    """`x.at[index].add(v)`: x with v added at the indexed positions, repeated positions
    accumulating (NumPy's `np.add.at`). `zeros`: start from zeros, x lending only its shape
    and dtype (gather's adjoint). Linear in x and v together."""

    name: ClassVar[str] = "at_add"
    fresh: ClassVar[bool] = True
    emit_numpy = emit_named
    linear: ClassVar[bool] = True
    first_index: ClassVar[int] = 2
    index: tuple = param(INDEX, ())
    at: tuple = param(COUNTS, ())
    zeros: bool = param(FLAG, False)

    def infer(self, x, v, *arrays):
        (x, v), arrays = self.split((x, v, *arrays))
        fits_window(v, self.window(x.shape, arrays, "at_add"), x.dtype, "at_add")
        return x.shape, x.dtype

    def forward(self, x, v, *arrays):
        out = np.zeros(x.shape, x.dtype) if self.zeros else np.array(x, order="C")
        if not self.at:  # basic indexing: each position once
            out[self.index] += v
            return out
        def run():
            layout = None if out.dtype == object else flat_layout(
                out.shape, self.index, self.at, arrays)
            if layout is None:
                tup = full_index(self.index, self.at, intp_all(arrays))
                np.add.at(out, tup, np.broadcast_to(v, out[tup].shape))
                return out
            pre, n, post, ids, window, _ = layout
            w = np.broadcast_to(np.asarray(v), window).reshape(pre, len(ids), post)
            scatter_add_rows(out.reshape(pre, n, post), ids, w)
            return out
        return checked_all(run, x.shape, self.index, self.at, arrays, 2)

    def bprop(self, inputs, out, g, i):
        if i >= 2 or not types.is_float(inputs[i].dtype) or (i == 0 and self.zeros):
            return None
        return g if i == 0 else read(g, self.index, self.at, inputs[2:])

    def jvp(self, inputs, out, t, i):
        if i >= 2 or (i == 0 and self.zeros):
            return None
        if i == 0:
            return t
        return build(AtAdd(self.index, self.at, True), inputs[0], t, *inputs[2:])


@register
@dataclasses.dataclass(frozen=True)
class AtSet(_Write):
    """`x.at[index].set(v)`: x with v written at the indexed positions. Where a position is
    written more than once the last write wins, in C order of the broadcast indices (what
    NumPy's `x[index] = v` does).

    Linear in x and v together: the cotangent of x is g with the written positions zeroed
    (`at_set(g, 0)`), that of v is g read at the positions, kept only where that write of v
    is the one that lands (`last_write`); the tangent is `at_set(t_x, t_v)`.
    """

    name: ClassVar[str] = "at_set"
    fresh: ClassVar[bool] = True
    emit_numpy = emit_named
    linear: ClassVar[bool] = True
    first_index: ClassVar[int] = 2
    index: tuple = param(INDEX, ())
    at: tuple = param(COUNTS, ())

    def infer(self, x, v, *arrays):
        (x, v), arrays = self.split((x, v, *arrays))
        fits_window(v, self.window(x.shape, arrays, "at_set"), x.dtype, "at_set")
        return x.shape, x.dtype

    def forward(self, x, v, *arrays):
        out = np.array(x, order="C")

        def run():
            out[full_index(self.index, self.at, intp_all(arrays))] = v
            return out
        return checked_all(run, x.shape, self.index, self.at, arrays, 2)

    def bprop(self, inputs, out, g, i):
        from graphc.ops.elementwise import where

        if i >= 2 or not types.is_float(inputs[i].dtype):
            return None
        x, arrays = inputs[0], inputs[2:]
        if i == 0:
            return build(self, g, 0.0, *arrays)
        picked = read(g, self.index, self.at, arrays)
        if not self.at:
            return picked  # basic indexing writes each position once
        lands = build(LastWrite(self.index, self.at, x.shape), *arrays)
        return where(lands, picked, 0.0)

    def jvp(self, inputs, out, t, i):
        from graphc.ops.elementwise import zeros_like

        if i >= 2:
            return None
        if i == 0:
            return build(self, t, 0.0, *inputs[2:])
        return build(self, zeros_like(inputs[0]), t, *inputs[2:])


@register
@dataclasses.dataclass(frozen=True)
class LastWrite(_Advanced):
    """True where a write of `x.at[index].set(v)` (x of `shape`) is the one that lands: each
    position written more than once keeps its last write, in C order of the broadcast
    indices. Reads the indices only, so no gradient flows through it."""

    name: ClassVar[str] = "last_write"
    fresh: ClassVar[bool] = True
    emit_numpy = emit_named
    differentiable: ClassVar[bool] = False
    first_index: ClassVar[int] = 0
    index: tuple = param(INDEX, ())
    at: tuple = param(COUNTS, ())
    shape: tuple = param(SHAPE, ())

    def infer(self, *arrays):
        _, arrays = self.split(arrays)
        return self.window(self.shape, arrays, "last_write"), np.dtype(bool)

    def forward(self, *arrays):
        shape = tuple(int(d) for d in self.shape)
        check_arrays(shape, self.index, self.at, arrays, 0)
        layout = flat_layout(shape, self.index, self.at, arrays)
        if layout is not None:
            pre, n, post, ids, window, a = layout
            ids = np.where(ids < 0, ids + n, ids)
            _, first_from_end = np.unique(ids[::-1], return_index=True)
            lands = np.zeros(len(ids), bool)
            lands[len(ids) - 1 - first_from_end] = True
            b = len(window) - len(shape) + len(advanced_entries(self.index, self.at))
            lands = lands.reshape((1,) * a + window[a:a + b] + (1,) * (len(window) - a - b))
            return np.broadcast_to(lands, window).copy()
        tup = full_index(self.index, self.at, [np.ascontiguousarray(a) for a in arrays])
        marker = np.full(shape, -1, np.intp)
        window = marker[tup].shape
        order = np.arange(math.prod(window)).reshape(window)
        marker[tup] = order
        return marker[tup] == order

    def batch(self, node, ins, m):
        # Indices carry no tangent, so jacobian and hessian never batch them; only a vmap over
        # the indices themselves gets here, and the general rule (row by row) is right.
        return NotImplemented

    def sympy(self, node, *args):
        lands = self.forward(*sympy_indices(args, range(len(args)), self.name))
        return np.vectorize(lambda b: sympy.true if b else sympy.false, otypes=[object])(lands)


# -- parsing `x[...]` -----------------------------------------------------------------------
def parse_index(x: Node, index, caller: str):
    """Split a NumPy index into the basic index (placeholders at the arrays), the arrays'
    positions and the arrays as nodes of x's graph; None when it is basic indexing."""
    if not isinstance(index, tuple):
        index = (index,)
    g = x.graph
    basic, at, arrays = [], [], []
    for e in index:
        if isinstance(e, Node):
            check_index_node(e, caller)
            at.append(len(basic))
            basic.append(slice(None))
            arrays.append(e)
            continue
        if isinstance(e, (np.ndarray, list)) or (isinstance(e, tuple) and e):
            a = np.asarray(e)
            if a.dtype == object:
                raise ShapeError(f"{caller}: an index list mixes nodes and values or is "
                                 "ragged; build it with gc.stack")
            if a.size == 0 and a.dtype.kind == "f":
                a = a.astype(np.intp)  # NumPy reads an empty list as an empty int array
            if a.dtype.kind == "b":  # a constant mask: its nonzero positions, one per axis
                for part in np.nonzero(a):
                    at.append(len(basic))
                    basic.append(slice(None))
                    arrays.append(g.constant(part))
                continue
            if not is_index_dtype(a.dtype):
                raise ShapeError(f"{caller}: index arrays must be integers, got an array of "
                                 f"dtype {a.dtype}")
            at.append(len(basic))
            basic.append(slice(None))
            arrays.append(g.constant(a))
            continue
        basic.append(e)
    if not at:
        return None
    basic = [e if k in at else basic_entry(e, caller) for k, e in enumerate(basic)]
    if sum(1 for e in basic if e is Ellipsis) > 1:
        raise ShapeError(f"{caller}: an index can only have one Ellipsis")
    return tuple(basic), tuple(at), arrays


def basic_entry(e, caller: str):
    """An int, slice, None or Ellipsis of an index, as the `index` parameter holds it."""
    if isinstance(e, (bool, np.bool_)):
        raise ShapeError(f"{caller}: boolean scalars are not indices; use gc.where")
    if isinstance(e, (int, np.integer)):
        return int(e)
    if e is None or e is Ellipsis:
        return e
    if isinstance(e, slice):
        parts = []
        for v in (e.start, e.stop, e.step):
            if isinstance(v, (bool, np.bool_)) or not (
                    v is None or isinstance(v, (int, np.integer, sympy.Expr))):
                raise ShapeError(f"{caller}: slice bounds must be ints, got {v!r}")
            parts.append(int(v) if isinstance(v, (int, np.integer)) else v)
        if parts[2] == 0:
            raise ShapeError(f"{caller}: slice step cannot be zero")
        return slice(*parts)
    raise ShapeError(f"{caller}: cannot index with {type(e).__name__} {e!r:.60}; indices are "
                     "ints, slices, None, ..., integer arrays or integer nodes")


def index_node(idx, g, caller: str, what: str = "indices") -> Node:
    """Indices as a node of `g`: nodes pass through (integers only), arrays become
    constants; floats, booleans and anything else are refused."""
    if isinstance(idx, Node):
        check_index_node(idx, caller, what)
        return idx
    try:
        a = np.asarray(idx)
    except ValueError as e:
        raise ShapeError(f"{caller}: cannot read {what} from {idx!r:.60}: {e}") from None
    if a.size == 0 and a.dtype.kind == "f":
        a = a.astype(np.intp)
    if not is_index_dtype(a.dtype):
        raise ShapeError(f"{caller}: {what} must be integers, got an array of dtype {a.dtype}")
    return g.constant(a)


# -- public functions ----------------------------------------------------------------------
@atomic
def getitem(x, index):
    """NumPy indexing of a node: basic (`x[1:3, None]`) or advanced, with integer arrays,
    lists or integer nodes (`x[idx]`, `x[:, idx]`, `x[rows, cols]`) and constant boolean
    masks (their `np.nonzero`).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3, 4))
        >>> x[np.array([2, 0, 2]), 1:3].eval({x: np.arange(12.0).reshape(3, 4)})
        array([[ 9., 10.],
               [ 1.,  2.],
               [ 9., 10.]])
    """
    from graphc.ops.shape import getitem as basic_getitem

    parsed = parse_index(x, index, "getitem")
    if parsed is None:
        return basic_getitem(x, index)
    basic, at, arrays = parsed
    ints = [k for k, e in enumerate(basic) if type(e) is int]
    if len(at) == 1 and not ints:
        # one array: basic indexing around it, then take along the axis it reads
        k = at[0]
        n_real = sum(1 for e in basic if e is not None and e is not Ellipsis)
        if n_real > x.ndim:
            raise ShapeError(f"getitem: too many indices ({n_real}) for shape "
                             f"{types.fmt_shape(x.shape)}")
        axis = sum(x.ndim - n_real if e is Ellipsis else 1 for e in basic[:k])
        y = basic_getitem(x, basic)
        return build(Take(axis), y, arrays[0])
    return build(Gather(basic, at), x, *arrays)


@atomic
def take(x, idx, axis=None):
    """NumPy's take: entries of x at the integer indices `idx` along `axis` (x flattened when
    None); negative indices count from the end; out of range is an error.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> E = g.input("E", shape=(4, 2))
        >>> ids = g.input("ids", shape=(3,), dtype="int64")
        >>> gc.take(E, ids, axis=0).eval({E: np.arange(8.0).reshape(4, 2), ids: [3, 0, -1]})
        array([[6., 7.],
               [0., 1.],
               [6., 7.]])
    """
    from graphc.ops.shape import reshape

    g = graph_of(x, idx, caller="take")
    x = lift(x, g)
    idx = index_node(idx, g, "take")
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    try:
        axis = types.normalize_axis(axis, x.ndim)
    except ValueError as e:
        raise ShapeError(f"take of {types.fmt_shape(x.shape)}: {e}") from None
    return build(Take(axis), x, idx)


@atomic
def take_along_axis(x, idx, axis):
    """NumPy's take_along_axis: `idx` (x's rank) picks along `axis`, broadcast elsewhere;
    `axis=None` works on x flattened (idx 1-D).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2, 3))
        >>> top = gc.take_along_axis(x, np.array([[2], [0]]), axis=1)
        >>> top.eval({x: np.array([[1.0, 5.0, 9.0], [7.0, 3.0, 2.0]])})
        array([[9.],
               [7.]])
    """
    from graphc.ops.shape import reshape

    g = graph_of(x, idx, caller="take_along_axis")
    x = lift(x, g)
    idx = index_node(idx, g, "take_along_axis")
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    try:
        axis = types.normalize_axis(axis, x.ndim)
    except ValueError as e:
        raise ShapeError(f"take_along_axis of {types.fmt_shape(x.shape)}: {e}") from None
    return build(TakeAlongAxis(axis), x, idx)


@atomic
def segment_sum(data, segment_ids, num_segments):
    """Sums of the rows of `data` grouped by `segment_ids` (one id per row, in
    `[-num_segments, num_segments)`): row s of the result sums the rows with id s, zeros for
    an id that never occurs. Its gradient is `take` of the cotangent.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> d = g.input("d", shape=(4,))
        >>> gc.segment_sum(d, np.array([0, 2, 0, 1]), 3).eval({d: np.array([1.0, 2, 3, 4])})
        array([4., 4., 2.])
    """
    g = graph_of(data, segment_ids, caller="segment_sum")
    data = lift(data, g)
    ids = index_node(segment_ids, g, "segment_sum", "segment ids")
    if isinstance(num_segments, (bool, np.bool_)) or not isinstance(
            num_segments, (int, np.integer, str)) or (
            not isinstance(num_segments, str) and num_segments < 0):
        raise ShapeError(f"segment_sum: num_segments must be a size (an int >= 0), got "
                         f"{num_segments!r}")
    if data.ndim == 0:
        raise ShapeError("segment_sum: data must have at least one axis")
    return build(SegmentSum(types.as_dim(num_segments), 0), data, ids)


class IndexUpdate:
    """`x.at[index]`: JAX's spelling of a functional update, `.add(v)` or `.set(v)`."""

    __slots__ = ("x", "index")

    def __init__(self, x: Node, index):
        self.x, self.index = x, index

    def __repr__(self) -> str:
        return f"{self.x.name}.at[{self.index!r}]"

    def add(self, v):
        """x with v added at the index; repeated indices accumulate (`np.add.at`)."""
        return at_add(self.x, self.index, v)

    def set(self, v):
        """x with v written at the index; where an index repeats, the last write wins."""
        return at_set(self.x, self.index, v)

    def get(self):
        """x[index]."""
        return getitem(self.x, self.index)


class IndexUpdater:
    """The object `x.at` is: indexing it gives an `IndexUpdate`."""

    __slots__ = ("x",)

    def __init__(self, x: Node):
        self.x = x

    def __getitem__(self, index) -> IndexUpdate:
        return IndexUpdate(self.x, index)


def _update_parts(x, index, v, caller):
    parsed = parse_index(x, index, caller)
    if parsed is None:
        basic = index if isinstance(index, tuple) else (index,)
        parsed = tuple(basic_entry(e, caller) for e in basic), (), []
    basic, at, arrays = parsed
    return basic, at, arrays, lift(v, x.graph, like=x)


@atomic
def at_add(x, index, v):
    """`x.at[index].add(v)`: x with v added at `index` (repeats accumulate).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(4,))
        >>> x.at[np.array([0, 2, 0])].add(1.0).eval({x: np.zeros(4)})
        array([2., 0., 1., 0.])
    """
    basic, at, arrays, v = _update_parts(x, index, v, "at_add")
    return build(AtAdd(basic, at, False), x, v, *arrays)


@atomic
def at_set(x, index, v):
    """`x.at[index].set(v)`: x with v written at `index`; the last of repeated writes wins.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> x.at[np.array([1, 1])].set(np.array([5.0, 7.0])).eval({x: np.zeros(3)})
        array([0., 7., 0.])
    """
    basic, at, arrays, v = _update_parts(x, index, v, "at_set")
    return build(AtSet(basic, at), x, v, *arrays)
