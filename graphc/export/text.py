"""Text forms of a graph: `debugprint`, an indented tree of a subgraph for terminals and logs.

Each line is `#id name: op shape`; a node with inputs that was already printed is referenced
by its id (`#7 ... see above`) instead of being printed again, so shared subtrees (the forward
values that the gradient reuses) appear once. Indentation stops at `MAX_INDENT` levels: a node
deeper than that is referenced (`#7 ... continued below`) and printed later as a tree of its
own at the left margin, so every line is short and the text grows linearly with the number of
nodes, whatever the depth. The walk uses explicit stacks, so a graph of any depth prints.
An op that holds a graph (`gc.remat`) has its body printed under it, each line marked `┆`,
the body's inputs named first (they stand for the node's operands, in order).
"""

from __future__ import annotations

import dataclasses
from collections import deque

from graphc.errors import GraphError
from graphc.ir import types
from graphc.ir.body import bodies
from graphc.ir.graph import Graph, Node, node_list
from graphc.ir.op import fmt_param, has_hook, output_types

MAX_INDENT = 32  # tree levels drawn before a subtree moves to the left margin


def debugprint(node_or_list, max_depth: int | None = None) -> str:
    """An indented tree of the nodes a node (or each node of a list, or a graph's sinks) uses.

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=("n",))
        >>> h = gc.tanh(x)
        >>> print(gc.debugprint((h * h).sum()))
        #3 sum_3: sum(axis=(0,)) ()
        └─ #2 mul_2: mul (n,)
           ├─ #1 tanh_1: tanh (n,)
           │  └─ #0 x: input (n,)
           └─ #1 tanh_1 ··· see above
    """
    roots = _roots(node_or_list)
    if max_depth is not None and (not isinstance(max_depth, int) or max_depth < 0):
        raise GraphError(f"debugprint: max_depth must be an int >= 0 or None, got {max_depth!r}")
    lines: list[str] = []
    printed: set[Node] = set()
    moved: set[Node] = set()  # referenced at the indentation limit, printed as a later tree
    # one tree per root, then one per subtree moved to the margin: (node, depth, moved here)
    trees = deque((n, 0, False) for n in roots)
    while trees:
        top, top_depth, was_moved = trees.popleft()
        if was_moved and top in printed:
            continue
        # (node, prefix for its own line, prefix for its children, depth, indentation level)
        stack = [(top, "", "", top_depth, 0)]
        while stack:
            n, lead, child_pad, depth, level = stack.pop()
            if n.inputs and n in printed:
                lines.append(f"{lead}#{n.index} {n.name} ··· see above")
                continue
            if n.inputs and level and (n in moved or level >= MAX_INDENT):
                lines.append(f"{lead}#{n.index} {n.name} ··· "
                             + ("see below" if n in moved else "continued below"))
                if n not in moved:
                    moved.add(n)
                    trees.append((n, depth, True))
                continue
            printed.add(n)
            lines.append(lead + describe(n))
            for key, body in bodies(n.op):  # the inner graph, indented under its node
                pad = child_pad + ("│  " if n.inputs else "   ")
                lines.append(f"{pad}╞═ {key} {body.graph.name}: inputs "
                             + ", ".join(f"#{x.index} {x.name}" for x in body.graph.inputs))
                for line in debugprint(list(body.outputs), max_depth).splitlines():
                    lines.append(f"{pad}┆  {line}")
            if not n.inputs:
                continue
            if max_depth is not None and depth >= max_depth:
                lines.append(f"{child_pad}└─ ··· {len(n.inputs)} input(s) below depth "
                             f"{max_depth}")
                continue
            last = len(n.inputs) - 1
            for k in range(last, -1, -1):
                branch, pad = ("└─ ", "   ") if k == last else ("├─ ", "│  ")
                stack.append((n.inputs[k], child_pad + branch, child_pad + pad, depth + 1,
                              level + 1))
    return "\n".join(lines)


def describe(n: Node) -> str:
    """One line for a node: `#id name: op shape`, then its dtype unless float64, and its role
    unless forward; a multi-output node lists its outputs: `split -> [0] (2,) | [1] (3,)`."""
    extra = "" if n.op.multi or n.dtype.name == "float64" else f" {n.dtype.name}"
    if n.role != "forward":
        extra += f" [{n.role}]"
    return f"#{n.index} {n.name}: {op_label(n.op)} {type_text(n)}{extra}"


def type_text(n: Node) -> str:
    """A node's shape (`(2, 3)`), or a multi-output node's outputs (`-> [0] (2,) | [1] (3,)`,
    each output's dtype unless float64)."""
    if not n.op.multi:
        return types.fmt_shape(n.shape)
    return "-> " + " | ".join(
        f"[{k}] {types.fmt_shape(s)}{'' if d.name == 'float64' else ' ' + d.name}"
        for k, (s, d) in enumerate(output_types(n)))


def op_label(op) -> str:
    """The op's label without parameters left at a False/None default (`keepdims=False`)."""
    defaults = {f.name: f.default for f in dataclasses.fields(op)} if dataclasses.is_dataclass(
        op) else {}
    shown = [f"{k}={fmt_param(v)}" for k, v in op.params().items()
             if v is not None and not (v is False and defaults.get(k) is False)]
    if op.name == "constant" or has_hook(op, "label"):  # an op that writes its own (einsum)
        return op.label()
    return f"{op.name}({', '.join(shown)})" if shown else op.name


def _roots(node_or_list) -> list[Node]:
    if isinstance(node_or_list, Graph):
        used = {x for n in node_or_list.nodes for x in n.inputs}
        return [n for n in node_or_list.nodes if n not in used]
    return node_list("debugprint", "nodes", node_or_list)
