"""Neural-network ops, each fused and numerically stable (the book's section 6.5.8).

`softmax_cross_entropy` never forms log(softmax): logits of magnitude 1e3 give exact losses,
and its bprop is `g * (softmax(logits) - onehot)`, cheap and stable.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import scipy.special
import sympy

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Node, user_source_line
from graphc.ir.op import Op, register
from graphc.ir.params import AXIS, DTYPE, FLAG, SIZE, param
from graphc.ops import symbolic
from graphc.ops.base import all_batched, as_float_dtype, atomic, build, graph_of, lift, shift_axis
from graphc.ops.elementwise import exp
from graphc.ops.reduce import sum as _sum
from graphc.ops.shape import expand_dims


class _AlongAxis(Op):
    """An op that normalises over one axis and keeps the input's shape."""

    axis: int

    def batch(self, node, ins, m):
        return node.graph.apply(dataclasses.replace(self, axis=shift_axis(self.axis)),
                                [ins[0][0]])

    def infer(self, x):
        if x.ndim == 0:
            raise ShapeError(f"{self.name} needs at least one axis, got a scalar")
        if not -x.ndim <= self.axis < x.ndim:
            raise ShapeError(f"{self.name}: axis {self.axis} is out of range for "
                             f"{types.fmt_shape(x.shape)}")
        return x.shape, as_float_dtype(x.dtype)


@register
@dataclasses.dataclass(frozen=True)
class LogSumExp(Op):
    """log(sum(exp(x))) over `axis`, shifted by the max so that it never overflows."""

    name: ClassVar[str] = "logsumexp"
    fresh: ClassVar[bool] = True
    axis: int = param(AXIS, -1)
    keepdims: bool = param(FLAG, False)

    def infer(self, x):
        shape, dtype = _AlongAxis.infer(self, x)
        ax = self.axis % x.ndim
        if self.keepdims:
            return tuple(1 if k == ax else d for k, d in enumerate(shape)), dtype
        return tuple(d for k, d in enumerate(shape) if k != ax), dtype

    def forward(self, x):
        return np.asarray(scipy.special.logsumexp(x, axis=self.axis, keepdims=self.keepdims))

    def _weights(self, x, out):
        keep = out if self.keepdims else expand_dims(out, self.axis)
        return exp(x - keep)  # softmax(x), from the output already computed

    def bprop(self, inputs, out, g, i):
        keep = g if self.keepdims else expand_dims(g, self.axis)
        return keep * self._weights(inputs[0], out)

    def jvp(self, inputs, out, t, i):
        return _sum(self._weights(inputs[0], out) * t, self.axis, self.keepdims)

    def sympy(self, node, x):
        return symbolic.over_axes(x, (self.axis % x.ndim,), self.keepdims,
                                  symbolic.logsumexp_row)

    batch = _AlongAxis.batch


@register
@dataclasses.dataclass(frozen=True)
class Softmax(_AlongAxis):
    """exp(x) / sum(exp(x)) over `axis`, shifted by the max."""

    name: ClassVar[str] = "softmax"
    bounded: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    axis: int = param(AXIS, -1)

    def forward(self, x):
        return scipy.special.softmax(x, axis=self.axis)

    def bprop(self, inputs, out, g, i):
        return out * (g - _sum(g * out, self.axis, keepdims=True))

    jvp = bprop  # the Jacobian of softmax is symmetric

    def sympy(self, node, x):
        return symbolic.along(self.axis, x, symbolic.softmax_row)


@register
@dataclasses.dataclass(frozen=True)
class LogSoftmax(_AlongAxis):
    """x - logsumexp(x) over `axis`."""

    name: ClassVar[str] = "log_softmax"
    fresh: ClassVar[bool] = True
    axis: int = param(AXIS, -1)

    def forward(self, x):
        return scipy.special.log_softmax(x, axis=self.axis)

    def bprop(self, inputs, out, g, i):
        return g - exp(out) * _sum(g, self.axis, keepdims=True)

    def jvp(self, inputs, out, t, i):
        return t - _sum(exp(out) * t, self.axis, keepdims=True)

    def sympy(self, node, x):
        return symbolic.along(self.axis, x, symbolic.log_softmax_row)


@register
@dataclasses.dataclass(frozen=True)
class OneHot(Op):
    """Integer class ids to one-hot rows of length `depth`."""

    name: ClassVar[str] = "one_hot"
    differentiable: ClassVar[bool] = False
    bounded: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    depth: int = param(SIZE, 1)
    dtype: np.dtype = param(DTYPE, np.dtype(np.float64))

    def infer(self, labels):
        if labels.dtype.kind not in "iu":
            raise ShapeError(f"one_hot needs integer class ids, got {labels.dtype}")
        return labels.shape + (self.depth,), self.dtype

    def forward(self, labels):
        if labels.size and (labels.min() < 0 or labels.max() >= self.depth):
            raise ValueError(f"class ids must lie in [0, {self.depth}), got values in "
                             f"[{labels.min()}, {labels.max()}]")
        return np.eye(self.depth, dtype=self.dtype)[labels]

    def sympy(self, node, labels):
        return symbolic.one_hot(self.depth, labels)

    def batch(self, node, ins, m):  # rows of the labels' batch axis give rows of the result
        return node.graph.apply(self, [ins[0][0]])


