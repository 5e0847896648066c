"""Shared machinery of the op library: lifting Python values into the graph, building nodes
atomically, the elementwise base class with its one-derivative-rule convention (and
`elementwise_op`, its one-line factory), and the helpers of the ops' batching rules."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Graph, Node, user_source_line
from graphc.ir.op import Op, missing_hook
from graphc.ops import symbolic


def graph_of(*args, caller: str | None = None) -> Graph:
    """The graph of the first node among `args` (lists searched too).

    With no node among them there is no graph to build in (graphc has no default graph): a
    GraphError naming `caller`, the function the user called, says how to make one.
    """
    for a in args:
        if isinstance(a, Node):
            return a.graph
        if isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, Node):
                    return b.graph
    raise GraphError((f"{caller}: " if caller else "")
                     + "at least one argument must be a graph node; got "
                     + ", ".join(type(a).__name__ for a in args)
                     + " (graphc has no default graph: put a value into one with "
                       f"g.constant(value)) (at {user_source_line()})")


def lift(value, graph: Graph, like: Node | None = None) -> Node:
    """A node for `value`: nodes pass through, Python and NumPy values become constants.

    Python scalars are weakly typed, as in NumPy 2: `x * 2.0` keeps x's float32.
    """
    if isinstance(value, Node):
        return value
    if isinstance(value, (bool, int, float)) and like is not None:
        dtype = np.result_type(like.dtype, value)
        return graph.constant(np.asarray(value, dtype=dtype))
    if isinstance(value, (list, tuple)) and any(isinstance(v, Node) for v in value):
        raise GraphError(f"cannot make a constant of a {type(value).__name__} holding graph "
                         "nodes; build it with gc.stack")
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
    """Declare a public function as one step of the user's: a failure leaves the graph as it
    was, and a ShapeError or GraphError from any op it builds is reported under the
    function's own name, with its arguments' shapes and the user's line.

    So a helper made of other ops (`outer` is expand_dims times a vector, `swapaxes` a
    transpose) names itself, not the op inside that refused: `outer of (2,) and (3,): mul:
    ...`. A message that already starts with the name is kept as it is (and gets the line).
    """
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            g = graph_of(*args, *kwargs.values(), caller=name)
        except GraphError as e:
            raise reported_as(e, name, args) from None
        mark = len(g.nodes)  # Graph.transaction, inlined: this wraps every public builder
        try:
            return fn(*args, **kwargs)
        except BaseException as e:
            g.rollback(mark)
            if isinstance(e, (ShapeError, GraphError)):
                raise reported_as(e, name, args) from None
            raise

    return wrapper


def reported_as(e: ShapeError | GraphError, name: str, args) -> Exception:
    """`e` said as the failure of the user's call `name(*args)` (see `atomic`)."""
    if type(e) not in (ShapeError, GraphError):
        return e  # a subclass carries more than its message: leave it alone
    msg = str(e)
    at = f" (at {user_source_line()})"
    if msg.endswith(at):
        msg = msg[: -len(at)]
    if not re.match(rf"{re.escape(name)}\b", msg):
        shapes = " and ".join(types.fmt_shape(a.shape) for a in args
                              if isinstance(a, (Node, np.ndarray)))
        msg = f"{name}{' of ' + shapes if shapes else ''}: {msg}"
    return type(e)(msg + at)


