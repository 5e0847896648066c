"""The NumPy backend: straight-line NumPy calls, `out=` into dying buffers, numba kernels.

Each op is written from its own declaration (graphc.ir.op.Op, "hooks: code emission"): an op
that declares a `ufunc` is a ufunc call, given a dying operand's buffer as `out=` when the plan
found one (a variadic op, add_n, is its binary ufunc folded left into one buffer,
`((a + b) + c)`, the order its forward adds in); on 0-d floats the ufuncs of Python's
operators are written as operators. Any other op is written by its `emit_numpy` hook (a
method call such as `x.reshape((2, 3))`, a small sum as a dot product with ones), or where it
has none, or its hook declines, by calling its own `forward`. Large elementwise regions are
fused into numba kernels (fusion.py, which writes each op's `scalar` form). The fast path's
guard returns None unless every argument is an ndarray of its input's exact static shape and
dtype, so such calls skip the call-time checks.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from graphc.compile import fusion
from graphc.compile.emit import (
    Backend,
    Context,
    declared,
    declares,
    identifier,
    literal,
    register_backend,
)
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Constant

if TYPE_CHECKING:
    from graphc.compile.plan import Plan

# On 0-d float values Python's operators run NumPy's scalar math: the same IEEE result as the
# ufunc in a tenth of the time (~50 ns against ~450 ns).
OPERATORS = {np.add: "{0} + {1}", np.subtract: "{0} - {1}", np.multiply: "{0} * {1}",
             np.true_divide: "{0} / {1}", np.negative: "-{0}"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class NumpyContext(Context):
    """An emission hook's view of a NumPy program: `literal`, `bind`, `dtype`, `zero`."""

    def dtype(self, dtype: np.dtype) -> str:
        """`np.float64` for a dtype NumPy names so, else a global holding the dtype."""
        name = dtype.name
        if re.fullmatch(r"[a-z][a-z0-9]*", name) and np.dtype(getattr(np, name, object)) == dtype:
            return f"np.{name}"
        return self.bind("_dtype", dtype, key=("dtype", dtype))

    def zero(self, dtype: np.dtype) -> str:
        """A global holding a 0-d zero of `dtype`: a ufunc converts a Python scalar operand on
        every call, which costs ~0.2 us on small arrays."""
        return self.bind("_zero_" + identifier(dtype.str), np.zeros((), dtype),
                         key=("zero", dtype))


