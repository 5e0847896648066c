"""A schedule: the nodes a function runs, in topological order, with each value's last use.

Values are kept in numbered slots; after the step that last reads a slot, the slot is freed,
so memory holds only the live set.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphc.errors import GraphError
from graphc.ir import walk
from graphc.ir.graph import Node
from graphc.ir.op import Constant, Input


@dataclass(frozen=True)
class Step:
    node: Node
    args: tuple[int, ...]       # slots read
    out: int                    # slot written
    free: tuple[int, ...]       # slots dead after this step


@dataclass(frozen=True)
class Schedule:
    inputs: tuple[Node, ...]
    outputs: tuple[Node, ...]
    nodes: tuple[Node, ...]     # every node run or fed, topological order
    slot: dict                  # node -> slot
    steps: tuple[Step, ...]
    output_slots: tuple[int, ...]


def make_schedule(inputs: list[Node], outputs: list[Node]) -> Schedule:
    """Prune to what `outputs` need, cut at the fed `inputs`, and plan slot lifetimes."""
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
    keep = {slot[o] for o in outputs}
    last_use: dict[int, int] = {}
    order = [n for n in nodes if n not in fed]
    for k, n in enumerate(order):
        for x in n.inputs:
            last_use[slot[x]] = k
    frees: dict[int, list[int]] = {}
    for s, k in last_use.items():
        if s not in keep:
            frees.setdefault(k, []).append(s)
    steps = tuple(
        Step(n, tuple(slot[x] for x in n.inputs), slot[n], tuple(sorted(frees.get(k, ()))))
        for k, n in enumerate(order))
    return Schedule(tuple(inputs), tuple(outputs), tuple(nodes), slot, steps,
                    tuple(slot[o] for o in outputs))


def constant_slots(schedule: Schedule) -> dict[int, object]:
    return {s.out: s.node.op.value for s in schedule.steps if isinstance(s.node.op, Constant)}
