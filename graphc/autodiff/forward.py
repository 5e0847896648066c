"""Forward mode, symbol to symbol: push a tangent through the graph with each op's `jvp` rule.

The dual of Algorithm 6.5: where `backprop` visits the pruned graph G' in reverse topological
order and sums each node's consumers' `bprop`s, `push_tangents` visits it in topological order
and sums each node's inputs' `jvp`s:

    tangent_table[x_k] <- v_k                      for each wrt node
    for N in G' (ancestors of y that descend from some x_k), in order:
        tangent_table[N] <- sum_i N.op.jvp(N.inputs, N, tangent_table[N.inputs[i]], i)

Each `jvp` returns graph nodes, so tangents can be differentiated again (forward-over-reverse
Hessian-vector products in `second_order.py` push tangents through a gradient graph). A node
whose tangent is known to be zero (no path from the wrt nodes, `stop_gradient`, a boolean or
integer node) has no entry, so no zero arrays are built or added.
"""

from __future__ import annotations

from graphc import ops
from graphc.autodiff import memo, rules
from graphc.autodiff.arguments import as_list, check_float, check_node
from graphc.autodiff.reverse import add_up
from graphc.errors import DisconnectedError, GraphError, ShapeError
from graphc.ir import types, walk
from graphc.ir.graph import Node
from graphc.ops.base import lift


def push_tangents(ys: list[Node], seeds: dict[Node, Node]) -> dict[Node, Node | None]:
    """The tangent table: for every node between the seeded nodes and `ys`, its tangent node.

    `seeds` maps wrt nodes to their tangents (of the same shape and dtype). Nodes with no
    tangent map to None.

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x")
        >>> y = gc.exp(x) * 3.0
        >>> table = push_tangents([y], {x: g.constant(2.0)})
        >>> float(table[y].eval({x: 0.0}))
        6.0
    """
    pruned = walk.descendants_within(walk.ancestors(ys), set(seeds))
    table: dict[Node, Node | None] = {}
    for N in pruned:
        if N in seeds:
            table[N] = seeds[N]
            continue
        if not (types.is_float(N.dtype) or N.op.multi):
            table[N] = None
            continue
        if hasattr(N.op, "jvp_many"):  # one rule for all the inputs' tangents at once
            ts = [table.get(x) for x in N.inputs]
            table[N] = rules.jvp_many(N, ts) if any(t is not None for t in ts) else None
            continue
        contributions = []
        for i, x in enumerate(N.inputs):
            t = table.get(x)
            if t is None:
                continue
            c = rules.jvp(N, t, i)  # N.op.jvp(N.inputs, N, t, i), checked, of N's shape
            if c is not None:
                contributions.append(c)
        # a multi-output node's tangent is a list, one per output (its views pick theirs)
        table[N] = add_up(N, contributions) if contributions else None
    return table


def jvp(y, wrt, v, disconnected: str = "zero"):
    """Forward mode: the directional derivative of `y` along `v` (`v` has the shape of `wrt`).

    `y` and `wrt` may each be a node or a list; `v` follows `wrt`. The result follows `y`.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> y_dot = gc.jvp(gc.sin(x), x, np.array([1.0, 2.0]))
        >>> y_dot.eval({x: np.array([0.0, np.pi])})
        array([ 1., -2.])
    """
    if disconnected not in ("zero", "raise"):
        raise GraphError(f"jvp: disconnected must be 'zero' or 'raise', got {disconnected!r}")
    single_y = isinstance(y, Node)
    ys = as_list("jvp", "y", y)
    for k, n in enumerate(ys):
        check_node("jvp", "y" if single_y else f"y[{k}]", n)
        check_node("jvp", "y" if single_y else f"y[{k}]", n, ys[0].graph)
    xs = as_list("jvp", "wrt", wrt)
    vs = as_list("jvp", "v", v, like=wrt)
    if len(xs) != len(vs):
        raise GraphError(f"jvp: got {len(xs)} wrt nodes but {len(vs)} tangents v")
    g = ys[0].graph
    # tangents given as nodes are remembered by identity (arrays become new constants)
    key = (ys, single_y, xs, isinstance(wrt, Node), vs, disconnected)
    remembered = all(isinstance(t, Node) for t in [*xs, *vs])
    hit = memo.lookup(g, "jvp", *key) if remembered else None
    if hit is not None:
        return hit[0] if single_y else list(hit)
    out = _jvp(g, ys, xs, vs, disconnected)
    if remembered:
        memo.remember(g, "jvp", *key, value=out)
    return out[0] if single_y else list(out)


def _jvp(g, ys: list[Node], xs: list[Node], vs: list, disconnected: str) -> list[Node]:
    with g.deriving():
        seeds = {}
        for k, (x, t) in enumerate(zip(xs, vs)):
            check_node("jvp", f"wrt[{k}]" if len(xs) > 1 else "wrt", x, g)
            check_float(x, "jvp", f"wrt node {x.name!r}")
            t = lift(t, g, x)
            check_node("jvp", f"v[{k}]", t, g)
            if not types.shape_eq(t.shape, x.shape):
                raise ShapeError(f"jvp: v for {x.name!r} must have its shape "
                                 f"{types.fmt_shape(x.shape)}, got {types.fmt_shape(t.shape)}")
            if t.dtype != x.dtype:
                t = ops.cast(t, x.dtype)
            if x in seeds:
                raise GraphError(f"jvp: wrt node {x.name!r} is listed twice")
            seeds[x] = t
        mark = len(g.nodes)
        table = push_tangents(ys, seeds)
        out = []
        for n in ys:
            check_float(n, "jvp", f"y node {n.name!r}")
            t = table.get(n)
            if t is None:
                if disconnected == "raise":
                    raise DisconnectedError(
                        f"jvp: {n.name!r} does not depend on "
                        + ", ".join(repr(x.name) for x in xs)
                        + " (no path, or every path goes through stop_gradient or a "
                        "non-differentiable op)")
                t = ops.zeros_like(n)
            out.append(t)
        _name_tangents(table, seeds, mark)
        return out


def _name_tangents(table: dict, seeds: dict, mark: int) -> None:
    """Name each new tangent node after its primal: `tangent(h)`."""
    named: set[Node] = set()
    for N, T in table.items():
        if isinstance(T, Node) and T.index >= mark and T not in named and N not in seeds:
            N.graph.rename(T, f"tangent({N.name})")
            named.add(T)
