"""`Cond`: an op holding two branches, of which only the chosen one runs.

Operands: the bool scalar predicate, then the arguments, then the outer values either branch
captured (both bodies take them all, in the same order). Derivatives are conds of the
branches' derivatives, built once per node: reverse mode seeds each branch with the outputs'
cotangents (`backprop_seeded`), forward mode pushes the tangents through each branch; so the
gradient flows through the chosen branch only, and differentiating again works the same way.
Batched over a predicate that differs per row, both branches run and `where` selects (as
NumPy's `where`, and JAX's `cond` under `vmap`, do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graphc import ops
from graphc.autodiff.forward import push_tangents
from graphc.autodiff.loops import batched_copy, check_match, close_views, copy_body, reaching
from graphc.autodiff.reverse import backprop_seeded
from graphc.errors import ShapeError
from graphc.ir import types, walk
from graphc.ir.body import BODY, Body
from graphc.ir.graph import Graph, Node
from graphc.ir.op import MultiOp, register
from graphc.ir.params import param


@register
@dataclass(frozen=True)
class Cond(MultiOp):
    """`true_body(*operands)` if the predicate holds, else `false_body(*operands)`."""

    name: ClassVar[str] = "cond"
    arity: ClassVar[int | None] = None
    true_body: Body = param(BODY)
    false_body: Body = param(BODY)

    def infer(self, pred, *args):
        if pred.shape != () or pred.dtype != np.bool_:
            raise ShapeError(f"cond: the predicate ({pred.name!r}) must be a bool scalar, got "
                             f"{types.fmt_shape(pred.shape)} {pred.dtype}")
        for which, body in (("true", self.true_body), ("false", self.false_body)):
            params = body.graph.inputs
            if len(params) != len(args):
                raise ShapeError(f"cond: the {which} branch takes {len(params)} operands, got "
                                 f"{len(args)}")
            for k, (x, p) in enumerate(zip(args, params)):
                check_match("cond", f"operand {k} of the {which} branch", x, p)
        t, f = self.true_body.outputs, self.false_body.outputs
        if len(t) != len(f):
            raise ShapeError(f"cond: the branches return {len(t)} and {len(f)} values")
        for k, (a, b) in enumerate(zip(t, f)):
            if not types.shape_eq(a.shape, b.shape) or a.dtype != b.dtype:
                raise ShapeError(f"cond: result {k} is {types.fmt_shape(a.shape)} {a.dtype} "
                                 f"in the true branch but {types.fmt_shape(b.shape)} {b.dtype} "
                                 "in the false one; they must match")
        return [(a.shape, a.dtype) for a in t]

    def forward(self, pred, *args):
        body = self.true_body if bool(pred) else self.false_body
        return tuple(body.function()(*args))

    def sympy(self, node, pred, *args):
        import sympy

        t = _sympy_outputs(self.true_body, args)
        f = _sympy_outputs(self.false_body, args)
        p = pred.reshape(()).item() if hasattr(pred, "reshape") else pred  # a sympy Boolean
        out = []
        for a, b in zip(t, f):
            pw = np.empty(a.shape, dtype=object)
            for idx in np.ndindex(a.shape):
                pw[idx] = sympy.Piecewise((a[idx], p), (b[idx], True))
            out.append(pw)
        return out

    def cost(self, node) -> float:
        from graphc.autodiff.bodies import cost_of

        return max(cost_of(self.true_body), cost_of(self.false_body))

    # -- derivatives ----------------------------------------------------------------------
    def bprop(self, inputs, outs, gs, i):
        if i == 0:
            return None
        node = outs[0].inputs[0]
        g = node.graph
        key = ("cond_bprop", node.index, tuple(-1 if x is None else x.index for x in gs))
        hit = g.cache.get(key)
        if hit is None or hit[0] is not node or any(a is not b for a, b in zip(hit[1], gs)):
            hit = (node, list(gs), _reverse(self, node, list(inputs), list(gs)))
            g.cache.put(key, hit, [node, *(r for r in hit[2] if r is not None)])
        return hit[2][i - 1]

    def jvp_many(self, inputs, outs, ts):
        return _forward(self, list(inputs), list(ts))

    def batch(self, node, ins, m):
        return _batch(self, node, list(ins), m)


def _sympy_outputs(body: Body, args) -> list:
    from graphc.ir.op import Constant
    from graphc.ops.symbolic import as_objects, sympify

    values = dict(zip(body.graph.inputs, args))
    for n in walk.ancestors(body.outputs):
        if n in values:
            continue
        if isinstance(n.op, Constant):
            values[n] = np.vectorize(sympify, otypes=[object])(n.op.value)
        elif n.op.multi:
            values[n] = n.op.sympy(n, *(values[x] for x in n.inputs))
        else:
            values[n] = as_objects(n.op.sympy(n, *(values[x] for x in n.inputs)), n.shape)
    return [np.asarray(values[o], dtype=object) for o in body.outputs]


def _branch_graph(op: Cond, name: str, extra: list[tuple[str, tuple, np.dtype]]):
    """A new graph with inputs like the branches' (then `extra`), and the inputs made."""
    h = Graph(name)
    ins = [h.input(h.fresh_name(p.name), p.shape, p.dtype) for p in op.true_body.graph.inputs]
    more = [h.input(h.fresh_name(n), s, d) for n, s, d in extra]
    return h, ins, more


