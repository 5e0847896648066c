"""Rematerialization (`gc.remat`, JAX's `checkpoint`): an op that holds a block of the graph.

`remat(fn, *args)` builds `fn`'s body once, on the inputs of an inner graph shaped like `args`
(outer nodes it uses are captured as further inputs), and adds one `Remat` node over the args
and the captures. The node computes the block; what the block computed inside is not kept.

Its derivative rules are Algorithms 6.5/6.6 applied inside: `bprop` for operand i is another
`Remat` node whose body is a copy of the block (its forward, recomputed from the operands during
the backward pass) followed by the block's `vjp` for operand i; `jvp` likewise pushes a tangent
through a copy of the block. Those bodies are ordinary graphs held by ordinary `Remat` ops, so
they are differentiated again the same way: every order works. The vectorizer batches the body
(`batch`), so `jacobian` and `hessian` see through it too.

A node has one output today, so the gradient for each differentiated operand is its own node
(a block with k differentiated operands is recomputed k times in the backward pass); a block
returning a tuple is refused until nodes with several outputs land.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graphc import ops
from graphc.autodiff.batching import rebuild_batched
from graphc.autodiff.forward import jvp as forward_jvp
from graphc.autodiff.reverse import vjp
from graphc.errors import GraphError, ShapeError
from graphc.ir import types, walk
from graphc.ir.body import BODY, Body, copy_into
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Constant, Op, register
from graphc.ir.params import param
from graphc.ops.base import lift
from graphc.ops.symbolic import as_objects, sympify


@register
@dataclass(frozen=True)
class Remat(Op):
    """A block computed from its operands and recomputed from them for derivatives: between
    the passes only the operands are kept."""

    name: ClassVar[str] = "remat"
    arity: ClassVar[int | None] = None
    body: Body = param(BODY)

    def infer(self, *inputs):
        params = self.body.graph.inputs
        if len(inputs) != len(params):
            raise ShapeError(f"remat: the body {self.body!r} takes {len(params)} operands, got "
                             f"{len(inputs)}")
        for k, (x, p) in enumerate(zip(inputs, params)):
            if not types.shape_eq(x.shape, p.shape) or x.dtype != p.dtype:
                raise ShapeError(
                    f"remat: operand {k} ({x.name!r}) is {types.fmt_shape(x.shape)} {x.dtype}, "
                    f"the body's input {p.name!r} is {types.fmt_shape(p.shape)} {p.dtype}")
        if len(self.body.outputs) != 1:
            raise GraphError(f"remat: the body {self.body!r} has {len(self.body.outputs)} "
                             "outputs; one is supported until nodes have several outputs")
        out = self.body.outputs[0]
        return out.shape, out.dtype

    def forward(self, *arrays):
        return self.body.run(*arrays)[0]

    def sympy(self, node, *args):
        values = dict(zip(self.body.graph.inputs, args))
        for n in walk.ancestors(self.body.outputs):
            if n in values:
                continue
            if isinstance(n.op, Constant):
                values[n] = np.vectorize(sympify, otypes=[object])(n.op.value)
            else:
                values[n] = as_objects(n.op.sympy(n, *(values[x] for x in n.inputs)), n.shape)
        return values[self.body.outputs[0]]

    def cost(self, node) -> float:
        return float(sum(n.op.cost(n) for n in walk.ancestors(self.body.outputs)))

    # d(block)/d(operand i): the block recomputed, then Algorithm 6.5 inside -----------------
    def bprop(self, inputs, out, g, i):
        if not self._reaches(i):
            return None
        h, params, y = self._recompute("bprop", i)
        ct = h.input(h.fresh_name("cotangent"), out.shape, out.dtype)
        grad_body = Body(h, [vjp(y, params[i], ct)])
        return out.graph.apply(Remat(grad_body), [*inputs, g])

    def jvp(self, inputs, out, t, i):
        if not self._reaches(i):
            return None
        h, params, y = self._recompute("jvp", i)
        tangent = h.input(h.fresh_name("tangent"), params[i].shape, params[i].dtype)
        tangent_body = Body(h, [forward_jvp(y, params[i], tangent)])
        return out.graph.apply(Remat(tangent_body), [*inputs, t])

    def _reaches(self, i: int) -> bool:
        """Whether a derivative flows from body input i to the output."""
        x = self.body.graph.inputs[i]
        if not types.is_float(x.dtype):
            return False
        out = self.body.outputs[0]
        reached = walk.descendants_within(walk.ancestors([out]), {x},
                                          through=lambda n: n.op.differentiable)
        return any(n is out for n in reached)

    def _recompute(self, rule: str, i: int) -> tuple[Graph, list[Node], Node]:
        """A new inner graph holding a copy of the block over inputs like the body's."""
        h = Graph(f"{self.body.graph.name}.{rule}{i}")
        params = [h.input(p.name, p.shape, p.dtype) for p in self.body.graph.inputs]
        (y,) = copy_into(h, self.body, params)
        return h, params, y

    # jacobian / hessian: the body vectorized -------------------------------------------------
    def batch(self, node, ins, m):
        body = self.body
        h = Graph(f"{body.graph.name}.batch")
        stand_ins, table = [], {}
        for p, (x, batched) in zip(body.graph.inputs, ins):
            if batched:  # the batched operand, and row 0 of it standing for the body's input
                b = h.input(p.name, x.shape, p.dtype)
                s = ops.getitem(b, 0)
                table[s] = (b, True)
            else:
                s = h.input(p.name, p.shape, p.dtype)
            stand_ins.append(s)
        (y,) = copy_into(h, body, stand_ins)
        seeds = {s for s in table}
        rebuild_batched(h, walk.descendants_within(walk.ancestors([y]), seeds), table, m)
        out, batched = table.get(y, (y, False))
        if not batched:
            out = ops.broadcast_to(out, (m, *y.shape))
        return node.graph.apply(Remat(Body(h, [out])), [x for x, _ in ins])