def build(op: Op, *args) -> Node:
    """Apply `op` to `args`, lifting non-node arguments; atomic."""
    g = graph_of(*args, caller=op.name)
    if all(isinstance(a, Node) for a in args):
        return g.apply(op, args)  # nothing lifted, and apply is atomic itself
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
    `bprop = g * d` and `jvp = t * d`, so the two cannot disagree. `formula` is the op on
    sympy scalars (`sympy.exp`), from which its `sympy` hook follows entry by entry.
    """

    fn: ClassVar[Callable]
    derivs: ClassVar[tuple[Callable | None, ...]] = ()
    float_only: ClassVar[bool] = False  # integer inputs give a float result (like np.exp)
    elementwise: ClassVar[bool] = True
    formula: ClassVar[Callable | None] = None

    def sympy(self, node, *args):
        if self.formula is None:
            raise missing_hook(self, "formula", "the op on sympy scalars, for gc.to_sympy")
        return symbolic.entrywise(self.formula, len(args))(*args)

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


# -- batching: helpers of the ops' `batch` hooks (jacobian and hessian vectorize with them) --
def shift_axis(axis: int) -> int:
    """An axis of the unbatched op, counted in the batched one (negative axes stay)."""
    return axis if axis < 0 else axis + 1


def pad_batched(x: Node, ndim: int) -> Node:
    """A batched node (m, *s) reshaped to (m, 1, ..., 1, *s) of rank ndim + 1 for broadcasting."""
    from graphc.ops.shape import reshape

    extra = ndim + 1 - x.ndim
    if extra <= 0:
        return x
    return reshape(x, (x.shape[0], *(1,) * extra, *x.shape[1:]))


def all_batched(ins, m) -> list[Node]:
    """Every input with the batch axis: the unbatched ones broadcast along it."""
    from graphc.ops.shape import broadcast_to

    return [x if b else broadcast_to(x, (m, *x.shape)) for x, b in ins]


def batch_elementwise(node: Node, ins) -> Node:
    """The general rule for an elementwise op: batched inputs padded so that broadcasting
    lines their batch axes up, unbatched ones as they are."""
    return node.graph.apply(node.op, [pad_batched(x, node.ndim) if b else x for x, b in ins])


def batch_by_rows(node: Node, ins, m) -> Node:
    """The general rule for any op: applied to each row of the batched inputs, the results
    stacked (m + 1 nodes; correct whatever the op does with its axes)."""
    from graphc.ops.shape import getitem, stack

    if not isinstance(m, int):
        raise GraphError(f"vectorize: op {node.op.label()} has no 'batch' hook and the batch "
                         f"size {m} is symbolic, so it cannot run row by row; define "
                         f"{type(node.op).__name__}.batch")
    return stack([node.graph.apply(node.op, [getitem(x, k) if b else x for x, b in ins])
                  for k in range(m)])


def elementwise_op(name: str, fn: Callable, derivs, doc: str, arity: int = 1, *,
                   formula: Callable | None = None, scalar: str | None = None,
                   ufunc: np.ufunc | None = None, ufunc_operands: str | None = None,
                   **flags) -> type[Op]:
    """Stamp out an elementwise op class: one line per op in the library.

    `formula` is the op on sympy scalars (its `sympy` hook); `flags` set the op's flags
    (`bounded=True`, `commutative=True`, ...; see `graphc.ir.op.Op`). Code emission
    (`Op`, "hooks: code emission"): `scalar` is the op in a fused kernel; `ufunc` the NumPy
    ufunc it is (`fn` itself when `fn` is a ufunc), with `ufunc_operands` when its operands
    are not the inputs in order.
    """
    import dataclasses

    from graphc.ir.op import register

    unknown = sorted(k for k in flags if not isinstance(getattr(Op, k, None), bool))
    if unknown:
        raise TypeError(f"elementwise_op {name!r}: {unknown} are not op flags")
    cls = type(name.capitalize(), (Elementwise,), {
        "__doc__": doc, "name": name, "arity": arity,
        "fn": staticmethod(fn), "derivs": tuple(derivs),
        "differentiable": any(d is not None for d in derivs),
        "formula": None if formula is None else staticmethod(formula),
        "ufunc": ufunc if ufunc is not None else fn if isinstance(fn, np.ufunc) else None,
        "ufunc_operands": ufunc_operands, "scalar": scalar,
        **flags,
        "__module__": "graphc.ops.elementwise",
    })
    return register(dataclasses.dataclass(frozen=True)(cls))
