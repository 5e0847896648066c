"""Python operators and NumPy-style methods on nodes, installed onto `Node` once."""

from __future__ import annotations

from graphc.ir.graph import Node
from graphc.ops import elementwise as ew
from graphc.ops import indexing, linalg, reduce, shape


def _reshape(self, *new_shape):
    """`x.reshape(2, 3)` or `x.reshape((2, 3))`, as in NumPy."""
    if len(new_shape) == 1 and isinstance(new_shape[0], (tuple, list)):
        new_shape = tuple(new_shape[0])
    return shape.reshape(self, new_shape)

METHODS = {
    "__add__": lambda a, b: ew.add(a, b),
    "__radd__": lambda a, b: ew.add(b, a),
    "__sub__": lambda a, b: ew.sub(a, b),
    "__rsub__": lambda a, b: ew.sub(b, a),
    "__mul__": lambda a, b: ew.mul(a, b),
    "__rmul__": lambda a, b: ew.mul(b, a),
    "__truediv__": lambda a, b: ew.div(a, b),
    "__rtruediv__": lambda a, b: ew.div(b, a),
    "__pow__": lambda a, b: ew.pow(a, b),
    "__rpow__": lambda a, b: ew.pow(b, a),
    "__matmul__": lambda a, b: linalg.matmul(a, b),
    "__rmatmul__": lambda a, b: linalg.matmul(b, a),
    "__neg__": lambda a: ew.neg(a),
    "__pos__": lambda a: a,
    "__abs__": lambda a: ew.abs(a),
    "__lt__": lambda a, b: ew.less(a, b),
    "__le__": lambda a, b: ew.less_equal(a, b),
    "__gt__": lambda a, b: ew.greater(a, b),
    "__ge__": lambda a, b: ew.greater_equal(a, b),
    "__eq__": lambda a, b: ew.equal(a, b),
    "__ne__": lambda a, b: ew.not_equal(a, b),
    "__getitem__": lambda a, index: indexing.getitem(a, index),  # basic or advanced
    "at": property(lambda a: indexing.IndexUpdater(a)),  # x.at[idx].add(v), .set(v)
    "T": property(lambda a: shape.transpose(a)),
    "sum": lambda a, axis=None, keepdims=False: reduce.sum(a, axis, keepdims),
    "mean": lambda a, axis=None, keepdims=False: reduce.mean(a, axis, keepdims),
    "max": lambda a, axis=None, keepdims=False: reduce.max(a, axis, keepdims),
    "min": lambda a, axis=None, keepdims=False: reduce.min(a, axis, keepdims),
    "reshape": _reshape,
    "transpose": lambda a, *axes: shape.transpose(
        a, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes or None),
    "astype": lambda a, dtype: ew.cast(a, dtype),
}  # NumPy's protocols (`np.sin(x)`, `array * node`): graphc/ops/numpy_dispatch.py


def install() -> None:
    for name, fn in METHODS.items():
        setattr(Node, name, fn)
    Node.__hash__ = object.__hash__  # __eq__ is overloaded: nodes hash by identity

