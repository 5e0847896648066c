"""A schedule: the nodes a function runs, in topological order, with each value's last use.

Values are kept in numbered slots; after the step that last reads a slot, the slot is freed,
so memory holds only the live set.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphc.errors import GraphError
from graphc.ir import types, walk
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


# -- memory plan ---------------------------------------------------------------------------
def plan_inplace(schedule: Schedule, fresh, writes_out, order=None) -> dict[Node, Node]:
    """Which steps write their result into a dying operand's buffer (`out=`): node -> operand.

    `fresh(n)` says n's op returns a new array it owns (a ufunc result, a matmul, ...);
    `writes_out(n)` says n's op can write into a given buffer. A buffer is reused only when:
    it was made by a fresh step (never an input, a constant or a view of one), no output
    shares it (outputs are never overwritten), every value that may view it (reshape,
    transpose, an unknown op: all taken to alias their inputs) is dead after this step, and
    it has the result's exact shape and dtype. `order` is the order the steps run in when it
    differs from the schedule's (fused groups move their members): lifetimes follow it.
    """
    fed = set(schedule.inputs)
    order = [s.node for s in schedule.steps] if order is None else list(order)
    roots: dict[Node, frozenset] = {}
    for n in schedule.nodes:
        if n in fed or not n.inputs or fresh(n):
            roots[n] = frozenset((n,))
        else:
            roots[n] = frozenset().union(*(roots[x] for x in n.inputs))
    pinned: set[Node] = set()
    for o in schedule.outputs:
        pinned |= roots[o]
    death: dict[Node, int] = {}
    for k, n in enumerate(order):
        for x in n.inputs:
            for r in roots[x]:
                death[r] = k
    plan: dict[Node, Node] = {}
    taken: set[Node] = set()
    for k, n in enumerate(order):
        if not writes_out(n) or n.ndim == 0:
            continue
        for x in n.inputs:
            if (x not in fed and x.inputs and roots[x] == frozenset((x,)) and fresh(x)
                    and x not in pinned and death.get(x) == k and x.dtype == n.dtype
                    and x not in taken and types.shape_eq(x.shape, n.shape)):
                plan[n] = x
                taken.add(x)
                # the result now lives in x's buffer: it dies when n does
                roots[n] = frozenset((n,))
                break
    return plan
