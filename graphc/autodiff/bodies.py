"""What the ops that hold a graph share (`remat`'s, `custom_vjp`'s, `custom_jvp`'s): building
the body from a function, checking operands against it, and running, costing and writing it
in sympy (its batching is `graphc.autodiff.batching.batch_body`).

A body is built by calling the function once on the inputs of an inner graph shaped like the
arguments (`trace`); outer nodes it uses are captured as further inputs, so the node applying
the op has the arguments first, then the captures.
"""

from __future__ import annotations

import numpy as np

from graphc.errors import GraphError, ShapeError
from graphc.ir import types, walk
from graphc.ir.body import Body, copy_into
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Constant
from graphc.ops.base import lift
from graphc.ops.symbolic import as_objects, sympify


def fn_name(fn) -> str:
    """A function's name for messages and inner graphs ("block" for a lambda)."""
    name = getattr(fn, "__name__", "block")
    return "block" if not name.isidentifier() else name


def trace(what: str, fn, args, make_op, node_name: str | None = None) -> Node:
    """`fn(*args)` built once in an inner graph `{what}_{name}`, then one node (named
    `node_name`) applying `make_op(body, n_args)` to the args and the captured outer nodes (in
    order of capture).

    `args` are nodes of one graph, or numbers and arrays (made constants of it); `fn` returns
    one node. The whole build is one transaction: a failure leaves the graph unchanged."""
    if not callable(fn):
        raise GraphError(f"{what}: fn must be callable, got {type(fn).__name__}")
    nodes = [a for a in args if isinstance(a, Node)]
    if not nodes:
        raise GraphError(f"{what}: at least one argument must be a graph node")
    g = nodes[0].graph
    name = fn_name(fn)
    with g.transaction():
        args = [lift(a, g) for a in args]
        for k, a in enumerate(args):
            if a.graph is not g:
                raise GraphError(f"{what}: argument {k} ({a.name!r}) belongs to graph "
                                 f"{a.graph.name!r}, not {g.name!r}")
        with g.inner(f"{what}_{name}") as h:
            params = [h.input(h.fresh_name(a.name), a.shape, a.dtype) for a in args]
            out = fn(*params)
            if isinstance(out, (tuple, list)):
                raise GraphError(f"{what}: {name} returned a {type(out).__name__}; a block "
                                 "with several outputs needs multi-output nodes (not yet "
                                 f"built): return one node, or {what} each output")
            if not isinstance(out, Node):
                raise GraphError(f"{what}: {name} must return a graph node, got "
                                 f"{type(out).__name__}")
            if out.graph is not h:
                out = h.capture(out) if out.graph in h.enclosing() else out
                if out.graph is not h:
                    raise GraphError(f"{what}: {name} returned node {out.name!r} of graph "
                                     f"{out.graph.name!r}, which is not around the block")
            outer = list(args) + [o for o, _ in sorted(h.captured.items(),
                                                         key=lambda kv: kv[1].index)]
            body = Body(h, [out])
        return g.apply(make_op(body, len(args)), outer, name=node_name)


def check_operands(what: str, body: Body, inputs) -> tuple:
    """The (shape, dtype) of the body's one output, after checking the operands against the
    body's inputs (a ShapeError naming the operand otherwise)."""
    params = body.graph.inputs
    if len(inputs) != len(params):
        raise ShapeError(f"{what}: the body {body!r} takes {len(params)} operands, got "
                         f"{len(inputs)}")
    for k, (x, p) in enumerate(zip(inputs, params)):
        if not types.shape_eq(x.shape, p.shape) or x.dtype != p.dtype:
            raise ShapeError(
                f"{what}: operand {k} ({x.name!r}) is {types.fmt_shape(x.shape)} {x.dtype}, "
                f"the body's input {p.name!r} is {types.fmt_shape(p.shape)} {p.dtype}")
    if len(body.outputs) != 1:
        raise GraphError(f"{what}: the body {body!r} has {len(body.outputs)} outputs; one is "
                         "supported until nodes have several outputs")
    out = body.outputs[0]
    return out.shape, out.dtype


def sympy_of(body: Body, args) -> np.ndarray:
    """The body's output written in sympy over the operands' sympy arrays `args`."""
    values = dict(zip(body.graph.inputs, args))
    for n in walk.ancestors(body.outputs):
        if n in values:
            continue
        if isinstance(n.op, Constant):
            values[n] = np.vectorize(sympify, otypes=[object])(n.op.value)
        else:
            values[n] = as_objects(n.op.sympy(n, *(values[x] for x in n.inputs)), n.shape)
    return values[body.outputs[0]]


def cost_of(body: Body) -> float:
    """The estimated flops of running the body once (the cost model's sum over its nodes)."""
    return float(sum(n.op.cost(n) for n in walk.ancestors(body.outputs)))


def reaches(body: Body, i: int) -> bool:
    """Whether a derivative flows from body input i to the output."""
    x = body.graph.inputs[i]
    if not types.is_float(x.dtype):
        return False
    out = body.outputs[0]
    reached = walk.descendants_within(walk.ancestors([out]), {x},
                                      through=lambda n: n.op.differentiable)
    return any(n is out for n in reached)


def recompute(body: Body, rule: str, i: int) -> tuple[Graph, list[Node], Node]:
    """A new inner graph holding a copy of the block over inputs like the body's."""
    h = Graph(f"{body.graph.name}.{rule}{i}")
    params = [h.input(p.name, p.shape, p.dtype) for p in body.graph.inputs]
    (y,) = copy_into(h, body, params)
    return h, params, y
