"""Code generation, first half: everything decided about a program before any text is written.

A `Plan` is made once per compiled graph, from the schedule (schedule.py), the fused groups
(fusion.py) and the backend's policy (which steps make new arrays, which can write into a
given buffer): the order the code runs in, each value's last use (it is deleted right after),
which step writes into which dying operand's buffer (`plan_inplace`), which scatter terms are
written straight into their window of the scatter's buffer (`direct_terms`), every local's name
and whether outputs need the call-time freshness check. The backend (emit.py) then only writes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from graphc.compile.emit import RESERVED, Backend, Namer, identifier, literal
from graphc.compile.schedule import Schedule
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Constant, Output, output_types
from graphc.ops.scatter import ScatterAdd


@dataclass
class Unit:
    """A step (one node) or a fused group, with the values it reads."""

    nodes: list
    inputs: list
    group: object = None


@dataclass
class Plan:
    """What the backend writes: units in order and every decision about them."""

    schedule: Schedule
    units: list[Unit]
    last: dict[Node, int]  # value -> the unit that reads it last (it is deleted after)
    keep: frozenset  # outputs and fed inputs: never deleted
    inplace: dict[Node, Node]  # step -> the dying operand whose buffer it writes into
    direct: dict[Node, tuple]  # scatter term -> (its scatter_add, its index)
    scatters: frozenset  # scatter_adds with direct terms: their buffer is made by the first
    symbolic: frozenset  # nodes whose op is resolved per call (in `_ops`, by schedule slot)
    check_finite: bool
    checked: bool  # outputs need the call-time freshness check
    namer: Namer  # the names below taken; the backend binds its globals in a copy
    fn_name: str
    params: list[str]
    names: dict[Node, str] = field(default_factory=dict)
    constants: list[Node] = field(default_factory=list)
    unpack: dict[Node, str] = field(default_factory=dict)  # multi-output node -> `a, _, c`:
    #                          its step binds its views' names; the views' own steps are free

    def tiled(self, s: Node) -> bool:
        """Whether the direct terms of the scatter_add `s` cover its buffer exactly."""
        terms = s.inputs[1:]
        return all(self.direct.get(t, (None,))[0] is s for t in terms) and sum(
            int(np.prod(t.shape)) for t in terms) == int(np.prod(s.shape))


def make_plan(schedule: Schedule, backend: Backend, name: str = "f", groups=(),
              symbolic=frozenset(), check_finite: bool = False) -> Plan:
    """Plan the program of `schedule` for `backend`: `groups` are fused kernels, `symbolic`
    the nodes whose op is resolved per call."""
    member = {n: g for g in groups for n in g.nodes}
    units = order_units(schedule, member)
    fed = set(schedule.inputs)
    # lifetimes in the order the code runs: a fused group runs where its unit is, which can
    # be later than some of its members' places in the schedule
    inplace = ({} if check_finite else
               plan_inplace(schedule, backend.fresh, backend.writes_out,
                            [n for u in units for n in u.nodes], groups))
    last: dict[Node, int] = {}
    for k, unit in enumerate(units):
        for n in unit.inputs:
            last[n] = k
    direct = {} if check_finite else direct_terms(schedule, member, symbolic, backend)
    namer = Namer(backend_reserved(backend))
    names: dict[Node, str] = {}
    for x in schedule.inputs:
        names[x] = namer.local(x.name)
    params = [names[x] for x in schedule.inputs]
    fn_name = namer.fresh(identifier(name))
    constants = [s.node for s in schedule.steps if isinstance(s.node.op, Constant)]
    for n in constants:
        names[n] = namer.local(n.name, "c_")
    scatters = frozenset(s for s, _ in direct.values())
    keep = frozenset(schedule.outputs) | fed
    multi = {n for n in schedule.nodes if n.op.multi}
    for k, unit in enumerate(units):
        if unit.group is not None:
            for o in unit.group.outputs:
                names[o] = namer.local(o.name)
            continue
        n = unit.nodes[0]
        if isinstance(n.op, Constant) or n in scatters:
            continue
        if n in direct and direct[n][0] not in names:  # the buffer is made with its first term
            names[direct[n][0]] = namer.local(direct[n][0].name)
        heir = None if check_finite or n in direct or n.op.multi or n in keep else _heir(
            n, k, inplace.get(n), last, keep, multi)
        names[n] = names[heir] if heir is not None else namer.local(n.name)
    checked = _needs_check(schedule, backend, member, symbolic)
    return Plan(schedule, units, last, keep, inplace, direct,
                scatters, frozenset(symbolic), check_finite, checked, namer, fn_name, params,
                names, constants, unpack_targets(schedule, names))


def _heir(n: Node, k: int, into: Node | None, last: dict, keep: frozenset, multi: set):
    """An operand of `n`'s step (unit `k`) that dies there, whose variable `n` takes over:
    `a = f(a, b)` frees the old value as `del a` would, with one statement fewer (the
    generated function is then about half as long, and Python compiles it in half the time).
    The operand whose buffer the step writes into comes first: its buffer is the result's. A
    variadic op is written as several statements (`t = add(a, b); t = add(t, c, out=t)`), so
    only an operand the first one reads, and no later one, can give its name."""
    candidates = ([into] if into is not None else []) + list(n.inputs)
    if type(n.op).arity is None:
        later = {id(x) for x in n.inputs[2:]}  # by identity: `==` on nodes builds a node
        candidates = [x for x in candidates
                      if id(x) not in later and any(x is y for y in n.inputs[:2])]
    for x in candidates:
        if (last.get(x) == k and x not in keep and x.inputs and x not in multi
                and not isinstance(x.op, Constant)):
            return x
    return None


def unpack_targets(schedule: Schedule, names: dict) -> dict[Node, str]:
    """For each multi-output node, the target its step assigns: its views' names in output
    order, `_` for an output no step reads (`sign, _ = ...`)."""
    bound: dict[Node, dict[int, Node]] = {}
    for st in schedule.steps:
        n = st.node
        if isinstance(n.op, Output) and n.inputs[0].op.multi:
            bound.setdefault(n.inputs[0], {}).setdefault(n.op.index, n)
    unpack = {}
    for st in schedule.steps:
        t = st.node
        if t.op.multi:
            views = bound.get(t, {})
            count = len(output_types(t))
            targets = [names[views[k]] if k in views else "_" for k in range(count)]
            unpack[t] = ", ".join(targets) + ("," if count == 1 else "")
    return unpack


def backend_reserved(backend: Backend) -> frozenset:
    """The names no value may take: Python's and the backend's namespace (`np`)."""
    return RESERVED | frozenset(backend.namespace)


def _needs_check(schedule: Schedule, backend: Backend, member: dict, symbolic) -> bool:
    """Whether the caller must still make outputs fresh.

    An output is fresh by construction (a new array that aliases nothing the caller holds)
    when a fused kernel or a step that makes a new array it owns made it (a ufunc, a matmul, a
    sum over axes, a scatter_add, ...) and it is listed once: `plan_inplace` never writes into
    an output's buffer. A 0-d output is copied by the backend (`np.array`). Any other output
    is checked at call time.
    """
    fed = set(schedule.inputs)
    seen = set()
    for o in schedule.outputs:
        made = (o not in fed and o not in symbolic and not isinstance(o.op, Constant)
                and (o in member or backend.fresh(o)))
        if o.ndim != 0 and (not made or o in seen):
            return True
        seen.add(o)
    return False


# -- the order code runs in -------------------------------------------------------------------
def order_units(schedule: Schedule, member: dict) -> list[Unit]:
    """Steps and fused groups in an order that respects every dependency (Kahn's algorithm,
    earliest original position first)."""
    steps = [s.node for s in schedule.steps]
    units: list[Unit] = []
    unit_of: dict[Node, int] = {}
    seen_groups: dict[int, int] = {}
    for n in steps:
        g = member.get(n)
        if g is None:
            unit_of[n] = len(units)
            units.append(Unit([n], list(dict.fromkeys(n.inputs))))
        elif id(g) not in seen_groups:
            seen_groups[id(g)] = len(units)
            for m in g.nodes:
                unit_of[m] = len(units)
            units.append(Unit(list(g.nodes), list(g.inputs), g))
    if not member:
        return units
    deps = [set() for _ in units]
    users: list[list[int]] = [[] for _ in units]
    for k, u in enumerate(units):
        for x in u.inputs:
            j = unit_of.get(x)
            if j is not None and j != k and j not in deps[k]:
                deps[k].add(j)
                users[j].append(k)
    count = [len(d) for d in deps]
    heap = [k for k, c in enumerate(count) if c == 0]
    heapq.heapify(heap)
    out = []
    while heap:
        k = heapq.heappop(heap)
        out.append(units[k])
        for j in users[k]:
            count[j] -= 1
            if count[j] == 0:
                heapq.heappush(heap, j)
    if len(out) != len(units):
        raise RuntimeError("fused groups form a cycle; fusion must keep groups convex")
    return out


# -- memory plan ------------------------------------------------------------------------------
def plan_inplace(schedule: Schedule, fresh, writes_out, order=None, groups=()
                 ) -> dict[Node, Node]:
    """Which steps write their result into a dying operand's buffer (`out=`): node -> operand.

    `fresh(n)` says n's step returns a new array it owns (a ufunc result, a matmul, ...);
    `writes_out(n)` says n's step can write into a given buffer. A buffer is reused only when:
    it was made by a fresh step (never an input, a constant or a view of one), no output
    shares it (outputs are never overwritten), every value that may view it (reshape,
    transpose, an unknown op: all taken to alias their inputs) is dead after this step, and
    it has the result's exact shape and dtype. `order` is the order the steps run in when it
    differs from the schedule's (fused groups move their members): lifetimes follow it. A
    fused group's kernel (its members lie together in `order`) writes each of its
    `buffered` outputs into the buffer of an input that dies in the group, on the same terms,
    when no other input of the kernel may view that buffer (it reads `m` and `m.T` entry by
    entry: writing into m would change the entries of m.T still to be read).
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
    member = {n: g for g in groups for n in g.nodes}
    first: dict[int, int] = {}  # group -> the position of its first member
    for k, n in enumerate(order):
        if n in member:
            first.setdefault(id(member[n]), k)
    plan: dict[Node, Node] = {}
    taken: set[Node] = set()
    for k, n in enumerate(order):
        if n in member:
            g = member[n]
            if n is g.nodes[-1]:  # the kernel: inputs dying in the group lend their buffers
                for o in g.buffered:  # (but not to one another input views: m and m.T)
                    x = next((x for x in g.inputs
                              if x not in fed and x.inputs and roots[x] == frozenset((x,))
                              and fresh(x) and x not in pinned and x not in taken
                              and first[id(g)] <= death.get(x, -1) <= k
                              and x.dtype == o.dtype and types.shape_eq(x.shape, o.shape)
                              and not any(x in roots[y] for y in g.inputs if y is not x)),
                             None)
                    if x is not None:
                        plan[o] = x
                        taken.add(x)
                        roots[o] = frozenset((o,))
            continue
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


