"""Gradients of indexing: a sum of `scatter_index` terms becomes one accumulation.

`grad` of `x[i]` is `scatter_index(g, x, i)`: zeros of x's shape with g written at i. Where x
is indexed k times (a layer per slice of a stacked weight, Rosenbrock's `x[1:]` and
`x[:-1]`), its gradient is an add_n of k such full-size arrays. The rule below replaces that
sum by one `scatter_add` node: one buffer, each term added into its own window (`out[i] += g`),
so the work is the size of the terms, not k times the size of x.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Op
from graphc.ir.params import COUNT, INDICES, param
from graphc.ops.shape import getitem
from graphc.rewrite.engine import rule
from graphc.rewrite.patterns import coerce, is_op


@dataclasses.dataclass(frozen=True)
class ScatterAdd(Op):
    """Dense terms summed, plus each windowed term added at its index: the compiler's form of
    add_n over scatter_index nodes. Inputs: like (shape and dtype), dense terms, window terms."""

    name: ClassVar[str] = "scatter_add"
    arity: ClassVar[None] = None
    n_dense: int = param(COUNT, 0)
    indices: tuple = param(INDICES, ())

    def infer(self, like, *terms):
        return like.shape, like.dtype

    def forward(self, like, *terms):
        dense, windows = terms[:self.n_dense], terms[self.n_dense:]
        if dense:
            out = np.add(dense[0], dense[1]) if len(dense) > 1 else np.array(dense[0])
            for t in dense[2:]:
                np.add(out, t, out=out)
            out = out.astype(like.dtype, copy=False)
        else:
            out = np.zeros(like.shape, like.dtype)
        for index, v in zip(self.indices, windows):
            out[index] += v
        return out

    def bprop(self, inputs, out, g, i):
        if i == 0:
            return None
        if i <= self.n_dense:
            return g
        return getitem(g, self.indices[i - 1 - self.n_dense])

    def jvp(self, inputs, out, t, i):
        return None if i == 0 else out.graph.apply(
            ScatterAdd(self.n_dense, self.indices),
            [inputs[0]] + [t if k == i else _zeros_like(x) for k, x in enumerate(inputs)
                           if k > 0])


def _zeros_like(x: Node) -> Node:
    from graphc.ops import zeros_like
    return zeros_like(x)


@rule("scatter", ('add_n',))
def add_n_of_scatters_to_scatter_add(n: Node) -> Node | None:
    """add_n(scatter_index(g1, x, i1), ..., dense) is one scatter_add over x's shape."""
    if not is_op(n, "add_n"):
        return None
    windows = [t for t in n.inputs if is_op(t, "scatter_index") and not t.op.free_symbols()]
    if not windows or (len(windows) < 2 and len(n.inputs) < 2):
        return None
    like = windows[0].inputs[1]
    if any(not types.shape_eq(t.inputs[1].shape, n.shape) for t in windows):
        return None
    picked = set(windows)
    dense = [t for t in n.inputs if t not in picked]
    op = ScatterAdd(len(dense), tuple(t.op.index for t in windows))
    r = n.graph.apply(op, [like, *dense, *(t.inputs[0] for t in windows)])
    return coerce(r, n)
