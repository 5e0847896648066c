"""Graphviz DOT text of a graph (first version: plain, one box per node)."""

from __future__ import annotations

import json

from graphc.ir import types, walk
from graphc.ir.graph import Graph, Node


def to_dot(graph_or_nodes) -> str:
    """DOT text of a graph, or of the ancestors of a node or list of nodes."""
    if isinstance(graph_or_nodes, Graph):
        nodes, name = graph_or_nodes.nodes, graph_or_nodes.name
    else:
        outs = [graph_or_nodes] if isinstance(graph_or_nodes, Node) else list(graph_or_nodes)
        nodes, name = walk.ancestors(outs), outs[0].graph.name if outs else "graph"
    lines = [f"digraph {json.dumps(name)} {{"]
    for n in nodes:
        label = f"{n.name}\\n{n.op.label()} {types.fmt_shape(n.shape)}"
        lines.append(f"  n{n.index} [label={json.dumps(label)}, role={json.dumps(n.role)}];")
    for n in nodes:
        for x in n.inputs:
            lines.append(f"  n{x.index} -> n{n.index};")
    lines.append("}")
    return "\n".join(lines) + "\n"
