"""scatter_add: a sum of dense terms and of terms that each cover one window of the result.

`grad` of `x[i]` is `scatter_index(g, x, i)`, zeros of x's shape with g written at i. Where x is
indexed k times, its gradient is an add_n of k such full-size arrays; the rewrite
`add_n_of_scatters_to_scatter_add` (graphc/rewrite/scatter.py) replaces that sum by one
`scatter_add` node: one buffer, each window term added into its own window (`out[i] += g`), so
the work is the size of the terms, not k times the size of x. It is an op like any other
(registered, saved and loaded, differentiated, vectorized, written in sympy), so the compiled
graph of a gradient function can be saved, loaded and differentiated again.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from graphc.errors import ShapeError
from graphc.ir import types
from graphc.ir.op import Op, register
from graphc.ir.params import COUNT, INDICES, param
from graphc.ops import symbolic
from graphc.ops.base import all_batched
from graphc.ops.elementwise import zeros_like
from graphc.ops.shape import GetItem, getitem


@register
@dataclasses.dataclass(frozen=True)
class ScatterAdd(Op):
    """Dense terms summed, plus each window term added at its index.

    Inputs: `like` (lends its shape and dtype, no gradient), then `n_dense` terms of like's
    shape, then one term per entry of `indices`, shaped like `like[index]`. The result is
    linear in the terms: d/d(dense term) is the identity, d/d(window term) reads its window.
    """

    name: ClassVar[str] = "scatter_add"
    arity: ClassVar[None] = None
    linear: ClassVar[bool] = True  # in the terms; `like` lends only its shape
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward
    n_dense: int = param(COUNT, 0)
    indices: tuple = param(INDICES, ())

    def infer(self, like, *terms):
        if len(terms) != self.n_dense + len(self.indices):
            raise ShapeError(f"scatter_add: {len(terms)} terms given, expected {self.n_dense} "
                             f"dense and {len(self.indices)} windowed")
        for t in terms[:self.n_dense]:
            if not types.shape_eq(t.shape, like.shape):
                raise ShapeError(f"scatter_add: a dense term of shape "
                                 f"{types.fmt_shape(t.shape)} is not of the result's shape "
                                 f"{types.fmt_shape(like.shape)}")
        for index, t in zip(self.indices, terms[self.n_dense:]):
            want = GetItem(index).infer(like)[0]  # like[index]'s shape
            if not types.shape_eq(want, t.shape):
                raise ShapeError(f"scatter_add: a window term of shape "
                                 f"{types.fmt_shape(t.shape)} does not fit its index of shape "
                                 f"{types.fmt_shape(want)}")
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
        if i == 0:
            return None
        terms = [t if k == i else zeros_like(x) for k, x in enumerate(inputs) if k > 0]
        return out.graph.apply(self, [inputs[0], *terms])

    def batch(self, node, ins, m):
        op = ScatterAdd(self.n_dense, tuple((slice(None), *index) for index in self.indices))
        return node.graph.apply(op, all_batched(ins, m))
