"""Graph rewrites: merge (CSE), constant folding, algebra, stability, dead-code elimination.

`optimize(inputs, outputs)` copies what the outputs need into a working graph, rewrites it to a
fixed point with the named rules of `RULES` (engine.py; one file per family), and returns the
live part as a fresh graph. The caller's graph is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphc.ir import walk
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Output, op_key, output_types
from graphc.rewrite import algebra, fold, scatter, stability  # noqa: F401 - registers rules
from graphc.rewrite.dce import live_copy
from graphc.rewrite.engine import RULES, Rewriter, Rule, copy_node, rule


@dataclass(frozen=True)
class Optimized:
    """The result of `optimize`: the new graph, its inputs and outputs, and what fired."""

    graph: Graph
    inputs: list[Node]
    outputs: list[Node]
    fired: list[str]
    raw_size: int  # nodes the outputs needed before rewriting


def optimize(inputs: list[Node], outputs: list[Node], rules: list[Rule] | None = None,
             name: str | None = None) -> Optimized:
    """Rewrite what `outputs` need (cut at the fed `inputs`) into a smaller, equivalent graph.

    `rules=[]` only prunes: the result is the graph as built, cut to what the outputs need.

    Examples:
        >>> import graphc as gc
        >>> from graphc.rewrite import optimize
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> y = gc.log(1.0 + x) * 1.0
        >>> opt = optimize([x], [y])
        >>> [n.op.name for n in opt.graph.nodes], opt.fired
        (['input', 'log1p'], ['log_one_plus_to_log1p', 'mul_by_one_to_x'])
    """
    rules = RULES if rules is None else rules
    src = outputs[0].graph if outputs else inputs[0].graph if inputs else Graph()
    work = Graph(f"{src.name}:work")
    new: dict[Node, Node] = {}
    for x in inputs:  # a fed node is a leaf: an input, whatever op computed it in `src`
        new[x] = work.append_copy(x, as_input=True)
    raw = walk.ancestors(outputs, stop=set(inputs))
    _copy_needed(work, raw, new)
    rw = Rewriter(work, list(rules), budget=4 * len(work.nodes) + 1000)
    if rules:  # no rules: prune only (merging is a rewrite too)
        rw.run()
    w_inputs = [new[x] for x in inputs]
    w_outputs = [rw.find(new[o]) for o in outputs]
    preferred = dict(rw.preferred)
    for o, w in zip(outputs, w_outputs):  # an output keeps its own name
        preferred.setdefault(w, o.name)
    graph, ins, outs = live_copy(name or src.name, w_inputs, w_outputs, preferred)
    work.rollback(0)  # no graph <-> node cycles left: reference counting frees the working copy
    return Optimized(graph, ins, outs, rw.fired, len(raw))


def _copy_needed(work: Graph, raw: list[Node], new: dict[Node, Node]) -> None:
    """Copy `raw` into `work` (filling `new`), reading loops as little as the outputs need:
    a loop and its twin that also saves residuals become one node (`_twins`), and a loop
    whose outputs are not all read is copied with only the outputs read (an op's `pruned`
    hook: a scan drops unread stacked results, carries nothing read depends on, and the
    operands only those needed), its views renumbered."""
    twins = _twins(raw)
    used: dict[Node, set[int]] = {}
    for n in raw:
        if isinstance(n.op, Output):
            t = twins.get(n.inputs[0], n.inputs[0])
            used.setdefault(t, set()).add(n.op.index)
    renumbered: dict[Node, dict[int, int]] = {}
    views: dict = {}  # (a copied multi-output node, k) -> its view k: one per output, even
    for n in raw:     # where a node and its twin both had one
        if n in new:
            continue
        twin = twins.get(n, n)
        if twin is not n and twin in new:
            new[n] = new[twin]
            continue
        ins = [new[x] for x in n.inputs]
        if isinstance(n.op, Output):
            index = renumbered.get(ins[0], {}).get(n.op.index, n.op.index)
            hit = views.get((id(ins[0]), index))
            if hit is None:
                hit = views[(id(ins[0]), index)] = (
                    copy_node(work, n, ins) if index == n.op.index else
                    _view(work, n, ins[0], index))
            new[n] = hit
            continue
        pruned = getattr(twin.op, "pruned", None)
        found = pruned(used[twin]) if pruned is not None and twin in used else None
        if found is not None:
            op, keep, index_map = found
            with work.role(n.role):
                node = work.apply(op, [ins[i] for i in keep], name=n.name)
            renumbered[node] = index_map
        else:
            node = copy_node(work, twin, ins)
        new[n] = node
        new.setdefault(twin, node)


def _view(work: Graph, n: Node, t: Node, index: int) -> Node:
    with work.role(n.role):
        return work.apply(Output(index), [t], name=n.name)


def _twins(raw: list[Node]) -> dict[Node, Node]:
    """Nodes computed by the work of a richer node over the same inputs: a loop, and the same
    loop that also saves its residuals for a gradient (an op's `primal_op`, its op without
    the extra outputs). Each maps to the richest one whose outputs start with its own, so a
    function computing a loss and its gradient runs the loop once."""
    groups: dict = {}
    members = []
    for n in raw:
        primal_op = getattr(n.op, "primal_op", None)
        if primal_op is None:
            continue
        base = primal_op() or n.op
        key = (op_key(base), tuple(id(x) for x in n.inputs))
        members.append((n, key))
        best = groups.get(key)
        if best is None or len(output_types(best)) < len(output_types(n)):
            groups[key] = n
    twins = {}
    for n, key in members:
        best = groups[key]
        if best is not n and best.op.extends(n.op):
            twins[n] = best
    return twins


__all__ = ["Optimized", "RULES", "Rewriter", "Rule", "optimize", "rule"]
