"""Dead-code elimination: copy only what the outputs need into a fresh graph.

The working graph keeps every node a rewrite replaced (it is append-only); the final graph
holds the live ones, in topological order, each under the name of the node it stands for.
"""

from __future__ import annotations

from graphc.ir import walk
from graphc.ir.graph import Graph, Node
from graphc.rewrite.engine import copy_node


def live_copy(name: str, inputs: list[Node], outputs: list[Node], preferred: dict
              ) -> tuple[Graph, list[Node], list[Node]]:
    """A new graph with `inputs` (all of them, used or not) and the ancestors of `outputs`."""
    out = Graph(name)
    new: dict[Node, Node] = {}
    for x in inputs:
        new[x] = copy_node(out, x, (), preferred.get(x, x.name))
    for n in walk.ancestors(outputs, stop=set(inputs)):
        if n not in new:
            new[n] = copy_node(out, n, [new[x] for x in n.inputs], preferred.get(n, n.name))
    return out, [new[x] for x in inputs], [new[o] for o in outputs]
