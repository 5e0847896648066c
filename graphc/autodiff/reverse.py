"""Reverse mode, symbol to symbol: the back-propagation of the Deep Learning book, 6.5.6.

The code follows Algorithms 6.5 and 6.6 line by line:

    Algorithm 6.5 (`backprop`)                    here
    G' <- G pruned to ancestors of z that         pruned = prune(z, targets)
          descend from the targets T
    initialise grad_table                         grad_table = {}
    grad_table[z] <- 1                            grad_table[z] = seed (1 for grad)
    for V in T: build_grad(V, G, G', grad_table)  for V in reversed(pruned): build_grad(...)
    return grad_table restricted to T             return {V: grad_table.get(V) for V in T}

    Algorithm 6.6 (`build_grad`)                  here
    if V in grad_table: return grad_table[V]      same
    for C in get_consumers(V, G'):                for C, i in consumers[V]:
        op <- get_operation(C)                        op = C.op
        D  <- build_grad(C, G, G', grad_table)        D = grad_table[C]
        G(i) <- op.bprop(get_inputs(C, G'), V, D)     op.bprop(C.inputs, C, D, i), summed
                                                      down to V's shape (un-broadcast)
    G <- sum_i G(i)                               G = add_n(contributions): one n-ary node
    grad_table[V] = G; insert G into G            grad_table[V] = G (built in the same graph)

An op with several results is one apply node T read through `Output(k)` views. The algorithm
does not change: T's entry in grad_table is a list, one cotangent per output (None for an
output that gets none), which each view's bprop fills in its own slot and `add_up` sums slot
by slot; T's op then gets that list as D, `bprop(inputs, outs, gs, i)`, once per input.

One change makes it iterative: the book's `build_grad` recurses into the consumers; here the
loop visits G' in reverse topological order, so every consumer's entry is already in the table
when V is reached (the recursion's memo is filled in the order it would be). No recursion limit
applies, each node's gradient is built once, and the work is linear in the number of edges.
The recursive call is on the consumer C, as in the book's intent.
"""

from __future__ import annotations

import numpy as np

from graphc import ops
from graphc.autodiff import memo, rules
from graphc.autodiff.arguments import check_float, check_node, check_scalar
from graphc.errors import DisconnectedError, GraphError, ShapeError
from graphc.ir import types, walk
from graphc.ir.graph import Graph, Node
from graphc.ops.base import lift


def prune(z: Node, targets: list[Node]) -> list[Node]:
    """G': the ancestors of z that descend from a target, in topological order.

    Descent counts only through ops that let a gradient through: a node made by a
    non-differentiable op (`count`, a comparison, `stop_gradient`) gets no gradient, so it
    and its edges are left out rather than given gradients that nothing uses.
    """
    return walk.descendants_within(walk.ancestors([z]), set(targets),
                                   through=lambda n: n.op.differentiable)


def build_grad(V: Node, consumers: dict, grad_table: dict, seed: Node | None = None
               ) -> Node | None:
    """Algorithm 6.6 for one node, its consumers' gradients being in `grad_table` already.

    `seed` is a cotangent given for V itself (one of several seeded outputs, as in a loop
    body's backward step), added to what its consumers send. Returns None where no gradient
    reaches V (every path blocked or non-differentiable).
    """
    if V in grad_table:
        return grad_table[V]
    contributions = [] if seed is None else [seed]
    for C, i in consumers[V]:
        D = grad_table.get(C)
        if D is None:
            continue
        G_i = rules.bprop(C, D, i)  # op.bprop(C.inputs, C, D, i), checked, summed to V's shape
        if G_i is not None:
            contributions.append(G_i)
    G = add_up(V, contributions) if contributions else None
    grad_table[V] = G
    return G


def add_up(V: Node, contributions: list):
    """`add_n` of the contributions; for a multi-output node (contributions are lists, one
    entry per output) the list of per-output sums, None where no output got any."""
    if not V.op.multi:
        return ops.add_n(contributions)
    slots = [[c[k] for c in contributions if c[k] is not None]
             for k in range(len(contributions[0]))]
    return [ops.add_n(s) if s else None for s in slots]


def backprop(z: Node, targets: list[Node], seed: Node) -> dict[Node, Node | None]:
    """Algorithm 6.5: the gradient table of z, seeded with `seed` for z.

    The whole table is returned (every node of G' with its gradient, None where none flows);
    `grad` restricts it to the targets, the algorithm's last line.
    """
    return backprop_seeded({z: seed}, targets)


