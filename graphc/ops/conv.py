"""Convolution and pooling over 1 to 3 spatial axes, in PyTorch's layout `(N, C, *spatial)`.

`conv(x, w)` is PyTorch's (a cross-correlation, the kernel not flipped):

    y[n, o, p] = sum over c in o's group, k in the kernel of
                 x_padded[n, c, p * stride + k * dilation] * w[o, c, k]

It is bilinear, and three ops make a family closed under differentiation. With the scalar
T(x, w, y) = <y, conv(x, w)>, each op is T's gradient in one argument:

| op | computes | shape of | bprop to its inputs | jvp |
|---|---|---|---|---|
| `conv(x, w)` | d T / d y | y | `conv_transpose(g, w)`, `conv_weight_vjp(x, g)` | by linearity |
| `conv_transpose(y, w)` | d T / d x | x | `conv(g, w)`, `conv_weight_vjp(g, y)` | by linearity |
| `conv_weight_vjp(x, y)` | d T / d w | w | `conv_transpose(y, g)`, `conv(x, g)` | by linearity |

so every order of derivative stays in the family. Forward, each builds the im2col matrix from
a strided view (`sliding_window_view`, the dilation and stride taken as view steps; one copy)
and does one BLAS product per sample and group; `conv_transpose` scatters its columns back
(col2im, one strided add per kernel offset). Kernels of FFT_TAPS taps or more (stride and
dilation 1) go through `scipy.fft` instead, where im2col would copy x that many times. Measured
against the alternatives (docs/ops.md, "Convolution and pooling"): `tensordot` or `einsum` on
the view, one product per kernel offset, `scipy.signal.correlate` per channel pair, and FFT for
small kernels are all slower.

Pooling has no padding and follows PyTorch's default floor mode: windows that would run past the
end are dropped, and the entries that only they would read get a zero gradient.
`max_pool` routes the gradient to each window's maximum, shared equally among tied entries (the
convention of `gc.max`). Its bprop is `max_pool_vjp(x, g)` and its jvp `max_pool_jvp(x, t)`:
each is linear in its second input for fixed routing, and each one's bprop is the other, so
grad of grad works. `avg_pool` is linear; its adjoint `avg_pool_vjp` spreads each entry over
its window.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import ClassVar

import numpy as np
import scipy.fft
import sympy
from numpy.lib.stride_tricks import sliding_window_view

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.op import Op, entries, register
from graphc.ir.params import PADS, POSITIVE, POSITIVES, SHAPE, param
from graphc.ops import symbolic
from graphc.ops.base import atomic, build, graph_of, lift
from graphc.ops.shape import broadcast_to, reshape, transpose

MAX_SPATIAL = 3
FFT_TAPS = 49  # kernels of this many taps or more, stride and dilation 1, go through the FFT


# -- geometry ------------------------------------------------------------------------------
def _out_size(name: str, size, k: int, stride: int, dilation: int, pad: tuple) -> types.Dim:
    """Positions a window of `k` taps, `dilation` apart, takes along one padded axis."""
    span = dilation * (k - 1) + 1
    room = size + pad[0] + pad[1] - span
    if isinstance(room, int):
        if room < 0:
            raise ShapeError(f"{name}: a spatial axis of size {size} (padded "
                             f"{size + pad[0] + pad[1]}) is shorter than the window's span "
                             f"{span}")
        return room // stride + 1
    if stride != 1:
        raise ShapeError(f"{name}: the symbolic spatial size {size} needs stride 1 (the "
                         f"output size would be a floor), got stride {stride}")
    return types.as_dim(room + 1)


def _spatial_out(name: str, spatial, kernel, stride, dilation, padding) -> tuple:
    return tuple(_out_size(name, s, k, st, d, p)
                 for s, k, st, d, p in zip(spatial, kernel, stride, dilation, padding))


def _windows(xp: np.ndarray, kernel, stride, dilation) -> np.ndarray:
    """A view (N, C, *kernel, *positions) of the windows of an already padded `xp`."""
    d = len(kernel)
    span = tuple(di * (k - 1) + 1 for k, di in zip(kernel, dilation))
    v = sliding_window_view(xp, span, axis=tuple(range(2, 2 + d)))  # (N, C, *Q, *span)
    v = v[(slice(None), slice(None), *(slice(None, None, s) for s in stride),
           *(slice(None, None, di) for di in dilation))]
    return v.transpose(0, 1, *range(2 + d, 2 + 2 * d), *range(2, 2 + d))


def _taps(kernel, stride, dilation, positions):
    """For each kernel offset: the index of the input entries it reads at every position."""
    for k in itertools.product(*(range(n) for n in kernel)):
        yield k, (slice(None), slice(None), *(
            slice(kk * di, kk * di + (p - 1) * s + 1, s)
            for kk, di, s, p in zip(k, dilation, stride, positions)))


def _pad(x: np.ndarray, padding) -> np.ndarray:
    if not any(lo or hi for lo, hi in padding):
        return x
    return np.pad(x, ((0, 0), (0, 0), *padding))


def _unpad(xp: np.ndarray, padding) -> np.ndarray:
    if not any(lo or hi for lo, hi in padding):
        return xp
    return np.ascontiguousarray(xp[(slice(None), slice(None), *(
        slice(lo, n - hi) for (lo, hi), n in zip(padding, xp.shape[2:])))])


def _zeros(shape, dtype) -> np.ndarray:
    if np.dtype(dtype).kind == "O":  # sympy entries (to_sympy runs forward on object arrays)
        out = np.empty(shape, dtype=object)
        out.fill(sympy.Integer(0))
        return out
    return np.zeros(shape, dtype)


def _col2im(cols: np.ndarray, shape, kernel, stride, dilation, padding) -> np.ndarray:
    """The adjoint of im2col: `cols` (N, C, *kernel, *positions) summed into an array of the
    padded `shape`, then unpadded."""
    padded = (*shape[:2], *(n + lo + hi for n, (lo, hi) in zip(shape[2:], padding)))
    out = _zeros(padded, cols.dtype)
    d = len(kernel)
    for k, where in _taps(kernel, stride, dilation, cols.shape[2 + d:]):
        out[where] += cols[(slice(None), slice(None), *k)]
    return _unpad(out, padding)


def _correlate_fft(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out[i, j, p] = sum over c, k of a[i, c, p + k] * b[j, c, k], the valid positions p, by
    FFT over the spatial axes: one real transform per operand, a product per frequency (a
    matrix product over c), one inverse. A circular correlation of length >= a's size equals
    the linear one at the valid positions (nothing wraps)."""
    d = a.ndim - 2
    axes = tuple(range(2, 2 + d))
    size = [scipy.fft.next_fast_len(n, real=True) for n in a.shape[2:]]
    fa = scipy.fft.rfftn(a, size, axes=axes)                       # (I, C, *f)
    fb = scipy.fft.rfftn(b, size, axes=axes)                       # (J, C, *f)
    fa = np.moveaxis(fa.reshape(*a.shape[:2], -1), -1, 0)          # (f, I, C)
    fb = np.moveaxis(fb.reshape(*b.shape[:2], -1), -1, 0).conj()   # (f, J, C)
    prod = np.matmul(fa, fb.transpose(0, 2, 1))                    # (f, I, J)
    prod = np.moveaxis(prod, 0, -1).reshape(a.shape[0], b.shape[0], *_rfft_shape(size))
    out = scipy.fft.irfftn(prod, size, axes=axes)
    valid = tuple(slice(0, n - k + 1) for n, k in zip(a.shape[2:], b.shape[2:]))
    return np.ascontiguousarray(out[(slice(None), slice(None), *valid)]).astype(
        np.result_type(a.dtype, b.dtype), copy=False)


