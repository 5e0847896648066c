"""Gradients of indexing: a sum of `scatter_index` terms becomes one accumulation.

`grad` of `x[i]` is `scatter_index(g, x, i)`: zeros of x's shape with g written at i. Where x
is indexed k times (a layer per slice of a stacked weight, Rosenbrock's `x[1:]` and
`x[:-1]`), its gradient is an add_n of k such full-size arrays. The rule below replaces that
sum by one `scatter_add` node: one buffer, each term added into its own window (`out[i] += g`),
so the work is the size of the terms, not k times the size of x. The op itself is declared,
with all its rules, in graphc/ops/scatter.py.
"""

from __future__ import annotations

from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ops.elementwise import AddN
from graphc.ops.scatter import ScatterAdd
from graphc.ops.shape import ScatterIndex
from graphc.rewrite.engine import rule
from graphc.rewrite.patterns import coerce, is_op


@rule("scatter", AddN)
def add_n_of_scatters_to_scatter_add(n: Node) -> Node | None:
    """add_n(scatter_index(g1, x, i1), ..., dense) is one scatter_add over x's shape."""
    if not is_op(n, AddN):
        return None
    windows = [t for t in n.inputs if is_op(t, ScatterIndex) and not t.op.free_symbols()]
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