# -- scatter terms written into their windows -------------------------------------------------
def direct_terms(schedule: Schedule, member: dict, symbolic, backend: Backend
                 ) -> dict[Node, tuple]:
    """Terms of a scatter_add that its step would only add into zeros: term -> (scatter_add,
    the term's index).

    A term qualifies when its step makes a new array (`backend.writes_out`) of exactly its
    window's shape and dtype, read by nothing but the scatter_add (once), not an output; and
    the scatter_add's windows are disjoint boxes. The term's step then writes into its window
    of the buffer (`out=buf[k]`), so the gradient of a stacked weight is written in place, as
    a hand-written loop would, instead of kept as k arrays and copied in at the end.
    """
    uses: dict[Node, int] = {}
    for st in schedule.steps:
        for x in st.node.inputs:
            uses[x] = uses.get(x, 0) + 1
    outputs = set(schedule.outputs)
    fed = set(schedule.inputs)
    direct: dict[Node, tuple] = {}
    for st in schedule.steps:
        s = st.node
        if (type(s.op) is not ScatterAdd or s.op.n_dense or s in member or s in symbolic
                or not types.is_static(s.shape) or len(s.op.indices) > 4096):
            continue
        boxes = [_box(i, s.shape) for i in s.op.indices]
        if any(b is None or literal(i) is None for b, i in zip(boxes, s.op.indices)):
            continue
        if not _disjoint(boxes):
            continue
        for t, index in zip(s.inputs[1:], s.op.indices):
            if (t not in fed and t not in outputs and t not in member and t not in symbolic
                    and uses.get(t) == 1 and t.ndim > 0 and backend.writes_out(t)
                    and not isinstance(t.op, Constant) and t.dtype == s.dtype
                    and tuple(t.shape) == _window_shape(s.shape, index)):
                direct[t] = (s, index)
    return direct