def _reverse(op: Cond, node: Node, inputs: list[Node], gs: list) -> list[Node | None]:
    """One cond of the branches' vector-Jacobian products: a cotangent per argument."""
    args = inputs[1:]
    t_reach = reaching(op.true_body, list(op.true_body.graph.inputs))
    f_reach = reaching(op.false_body, list(op.false_body.graph.inputs))
    wanted = [k for k in range(len(args)) if t_reach[k] or f_reach[k]]
    given = [k for k, x in enumerate(gs) if x is not None]
    if not wanted or not given:
        return [None] * len(args)
    outs_t = op.true_body.outputs
    extra = [(f"ct_{k}", outs_t[k].shape, outs_t[k].dtype) for k in given]
    bodies = []
    for body in (op.true_body, op.false_body):
        h, ins, cts = _branch_graph(op, f"{body.graph.name}.vjp", extra)
        copies = copy_body(h, body, ins)
        seeds: dict[Node, Node] = {}
        for k, c in zip(given, cts):
            o = copies[body.outputs[k]]
            seeds[o] = c if o not in seeds else seeds[o] + c
        table = backprop_seeded(seeds, [ins[k] for k in wanted])
        grads = [table.get(ins[k]) for k in wanted]
        grads = [ops.zeros_like(ins[k]) if gk is None else gk for k, gk in zip(wanted, grads)]
        close_views(h)
        bodies.append(Body(h, grads))
    g = node.graph
    C = g.apply(Cond(*bodies), [inputs[0], *args, *(gs[k] for k in given)])
    views = g.views(C)
    result: list[Node | None] = [None] * len(args)
    for pos, k in enumerate(wanted):
        result[k] = views[pos]
    return result


def _forward(op: Cond, inputs: list[Node], ts: list) -> list[Node | None]:
    """One cond of each branch with its tangents: outputs, then their tangents."""
    args, t_args = inputs[1:], ts[1:]
    given = [k for k, t in enumerate(t_args) if t is not None]
    n_out = len(op.true_body.outputs)
    if not given:
        return [None] * n_out
    params = op.true_body.graph.inputs
    extra = [(f"t_{params[k].name}", params[k].shape, params[k].dtype) for k in given]
    float_out = [types.is_float(o.dtype) for o in op.true_body.outputs]
    bodies = []
    for body in (op.true_body, op.false_body):
        h, ins, tangents = _branch_graph(op, f"{body.graph.name}.jvp", extra)
        copies = copy_body(h, body, ins)
        outs = [copies[o] for o in body.outputs]
        table = push_tangents(outs, dict(zip([ins[k] for k in given], tangents)))
        touts = [(ops.zeros_like(o) if table.get(o) is None else table[o])
                 for o, f in zip(outs, float_out) if f]
        close_views(h)
        bodies.append(Body(h, [*outs, *touts]))
    g = inputs[0].graph
    C = g.apply(Cond(*bodies), [inputs[0], *args, *(t_args[k] for k in given)])
    views = g.views(C)
    result: list[Node | None] = [None] * n_out
    pos = n_out
    for k in range(n_out):
        if float_out[k]:
            result[k] = views[pos]
            pos += 1
    return result


def _batched_body(body: Body, flags: list[bool], m) -> Body:
    """The branch over operands of which those flagged carry a leading batch axis of length
    m; every output batched (broadcast where it does not depend on a batched operand)."""
    h, outs, batched = batched_copy(body, flags, m)
    new = [y if bt else ops.broadcast_to(y, (m, *y.shape)) for y, bt in zip(outs, batched)]
    close_views(h)
    return Body(h, new)


def _batch(op: Cond, node: Node, ins, m):
    (pred, pred_batched), rest = ins[0], ins[1:]
    flags = [bt for _, bt in rest]
    args = [x for x, _ in rest]
    t_body = _batched_body(op.true_body, flags, m)
    f_body = _batched_body(op.false_body, flags, m)
    g = node.graph
    if not pred_batched:
        return list(g.views(g.apply(Cond(t_body, f_body), [pred, *args])))
    # a predicate per row: both branches run, `where` picks each row's result
    t_map, f_map = copy_body(g, t_body, args), copy_body(g, f_body, args)
    t_outs = [t_map[o] for o in t_body.outputs]
    f_outs = [f_map[o] for o in f_body.outputs]
    result = []
    for a, b in zip(t_outs, f_outs):
        p = ops.reshape(pred, (m, *([1] * (a.ndim - 1))))
        result.append(ops.where(p, a, b))
    return result
