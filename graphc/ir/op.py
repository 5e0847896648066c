"""What the IR knows of an operation: the `Op` interface, the registry, inputs and constants.

An op is a frozen dataclass whose fields are its parameters, so equality and hashing (the key
for merging repeated subexpressions), `repr` and serialisation come for free. Its registered
`name` is the public function name, the JSON `"op"`, the DOT label and the comment in generated
code. The op library (`graphc.ops`) declares the concrete ops against this interface.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from graphc.errors import GraphError
from graphc.ir import types
from graphc.ir.params import COUNT, check_params, param

if TYPE_CHECKING:
    from graphc.ir.graph import Node

OPS: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Add an op class to the registry under its `name` (used by save/load and drawings)."""
    if cls.name in OPS and OPS[cls.name] is not cls:
        raise ValueError(f"an op named {cls.name!r} is already registered")
    OPS[cls.name] = cls
    return cls


def has_hook(op, hook: str) -> bool:
    """Whether an op (or op class) defines `hook` itself rather than inheriting `Op`'s."""
    cls = op if isinstance(op, type) else type(op)
    return getattr(cls, hook, None) is not getattr(Op, hook)


def missing_hook(op: Op, hook: str, purpose: str) -> GraphError:
    """The error for an op without a hook that a caller needs: it names the op and the hook."""
    cls = type(op).__name__
    return GraphError(f"op {op.label()} has no {hook!r} hook ({purpose}); define "
                      f"{cls}.{hook} in the op's class")


SYMBOLIC_DIM = 128  # what a symbolic dimension counts as in cost estimates


def entries(shape: types.Shape) -> float:
    """How many entries `shape` holds, each symbolic dimension counted as SYMBOLIC_DIM."""
    size = types.size(shape)
    if not isinstance(size, int):
        size = size.subs({s: SYMBOLIC_DIM for s in size.free_symbols})
    return float(size)