def _box(index, shape) -> tuple | None:
    """The (start, stop) per axis that a basic index (ints, step-1 slices) selects, or None."""
    if not isinstance(index, tuple) or len(index) > len(shape):
        return None
    box = []
    for k, d in enumerate(shape):
        i = index[k] if k < len(index) else slice(None)
        if isinstance(i, (int, np.integer)) and not isinstance(i, bool):
            i = int(i) + (int(d) if i < 0 else 0)
            if not 0 <= i < d:
                return None
            box.append((i, i + 1))
        elif isinstance(i, slice):
            start, stop, step = i.indices(int(d))
            if step != 1 or stop <= start:
                return None
            box.append((start, stop))
        else:
            return None
    return tuple(box)


def _window_shape(shape, index) -> tuple:
    """The shape `index` selects from an array of `shape`, found on a view of one element
    (allocating nothing, whatever the shape)."""
    return np.broadcast_to(np.empty((), bool), tuple(shape))[index].shape


def _disjoint(boxes: list) -> bool:
    """True when no two boxes overlap (sorted sweep on the first axis, then pairwise)."""
    order = sorted(range(len(boxes)), key=lambda k: boxes[k][0])
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1:]:
            if boxes[b][0][0] >= boxes[a][0][1]:
                break
            if all(lo1 < hi2 and lo2 < hi1
                   for (lo1, hi1), (lo2, hi2) in zip(boxes[a], boxes[b])):
                return False
    return True