def _rfft_shape(size) -> tuple:
    """The shape of a real FFT of `size` (the last axis halved, plus one)."""
    return (*size[:-1], size[-1] // 2 + 1)


def _by_groups(fn, a, b, groups: int, a_axis: int, b_axis: int, out_axis: int):
    """`fn` on each group's channel block of a (axis a_axis) and b (axis b_axis), the
    results concatenated along out_axis."""
    if groups == 1:
        return fn(a, b)
    ca, cb = a.shape[a_axis] // groups, b.shape[b_axis] // groups
    parts = [fn(np.take(a, range(k * ca, (k + 1) * ca), axis=a_axis),
                np.take(b, range(k * cb, (k + 1) * cb), axis=b_axis)) for k in range(groups)]
    return np.concatenate(parts, axis=out_axis)


# -- the convolution family ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _ConvFamily(Op):
    """What the three ops of the family share: the geometry parameters and their checks."""

    arity: ClassVar[int] = 2
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward  # im2col, products and sums: the forward runs on sympy
    stride: tuple = param(POSITIVES, (1,))
    padding: tuple = param(PADS, ((0, 0),))
    dilation: tuple = param(POSITIVES, (1,))
    groups: int = param(POSITIVE, 1)

    def __post_init__(self):
        super().__post_init__()
        d = len(self.stride)
        if (not 1 <= d <= MAX_SPATIAL or len(self.padding) != d or len(self.dilation) != d
                or any(len(p) != 2 for p in self.padding)):
            raise GraphError(f"{self.name}: stride, padding and dilation must describe the "
                             f"same 1 to {MAX_SPATIAL} spatial axes (padding as (before, "
                             f"after) pairs), got stride={self.stride}, padding="
                             f"{self.padding}, dilation={self.dilation}")

    @property
    def ndim(self) -> int:
        return len(self.stride)

    def _geometry(self, x_shape, w_shape, x_dtype, w_dtype, what: str) -> tuple:
        """Check x (N, C, *spatial) against w (O, C // groups, *kernel); y's shape."""
        d, g = self.ndim, self.groups
        if len(x_shape) != d + 2 or len(w_shape) != d + 2:
            raise ShapeError(f"{self.name}: {what} with {d} spatial axes needs x of shape "
                             f"(N, C, *spatial) and w of shape (O, C // groups, *kernel), "
                             f"both of rank {d + 2}; got x {types.fmt_shape(x_shape)} and w "
                             f"{types.fmt_shape(w_shape)}")
        for label, dt in (("x", x_dtype), ("w", w_dtype)):
            if not types.is_float(dt):
                raise ShapeError(f"{self.name}: {label} must be float, got {dt}")
        kernel = w_shape[2:]
        if not all(isinstance(k, int) and k >= 1 for k in kernel):
            raise ShapeError(f"{self.name}: the kernel's spatial sizes must be static ints "
                             f">= 1, got w {types.fmt_shape(w_shape)}")
        c, o = x_shape[1], w_shape[0]
        if not types.dim_eq(c, w_shape[1] * g):
            raise ShapeError(f"{self.name}: x {types.fmt_shape(x_shape)} has {c} channels, "
                             f"but w {types.fmt_shape(w_shape)} takes {w_shape[1]} per group "
                             f"x {g} groups")
        if g > 1 and not (isinstance(o, int) and o % g == 0):
            raise ShapeError(f"{self.name}: w {types.fmt_shape(w_shape)} has {o} output "
                             f"channels, not a multiple of groups={g}")
        return (x_shape[0], o, *_spatial_out(self.name, x_shape[2:], kernel, self.stride,
                                             self.dilation, self.padding))

    def _check_y(self, y, want, role: str) -> None:
        if not types.shape_eq(y.shape, want):
            raise ShapeError(f"{self.name}: {role} of shape {types.fmt_shape(y.shape)} does "
                             f"not fit the convolution, which gives {types.fmt_shape(want)}")

    def cost(self, node) -> float:
        y_shape, w_shape = self._y_and_w(node)
        return 2.0 * entries(y_shape) * entries(w_shape[1:])  # one multiply-add per tap

    def with_groups(self, groups: int):
        return dataclasses.replace(self, groups=groups)

    # numpy -------------------------------------------------------------------------------
    def _use_fft(self, kernel, *arrays) -> bool:
        """Stride and dilation 1, float arrays and a kernel of FFT_TAPS taps or more: the
        im2col matrix would hold that many copies of x (bench/ops_conv.py, docs/ops.md)."""
        return (math.prod(kernel) >= FFT_TAPS and all(s == 1 for s in self.stride)
                and all(d == 1 for d in self.dilation)
                and all(a.dtype.kind == "f" for a in arrays))

    def _cols(self, x: np.ndarray, kernel) -> np.ndarray:
        """The im2col matrix of x, (N, groups, C // groups * taps, positions): one copy."""
        v = _windows(_pad(x, self.padding), kernel, self.stride, self.dilation)
        n, c = x.shape[:2]
        return v.reshape(n, self.groups, c // self.groups * math.prod(kernel), -1)


@register
@dataclasses.dataclass(frozen=True)
class Conv(_ConvFamily):
    """Cross-correlation of x (N, C, *spatial) with w (O, C // groups, *kernel), PyTorch's.

    Bilinear: d/dx is conv_transpose(g, w), d/dw is conv_weight_vjp(x, g); jvp by linearity.
    """

    name: ClassVar[str] = "conv"

    def infer(self, x, w):
        shape = self._geometry(x.shape, w.shape, x.dtype, w.dtype, "conv")
        return shape, np.result_type(x.dtype, w.dtype)

    def _y_and_w(self, node):
        return node.shape, node.inputs[1].shape

    def forward(self, x, w):
        g = self.groups
        if self._use_fft(w.shape[2:], x, w):
            return _by_groups(_correlate_fft, _pad(x, self.padding), w, g, 1, 0, 1)
        cols = self._cols(x, w.shape[2:])
        wm = w.reshape(g, w.shape[0] // g, -1)
        out = np.matmul(wm, cols)  # (N, groups, O // groups, positions)
        n = x.shape[0]
        positions = _spatial_out(self.name, x.shape[2:], w.shape[2:], self.stride,
                                 self.dilation, self.padding)
        return out.reshape(n, w.shape[0], *positions)

    def bprop(self, inputs, out, g, i):
        x, w = inputs
        if i == 0:
            return _conv_transpose(self, g, w, x.shape[2:])
        return _conv_weight_vjp(self, x, g, w.shape[2:])

    def jvp(self, inputs, out, t, i):
        x, w = inputs
        return out.graph.apply(self, [t, w] if i == 0 else [x, t])

    def batch(self, node, ins, m):
        (x, xb), (w, wb) = ins
        n, o = node.inputs[0].shape[0], node.shape[1]
        if not wb:  # the batch runs as more samples
            return _unfold(node.graph.apply(self, [_fold(x, m), w]), m, n)
        g, kernel = self.groups, node.inputs[1].shape[2:]
        cg = node.inputs[1].shape[1]
        if not xb:  # every w on the same x: one conv, output channels (group, batch, o // g)
            ws = _into_channels(w, g, weights=True)  # (g * m * o/g, c/g, *k)
            return _out_of_channels(node.graph.apply(self, [x, ws]), m, g)
        if not isinstance(m, int):
            return NotImplemented  # both batched: the batch goes into `groups`, an int
        # both: m * groups groups, channel blocks (batch, group)
        ys = node.graph.apply(self.with_groups(m * g),
                              [_into_channels(x, 1), reshape(w, (m * o, cg, *kernel))])
        return _out_of_channels(ys, m, 1)


@register
@dataclasses.dataclass(frozen=True)
class ConvTranspose(_ConvFamily):
    """The adjoint of conv in x: y (N, O, *positions) and w give an x-shaped result.

    `size` is x's spatial shape (several x sizes give the same positions when the stride
    leaves a ragged edge). Bilinear: d/dy is conv(g, w), d/dw is conv_weight_vjp(g, y).
    """

    name: ClassVar[str] = "conv_transpose"
    size: tuple = param(SHAPE, (1,))

    def __post_init__(self):
        super().__post_init__()
        if len(self.size) != self.ndim:
            raise GraphError(f"{self.name}: size {self.size} must have one entry per spatial "
                             f"axis ({self.ndim})")

    def _x_shape(self, y, w):
        return (y.shape[0], w.shape[1] * self.groups, *self.size)

    def infer(self, y, w):
        if y.ndim != self.ndim + 2 or w.ndim != self.ndim + 2:
            raise ShapeError(f"{self.name}: y and w must have rank {self.ndim + 2}, got "
                             f"{types.fmt_shape(y.shape)} and {types.fmt_shape(w.shape)}")
        x_shape = self._x_shape(y, w)
        want = self._geometry(x_shape, w.shape, y.dtype, w.dtype, "conv_transpose")
        self._check_y(y, want, "y")
        return x_shape, np.result_type(y.dtype, w.dtype)

    def _y_and_w(self, node):
        return node.inputs[0].shape, node.inputs[1].shape

    def forward(self, y, w):
        g, kernel = self.groups, w.shape[2:]
        n, o = y.shape[:2]
        if self._use_fft(kernel, y, w):  # a full convolution: y padded, the kernel flipped
            full = tuple((k - 1, k - 1) for k in kernel)
            flipped = np.flip(w, axis=tuple(range(2, w.ndim))).swapaxes(0, 1)  # (C/g, O, *k)
            wt = flipped if g == 1 else np.concatenate(np.split(flipped, g, axis=1), axis=0)
            xp = _by_groups(_correlate_fft, _pad(y, full), wt, g, 1, 0, 1)
            return _unpad(xp, self.padding)
        ym = y.reshape(n, g, o // g, -1)
        wm = w.reshape(g, o // g, -1)
        cols = np.matmul(wm.transpose(0, 2, 1), ym)  # (N, groups, C/g * taps, positions)
        c = w.shape[1] * g
        cols = cols.reshape(n, c, *kernel, *y.shape[2:])
        return _col2im(cols, (n, c, *self.size), kernel, self.stride, self.dilation,
                       self.padding)

    def bprop(self, inputs, out, g, i):
        y, w = inputs
        if i == 0:
            return out.graph.apply(_as_conv(self), [g, w])
        return _conv_weight_vjp(self, g, y, w.shape[2:])

    def jvp(self, inputs, out, t, i):
        y, w = inputs
        return out.graph.apply(self, [t, w] if i == 0 else [y, t])

    def batch(self, node, ins, m):
        (y, yb), (w, wb) = ins
        n, o = node.shape[0], node.inputs[0].shape[1]
        if not wb:  # the batch runs as more samples
            return _unfold(node.graph.apply(self, [_fold(y, m), w]), m, n)
        g, kernel = self.groups, node.inputs[1].shape[2:]
        cg = node.inputs[1].shape[1]
        if not yb:  # every w on the same y: one op, x channels (group, batch, c // g)
            w2 = reshape(w, (m, g, _per(o, g), cg, *kernel))
            w2 = transpose(w2, (1, 2, 0, *range(3, w2.ndim)))  # (g, o/g, m, c/g, *k)
            xs = node.graph.apply(self, [y, reshape(w2, (o, m * cg, *kernel))])
            return _out_of_channels(xs, m, g)
        if not isinstance(m, int):
            return NotImplemented  # both batched: the batch goes into `groups`, an int
        xs = node.graph.apply(self.with_groups(m * g),
                              [_into_channels(y, 1), reshape(w, (m * o, cg, *kernel))])
        return _out_of_channels(xs, m, 1)


@register
@dataclasses.dataclass(frozen=True)
class ConvWeightVJP(_ConvFamily):
    """The adjoint of conv in w: x and y (N, O, *positions) give a w-shaped result.

    `kernel` is w's spatial shape. Bilinear: d/dx is conv_transpose(y, g), d/dy is conv(x, g).
    """

    name: ClassVar[str] = "conv_weight_vjp"
    kernel: tuple = param(POSITIVES, (1,))

    def __post_init__(self):
        super().__post_init__()
        if len(self.kernel) != self.ndim:
            raise GraphError(f"{self.name}: kernel {self.kernel} must have one entry per "
                             f"spatial axis ({self.ndim})")

    def _w_shape(self, x, y):
        c = x.shape[1]
        if self.groups > 1 and not (isinstance(c, int) and c % self.groups == 0):
            raise ShapeError(f"{self.name}: x {types.fmt_shape(x.shape)} has {c} channels, "
                             f"not a multiple of groups={self.groups}")
        return (y.shape[1], _per(c, self.groups), *self.kernel)

    def infer(self, x, y):
        if y.ndim != self.ndim + 2 or x.ndim != self.ndim + 2:
            raise ShapeError(f"{self.name}: x and y must have rank {self.ndim + 2}, got "
                             f"{types.fmt_shape(x.shape)} and {types.fmt_shape(y.shape)}")
        w_shape = self._w_shape(x, y)
        want = self._geometry(x.shape, w_shape, x.dtype, y.dtype, "conv_weight_vjp")
        self._check_y(y, want, "y")
        return w_shape, np.result_type(x.dtype, y.dtype)

    def _y_and_w(self, node):
        return node.inputs[1].shape, node.shape

    def forward(self, x, y):
        g = self.groups
        if self._use_fft(self.kernel, x, y):  # x correlated with y over N: (C/g, O, *k)
            out = _by_groups(_correlate_fft, _pad(x, self.padding).swapaxes(0, 1),
                             y.swapaxes(0, 1), g, 0, 0, 1)
            return np.ascontiguousarray(out.swapaxes(0, 1))
        cols = self._cols(x, self.kernel)  # (N, groups, C/g * taps, positions)
        n, o = y.shape[:2]
        ym = y.reshape(n, g, o // g, -1)
        # one product per sample and group, summed over the samples: tensordot over (N,
        # positions) would copy both operands into (O, N * P) and (N * P, C * taps) first
        out = np.matmul(ym, cols.transpose(0, 1, 3, 2)).sum(axis=0)
        return out.reshape(o, x.shape[1] // g, *self.kernel)

    def bprop(self, inputs, out, g, i):
        x, y = inputs
        if i == 0:
            return _conv_transpose(self, y, g, x.shape[2:])
        return out.graph.apply(_as_conv(self), [x, g])

    def jvp(self, inputs, out, t, i):
        x, y = inputs
        return out.graph.apply(self, [t, y] if i == 0 else [x, t])

    def batch(self, node, ins, m):
        (x, xb), (y, yb) = ins
        o, cg, g = node.shape[0], node.shape[1], self.groups
        if xb and yb:  # m * groups groups, channel blocks (batch, group)
            if not isinstance(m, int):
                return NotImplemented  # the batch goes into `groups`, an int
            ws = node.graph.apply(self.with_groups(m * g),
                                  [_into_channels(x, 1), _into_channels(y, 1)])
            return reshape(ws, (m, *node.shape))
        if xb:  # x channels (group, batch, c // g): per group, result columns (batch, c/g)
            ws = node.graph.apply(self, [_into_channels(x, g), y])  # (o, m * c/g, *k)
            ws = reshape(ws, (g, _per(o, g), m, cg, *self.kernel))
            ws = transpose(ws, (2, 0, 1, *range(3, ws.ndim)))
        else:  # y channels (group, batch, o // g): per group, result rows (batch, o/g)
            ws = node.graph.apply(self, [x, _into_channels(y, g)])  # (g * m * o/g, c/g, *k)
            ws = reshape(ws, (g, m, _per(o, g), cg, *self.kernel))
            ws = transpose(ws, (1, 0, *range(2, ws.ndim)))
        return reshape(ws, (m, *node.shape))


def _geometry_of(op: _ConvFamily) -> dict:
    return {"stride": op.stride, "padding": op.padding, "dilation": op.dilation,
            "groups": op.groups}


def _as_conv(op: _ConvFamily) -> Conv:
    return Conv(**_geometry_of(op))


def _conv_transpose(op: _ConvFamily, y, w, size) -> object:
    return y.graph.apply(ConvTranspose(**_geometry_of(op), size=tuple(size)), [y, w])


def _conv_weight_vjp(op: _ConvFamily, x, y, kernel) -> object:
    return x.graph.apply(ConvWeightVJP(**_geometry_of(op), kernel=tuple(kernel)), [x, y])


# -- batching helpers: a batch axis of length m moved into N or into the channels ------------
def _per(total, g: int):
    return total if g == 1 else total // g


def _fold(x, m):
    """(m, N, ...) -> (m * N, ...): the batch runs as more samples."""
    return reshape(x, (m * x.shape[1], *x.shape[2:]))


def _unfold(y, m, n):
    """(m * N, ...) -> (m, N, ...)."""
    return reshape(y, (m, n, *y.shape[1:]))


def _into_channels(x, g: int, weights: bool = False):
    """A batched operand's batch axis moved into its channels, in blocks (group, batch, per
    group): activations (m, N, ch, *s) -> (N, g * m * ch/g, *s); `weights` (m, O, c/g, *k) ->
    (g * m * O/g, c/g, *k), their groups along O."""
    m, a, b = x.shape[:3]
    rest = x.shape[3:]
    if weights:  # (m, g, O/g, c/g, *k) -> (g, m, O/g, c/g, *k)
        x = reshape(x, (m, g, _per(a, g), b, *rest))
        x = transpose(x, (1, 0, *range(2, x.ndim)))
        return reshape(x, (g * m * _per(a, g), b, *rest))
    x = reshape(x, (m, a, g, _per(b, g), *rest))  # (m, N, g, ch/g, *s) -> (N, g, m, ch/g, *s)
    x = transpose(x, (1, 2, 0, *range(3, x.ndim)))
    return reshape(x, (a, g * m * _per(b, g), *rest))


def _out_of_channels(y, m, g: int):
    """The inverse for a result: (N, g * m * per, *s) -> (m, N, g * per, *s)."""
    n, total = y.shape[:2]
    per = _per(total, g * m)
    y = reshape(y, (n, g, m, per, *y.shape[2:]))
    y = transpose(y, (2, 0, 1, *range(3, y.ndim)))
    return reshape(y, (m, n, g * per, *y.shape[4:]))


# -- pooling ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Pool(Op):
    """Windows of `window` entries, `stride` apart, over the trailing spatial axes."""

    fresh: ClassVar[bool] = True
    window: tuple = param(POSITIVES, (1,))
    stride: tuple = param(POSITIVES, (1,))

    def __post_init__(self):
        super().__post_init__()
        d = len(self.window)
        if not 1 <= d <= MAX_SPATIAL or len(self.stride) != d:
            raise GraphError(f"{self.name}: window and stride must describe the same 1 to "
                             f"{MAX_SPATIAL} spatial axes, got window={self.window}, stride="
                             f"{self.stride}")

    @property
    def ndim(self) -> int:
        return len(self.window)

    def _pooled(self, x) -> tuple:
        d = self.ndim
        if x.ndim != d + 2:
            raise ShapeError(f"{self.name}: a window over {d} spatial axes needs x of shape "
                             f"(N, C, *spatial) of rank {d + 2}, got "
                             f"{types.fmt_shape(x.shape)}")
        return (*x.shape[:2], *_spatial_out(self.name, x.shape[2:], self.window, self.stride,
                                            (1,) * d, ((0, 0),) * d))

    def _positions(self, spatial) -> tuple:
        return tuple((s - k) // st + 1 for s, k, st in zip(spatial, self.window, self.stride))

    def _taps(self, spatial):
        return _taps(self.window, self.stride, (1,) * self.ndim, self._positions(spatial))

    def _check_like(self, x, y, role: str) -> None:
        want = self._pooled(x)
        if not types.shape_eq(y.shape, want):
            raise ShapeError(f"{self.name}: {role} of shape {types.fmt_shape(y.shape)} does "
                             f"not fit the pooling of {types.fmt_shape(x.shape)}, which gives "
                             f"{types.fmt_shape(want)}")

    def _scatter(self, parts, shape, dtype):
        """The entries read by each tap, summed back into an array of `shape`."""
        out = _zeros(shape, dtype)
        for (_, where), part in zip(self._taps(shape[2:]), parts):
            out[where] += part
        return out

    def cost(self, node) -> float:
        return entries(node.shape) + sum(entries(x.shape) for x in node.inputs) * 2.0


def _float_check(name: str, *xs) -> None:
    for x in xs:
        if not types.is_float(x.dtype):
            raise ShapeError(f"{name}: needs float input, got {x.dtype}")


def _max_hits(parts):
    """For each tap's entries (`parts`, one array per window offset, shaped like the pooled
    result): where it attains its window's maximum, and how many taps tie there (>= 1)."""
    top = parts[0].copy()
    for p in parts[1:]:
        np.maximum(top, p, out=top)
    hits = [np.equal(p, top) for p in parts]
    count = hits[0].astype(np.uint8 if len(parts) < 256 else np.int32)
    for h in hits[1:]:
        np.add(count, h, out=count)
    return hits, count


def _sympy_windows(op: _Pool, x: np.ndarray):
    """For each pooled position of an object array: (its index, the input indices it reads)."""
    offsets = list(itertools.product(*(range(w) for w in op.window)))
    for idx in np.ndindex(*x.shape[:2], *op._positions(x.shape[2:])):
        yield idx, [(*idx[:2], *(p * s + k for p, s, k in zip(idx[2:], op.stride, kk)))
                    for kk in offsets]


def _sympy_shares(x, reads):
    vals = [x[r] for r in reads]
    top = sympy.Max(*vals)
    hits = [sympy.Piecewise((1, sympy.Eq(v, top)), (0, True)) for v in vals]
    total = sympy.Add(*hits)
    return [h / total for h in hits]


@register
@dataclasses.dataclass(frozen=True)
class MaxPool(_Pool):
    """The largest entry of each window; the gradient goes to it (ties share equally)."""

    name: ClassVar[str] = "max_pool"

    def infer(self, x):
        if x.dtype.kind not in "iuf":
            raise ShapeError(f"max_pool: needs a numeric input, got {x.dtype}")
        return self._pooled(x), x.dtype

    def forward(self, x):
        out = None
        for _, where in self._taps(x.shape[2:]):
            out = x[where].copy() if out is None else np.maximum(out, x[where], out=out)
        return out

    def bprop(self, inputs, out, g, i):
        x = inputs[0]
        if not types.is_float(x.dtype):
            return None
        return out.graph.apply(MaxPoolVJP(self.window, self.stride), [x, g])

    def jvp(self, inputs, out, t, i):
        x = inputs[0]
        if not types.is_float(x.dtype):
            return None
        return out.graph.apply(MaxPoolJVP(self.window, self.stride), [x, t])

    def sympy(self, node, x):
        out = np.empty(node.shape, dtype=object)
        for idx, reads in _sympy_windows(self, x):
            out[idx] = sympy.Max(*(x[r] for r in reads))
        return out

    def batch(self, node, ins, m):
        return _unfold(node.graph.apply(self, [_fold(ins[0][0], m)]), m, node.shape[0])


@register
@dataclasses.dataclass(frozen=True)
class MaxPoolVJP(_Pool):
    """max_pool's bprop: g (pooled shape) routed to each window's maximum in x (ties share).

    Linear in g for fixed x, and the routing is locally constant in x (no gradient to x,
    away from ties): d/dg is max_pool_jvp(x, g)."""

    name: ClassVar[str] = "max_pool_vjp"
    arity: ClassVar[int] = 2

    def infer(self, x, g):
        _float_check(self.name, x, g)
        self._check_like(x, g, "the cotangent")
        return x.shape, np.result_type(x.dtype, g.dtype)

    def forward(self, x, g):
        taps = [where for _, where in self._taps(x.shape[2:])]
        hits, count = _max_hits([x[w] for w in taps])
        share = np.divide(g, count, dtype=np.result_type(x.dtype, g.dtype))  # g / ties
        if any(s < k for s, k in zip(self.stride, self.window)):  # overlapping windows
            return self._scatter([h * share for h in hits], x.shape, share.dtype)
        # disjoint windows: each entry written once; zeros only where no window reaches
        tiled = all(s == k and n % k == 0 for s, k, n in zip(self.stride, self.window,
                                                             x.shape[2:]))
        out = (np.empty if tiled else np.zeros)(x.shape, share.dtype)
        for h, w in zip(hits, taps):
            np.multiply(h, share, out=out[w])
        return out

    def bprop(self, inputs, out, g, i):
        if i == 0:
            return None
        return out.graph.apply(MaxPoolJVP(self.window, self.stride), [inputs[0], g])

    def jvp(self, inputs, out, t, i):
        if i == 0:
            return None
        return out.graph.apply(self, [inputs[0], t])

    def sympy(self, node, x, g):
        out = _zeros(node.shape, object)
        for idx, reads in _sympy_windows(self, x):
            for r, share in zip(reads, _sympy_shares(x, reads)):
                out[r] += g[idx] * share
        return out

    def batch(self, node, ins, m):
        x, g = (_fold(v, m) for v in _all_batched(ins, m))
        return _unfold(node.graph.apply(self, [x, g]), m, node.shape[0])


@register
@dataclasses.dataclass(frozen=True)
class MaxPoolJVP(_Pool):
    """max_pool's jvp: the tangent t (x's shape) read at each window's maximum (ties: the
    mean of the tied entries' tangents). Linear in t; d/dt is max_pool_vjp(x, g)."""

    name: ClassVar[str] = "max_pool_jvp"
    arity: ClassVar[int] = 2

    def infer(self, x, t):
        _float_check(self.name, x, t)
        if not types.shape_eq(x.shape, t.shape):
            raise ShapeError(f"{self.name}: the tangent's shape {types.fmt_shape(t.shape)} "
                             f"is not x's {types.fmt_shape(x.shape)}")
        return self._pooled(x), np.result_type(x.dtype, t.dtype)

    def forward(self, x, t):
        taps = [where for _, where in self._taps(x.shape[2:])]
        hits, count = _max_hits([x[w] for w in taps])
        dtype = np.result_type(x.dtype, t.dtype)
        out = np.multiply(hits[0], t[taps[0]], dtype=dtype)
        for h, w in zip(hits[1:], taps[1:]):
            out += h * t[w]
        return np.divide(out, count, out=out)  # the mean over tied entries

    def bprop(self, inputs, out, g, i):
        if i == 0:
            return None
        return out.graph.apply(MaxPoolVJP(self.window, self.stride), [inputs[0], g])

    def jvp(self, inputs, out, t, i):
        if i == 0:
            return None
        return out.graph.apply(self, [inputs[0], t])

    def sympy(self, node, x, t):
        out = np.empty(node.shape, dtype=object)
        for idx, reads in _sympy_windows(self, x):
            out[idx] = sympy.Add(*(t[r] * s for r, s in zip(reads, _sympy_shares(x, reads))))
        return out

    def batch(self, node, ins, m):
        x, t = (_fold(v, m) for v in _all_batched(ins, m))
        return _unfold(node.graph.apply(self, [x, t]), m, node.shape[0])


@register
@dataclasses.dataclass(frozen=True)
class AvgPool(_Pool):
    """The mean of each window. Linear: its bprop is avg_pool_vjp(g), its jvp itself."""

    name: ClassVar[str] = "avg_pool"
    linear: ClassVar[bool] = True
    sympy = symbolic.run_forward

    def infer(self, x):
        _float_check(self.name, x)
        return self._pooled(x), x.dtype

    def forward(self, x):
        out = None
        for _, where in self._taps(x.shape[2:]):
            out = x[where].copy() if out is None else np.add(out, x[where], out=out)
        return np.multiply(out, _reciprocal(math.prod(self.window), x.dtype), out=out)

    def bprop(self, inputs, out, g, i):
        return out.graph.apply(AvgPoolVJP(self.window, self.stride,
                                          tuple(inputs[0].shape[2:])), [g])

    def jvp(self, inputs, out, t, i):
        return out.graph.apply(self, [t])

    def batch(self, node, ins, m):
        return _unfold(node.graph.apply(self, [_fold(ins[0][0], m)]), m, node.shape[0])


@register
@dataclasses.dataclass(frozen=True)
class AvgPoolVJP(_Pool):
    """avg_pool's adjoint: each entry of g spread evenly over its window of an x-shaped
    result (`size`: x's spatial shape; entries no window reads get 0). Linear: its bprop is
    avg_pool(g)."""

    name: ClassVar[str] = "avg_pool_vjp"
    linear: ClassVar[bool] = True
    sympy = symbolic.run_forward
    size: tuple = param(SHAPE, (1,))

    def __post_init__(self):
        super().__post_init__()
        if len(self.size) != self.ndim:
            raise GraphError(f"{self.name}: size {self.size} must have one entry per spatial "
                             f"axis ({self.ndim})")

    def infer(self, g):
        _float_check(self.name, g)
        if g.ndim != self.ndim + 2:
            raise ShapeError(f"{self.name}: g must have rank {self.ndim + 2}, got "
                             f"{types.fmt_shape(g.shape)}")
        x_shape = (*g.shape[:2], *self.size)
        want = _spatial_out(self.name, self.size, self.window, self.stride, (1,) * self.ndim,
                            ((0, 0),) * self.ndim)
        if not types.shape_eq(g.shape[2:], want):
            raise ShapeError(f"{self.name}: g of shape {types.fmt_shape(g.shape)} does not fit "
                             f"the pooling of {types.fmt_shape(x_shape)}")
        return x_shape, g.dtype

    def forward(self, g):
        n_taps = math.prod(self.window)
        share = g * _reciprocal(n_taps, g.dtype)
        return self._scatter([share] * n_taps, (*g.shape[:2], *self.size), g.dtype)

    def bprop(self, inputs, out, g, i):
        return out.graph.apply(AvgPool(self.window, self.stride), [g])

    def jvp(self, inputs, out, t, i):
        return out.graph.apply(self, [t])

    def batch(self, node, ins, m):
        return _unfold(node.graph.apply(self, [_fold(ins[0][0], m)]), m, node.shape[0])


def _reciprocal(n: int, dtype):
    """1 / n in `dtype` (exact, a sympy Rational, for object arrays of sympy entries)."""
    return sympy.Rational(1, n) if np.dtype(dtype).kind == "O" else dtype.type(1 / n)


def _all_batched(ins, m):
    return [x if b else broadcast_to(x, (m, *x.shape)) for x, b in ins]


# -- public functions ------------------------------------------------------------------------
def _ints(name: str, what: str, value, d: int) -> tuple:
    """An int, or a tuple of `d` ints, as a tuple of `d` Python ints."""
    items = (value,) * d if isinstance(value, (int, np.integer)) else value
    if not isinstance(items, (tuple, list)) or len(items) != d or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
            for v in items):
        raise GraphError(f"{name}: {what} must be an int or a tuple of {d} ints (one per "
                         f"spatial axis), got {value!r}")
    return tuple(int(v) for v in items)


def _padding(value, kernel, stride, dilation) -> tuple:
    d = len(kernel)
    if isinstance(value, str):
        if value == "valid":
            return ((0, 0),) * d
        if value == "same":
            if any(s != 1 for s in stride):
                raise GraphError(f"conv: padding='same' needs stride 1 (as in PyTorch), got "
                                 f"stride={stride}")
            total = [di * (k - 1) for k, di in zip(kernel, dilation)]
            return tuple((t // 2, t - t // 2) for t in total)  # the odd entry after
        raise GraphError(f"conv: padding must be an int, a tuple, 'same' or 'valid', got "
                         f"{value!r}")
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return ((int(value), int(value)),) * d
    if isinstance(value, (tuple, list)) and len(value) == d:
        pads = []
        for p in value:
            if isinstance(p, (tuple, list)) and len(p) == 2:
                pads.append(tuple(_ints("conv", "a padding pair", list(p), 2)))
            else:
                pads.append((_ints("conv", "padding", p, 1)[0],) * 2)
        return tuple(pads)
    raise GraphError(f"conv: padding must be an int, a tuple of {d} ints or (before, after) "
                     f"pairs, 'same' or 'valid', got {value!r}")


@atomic
def conv(x, w, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's convolution (a cross-correlation) over 1 to 3 spatial axes.

    x is (N, C, *spatial), w is (O, C // groups, *kernel); the result is (N, O, *positions)
    with positions = (size + before + after - dilation * (kernel - 1) - 1) // stride + 1.
    `padding` is an int, a tuple (one int or one (before, after) pair per axis), "valid" (no
    padding) or "same" (stride 1: the output has x's spatial shape; an odd total goes after).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=("batch", 1, 5))
        >>> y = gc.conv(x, np.array([[[1.0, 0.0, -1.0]]]), padding="same")
        >>> y.shape
        (batch, 1, 5)
        >>> y.eval({x: np.arange(5.0).reshape(1, 1, 5)})
        array([[[-1., -2., -2., -2.,  3.]]])
    """
    g = graph_of(x, w)
    x, w = lift(x, g), lift(w, g)
    if not 3 <= x.ndim <= MAX_SPATIAL + 2:
        raise ShapeError(f"conv: x must be (N, C, *spatial) with 1 to {MAX_SPATIAL} spatial "
                         f"axes, got {types.fmt_shape(x.shape)}")
    d = x.ndim - 2
    stride = _ints("conv", "stride", stride, d)
    dilation = _ints("conv", "dilation", dilation, d)
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)):
        raise GraphError(f"conv: groups must be an int >= 1, got {groups!r}")
    kernel = w.shape[2:] if w.ndim == x.ndim else (1,) * d
    if isinstance(padding, str) and padding == "same" and not all(
            isinstance(k, int) for k in kernel):
        raise ShapeError(f"conv: padding='same' needs a static kernel, got w "
                         f"{types.fmt_shape(w.shape)}")
    pads = _padding(padding, kernel, stride, dilation)
    return build(Conv(stride, pads, dilation, int(groups)), x, w)


def _pool(cls, name, x, window, stride):
    x = lift(x, graph_of(x))
    if not 3 <= x.ndim <= MAX_SPATIAL + 2:
        raise ShapeError(f"{name}: x must be (N, C, *spatial) with 1 to {MAX_SPATIAL} "
                         f"spatial axes, got {types.fmt_shape(x.shape)}")
    d = x.ndim - 2
    window = _ints(name, "window", window, d)
    stride = window if stride is None else _ints(name, "stride", stride, d)
    return build(cls(window, stride), x)


@atomic
def max_pool(x, window, stride=None):
    """The largest entry of each window over the spatial axes of x (N, C, *spatial).

    `window` and `stride` are ints or one int per spatial axis; stride defaults to the window.
    No padding; a ragged edge is dropped (PyTorch's floor mode). The gradient goes to each
    window's maximum, shared equally among tied entries (as `gc.max`).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(1, 1, 5))
        >>> gc.max_pool(x, 2).eval({x: np.array([[[1.0, 3.0, 2.0, 0.0, 9.0]]])})
        array([[[3., 2.]]])
    """
    return _pool(MaxPool, "max_pool", x, window, stride)


@atomic
def avg_pool(x, window, stride=None):
    """The mean of each window over the spatial axes of x (N, C, *spatial).

    Arguments and the ragged edge as `max_pool`; every window holds `prod(window)` entries.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(1, 1, 5))
        >>> gc.avg_pool(x, 2).eval({x: np.array([[[1.0, 3.0, 2.0, 0.0, 9.0]]])})
        array([[[2., 1.]]])
    """
    return _pool(AvgPool, "avg_pool", x, window, stride)