class Op:
    """One operation: forward on NumPy arrays, shape rule, and derivative rules as graph nodes.

    `bprop(inputs, out, g, i)` returns the cotangent contribution for input `i` (a node built
    from ops, so it can be differentiated again) or `None` where no gradient flows; it may
    return a node of the broadcast shape, and `grad` sums it down to the input's shape.
    `jvp(inputs, out, t, i)` returns the tangent of `out` due to the tangent `t` of input `i`.
    """

    name: ClassVar[str] = "op"
    arity: ClassVar[int | None] = 1  # None: any number of inputs
    differentiable: ClassVar[bool] = True  # False: no gradient flows through it, by design
    multi: ClassVar[bool] = False  # several results: a `MultiOp`, read through `Output` views

    def infer(self, *inputs: Node) -> tuple[types.Shape, np.dtype]:
        raise NotImplementedError

    def forward(self, *arrays: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def bprop(self, inputs, out, g, i):
        return None

    def jvp(self, inputs, out, t, i):
        return None

    # An op may instead define `jvp_many(inputs, out, ts)`: the tangent of `out` from all the
    # inputs' tangents at once (`ts`, None where zero), where one rule per input would repeat
    # work (a loop runs one tangent loop, not one per input). Forward mode then calls it alone.
    # A multi-output op may define `primal_op()`, itself without some trailing outputs that it
    # adds to the same work (a loop that also saves residuals for its gradient: None when it
    # saves none), and `extends(op)`, whether it computes all of `op`'s outputs, first and in
    # order: compiled together, a node of `op` is read from this op's node (graphc.rewrite).

    # -- hooks: analysis, sympy, drawing, batching ------------------------------------------
    # Flags say what rewrites, drawings and the cost model may assume of the op; the defaults
    # assume nothing. A subclass inherits them: reset any that no longer holds for it.
    pure: ClassVar[bool] = True  # the value depends on inputs and parameters only (no state,
    #                              no randomness): equal nodes merge, nodes over constants fold
    elementwise: ClassVar[bool] = False  # entry by entry, with NumPy broadcasting
    linear: ClassVar[bool] = False  # linear in its inputs together (reshape, sum, add_n; not
    #                                 mul or matmul, which are linear in each input alone)
    commutative: ClassVar[bool] = False  # the value ignores the order of the inputs
    bounded: ClassVar[bool] = False  # values in a bounded range (tanh, sin, softmax, one_hot)
    finite_preserving: ClassVar[bool] = False  # finite wherever its float inputs are finite
    shape_only: ClassVar[bool] = False  # reads its inputs' shapes and dtypes, never values
    rearranges: ClassVar[bool] = False  # input 0's entries, moved or repeated, none dropped

    def sympy(self, node, *args):
        """The op on sympy values, for `gc.to_sympy`: `args` are NumPy object arrays of sympy
        expressions shaped like the inputs; returns one shaped like `node` (or that broadcasts
        to it, or a sympy scalar). Helpers: `graphc.ops.symbolic`. Inputs and constants, the
        graph's leaves, are written by `to_sympy` itself."""
        raise missing_hook(self, "sympy", "gc.to_sympy writes every node through it")

    def cost(self, node) -> float:
        """Estimated flops to compute `node`, for the cost model that picks an HVP mode: by
        default one per entry read and written (elementwise work is memory-bound)."""
        return entries(node.shape) + sum(entries(x.shape) for x in node.inputs)

    def batch(self, node, ins, m):
        """`node` rebuilt over inputs of which some carry a leading batch axis of length `m`
        (`ins`: one `(node, batched)` pair per input), a node of shape `(m, *node.shape)`:
        how `vmap`, `jacobian` and `hessian` vectorize (`m` may be symbolic). `NotImplemented`
        (the default) asks the vectorizer for its general rule: an elementwise op broadcasts
        over the batch axis, any other op runs row by row (correct for every op, user ops
        included; m nodes, or one `row_loop` node, where a rule makes one node do the work)."""
        return NotImplemented

    # -- hooks: code emission ---------------------------------------------------------------
    # How a code-generation backend (graphc/compile/emit.py) writes the op. The NumPy backend
    # calls the op's `ufunc` when it declares one (`np.exp(x)`, with `out=` into the buffer of
    # an operand that dies there), else its `emit_numpy`, else its own `forward`; a fused
    # kernel (numba) writes its `scalar` form. A declaration counts only where it is made at
    # or below the class that defines `forward` (or an elementwise op's `fn`): a subclass that
    # computes something else never inherits a form that computes the old thing.
    ufunc: ClassVar[np.ufunc | None] = None  # the NumPy ufunc the op is, inputs in order;
    #                       with arity None, a binary ufunc folded left into one buffer (add_n)
    ufunc_operands: ClassVar[str | None] = None  # the ufunc's operands when they are not the
    #                       inputs in order: relu is maximum(x, 0), `{0}, {zero}` (a 0-d zero)
    fresh: ClassVar[bool] = False  # forward returns a new array that it owns (for ndim >= 1):
    #                       once dead, its buffer may hold another step's result (`out=`)
    scalar: ClassVar[str | None] = None  # the op on float scalars `{0}`, `{1}` in a fused
    #                       kernel (`np.exp({0})`; NumPy's semantics): declaring it makes the
    #                       op fusible; with arity None, a binary form folded left (add_n)
    simd_ufunc: ClassVar[bool] = False  # NumPy runs the op's ufunc as a SIMD loop that a
    #                       kernel's scalar form cannot match (numba calls libm once per entry:
    #                       tanh, exp, log 5-20x slower, docs/performance.md); fusion leaves the
    #                       op on NumPy and fuses the ops around it

    def emit_numpy(self, node, args: list[str], ctx) -> str | None:
        """NumPy source computing `node` from the variables `args`: an expression, or None to
        call `forward`. Parameters reach the source only through `ctx.literal` (ints, None,
        slices and tuples of them; None for anything else); `ctx.dtype` names a dtype and
        `ctx.bind(base, value, key)` makes a global (graphc/compile/numpy_backend.py)."""
        return None

    # -- parameters -------------------------------------------------------------------------
    def __post_init__(self) -> None:
        """Check the declared parameters (`graphc.ir.params`): builders and files alike."""
        check_params(self)

    def params(self) -> dict:
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {}

    def label(self) -> str:
        """Short text for drawings and listings: the name and the parameters that are set."""
        shown = [f"{k}={fmt_param(v)}" for k, v in self.params().items() if v is not None]
        return f"{self.name}({', '.join(shown)})" if shown else self.name

    def free_symbols(self) -> set:
        return types.free_symbols(tuple(self.params().values()))

    def resolve(self, env: dict) -> Op:
        """This op with its symbolic parameters replaced by the sizes bound in one call."""
        if not dataclasses.is_dataclass(self) or not self.free_symbols():
            return self
        return dataclasses.replace(
            self, **{k: types.substitute(v, env) for k, v in self.params().items()})


def fmt_param(v) -> str:
    """A parameter value as a label shows it: `0:3` for a slice, `(1,)`, `...`, `float32`."""
    if isinstance(v, np.dtype):
        return str(v)
    if isinstance(v, slice):
        parts = ["" if p is None else str(p) for p in (v.start, v.stop, v.step)]
        return ":".join(parts[:2] if v.step is None else parts)
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt_param(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if v is Ellipsis:
        return "..."
    return str(v)


def op_key(op: Op):
    """An op as a hashable key: itself (a frozen dataclass), or its repr when a parameter is
    unhashable (a slice, before Python 3.12); the repr of every parameter type is exact.
    Merging (hash-consing) and the compiled-program cache both compare ops by it."""
    try:
        hash(op)
        return (type(op), op)
    except TypeError:
        return (type(op), repr(op))


class MultiOp(Op):
    """An op with several results (`split`, `slogdet`): one apply node holds them all, and
    each result is read through its own `Output(k)` view node (`Graph.views`).

    The apply node computes once (`forward` returns a tuple); its own shape is `()` and its
    dtype `TUPLE`, since its value is the tuple: `infer` returns one (shape, dtype) per
    output, and the views carry them. The hooks take one entry per output where a single-
    output op takes one node:

    - `bprop(inputs, outs, gs, i)`: `outs` are the output views, `gs` one cotangent per output
      (None for an output that gets none); returns input i's cotangent, as for any op.
    - `jvp(inputs, outs, t, i)`: a list with one tangent per output (None where zero).
    - `sympy(node, *args)`: one array per output. `batch(node, ins, m)`: one batched node per
      output (`NotImplemented`: row by row).
    """

    multi: ClassVar[bool] = True

    def n_outputs(self, *inputs: Node) -> int:
        return len(self.infer(*inputs))

    def cost(self, node) -> float:
        return sum(entries(s) for s, _ in output_types(node)) + sum(
            entries(x.shape) for x in node.inputs)


TUPLE = np.dtype(object)  # the dtype of a multi-output apply node: its value is a tuple


def output_types(node: Node) -> list[tuple[types.Shape, np.dtype]]:
    """One (shape, dtype) per output of a multi-output apply node, from its op's `infer`."""
    hit = node.graph.cache.get(("output_types", node.index))
    if hit is not None and hit[0] is node:
        return hit[1]
    found = [(tuple(s), np.dtype(d)) for s, d in node.op.infer(*node.inputs)]
    node.graph.cache.put(("output_types", node.index), (node, found), [node])
    return found


@register
@dataclasses.dataclass(frozen=True)
class Output(Op):
    """Output `index` of a multi-output apply node: a view, free in generated code.

    Its derivative rules move one entry of the apply node's per-output lists: the cotangent
    `g` goes to slot `index` (the others get none), the tangent is slot `index` of the list.
    """

    name: ClassVar[str] = "output"
    index: int = param(COUNT, 0)

    def infer(self, t):
        if not t.op.multi:
            raise GraphError(f"output: node {t.name!r} ({t.op.label()}) has one result; "
                             "output(k) reads a result of a multi-output op")
        outs = output_types(t)
        if not 0 <= self.index < len(outs):
            raise GraphError(f"output: {t.op.label()} has {len(outs)} outputs, no index "
                             f"{self.index}")
        return outs[self.index]

    def forward(self, t):
        return t[self.index]

    def bprop(self, inputs, out, g, i):
        n = len(output_types(inputs[0]))
        return [g if k == self.index else None for k in range(n)]

    def jvp(self, inputs, out, t, i):
        return t[self.index]

    def sympy(self, node, t):
        return t[self.index]

    def cost(self, node) -> float:
        return 0.0  # a view of a result computed by its apply node

    def batch(self, node, ins, m):
        (t, batched), = ins
        return t[self.index] if batched else NotImplemented


@register
@dataclasses.dataclass(frozen=True)
class Input(Op):
    """A placeholder fed at call time; its name is the key users feed it by."""

    name: ClassVar[str] = "input"
    differentiable: ClassVar[bool] = False
    arity: ClassVar[int | None] = 0

    def cost(self, node) -> float:
        return 0.0  # fed, not computed


@register
@dataclasses.dataclass(frozen=True, eq=False)
class Constant(Op):
    """A value baked into the graph. Compared by identity: arrays have no cheap equality."""

    name: ClassVar[str] = "constant"
    differentiable: ClassVar[bool] = False
    arity: ClassVar[int | None] = 0
    value: np.ndarray = dataclasses.field(repr=False)

    def forward(self) -> np.ndarray:
        return self.value

    def cost(self, node) -> float:
        return 0.0  # baked in, not computed

    def fill(self):
        """The number every entry holds (None: several, a NaN, or no entries), found once: the
        rewrite rules ask it of the same constant many times (`is_fill`)."""
        hit = self.__dict__.get("_fill", self)
        if hit is self:
            v = self.value
            first = v.reshape(-1)[0].item() if v.size else None
            hit = first if v.size and bool((v == first).all()) else None
            object.__setattr__(self, "_fill", hit)
        return hit

    def label(self) -> str:
        v = self.value
        if v.size == 1:
            return f"constant({v.reshape(()).item():.6g})"
        return f"constant{types.fmt_shape(v.shape)}"
