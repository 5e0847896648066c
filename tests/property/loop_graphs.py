"""A hypothesis strategy for random graphs with loops and branches in them.

A graph is drawn as a *plan* (plain data, what hypothesis shrinks and prints): steps over the
four inputs of `graphs.py` that apply an op from its table, run a `scan` whose body is itself a
small random program over the op table (1 to 4 steps, carries taken from the graph's nodes,
scanning the rows of a node or running `length` steps, capturing outer nodes), or a `cond`
between two random branches. Operand positions are drawn as plain integers and taken modulo the
number of nodes available, so the same plan builds the same graph every time.

`build(plan, loops=True)` builds it with `gc.scan` and `gc.cond`; `build(plan, loops=False)`
builds the same computation unrolled: the step function applied in a Python loop, and the cond
as a `where` of both branches. The two must agree in value and in every derivative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import graphc as gc
from tests.loops.unroll import unrolled_scan
from tests.property.graphs import BINARY, INPUT_SHAPES, UNARY

UNARY_NAMES = sorted(UNARY)
BINARY_NAMES = sorted(BINARY)
ANY = st.integers(0, 63)  # an operand position, taken modulo the nodes available
# "sqrt" and int checkpoints nest the body's scan in a segment scan (a captured value the body
# uses twice is then captured through two levels)
CHECKPOINTS = ["all", "none", "sqrt", 2]


@dataclass
class LoopGraph:
    graph: gc.Graph
    inputs: list
    outputs: list
    loops: int  # how many scan and cond nodes the plan built (0 when a step was skipped)

    def values(self, rng):
        return {x: rng.standard_normal(INPUT_SHAPES[x.name]) for x in self.inputs}

    def loss(self, seed: int = 3):
        """A scalar from all outputs with fixed random weights, the same for every build."""
        rng = np.random.default_rng(seed)
        g = self.graph
        terms = [gc.sum(o * g.constant(rng.standard_normal(tuple(int(d) for d in o.shape))))
                 for o in self.outputs]
        return gc.add_n(terms)


# -- drawing a plan ------------------------------------------------------------------------------
def _op_steps(max_size: int):
    unary = st.tuples(st.just("unary"), st.sampled_from(UNARY_NAMES), ANY)
    binary = st.tuples(st.just("binary"), st.sampled_from(BINARY_NAMES), ANY, ANY)
    return st.lists(st.one_of(unary, binary), min_size=1, max_size=max_size)


def _scan_steps():
    return st.fixed_dictionaries({
        "kind": st.just("scan"),
        "carries": st.lists(ANY, min_size=1, max_size=2),
        "xs": st.one_of(st.none(), ANY),       # a node whose rows are scanned, or none
        "length": st.integers(1, 4),           # the steps when nothing is scanned
        "captures": st.lists(ANY, max_size=2),
        "body": _op_steps(3),
        "y": ANY,
        "reverse": st.booleans(),
        "checkpoint": st.sampled_from(CHECKPOINTS),
    })


def _cond_steps():
    return st.fixed_dictionaries({
        "kind": st.just("cond"),
        "pred": ANY,
        "operand": ANY,
        "true": st.sampled_from(UNARY_NAMES),
        "false": st.sampled_from(UNARY_NAMES),
    })


@st.composite
def loop_plans(draw, max_steps: int = 5):
    steps = draw(st.lists(st.one_of(_op_steps(1).map(lambda s: s[0]), _scan_steps(),
                                     _cond_steps()), min_size=1, max_size=max_steps))
    # at least one loop or branch in every plan
    if not any(isinstance(s, dict) for s in steps):
        steps.append(draw(st.one_of(_scan_steps(), _cond_steps())))
    outputs = draw(st.lists(ANY, min_size=1, max_size=3))
    return {"steps": steps, "outputs": outputs}


# -- building a plan -----------------------------------------------------------------------------
def _pick(nodes: list, k: int):
    return nodes[k % len(nodes)]


def _apply(step, nodes: list):
    """One op step over `nodes`; None where its shapes do not fit (the step is skipped)."""
    try:
        if step[0] == "unary":
            return UNARY[step[1]](_pick(nodes, step[2]))
        return BINARY[step[1]](_pick(nodes, step[2]), _pick(nodes, step[3]))
    except gc.ShapeError:
        return None


def _coerce(z, like):
    """`z` brought to `like`'s shape: broadcast when it fits, else its mean broadcast."""
    if tuple(z.shape) == tuple(like.shape):
        return z
    try:
        return gc.broadcast_to(z, like.shape)
    except gc.ShapeError:
        return gc.broadcast_to(z.mean(), like.shape) if like.ndim else z.mean()


def _body(step: dict, captured: list):
    """The scan's step function: the body program over (carries, x, captured outer nodes);
    each new carry is tanh(carry + something of the carry's shape), so values stay bounded."""
    def body(carry, x):
        local = [*carry, *([] if x is None else [x]), *captured]
        for op_step in step["body"]:
            made = _apply(op_step, local)
            if made is not None:
                local.append(made)
        last = local[-1]
        new = tuple(gc.tanh(c + _coerce(last, c)) for c in carry)
        return new, _pick(local, step["y"])

    return body


def build(plan: dict, loops: bool = True) -> LoopGraph:
    g = gc.Graph("random_loops")
    inputs = [g.input(name, shape=shape) for name, shape in INPUT_SHAPES.items()]
    nodes = list(inputs)
    scan = gc.scan if loops else unrolled_scan
    n_loops = 0
    for step in plan["steps"]:
        if isinstance(step, tuple):
            made = _apply(step, nodes)
            if made is not None:
                nodes.append(made)
        elif step["kind"] == "scan":
            carries = tuple(_pick(nodes, k) for k in step["carries"])
            xs = None if step["xs"] is None else _pick(nodes, step["xs"])
            if xs is not None and not (xs.ndim and 1 <= int(xs.shape[0]) <= 4):
                xs = None
            captured = [_pick(nodes, k) for k in step["captures"]]
            final, ys = scan(_body(step, captured), carries, xs,
                             length=None if xs is not None else step["length"],
                             reverse=step["reverse"], checkpoint=step["checkpoint"])
            nodes += [*final, ys]
            n_loops += 1
        else:
            pred = gc.sum(_pick(nodes, step["pred"])) > 0.0
            x = _pick(nodes, step["operand"])

            def true_fun(v, name=step["true"]):
                return _coerce(UNARY[name](v), v)

            def false_fun(v, name=step["false"]):
                return _coerce(UNARY[name](v), v)

            if loops:
                nodes.append(gc.cond(pred, true_fun, false_fun, x))
            else:
                nodes.append(gc.where(pred, true_fun(x), false_fun(x)))
            n_loops += 1
    made = nodes[len(inputs):]
    outputs = []
    for k in plan["outputs"]:
        o = _pick(made, k)
        if not any(o is p for p in outputs):
            outputs.append(o)
    return LoopGraph(g, inputs, outputs, n_loops)
