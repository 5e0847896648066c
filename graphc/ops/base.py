"""Shared machinery of the op library: lifting Python values into the graph, building nodes
atomically, and the elementwise base class with its one-derivative-rule convention."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Op


def graph_of(*args) -> Graph:
    """The graph of the first node among `args` (lists searched too)."""
    for a in args:
        if isinstance(a, Node):
            return a.graph
        if isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, Node):
                    return b.graph
    raise GraphError("at least one argument must be a graph node; got "
                     + ", ".join(type(a).__name__ for a in args))


def lift(value, graph: Graph, like: Node | None = None) -> Node:
    """A node for `value`: nodes pass through, Python and NumPy values become constants.

    Python scalars are weakly typed, as in NumPy 2: `x * 2.0` keeps x's float32.
    """
    if isinstance(value, Node):
        return value
    if isinstance(value, (bool, int, float)) and like is not None:
        dtype = np.result_type(like.dtype, value)
        return graph.constant(np.asarray(value, dtype=dtype))
    if isinstance(value, (np.ndarray, np.generic, bool, int, float, list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError as e:
            raise GraphError(f"cannot make a constant of {value!r}: {e}") from None
        if arr.dtype == object:
            raise GraphError(f"cannot make a constant of {value!r}: it mixes nodes and "
                             "values or is ragged; build it with gc.stack")
        return graph.constant(arr)
    raise GraphError(f"expected a graph node, a number or an array, got {type(value).__name__}")


def atomic(fn: Callable) -> Callable:
    """Run a node-building function so that a failure leaves the graph as it was."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        g = graph_of(*args, *kwargs.values())
        with g.transaction():
            return fn(*args, **kwargs)

    return wrapper


def build(op: Op, *args) -> Node:
    """Apply `op` to `args`, lifting non-node arguments; atomic."""
    g = graph_of(*args)
    like = next((a for a in args if isinstance(a, Node)), None)
    with g.transaction():
        return g.apply(op, [lift(a, g, like) for a in args])


def as_float_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if types.is_float(dtype) else np.dtype(np.float64)


# -- elementwise ---------------------------------------------------------------------------

# (op, *input dtypes) -> result dtype: an elementwise op's dtype depends on nothing else,
# and finding it runs the forward once on dummies (~20 us), which dominated building big graphs.
_RESULT_DTYPES: dict[tuple, np.dtype] = {}

ONE, MINUS_ONE = 1, -1  # derivative sentinels: the contribution is g (or -g), no multiply


class Elementwise(Op):
    """An op applied entry by entry with NumPy broadcasting.

    `fn` is the NumPy forward. `derivs[i](*inputs, out)` gives d out / d input_i as a node (or
    ONE, MINUS_ONE, or None where no gradient flows); from that single rule
    `bprop = g * d` and `jvp = t * d`, so the two cannot disagree.
    """

    fn: ClassVar[Callable]
    derivs: ClassVar[tuple[Callable | None, ...]] = ()
    float_only: ClassVar[bool] = False  # integer inputs give a float result (like np.exp)

    def infer(self, *xs: Node):
        try:
            shape = types.broadcast_shapes(*(x.shape for x in xs))
        except ValueError as e:
            raise ShapeError(f"{self.name}: {e}") from None
        key = (self, *(x.dtype for x in xs))
        dtype = _RESULT_DTYPES.get(key)
        if dtype is None:
            dummies = [np.ones(1, x.dtype) for x in xs]
            try:
                with np.errstate(all="ignore"):
                    dtype = np.asarray(self.forward(*dummies)).dtype
            except TypeError:
                raise ShapeError(f"{self.name} does not accept dtypes "
                                 + ", ".join(str(x.dtype) for x in xs)) from None
            if len(_RESULT_DTYPES) < 4096:
                _RESULT_DTYPES[key] = dtype
        return shape, dtype

    def forward(self, *arrays):
        return type(self).fn(*arrays)

    def _d(self, inputs, out, i):
        rule = self.derivs[i] if i < len(self.derivs) else None
        if rule is None or not types.is_float(inputs[i].dtype):
            return None
        return rule(*inputs, out)

    def bprop(self, inputs, out, g, i):
        return scale(g, self._d(inputs, out, i))

    def jvp(self, inputs, out, t, i):
        return scale(t, self._d(inputs, out, i))


def scale(v: Node, d) -> Node | None:
    if d is None:
        return None
    if d is ONE:
        return v
    if d is MINUS_ONE:
        return -v
    return v * d


def elementwise(name: str, fn: Callable, derivs, doc: str, arity: int = 1) -> type[Op]:
    """Stamp out an elementwise op class: one line per op in the library."""
    import dataclasses

    from graphc.ir.op import register

    cls = type(name.capitalize(), (Elementwise,), {
        "__doc__": doc, "name": name, "arity": arity,
        "fn": staticmethod(fn), "derivs": tuple(derivs),
        "differentiable": any(d is not None for d in derivs),
        "__module__": "graphc.ops.elementwise",
    })
    return register(dataclasses.dataclass(frozen=True)(cls))
