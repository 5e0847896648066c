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

from graphc.autodiff import bodies
from graphc.autodiff.batching import batch_body
from graphc.autodiff.forward import jvp as forward_jvp
from graphc.autodiff.reverse import vjp
from graphc.ir.body import BODY, Body
from graphc.ir.op import Op, register
from graphc.ir.params import param


@register
@dataclass(frozen=True)
class Remat(Op):
    """A block computed from its operands and recomputed from them for derivatives: between
    the passes only the operands are kept."""

    name: ClassVar[str] = "remat"
    arity: ClassVar[int | None] = None
    body: Body = param(BODY)

    def infer(self, *inputs):
        return bodies.check_operands("remat", self.body, inputs)

    def forward(self, *arrays):
        return self.body.run(*arrays)[0]

    def sympy(self, node, *args):
        return bodies.sympy_of(self.body, args)

    def cost(self, node) -> float:
        return bodies.cost_of(self.body)

    # d(block)/d(operand i): the block recomputed, then Algorithm 6.5 inside -----------------
    def bprop(self, inputs, out, g, i):
        if not bodies.reaches(self.body, i):
            return None
        h, params, y = bodies.recompute(self.body, "bprop", i)
        ct = h.input(h.fresh_name("cotangent"), out.shape, out.dtype)
        grad_body = Body(h, [vjp(y, params[i], ct)])
        return out.graph.apply(Remat(grad_body), [*inputs, g])

    def jvp(self, inputs, out, t, i):
        if not bodies.reaches(self.body, i):
            return None
        h, params, y = bodies.recompute(self.body, "jvp", i)
        tangent = h.input(h.fresh_name("tangent"), params[i].shape, params[i].dtype)
        tangent_body = Body(h, [forward_jvp(y, params[i], tangent)])
        return out.graph.apply(Remat(tangent_body), [*inputs, t])

    # jacobian / hessian / vmap: the body vectorized -------------------------------------------
    def batch(self, node, ins, m):
        return node.graph.apply(Remat(batch_body(self.body, ins, m)), [x for x, _ in ins])


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
    return bodies.trace("remat", fn, args, lambda body, n_args: Remat(body))
