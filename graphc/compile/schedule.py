"""A schedule: the nodes a function runs, in topological order, cut at its fed inputs.

Each node also gets a slot, a number that keys the per-call ops of nodes with symbolic
parameters (`_ops`). What is done with the order (last uses, the in-place plan, names) is
code generation's plan (plan.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from graphc.errors import GraphError
from graphc.ir import walk
from graphc.ir.graph import Node
from graphc.ir.op import Input


@dataclass(frozen=True)
class Step:
    node: Node


@dataclass(frozen=True)
class Schedule:
    inputs: tuple[Node, ...]
    outputs: tuple[Node, ...]
    nodes: tuple[Node, ...]     # every node run or fed, topological order
    slot: dict                  # node -> slot
    steps: tuple[Step, ...]     # the nodes run, in order (not the fed inputs)


def make_schedule(inputs: list[Node], outputs: list[Node]) -> Schedule:
    """Prune to what `outputs` need and cut at the fed `inputs`.

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph()
        >>> x, y = g.input("x"), g.input("y")
        >>> s = make_schedule([x], [gc.exp(x)])
        >>> [st.node.op.name for st in s.steps]
        ['exp']
    """
    fed = set(inputs)
    nodes = walk.ancestors(outputs, stop=fed)
    for n in nodes:
        if isinstance(n.op, Input) and n not in fed:
            needed_by = next(o.name for o in outputs if n in set(walk.ancestors([o], stop=fed)))
            raise GraphError(f"output {needed_by!r} depends on input {n.name!r}, which is not "
                             "among the function's inputs")
    slot = {n: k for k, n in enumerate(nodes)}
    for x in inputs:
        if x not in slot:
            slot[x] = len(slot)
    steps = tuple(Step(n) for n in nodes if n not in fed)
    return Schedule(tuple(inputs), tuple(outputs), tuple(nodes), slot, steps)
