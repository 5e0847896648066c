"""`WhileLoop`: a loop whose trip count is decided when the graph runs.

The body graph computes the condition and the step from the same inputs (the carries, then the
captured outer values): output 0 is the bool predicate of the carries coming in, the others
the new carries. The node's outputs are the final carries and the trip count (int64), which
the derivative rules use:

- **Reverse** (needs `max_steps`): the loop seen as a `Scan` of the step body over `max_steps`
  rows that runs only the recorded count (`counted`), so its gradient is the scan's own: the
  forward recomputed once with its residuals, then the steps run backwards, as many as ran.
- **Forward**: a while loop over the carries and their tangents, stopped by the same
  predicate (no bound needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graphc import ops
from graphc.autodiff.bodies import cost_of
from graphc.autodiff.forward import push_tangents
from graphc.autodiff.loops import (
    Scan,
    StepsExceeded,
    check_match,
    close_views,
    copy_body,
    differentiable,
    reverse_scan,
)
from graphc.errors import GraphError, ShapeError
from graphc.ir import types, walk
from graphc.ir.body import BODY, Body
from graphc.ir.graph import Graph
from graphc.ir.op import MultiOp, register
from graphc.ir.params import COUNT, param

INT64 = np.dtype(np.int64)


@register
@dataclass(frozen=True)
class WhileLoop(MultiOp):
    """`while pred(c): c = step(c)` over `n_carry` carries; `max_steps` (0: no bound) is the
    most steps that may run (more raise at run time) and the rows the gradient stores."""

    name: ClassVar[str] = "while_loop"
    arity: ClassVar[int | None] = None
    body: Body = param(BODY)
    n_carry: int = param(COUNT)
    max_steps: int = param(COUNT, 0)

    def infer(self, *inputs):
        b = self.body
        params = b.graph.inputs
        nc = self.n_carry
        if len(inputs) != len(params) or len(b.outputs) != nc + 1:
            raise ShapeError(f"while_loop: the body {b!r} takes {len(params)} operands and "
                             f"returns {len(b.outputs)} values; got {len(inputs)} operands "
                             f"and {nc} carries")
        pred = b.outputs[0]
        if pred.shape != () or pred.dtype != np.bool_:
            raise ShapeError(f"while_loop: the condition must be a bool scalar, got "
                             f"{types.fmt_shape(pred.shape)} {pred.dtype}")
        for k, (x, p) in enumerate(zip(inputs, params)):
            check_match("while_loop", f"init carry {k}" if k < nc else
                        f"captured value {k - nc}", x, p)
        for k in range(nc):
            p, out = params[k], b.outputs[1 + k]
            if not types.shape_eq(out.shape, p.shape) or out.dtype != p.dtype:
                raise ShapeError(f"while_loop: carry {k} ({p.name!r}) enters the body as "
                                 f"{types.fmt_shape(p.shape)} {p.dtype} but leaves it as "
                                 f"{types.fmt_shape(out.shape)} {out.dtype}")
        return [(p.shape, p.dtype) for p in params[:nc]] + [((), INT64)]

    def label(self) -> str:
        bound = f", max_steps={self.max_steps}" if self.max_steps else ""
        return f"while_loop(carries={self.n_carry}{bound})"

    def parts(self) -> tuple[Body, Body]:
        """(the predicate's body, the step's body): one graph, two sets of outputs."""
        b = self.body
        return Body(b.graph, b.outputs[:1]), Body(b.graph, b.outputs[1:])

    def forward(self, *arrays):
        pred_body, step_body = self.parts()
        pred_fn, step_fn = pred_body.function(), step_body.function()
        nc = self.n_carry
        carry, consts = list(arrays[:nc]), arrays[nc:]
        n = 0
        while bool(pred_fn(*carry, *consts)[0]):
            if self.max_steps and n >= self.max_steps:
                raise StepsExceeded(
                    f"while_loop {self.body.graph.name!r} ran max_steps={self.max_steps} steps "
                    "and its condition still holds; raise max_steps or check the condition")
            carry = list(step_fn(*carry, *consts))
            n += 1
        if n == 0:
            carry = [np.array(c, copy=True) for c in carry]
        return (*carry, np.int64(n))

    def sympy(self, node, *args):
        raise GraphError(f"to_sympy: {node.name!r} is a while loop; its trip count is decided "
                         "when the graph runs, so it has no closed form")

    def cost(self, node) -> float:
        return cost_of(self.body)  # one step; the count is unknown

    # -- derivatives ----------------------------------------------------------------------
    def as_scan(self, node):
        """The loop as a counted `Scan` of its step over `max_steps` rows (for reverse mode)."""
        if not self.max_steps:
            raise GraphError(f"grad: while_loop {node.name!r} has no max_steps; reverse mode "
                             "stores the carries of every step and needs that bound (give "
                             "max_steps=...), or use forward mode (gc.jvp)")
        g = node.graph
        _, step_body = self.parts()
        count = g.views(node)[self.n_carry]
        op = Scan(step_body, length=self.max_steps, n_carry=self.n_carry, counted=True)
        return op, [count, *node.inputs]

    def bprop(self, inputs, outs, gs, i):
        node = outs[0].inputs[0]
        op, operands = self.as_scan(node)
        key = ("while_scan", node.index)
        hit = node.graph.cache.get(key)
        if hit is None or hit[0] is not node or hit[1] not in node.graph:
            S = node.graph.apply(op, operands)
            node.graph.cache.put(key, (node, S), [node, S])
        else:
            S = hit[1]
        grads = reverse_scan(op, S, S.inputs, [*gs[:self.n_carry]])
        return grads[i]  # the scan's operands after its count are the loop's

    def jvp_many(self, inputs, outs, ts):
        return _forward(self, list(inputs), list(ts))


def _forward(op: WhileLoop, inputs, ts):
    """A while loop over the carries and their tangents, stopped by the same predicate."""
    b = op.body
    P = list(b.graph.inputs)
    nc = op.n_carry
    outs_body = b.outputs[1:]
    bearing = [ts[k] is not None for k in range(nc)]
    src = [ts[nc + j] is not None for j in range(len(P) - nc)]
    nodes = walk.ancestors(list(outs_body))
    while True:
        sources = {P[k] for k in range(nc) if bearing[k]}
        sources |= {P[nc + j] for j in range(len(P) - nc) if src[j]}
        reached = {id(n) for n in walk.descendants_within(nodes, sources, through=differentiable)}
        grown = [bearing[k] or (types.is_float(P[k].dtype) and id(outs_body[k]) in reached)
                 for k in range(nc)]
        if grown == bearing:
            break
        bearing = grown
    if not any(bearing):
        return [None] * (nc + 1)
    h = Graph(f"{b.graph.name}.jvp")
    # the loop's operands: carries (primal, then tangent), then consts (the same)
    c_in = [h.input(h.fresh_name(p.name), p.shape, p.dtype) for p in P[:nc]]
    tc_in = {k: h.input(h.fresh_name(f"t_{P[k].name}"), P[k].shape, P[k].dtype)
             for k in range(nc) if bearing[k]}
    k_in = [h.input(h.fresh_name(p.name), p.shape, p.dtype) for p in P[nc:]]
    tk_in = {j: h.input(h.fresh_name(f"t_{P[nc + j].name}"), P[nc + j].shape, P[nc + j].dtype)
             for j in range(len(P) - nc) if src[j]}
    copies = copy_body(h, b, [*c_in, *k_in])
    seeds = {c_in[k]: t for k, t in tc_in.items()}
    seeds.update({k_in[j]: t for j, t in tk_in.items()})
    new = [copies[o] for o in outs_body]
    table = push_tangents(new, seeds)
    tangents = [ops.zeros_like(new[k]) if table.get(new[k]) is None else table[new[k]]
                for k in range(nc) if bearing[k]]
    close_views(h)
    body = Body(h, [copies[b.outputs[0]], *new, *tangents])
    g = inputs[0].graph
    operands = [*inputs[:nc],
                *(ts[k] if ts[k] is not None else ops.zeros_like(inputs[k])
                  for k in range(nc) if bearing[k]),
                *inputs[nc:], *(ts[nc + j] for j in range(len(P) - nc) if src[j])]
    W = g.apply(WhileLoop(body, n_carry=nc + len(tangents), max_steps=op.max_steps), operands)
    views = g.views(W)
    result: list = [None] * (nc + 1)
    pos = nc
    for k in range(nc):
        if bearing[k]:
            result[k] = views[pos]
            pos += 1
    return result
