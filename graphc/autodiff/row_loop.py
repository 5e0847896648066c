"""The general batching rule at run time: an op without a `batch` hook, applied to each row of
its batched operands by a loop when the graph runs (`RowLoop`).

The vectorizer's general rule for such an op (a user op with hand-written `bprop`/`jvp` and no
batching rule) builds one application per row and stacks them when the batch size m is a
small number; over a symbolic batch (`vmap` of `X` shaped `("n", 784)`), or a large one, it
builds one `row_loop` node instead, which holds the op applied to one row as an inner graph
and runs it m times. Correct for every op, and slow in proportion to m (one call per row).

Its derivatives are loops too: the cotangent for operand i is a `row_loop` over the body's
vjp (summed over the rows where operand i is shared by all of them), the tangent a
`row_loop` over the body's jvp; a loop batched again (a `vmap` inside a `vmap`) is a loop of
loops. So every transform goes through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import sympy

from graphc import ops
from graphc.autodiff import bodies
from graphc.autodiff.forward import jvp as forward_jvp
from graphc.autodiff.reverse import vjp
from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.body import BODY, Body
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Op, entries, register
from graphc.ir.params import FLAGS, param

LOOP_ABOVE = 16  # a static batch larger than this runs as a loop, not one node per row


@register
@dataclass(frozen=True)
class RowLoop(Op):
    """`body` (an op applied to one row) run once per row of the batched operands."""

    name: ClassVar[str] = "row_loop"
    arity: ClassVar[int | None] = None
    body: Body = param(BODY)
    batched: tuple = param(FLAGS, ())  # per operand: whether it carries the batch axis

    def infer(self, *inputs):
        if len(self.batched) != len(inputs):
            raise ShapeError(f"row_loop: {len(self.batched)} batch flags for {len(inputs)} "
                             "operands")
        if not any(self.batched):
            raise ShapeError("row_loop: no operand carries a batch axis")
        m = None
        rows = []
        for k, (x, b) in enumerate(zip(inputs, self.batched)):
            if b:
                if not x.ndim:
                    raise ShapeError(f"row_loop: the batched operand {k} ({x.name!r}) is a "
                                     "scalar")
                if m is None:
                    m = x.shape[0]
                elif not types.dim_eq(x.shape[0], m):
                    raise ShapeError(f"row_loop: batched operand {k} ({x.name!r}) has "
                                     f"{x.shape[0]} rows, another has {m}")
            rows.append(_Row(x, b))
        shape, dtype = bodies.check_operands("row_loop", self.body, rows)
        return (m, *shape), dtype

    def forward(self, *arrays):
        m = next(a.shape[0] for a, b in zip(arrays, self.batched) if b)
        results = [self.body.run(*(a[k] if b else a for a, b in zip(arrays, self.batched)))[0]
                   for k in range(m)]
        out = self.body.outputs[0]
        if results:
            return np.stack([np.asarray(r, dtype=out.dtype) for r in results])
        return np.zeros((0, *self._row_shape(arrays)), out.dtype)

    def _row_shape(self, arrays) -> tuple:
        """The body's output shape for these operands (an empty batch runs no row to tell)."""
        env = {}
        for p, a, b in zip(self.body.graph.inputs, arrays, self.batched):
            for d, v in zip(p.shape, a.shape[1:] if b else a.shape):
                if isinstance(d, sympy.Symbol):
                    env[d] = v
        return tuple(int(types.substitute(d, env)) for d in self.body.outputs[0].shape)

    def sympy(self, node, *args):
        m = node.shape[0]
        if not isinstance(m, int):
            raise GraphError(f"row_loop: node {node.name!r} loops over a symbolic number of "
                             f"rows ({m}); gc.to_sympy needs a static one")
        return np.stack([bodies.sympy_of(self.body, [a[k] if b else a
                                                     for a, b in zip(args, self.batched)])
                         for k in range(m)])

    def cost(self, node) -> float:
        return entries(node.shape[:1]) * bodies.cost_of(self.body)

    def bprop(self, inputs, out, g, i):
        if not bodies.reaches(self.body, i):
            return None
        h, params, y = bodies.recompute(self.body, "bprop", i)
        ct = h.input(h.fresh_name("cotangent"), y.shape, y.dtype)
        grad_body = Body(h, [vjp(y, params[i], ct)])
        rows = out.graph.apply(RowLoop(grad_body, (*self.batched, True)), [*inputs, g])
        return rows if self.batched[i] else ops.sum(rows, axis=0)

    def jvp(self, inputs, out, t, i):
        if not bodies.reaches(self.body, i):
            return None
        h, params, y = bodies.recompute(self.body, "jvp", i)
        tangent = h.input(h.fresh_name("tangent"), params[i].shape, params[i].dtype)
        tangent_body = Body(h, [forward_jvp(y, params[i], tangent)])
        return out.graph.apply(RowLoop(tangent_body, (*self.batched, self.batched[i])),
                               [*inputs, t])

    def batch(self, node, ins, m):  # a loop of loops
        h = Graph(f"{self.body.graph.name}.batch")
        params = [h.input(x.name, x.shape[1:] if b else x.shape, x.dtype) for x, b in ins]
        inner = h.apply(self, params)
        return node.graph.apply(RowLoop(Body(h, [inner]), tuple(b for _, b in ins)),
                                [x for x, _ in ins])


class _Row:
    """An operand as one row of it (what the body's input stands for), for the shape checks."""

    def __init__(self, x: Node, batched: bool):
        self.name, self.dtype = x.name, x.dtype
        self.shape = x.shape[1:] if batched else x.shape


def row_loop(node: Node, ins, m) -> Node:
    """`node`'s op over operands of which some carry a leading batch axis of length m, as one
    `row_loop` node: its body is the op applied to one row."""
    if node.op.multi:
        raise GraphError(f"vectorize: op {node.op.label()} has several results and no 'batch' "
                         f"hook, and the batch size {m} is symbolic; define "
                         f"{type(node.op).__name__}.batch")
    h = Graph(f"{node.op.name}.row")
    params = [h.input(x.name, x.shape[1:] if b else x.shape, x.dtype) for x, b in ins]
    body = Body(h, [h.apply(node.op, params)])
    return node.graph.apply(RowLoop(body, tuple(b for _, b in ins)), [x for x, _ in ins])