@register
@dataclasses.dataclass(frozen=True)
class SoftmaxCrossEntropy(Op):
    """Per-example cross-entropy between labels and softmax(logits) over the last axis.

    Labels are one-hot (or any distribution) of the logits' shape, or integer class ids of
    shape `logits.shape[:-1]`. The loss's dtype is NumPy's promotion of the two dtypes for
    float (or bool) labels, as for the unfused `-sum(labels * log_softmax(logits), -1)`, and
    the logits' dtype for integer labels.
    """

    name: ClassVar[str] = "softmax_cross_entropy"
    arity: ClassVar[int] = 2
    fresh: ClassVar[bool] = True

    def infer(self, logits, labels):
        if logits.ndim == 0:
            raise ShapeError("softmax_cross_entropy: logits need a class axis, got a scalar")
        if not types.is_float(logits.dtype):
            raise ShapeError(f"softmax_cross_entropy: logits must be float, got {logits.dtype}")
        if labels.dtype.kind in "iu":
            if not types.shape_eq(labels.shape, logits.shape[:-1]):
                raise ShapeError(
                    f"softmax_cross_entropy: integer labels must have shape "
                    f"{types.fmt_shape(logits.shape[:-1])} (logits' without the class axis), "
                    f"got {types.fmt_shape(labels.shape)}")
        elif not types.shape_eq(labels.shape, logits.shape):
            raise ShapeError(
                f"softmax_cross_entropy: one-hot labels must have the logits' shape "
                f"{types.fmt_shape(logits.shape)}, got {types.fmt_shape(labels.shape)}")
        return logits.shape[:-1], self.out_dtype(logits.dtype, labels.dtype)

    @staticmethod
    def out_dtype(logits: np.dtype, labels: np.dtype) -> np.dtype:
        """The logits' dtype for class ids, else NumPy's promotion of the two."""
        return logits if labels.kind in "iu" else np.result_type(logits, labels)

    def forward(self, logits, labels):
        dtype = self.out_dtype(logits.dtype, labels.dtype)
        log_p = scipy.special.log_softmax(logits.astype(dtype, copy=False), axis=-1)
        if labels.dtype.kind in "iu":
            depth = logits.shape[-1]
            if labels.size and (labels.min() < 0 or labels.max() >= depth):
                raise ValueError(f"class ids must lie in [0, {depth}), got values in "
                                 f"[{labels.min()}, {labels.max()}]")
            picked = np.take_along_axis(log_p, labels[..., None].astype(np.intp), axis=-1)
            return np.asarray(-picked[..., 0], dtype=dtype)
        return np.asarray(-np.sum(labels * log_p, axis=-1), dtype=dtype)

    def _onehot(self, logits, labels):
        if labels.dtype.kind in "iu":
            return build(OneHot(logits.shape[-1], logits.dtype), labels)
        return labels

    def bprop(self, inputs, out, g, i):
        logits, labels = inputs
        if i == 0:
            return expand_dims(g, -1) * (softmax(logits) - self._onehot(logits, labels))
        if not types.is_float(labels.dtype):
            return None
        return expand_dims(g, -1) * -log_softmax(logits)

    def jvp(self, inputs, out, t, i):
        logits, labels = inputs
        if i == 0:
            return _sum(t * (softmax(logits) - self._onehot(logits, labels)), -1)
        if not types.is_float(labels.dtype):
            return None
        return _sum(t * -log_softmax(logits), -1)

    def sympy(self, node, logits, labels):
        log_p = symbolic.along(-1, logits, symbolic.log_softmax_row)
        if node.inputs[1].dtype.kind in "iu":
            labels = symbolic.one_hot(logits.shape[-1], labels)
        return symbolic.over_axes(-(labels * log_p), (logits.ndim - 1,), False,
                                  lambda r: sympy.Add(*r))

    def batch(self, node, ins, m):  # over the last axis only: a leading batch axis is a row
        return node.graph.apply(self, all_batched(ins, m))


def logsumexp(x, axis=-1, keepdims=False):
    """log(sum(exp(x), axis)), stable."""
    return build(LogSumExp(int(axis), bool(keepdims)), x)


def softmax(x, axis=-1):
    """Normalised exponentials over `axis`, stable."""
    return build(Softmax(int(axis)), x)


def log_softmax(x, axis=-1):
    """log(softmax(x)) computed as x - logsumexp(x), stable."""
    return build(LogSoftmax(int(axis)), x)


@atomic
def softmax_cross_entropy(logits, labels):
    """Per-example losses, shape `logits.shape[:-1]`; labels one-hot or integer class ids."""
    g = graph_of(logits, labels)
    return g.apply(SoftmaxCrossEntropy(), [lift(logits, g), lift(labels, g)])


def one_hot(labels, depth, dtype="float64", like=None):
    """Rows of the identity of size `depth` picked by integer `labels`.

    `labels` is a node, or class ids given as an array or a list, which become a constant in
    the graph of `like` (a node): graphc has no default graph, so a value alone does not say
    where to build.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> logits = g.input("logits", shape=(3, 4))
        >>> gc.one_hot(np.array([0, 2, 2]), 4, like=logits).eval()
        array([[1., 0., 0., 0.],
               [0., 0., 1., 0.],
               [0., 0., 1., 0.]])
    """
    op = OneHot(types.as_dim(depth), types.as_dtype(dtype))
    if isinstance(labels, Node):
        return build(op, labels)
    if like is None:
        raise GraphError(f"one_hot: the labels ({type(labels).__name__}) are not a graph "
                         "node, and graphc has no default graph; pass like=<a node> to make "
                         "them a constant in its graph, or g.constant(labels) "
                         f"(at {user_source_line()})")
    if not isinstance(like, Node):
        raise GraphError(f"one_hot: like must be a graph node (its graph gets the labels), "
                         f"got {type(like).__name__} (at {user_source_line()})")
    return build(op, lift(labels, like.graph))