def remat(fn, *args):
    """`fn(*args)` as one node whose derivatives recompute the block instead of storing what it
    computed inside (JAX's `checkpoint`); `fn` maps nodes to one node and is called once.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> W = g.input("W", shape=(3, 3))
        >>> y = gc.remat(lambda h: gc.tanh(W @ gc.tanh(W @ h)), x)    # W is captured
        >>> [a.name for a in y.inputs]
        ['x', 'W']
        >>> z = y.sum()
        >>> gx = gc.grad(z, x)
        >>> feed = {x: np.ones(3), W: np.eye(3) * 0.5}
        >>> bool(np.allclose(gx.eval(feed), gc.grad(gc.tanh(W @ gc.tanh(W @ x)).sum(), x)
        ...                  .eval(feed)))
        True
    """
    if not callable(fn):
        raise GraphError(f"remat: fn must be callable, got {type(fn).__name__}")
    nodes = [a for a in args if isinstance(a, Node)]
    if not nodes:
        raise GraphError("remat: at least one argument must be a graph node")
    g = nodes[0].graph
    args = [lift(a, g) for a in args]
    for k, a in enumerate(args):
        if a.graph is not g:
            raise GraphError(f"remat: argument {k} ({a.name!r}) belongs to graph "
                             f"{a.graph.name!r}, not {g.name!r}")
    name = getattr(fn, "__name__", "block")
    name = "block" if not name.isidentifier() else name
    with g.transaction(), g.inner(f"remat_{name}") as h:
        params = [h.input(h.fresh_name(a.name), a.shape, a.dtype) for a in args]
        out = fn(*params)
        if isinstance(out, (tuple, list)):
            raise GraphError(f"remat: {name} returned a {type(out).__name__}; a block with "
                             "several outputs needs multi-output nodes (not yet built): "
                             "return one node, or remat each output")
        if not isinstance(out, Node):
            raise GraphError(f"remat: {name} must return a graph node, got "
                             f"{type(out).__name__}")
        if out.graph is not h:
            out = h.capture(out) if out.graph in h.enclosing() else out
            if out.graph is not h:
                raise GraphError(f"remat: {name} returned node {out.name!r} of graph "
                                 f"{out.graph.name!r}, which is not around the block")
        outer = list(args) + [o for o, _ in sorted(h.captured.items(),
                                                     key=lambda kv: kv[1].index)]
        body = Body(h, [out])
        return g.apply(Remat(body), outer)