def backprop_seeded(seeds: dict[Node, Node], targets: list[Node]) -> dict[Node, Node | None]:
    """Algorithm 6.5 with several seeded nodes: `seeds` maps nodes to their cotangents (of
    their shapes), as when a loop body's outputs (new carries, per-step results) each receive
    one. A seeded node that also feeds another seeded node gets both: its seed and what its
    consumers send. With one seed {z: 1} this is `backprop`."""
    pruned = walk.descendants_within(walk.ancestors(list(seeds)), set(targets),
                                     through=lambda n: n.op.differentiable)
    consumers = walk.consumers(pruned)
    grad_table: dict[Node, Node | None] = {}
    for V in reversed(pruned):
        if types.is_float(V.dtype) or V.op.multi:
            build_grad(V, consumers, grad_table, seeds.get(V))
        else:
            grad_table.setdefault(V, None)
    for V, s in seeds.items():  # a seeded node that no target reaches keeps its seed
        grad_table.setdefault(V, s)
    return grad_table


def grad(z, wrt, disconnected: str = "zero"):
    """The gradient of scalar `z` with respect to `wrt` (a node or a list), as new nodes.

    Asking again for the same `z`, `wrt` and options returns the nodes built the first time
    (`graphc.autodiff.memo`): the graph does not grow with repeated calls.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> z = (x * x).sum()
        >>> gx = gc.grad(z, x)
        >>> gx.eval({x: np.array([1.0, 2.0])})
        array([2., 4.])
    """
    check_scalar("grad", z, "reduce it (sum/mean) or use gc.vjp")
    g = z.graph
    targets, single = _targets("grad", z, wrt, disconnected)
    hit = memo.lookup(g, "grad", z, targets, single, disconnected)
    if hit is None:
        with g.deriving():
            seed = g.constant(np.ones((), z.dtype))
            g.rename(seed, f"d{z.name}/d{z.name}")
            hit = _differentiate(z, targets, seed, disconnected, "grad")
        memo.remember(g, "grad", z, targets, single, disconnected, value=hit)
    return hit[0] if single else list(hit)


def vjp(y, wrt, u, disconnected: str = "zero"):
    """Reverse mode for any `y`: `u` has y's shape; the result u^T (dy/dx) has x's shape.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> gc.vjp(x * 3.0, x, np.array([1.0, -1.0])).eval({x: np.zeros(2)})
        array([ 3., -3.])
    """
    check_node("vjp", "y", y)
    check_float(y, "vjp", "y")
    g = y.graph
    targets, single = _targets("vjp", y, wrt, disconnected)
    # a node u is remembered by identity; an array is lifted to a new constant each call
    hit = memo.lookup(g, "vjp", y, targets, single, u, disconnected) if isinstance(
        u, Node) else None
    if hit is None:
        with g.deriving():
            seed = lift(u, g, y)
            check_node("vjp", "u", seed, g)
            if not types.shape_eq(seed.shape, y.shape):
                raise ShapeError(f"vjp: u must have y's shape {types.fmt_shape(y.shape)}, got "
                                 f"{types.fmt_shape(seed.shape)}")
            if seed.dtype != y.dtype:
                seed = ops.cast(seed, y.dtype)
            hit = _differentiate(y, targets, seed, disconnected, "vjp")
        if isinstance(u, Node):
            memo.remember(g, "vjp", y, targets, single, u, disconnected, value=hit)
    return hit[0] if single else list(hit)


def _targets(fn: str, z: Node, wrt, disconnected: str) -> tuple[list[Node], bool]:
    """`wrt` checked (float nodes of z's graph) as a list, and whether it was one node."""
    if disconnected not in ("zero", "raise"):
        raise GraphError(f"{fn}: disconnected must be 'zero' or 'raise', got {disconnected!r}")
    single = isinstance(wrt, Node)
    targets = [wrt] if single else list(wrt) if isinstance(wrt, (list, tuple)) else None
    if targets is None:
        raise GraphError(f"{fn}: wrt must be a node or a list of nodes, got "
                         f"{type(wrt).__name__}")
    for k, V in enumerate(targets):
        check_node(fn, f"wrt[{k}]" if not single else "wrt", V, z.graph)
        check_float(V, fn, f"wrt node {V.name!r}")
    return targets, single


def _differentiate(z: Node, targets: list[Node], seed: Node, disconnected: str,
                   fn: str) -> list[Node]:
    """Algorithm 6.5 from `seed`, named, with zeros (or an error) for disconnected targets."""
    mark = len(z.graph.nodes)
    grad_table = backprop(z, targets, seed)
    _name_entries(z, grad_table, mark)
    results = []
    for V in targets:
        G = grad_table.get(V)
        if G is None:
            if disconnected == "raise":
                raise DisconnectedError(
                    f"{fn}: {z.name!r} does not depend on {V.name!r} (no path, or every "
                    "path goes through stop_gradient or a non-differentiable op)")
            G = ops.zeros_like(V)
            z.graph.rename(G, f"d{z.name}/d{V.name}")
        results.append(G)
    return results


def _name_entries(z: Node, grad_table: dict, mark: int) -> None:
    """Name each new gradient node after what it is the gradient of: `dz/dh`."""
    g: Graph = z.graph
    named: set[Node] = set()
    for V, G in grad_table.items():
        if isinstance(G, Node) and G.index >= mark and G not in named and V is not z:
            g.rename(G, f"d{z.name}/d{V.name}")
            named.add(G)
