"""Iterative walks over the DAG: no recursion, so graphs of any depth work."""

from __future__ import annotations

from collections.abc import Iterable

from graphc.ir.graph import Node


def ancestors(outputs: Iterable[Node], stop: set[Node] | None = None) -> list[Node]:
    """The outputs and everything they depend on, in topological (insertion) order.

    A node in `stop` is included but not walked through (a fed input cuts the graph there).
    """
    seen: set[Node] = set()
    stack = list(outputs)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if stop is None or n not in stop:
            stack.extend(n.inputs)
    return sorted(seen, key=lambda n: n.index)


def descendants_within(nodes: list[Node], sources: set[Node], through=None) -> list[Node]:
    """Those of `nodes` (topologically ordered) that are, or depend on, a node of `sources`.

    With `through`, a node is reached from its inputs only where `through(node)` holds.
    """
    reached: set[Node] = set()
    for n in nodes:
        if n in sources or ((through is None or through(n))
                            and any(x in reached for x in n.inputs)):
            reached.add(n)
    return [n for n in nodes if n in reached]


def consumers(nodes: list[Node]) -> dict[Node, list[tuple[Node, int]]]:
    """For each node, its uses among `nodes` as (consumer, argument position) pairs.

    A consumer that takes the node twice (x * x) is listed twice, once per position.
    """
    out: dict[Node, list[tuple[Node, int]]] = {n: [] for n in nodes}
    for c in nodes:
        for i, x in enumerate(c.inputs):
            uses = out.get(x)
            if uses is not None:
                uses.append((c, i))
    return out