@register_backend
class NumpyBackend(Backend):
    """NumPy arrays on the CPU; numba kernels for large elementwise regions."""

    name: ClassVar[str] = "numpy"
    namespace: ClassVar[dict] = {"np": np}

    # -- policy -----------------------------------------------------------------------------
    def writes_out(self, node: Node) -> bool:
        """A ufunc step (an add_n only when it folds into one buffer)."""
        if declared(node.op, "ufunc") is None:
            return False
        return type(node.op).arity is not None or _folds(node)

    def fresh(self, node: Node) -> bool:
        """A ufunc step, or an op declared `fresh` (for ndim >= 1)."""
        if node.ndim == 0:
            return False
        return self.writes_out(node) or bool(declared(node.op, "fresh"))

    def fuse(self, schedule) -> list:
        return fusion.find_groups(schedule)

    # -- emission ---------------------------------------------------------------------------
    def context(self, env: dict, namer) -> NumpyContext:
        return NumpyContext(env, namer)

    def guard(self, plan: Plan, ctx: NumpyContext) -> list[str]:
        """The fast path's test: called with `_ops=None`, the function runs only when every
        value is an ndarray of its input's exact static shape and dtype (what the call-time
        checks would pass unchanged) and otherwise returns None, so the caller runs the
        checks."""
        inputs = plan.schedule.inputs
        if (plan.check_finite or plan.symbolic
                or not all(types.is_static(x.shape) for x in inputs)):
            return super().guard(plan, ctx)
        if not inputs:
            return []
        ndarray = ctx.bind("_ndarray", np.ndarray)
        tests = []
        for k, (x, p) in enumerate(zip(inputs, plan.params)):
            dtype = ctx.bind(f"_dtype_{k}", np.dtype(x.dtype))
            shape = literal(tuple(x.shape))
            if shape is None:
                raise RuntimeError(f"codegen: input {x.name!r} has no literal shape")
            tests.append(f"type({p}) is {ndarray} and {p}.shape == {shape} "
                         f"and {p}.dtype is {dtype}")
        head = ["    if _ops is None and not (" + tests[0]]
        head += [f"            and {t}" for t in tests[1:]]
        head[-1] += "):"
        return [*head, "        return None"]

    def step(self, node: Node, args: list[str], out: str | None, target: str,
             ctx: NumpyContext) -> list[str]:
        op = node.op
        uf = declared(op, "ufunc")
        if uf is not None:
            code = self._ufunc(node, uf, args, out, target, ctx)
            if code is not None:
                return code
        if declares(op, "emit_numpy") and not op.free_symbols():
            expression = op.emit_numpy(node, args, ctx)
            if expression is not None:
                return [expression]
        return [self.forward_call(node, args, ctx)]

    def _ufunc(self, node: Node, uf: np.ufunc, args: list[str], out: str | None, target: str,
               ctx: NumpyContext) -> list[str] | None:
        """`np.exp(x, out=buf)`; a variadic op folded into one buffer; `a * b` on 0-d floats."""
        if type(node.op).arity is None:
            if not _folds(node):
                return None
            # ((a + b) + c) + ...: the order add_n's forward adds in, one statement per term
            # into one buffer (`out` when planned and not read after the first add)
            if out is not None and out in args[2:]:
                out = None
            fn = _ufunc_name(uf, ctx)
            given = f", out={out}" if out is not None else ""
            return [f"{fn}({args[0]}, {args[1]}{given})",
                    *(f"{fn}({target}, {a}, out={target})" for a in args[2:])]
        form = declared(node.op, "ufunc_operands")
        if form is None:
            scalar = _operator(node, uf, args, ctx)
            if scalar is not None and out is None:
                return [scalar]
            operands = ", ".join(args)
        else:
            operands = form.format(*args, zero=ctx.zero(node.dtype))
        given = f", out={out}" if out is not None else ""
        return [f"{_ufunc_name(uf, ctx)}({operands}{given})"]

    def took(self, expression: str, out: str) -> bool:
        return f"out={out})" in expression

    def buffer(self, node: Node, tiled: bool, ctx: NumpyContext) -> str:
        shape = literal(tuple(node.shape))  # static: the plan checked
        return f"np.{'empty' if tiled else 'zeros'}({shape}, {ctx.dtype(node.dtype)})"

    def kernel_call(self, group, kernel: str, args: list[str], outs: list[str]) -> str:
        args = [f"{a}[()]" if x.ndim == 0 else a for a, x in zip(args, group.inputs)]
        return f"{', '.join(outs)}{',' if len(outs) == 1 else ''} = {kernel}({', '.join(args)})"

    def result(self, node: Node, var: str) -> str:
        return f"np.array({var})" if node.ndim == 0 else var  # NumPy gives 0-d as scalars


def _folds(node: Node) -> bool:
    """A variadic ufunc op over arrays of its own dtype: written as binary calls into one
    buffer."""
    return (node.ndim > 0 and len(node.inputs) >= 2
            and all(x.dtype == node.dtype for x in node.inputs))


def _ufunc_name(uf: np.ufunc, ctx: NumpyContext) -> str:
    """`np.exp` for a ufunc NumPy names so, else a global holding it (scipy's `expit`)."""
    if getattr(np, uf.__name__, None) is uf and _NAME.match(uf.__name__):
        return f"np.{uf.__name__}"
    return ctx.bind("_" + identifier(uf.__name__), uf, key=("ufunc", uf))


def _operator(node: Node, uf: np.ufunc, args: list[str], ctx: NumpyContext) -> str | None:
    """`a * b` for a 0-d float add/sub/mul/div/neg (constants passed as NumPy scalars)."""
    form = OPERATORS.get(uf)
    if form is None or any(x.ndim != 0 or x.dtype.kind != "f" for x in (node, *node.inputs)):
        return None
    operands = []
    for x, a in zip(node.inputs, args):
        if isinstance(x.op, Constant):
            a = ctx.bind(f"_s_{a}", x.op.value[()], key=("scalar", x))
        operands.append(a)
    return form.format(*operands)
