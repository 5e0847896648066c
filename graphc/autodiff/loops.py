"""Loops as ops that hold their body: `Scan` (scan, fori_loop) and `WhileLoop`.

A loop node holds its body as an inner graph (`graphc.ir.body.Body`) whose inputs are the
carries, one slice of each scanned array, and the outer values the body uses (captured when the
user's function was called, once, at build time); its operands are the initial carries, the
scanned arrays and those captured values, in that order. So pruning, merging, dead-code
elimination, scheduling, drawing and saving see every outer value the loop reads, without
looking inside, and the body is compiled once (`Body.function`) whatever the trip count.

Derivatives are Algorithms 6.5/6.6 applied to the body, **once**:

- **Reverse.** The body's backward step is built by `backprop_seeded` on a copy of the body,
  with the new carries' and the step results' cotangents as seeds. Forward values that the
  backward step reads and that change from step to step (the *residuals*: a tanh's output, a
  matmul's operand) are stacked by the forward loop as extra per-step results (`n_saved`); the
  gradient is a second `Scan`, running the other way, whose carries are the carries'
  cotangents and the running sums of the captured values' gradients. It is linear in the trip
  count and stores what the step needs, nothing per op. The scan that also saves residuals
  computes the user's scan too (`primal_op`): compiled together, the two are one loop.
- **Forward.** One `Scan` of the body and its tangents (`jvp_many`: one loop for all the
  operands' tangents).
- **Batching** (`vmap`, `jacobian`, `hessian`): one `Scan` of the batched body; a carry is
  batched where its initial value or anything it depends on is.

Each rule builds ordinary nodes (scans whose bodies are ordinary graphs), so every rule is
differentiated again the same way: Hessian-vector products in all modes, any order. See
docs/loops.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from graphc import ops
from graphc.autodiff import bodies
from graphc.autodiff.batching import rebuild_batched
from graphc.autodiff.forward import push_tangents
from graphc.autodiff.reverse import backprop_seeded
from graphc.errors import GraphError, ShapeError
from graphc.ir import types, walk
from graphc.ir.body import BODY, Body
from graphc.ir.graph import Graph, Node
from graphc.ir.op import SYMBOLIC_DIM, MultiOp, Output, register
from graphc.ir.params import COUNT, FLAG, SIZE, param


class StepsExceeded(ArithmeticError):
    """A while loop that ran `max_steps` steps with its condition still true; the compiled
    function reports it as `gc.InputError` naming the loop's node and its line."""


def differentiable(n: Node) -> bool:
    return n.op.differentiable


def reaching(body: Body, sources: list[Node], outputs: list[Node] | None = None) -> list[bool]:
    """For each of `sources` (inputs of the body), whether a derivative flows from it to one
    of `outputs` (default: all the body's outputs)."""
    outs = list(body.outputs if outputs is None else outputs)
    nodes = walk.ancestors(outs)
    found = []
    for s in sources:
        if not types.is_float(s.dtype):
            found.append(False)
            continue
        reached = walk.descendants_within(nodes, {s}, through=differentiable)
        hit = {id(n) for n in reached}
        found.append(any(id(o) in hit for o in outs))
    return found


def copy_body(h: Graph, body: Body, inputs: list[Node], outputs=None) -> dict[Node, Node]:
    """The body's nodes (the ancestors of `outputs`, default all its outputs) rebuilt in `h`
    over `inputs`; returns the map from each body node to its copy. A multi-output node's
    copied views are registered as its views in `h`, so rules asking `h.views` find them."""
    new = dict(zip(body.graph.inputs, inputs))
    outs = list(body.outputs if outputs is None else outputs)
    multi: dict[Node, dict[int, Node]] = {}
    for n in walk.ancestors(outs):
        if n not in new:
            new[n] = h.append_copy(n, [new[x] for x in n.inputs])
            if isinstance(n.op, Output) and n.inputs[0].op.multi:
                multi.setdefault(n.inputs[0], {})[n.op.index] = new[n]
    for t, found in multi.items():
        views = body.graph.views(t)  # made when the body was (`close_views`): a lookup
        copied = tuple(found[k] if k in found else h.append_copy(v, [new[t]])
                       for k, v in enumerate(views))
        h.cache.put(("views", new[t].index), (new[t], copied), copied)
    return new


def close_views(h: Graph) -> None:
    """Make every view of every multi-output node of an inner graph before the graph is
    closed, so derivatives of the body can name any of them (`copy_body`)."""
    for n in list(h.nodes):
        if n.op.multi:
            h.views(n)


def check_match(what: str, k_name: str, x: Node, p: Node, lead=None) -> None:
    """Operand `x` against body input `p` (with a leading axis `lead` for a scanned array):
    how every loop and branch op checks its operands."""
    want = p.shape if lead is None else (lead, *p.shape)
    if not types.shape_eq(x.shape, want) or x.dtype != p.dtype:
        raise ShapeError(f"{what}: {k_name} ({x.name!r}) is {types.fmt_shape(x.shape)} "
                         f"{x.dtype}, the body expects {types.fmt_shape(want)} {p.dtype}")


@register
@dataclass(frozen=True)
class Scan(MultiOp):
    """`length` steps of the body, carrying `n_carry` values and slicing `n_xs` arrays along
    their leading axis; outputs: the final carries, then each per-step result stacked on a
    new leading axis (the last `n_saved` of them are residuals kept for the gradient).

    With `counted`, operand 0 is an int scalar n (0 <= n <= length): only steps 0..n-1 run
    (a while loop's recorded trip count) and the stacked rows from n on are zeros. With
    `reverse`, steps run from the last to the first. `remat` (checkpoint="none"): the
    gradient saves only the carries entering each step and its backward step recomputes the
    body's other values from them.
    """

    name: ClassVar[str] = "scan"
    arity: ClassVar[int | None] = None
    body: Body = param(BODY)
    length: object = param(SIZE)
    n_carry: int = param(COUNT)
    n_xs: int = param(COUNT, 0)
    reverse: bool = param(FLAG, False)
    n_saved: int = param(COUNT, 0)
    remat: bool = param(FLAG, False)
    counted: bool = param(FLAG, False)

    # -- structure ------------------------------------------------------------------------
    def split(self, seq):
        """(count or None, carries, xs, consts) of a sequence laid out like the operands."""
        seq = list(seq)
        n = seq.pop(0) if self.counted else None
        nc, nx = self.n_carry, self.n_xs
        return n, seq[:nc], seq[nc:nc + nx], seq[nc + nx:]

    def infer(self, *inputs):
        b = self.body
        params = b.graph.inputs
        nc, nx = self.n_carry, self.n_xs
        n, carries, xs, consts = self.split(inputs)
        if nc + nx > len(params):
            raise ShapeError(f"scan: {nc} carries and {nx} scanned arrays, but the body "
                             f"{b!r} takes only {len(params)} inputs")
        if len(inputs) - int(self.counted) != len(params):
            raise ShapeError(f"scan: the body {b!r} takes {len(params)} operands, got "
                             f"{len(inputs) - int(self.counted)}")
        if len(b.outputs) < nc:
            raise ShapeError(f"scan: the body returns {len(b.outputs)} values, fewer than its "
                             f"{nc} carries")
        if n is not None and (n.shape != () or n.dtype.kind not in "iu"):
            raise ShapeError(f"scan: the trip count ({n.name!r}) must be an int scalar, got "
                             f"{types.fmt_shape(n.shape)} {n.dtype}")
        for k, (x, p) in enumerate(zip(carries, params)):
            check_match("scan", f"init carry {k}", x, p)
            out = b.outputs[k]
            if not types.shape_eq(out.shape, p.shape) or out.dtype != p.dtype:
                raise ShapeError(f"scan: carry {k} ({p.name!r}) enters the body as "
                                 f"{types.fmt_shape(p.shape)} {p.dtype} but leaves it as "
                                 f"{types.fmt_shape(out.shape)} {out.dtype}; a carry keeps its "
                                 "shape and dtype")
        for j, (x, p) in enumerate(zip(xs, params[nc:])):
            check_match("scan", f"xs[{j}]", x, p, self.length)
        for j, (x, p) in enumerate(zip(consts, params[nc + nx:])):
            check_match("scan", f"captured value {j}", x, p)
        return ([(p.shape, p.dtype) for p in params[:nc]]
                + [((self.length, *y.shape), y.dtype) for y in b.outputs[nc:]])

    def n_ys(self) -> int:
        return len(self.body.outputs) - self.n_carry

    def label(self) -> str:
        parts = [f"length={self.length}", f"carries={self.n_carry}"]
        if self.n_xs:
            parts.append(f"xs={self.n_xs}")
        if self.reverse:
            parts.append("reverse")
        if self.counted:
            parts.append("counted")
        if self.n_saved:
            parts.append(f"saved={self.n_saved}")
        if self.remat:
            parts.append("remat")
        return f"scan({', '.join(parts)})"

    def primal_op(self):
        """The scan without the residuals it saves: compiled with this one, the same loop."""
        if not self.n_saved:
            return None
        outs = self.body.outputs[:len(self.body.outputs) - self.n_saved]
        return replace(self, body=Body(self.body.graph, outs), n_saved=0)

    def extends(self, other) -> bool:
        """Whether this loop computes everything `other` does (its outputs first, in order)
        by the same steps: `other` is this loop with fewer saved residuals."""
        if not isinstance(other, Scan) or other.body.graph is not self.body.graph:
            return False
        k = len(other.body.outputs)
        mine = self.body.outputs
        return (k <= len(mine) and all(a is b for a, b in zip(mine[:k], other.body.outputs))
                and replace(other, body=self.body, n_saved=self.n_saved) == self)

    def pruned(self, used: set[int]):
        """This loop computing only the outputs `used` (positions), or None when it needs all:
        (the op, the positions of the operands it keeps, old output position -> new). Unread
        stacked results go, then carries that nothing kept depends on, then operands that
        only they read (the compiler's dead-output elimination for loops)."""
        b = self.body
        P = b.graph.inputs
        nc, nx = self.n_carry, self.n_xs
        nout = len(b.outputs)
        if len(used) >= nout:
            return None
        ys_kept = [k for k in range(nc, nout) if k in used]
        need = {k for k in range(nc) if k in used}
        while True:
            outs = [b.outputs[k] for k in sorted(need)] + [b.outputs[k] for k in ys_kept]
            live = {id(n) for n in walk.ancestors(outs)}
            grown = need | {k for k in range(nc) if id(P[k]) in live}
            if grown == need:
                break
            need = grown
        kept_c = sorted(need)
        if not outs or (len(kept_c) == nc and len(ys_kept) == nout - nc):
            return None
        kept_in = [i for i in range(len(P)) if id(P[i]) in live or i < nc and i in need]
        h = Graph(b.graph.name)
        stand = [h.input(h.fresh_name(P[i].name), P[i].shape, P[i].dtype) if i in kept_in else None
                 for i in range(len(P))]
        copies = copy_body(h, Body(b.graph, outs), stand)
        close_views(h)
        saved_from = nout - self.n_saved
        op = replace(self, body=Body(h, [copies[o] for o in outs]), n_carry=len(kept_c),
                     n_xs=sum(1 for i in kept_in if nc <= i < nc + nx),
                     n_saved=sum(1 for k in ys_kept if k >= saved_from))
        off = int(self.counted)
        keep = ([0] if self.counted else []) + [off + i for i in kept_in]
        index_map = {k: pos for pos, k in enumerate([*kept_c, *ys_kept])}
        return op, keep, index_map

    # -- running --------------------------------------------------------------------------
    def forward(self, *arrays):
        n, carry, xs, consts = self.split(arrays)
        T = int(self.length)
        steps = T if n is None else int(n)
        if not 0 <= steps <= T:
            raise ValueError(f"scan: trip count {steps} is outside 0..{T}")
        kernel = self.__dict__.get("_kernel", self)
        if kernel is self:  # looked up once per op (ops are frozen: kept beside the fields)
            kernel = self.body.loop_kernel(self.n_carry, self.n_xs, self.reverse)
            object.__setattr__(self, "_kernel", kernel)
        if kernel is not None:  # the whole loop natively (long loops of supported bodies)
            out = kernel(steps, T, carry, xs, consts)
            if out is not None:
                return out
        fn = self.body.function()
        nc = self.n_carry
        outs = self.body.outputs[nc:]
        ys: list = [None] * len(outs)
        carry = list(carry)
        order = range(steps - 1, -1, -1) if self.reverse else range(steps)
        for t in order:
            res = fn(*carry, *[x[t, ...] for x in xs], *consts)  # (a 0-d row stays an array)
            carry = res[:nc]
            for k in range(len(outs)):
                buf = ys[k]
                if buf is None:
                    y = np.asarray(res[nc + k])
                    buf = ys[k] = (np.zeros if steps < T else np.empty)((T, *y.shape), y.dtype)
                buf[t] = res[nc + k]
        if steps == 0:
            carry = [np.array(c, copy=True) for c in carry]
        for k, y in enumerate(outs):
            if ys[k] is None:
                shape = tuple(y.shape)
                if not all(isinstance(d, int) for d in shape):
                    raise ValueError(f"scan: a loop of 0 steps cannot size its stacked result "
                                     f"{k} of symbolic shape {types.fmt_shape(y.shape)}")
                ys[k] = np.zeros((T, *shape), y.dtype)
        return (*carry, *ys)

    def sympy(self, node, *args):
        raise GraphError(f"to_sympy: {node.name!r} is a loop ({self.label()}); a loop has no "
                         "closed form here (unroll it in Python to get one)")

    def cost(self, node) -> float:
        T = self.length if isinstance(self.length, int) else SYMBOLIC_DIM
        return float(T) * bodies.cost_of(self.body)

    # -- derivatives ----------------------------------------------------------------------
    def bprop(self, inputs, outs, gs, i):
        if self.counted and i == 0:
            return None
        grads = reverse_scan(self, outs[0].inputs[0], inputs, gs)
        return grads[i - int(self.counted)]

    def jvp_many(self, inputs, outs, ts):
        return _forward(self, inputs, ts)

    def batch(self, node, ins, m):
        return _batch(self, node, ins, m)


# -- reverse mode ------------------------------------------------------------------------------
def reverse_scan(op: Scan, node: Node, inputs, gs) -> list[Node | None]:
    """The cotangent of each operand (after the count), from one backward scan per (node,
    cotangents); cached in the graph so each operand's bprop reuses it."""
    g = node.graph
    key = ("scan_bprop", node.index, tuple(-1 if x is None else x.index for x in gs))
    hit = g.cache.get(key)
    if hit is not None and hit[0] is node and all(
            a is b for a, b in zip(hit[1], gs)) and all(
            r is None or r in g for r in hit[2]):
        return hit[2]
    result = _build_reverse(op, node, list(inputs), list(gs))
    g.cache.put(key, (node, list(gs), result), [node, *(r for r in result if r is not None)])
    return result


def _build_reverse(op: Scan, node: Node, inputs: list[Node], gs: list) -> list[Node | None]:
    b = op.body
    P = list(b.graph.inputs)
    nc, nx = op.n_carry, op.n_xs
    ny = len(b.outputs) - nc
    count, init, xs, consts = op.split(inputs)
    carry_p, x_p, const_p = P[:nc], P[nc:nc + nx], P[nc + nx:]
    fc = [k for k in range(nc) if types.is_float(carry_p[k].dtype)]
    x_reach = reaching(b, x_p)
    c_reach = reaching(b, const_p)
    dx = [j for j in range(nx) if x_reach[j]]
    dc = [j for j in range(len(const_p)) if c_reach[j]]
    gy = [k for k in range(ny) if gs[nc + k] is not None]

    # 1. a scratch graph: the body copied, then its backward step by Algorithm 6.5 ---------
    h0 = Graph(f"{b.graph.name}.vjp")
    ins0 = [h0.input(h0.fresh_name(p.name), p.shape, p.dtype) for p in P]
    fwd = copy_body(h0, b, ins0)
    back = {v: k for k, v in fwd.items()}  # copy -> body node
    mark_fwd = len(h0.nodes)
    ct = {k: h0.input(h0.fresh_name(f"ct_{carry_p[k].name}"), carry_p[k].shape,
                      carry_p[k].dtype) for k in fc}
    gyin = {k: h0.input(h0.fresh_name(f"ct_y{k}"), b.outputs[nc + k].shape,
                        b.outputs[nc + k].dtype) for k in gy}
    seeds: dict[Node, Node] = {}

    def seed(n: Node, c: Node) -> None:
        seeds[n] = c if n not in seeds else seeds[n] + c

    for k in fc:
        seed(fwd[b.outputs[k]], ct[k])
    for k in gy:
        seed(fwd[b.outputs[nc + k]], gyin[k])
    targets = ([ins0[k] for k in fc] + [ins0[nc + j] for j in dx]
               + [ins0[nc + nx + j] for j in dc])
    table = backprop_seeded(seeds, targets)
    grads = [table.get(t) for t in targets]

    # 2. which forward values the backward step reads: residuals (saved), operands, or
    #    loop-invariant values (recomputed) -------------------------------------------------
    def is_forward(n: Node) -> bool:
        return n.index < mark_fwd or (isinstance(n.op, Output) and n.inputs[0].index < mark_fwd)

    step_inputs = {ins0[k] for k in range(nc + nx)}
    forward_nodes = [n for n in h0.nodes if is_forward(n)]
    varying = {id(n) for n in walk.descendants_within(forward_nodes, step_inputs)}
    cot_inputs = set(ct.values()) | set(gyin.values())
    if op.remat:  # checkpoint="none": only the carries coming in are saved; the backward
        #           step recomputes the body's values from them
        stop = set(step_inputs) | cot_inputs | set(ins0[nc + nx:])
    else:  # every value that changes from step to step and that the backward step reads
        stop = {n for n in forward_nodes if id(n) in varying} | cot_inputs | set(ins0[nc + nx:])
    live = [x for x in grads if x is not None]
    needed = walk.ancestors(live, stop=stop)
    x_ins = {ins0[nc + j]: j for j in range(nx)}
    residuals = [n for n in needed if id(n) in varying and n not in x_ins]
    for r in residuals:
        if r.op.multi:
            raise GraphError(f"scan: the backward step reads the tuple node {r.name!r} "
                             "itself; a rule must read its views")
    # a new carry saved beside the carry coming in is that same sequence one step later: the
    # backward loop carries it instead (starting from the final carry), storing it once
    res_ids = {id(r) for r in residuals}
    shifted: dict[int, Node] = {}
    for k in range(nc):
        o = fwd[b.outputs[k]]
        if (id(ins0[k]) in res_ids and id(o) in res_ids and o is not ins0[k]
                and all(o is not v for v in shifted.values())):
            shifted[k] = o
    residuals = [r for r in residuals if all(r is not v for v in shifted.values())]
    need_x = [j for j in range(nx) if ins0[nc + j] in set(needed)]
    need_c = [j for j in range(len(const_p)) if ins0[nc + nx + j] in set(needed)]

    # 3. the backward body: carries (cotangents, running sums), per-step values, consts ----
    hb = Graph(f"{b.graph.name}.grad")
    new: dict[Node, Node] = {}
    ct_b = {k: hb.input(ct[k].name, ct[k].shape, ct[k].dtype) for k in fc}
    for k in fc:
        new[ct[k]] = ct_b[k]
    acc = {j: hb.input(hb.fresh_name(f"sum_d{const_p[j].name}"), const_p[j].shape,
                       const_p[j].dtype) for j in dc}
    for k, o in shifted.items():
        new[o] = hb.input(hb.fresh_name(f"next_{carry_p[k].name}"), o.shape, o.dtype)
    for r in residuals:
        new[r] = hb.input(hb.fresh_name(f"saved_{r.name}"), r.shape, r.dtype)
    for j in need_x:
        new[ins0[nc + j]] = hb.input(hb.fresh_name(x_p[j].name), x_p[j].shape, x_p[j].dtype)
    for k in gy:
        new[gyin[k]] = hb.input(gyin[k].name, gyin[k].shape, gyin[k].dtype)
    for j in need_c:
        p = const_p[j]
        new[ins0[nc + nx + j]] = hb.input(hb.fresh_name(p.name), p.shape, p.dtype)
    for n in needed:
        if n not in new:
            new[n] = hb.append_copy(n, [new[x] for x in n.inputs])
    close_views(hb)
    out_carries, out_ys = [], []
    for pos, k in enumerate(fc):
        gk = grads[pos]
        out_carries.append(new[gk] if gk is not None else ops.zeros_like(ct_b[k]))
    for pos, j in enumerate(dc):
        gj = grads[len(fc) + len(dx) + pos]
        out_carries.append(acc[j] + new[gj] if gj is not None else acc[j])
    out_carries += [new[ins0[k]] for k in shifted]  # the carry one step earlier
    x_zero = {}
    for pos, j in enumerate(dx):
        gj = grads[len(fc) + pos]
        if gj is not None:
            out_ys.append(new[gj])
        else:
            x_zero[j] = True
            out_ys.append(hb.zeros(x_p[j].shape, x_p[j].dtype))
    if not out_carries and not out_ys:
        return [None] * (len(inputs) - int(op.counted))
    # a carry output that is a body input must still be a fresh value each step: fine, the
    # compiled body copies outputs that alias its inputs
    grad_body = Body(hb, [*out_carries, *out_ys])

    # 4. the forward scan that also stacks the residuals, and the backward scan ------------
    g = node.graph
    res_body_nodes = [back[r] for r in residuals]
    outer_res = []
    if res_body_nodes:
        n_out = len(b.outputs)
        saving = replace(op, body=Body(b.graph, [*b.outputs, *res_body_nodes]),
                         n_saved=op.n_saved + len(res_body_nodes))
        R = g.apply(saving, inputs)
        outer_res = list(g.views(R)[n_out:])
    carries0 = [gs[k] if gs[k] is not None else ops.zeros_like(init[k]) for k in fc]
    carries0 += [ops.zeros_like(consts[j]) for j in dc]
    carries0 += [g.views(R)[k] for k in shifted]  # (R saves the carry coming in, so it exists)
    operands = [*carries0, *outer_res, *(xs[j] for j in need_x),
                *(gs[nc + k] for k in gy), *(consts[j] for j in need_c)]
    if op.counted:
        operands.insert(0, count)
    back_op = Scan(grad_body, length=op.length, n_carry=len(out_carries),
                   n_xs=len(outer_res) + len(need_x) + len(gy), reverse=not op.reverse,
                   remat=op.remat, counted=op.counted)
    B = g.apply(back_op, operands)
    views = g.views(B)
    result: list[Node | None] = [None] * (nc + nx + len(const_p))
    for pos, k in enumerate(fc):
        result[k] = views[pos]
    for pos, j in enumerate(dc):
        result[nc + nx + j] = views[len(fc) + pos]
    for pos, j in enumerate(dx):
        if j not in x_zero:
            result[nc + j] = views[len(out_carries) + pos]
    return result


# -- forward mode ------------------------------------------------------------------------------
def _forward(op: Scan, inputs, ts) -> list[Node | None]:
    """One scan of the body and its tangents; the tangent of each output (None where zero)."""
    b = op.body
    P = list(b.graph.inputs)
    nc, nx = op.n_carry, op.n_xs
    ny = len(b.outputs) - nc
    count, init, xs, consts = op.split(inputs)
    _, t_init, t_xs, t_consts = op.split(ts)
    # which carries carry a tangent: a fixed point over the body's dependencies
    bearing = [t_init[k] is not None and types.is_float(P[k].dtype) for k in range(nc)]
    src_x = [t is not None for t in t_xs]
    src_c = [t is not None for t in t_consts]
    nodes = walk.ancestors(list(b.outputs))
    while True:
        sources = {P[k] for k in range(nc) if bearing[k]}
        sources |= {P[nc + j] for j in range(nx) if src_x[j]}
        sources |= {P[nc + nx + j] for j in range(len(consts)) if src_c[j]}
        reached = {id(n) for n in walk.descendants_within(nodes, sources, through=differentiable)}
        grown = [bearing[k] or (types.is_float(P[k].dtype) and id(b.outputs[k]) in reached)
                 for k in range(nc)]
        if grown == bearing:
            break
        bearing = grown
    ty_on = [types.is_float(b.outputs[nc + k].dtype) and id(b.outputs[nc + k]) in reached
             for k in range(ny)]
    if not any(bearing) and not any(ty_on):
        return [None] * (nc + ny)
    h = Graph(f"{b.graph.name}.jvp")
    c_in = [h.input(h.fresh_name(p.name), p.shape, p.dtype) for p in P[:nc]]
    tc_in = {k: h.input(h.fresh_name(f"t_{P[k].name}"), P[k].shape, P[k].dtype)
             for k in range(nc) if bearing[k]}
    x_in = [h.input(h.fresh_name(p.name), p.shape, p.dtype) for p in P[nc:nc + nx]]
    tx_in = {j: h.input(h.fresh_name(f"t_{P[nc + j].name}"), P[nc + j].shape, P[nc + j].dtype)
             for j in range(nx) if src_x[j]}
    k_in = [h.input(h.fresh_name(p.name), p.shape, p.dtype) for p in P[nc + nx:]]
    tk_in = {j: h.input(h.fresh_name(f"t_{P[nc + nx + j].name}"), P[nc + nx + j].shape,
                        P[nc + nx + j].dtype) for j in range(len(consts)) if src_c[j]}
    copies = copy_body(h, b, [*c_in, *x_in, *k_in])
    seeds = {c_in[k]: t for k, t in tc_in.items()}
    seeds.update({x_in[j]: t for j, t in tx_in.items()})
    seeds.update({k_in[j]: t for j, t in tk_in.items()})
    outs = [copies[o] for o in b.outputs]
    table = push_tangents(outs, seeds)

    def tangent(k: int) -> Node:
        t = table.get(outs[k])
        return t if t is not None else ops.zeros_like(outs[k])

    close_views(h)
    new_c = outs[:nc]
    new_tc = [tangent(k) for k in range(nc) if bearing[k]]
    ys = outs[nc:]
    tys = [tangent(nc + k) for k in range(ny) if ty_on[k]]
    body = Body(h, [*new_c, *new_tc, *ys, *tys])
    g = next(x for x in inputs).graph
    operands = [*init, *(t_init[k] if t_init[k] is not None else ops.zeros_like(init[k])
                         for k in range(nc) if bearing[k]),
                *xs, *(t_xs[j] for j in range(nx) if src_x[j]),
                *consts, *(t_consts[j] for j in range(len(consts)) if src_c[j])]
    if op.counted:
        operands.insert(0, count)
    J = g.apply(Scan(body, length=op.length, n_carry=nc + len(new_tc),
                     n_xs=nx + len(tx_in), reverse=op.reverse, remat=op.remat,
                     counted=op.counted), operands)
    views = g.views(J)
    out: list[Node | None] = [None] * (nc + ny)
    pos = nc
    for k in range(nc):
        if bearing[k]:
            out[k] = views[pos]
            pos += 1
    pos = nc + len(new_tc) + ny
    for k in range(ny):
        if ty_on[k]:
            out[nc + k] = views[pos]
            pos += 1
    return out


# -- batching ----------------------------------------------------------------------------------
def batched_copy(body: Body, flags: list[bool], m) -> tuple[Graph, list[Node], list[bool]]:
    """The body rebuilt in a new graph over inputs of which those flagged carry a leading
    batch axis of length m (the vectorizer of `vmap` does the work): the graph, its outputs,
    and whether each carries the batch axis."""
    h = Graph(f"{body.graph.name}.batch")
    stand_ins, table = [], {}
    for p, bt in zip(body.graph.inputs, flags):
        if bt:  # the batched input, and row 0 of it standing for the body's input
            full = h.input(h.fresh_name(p.name), (m, *p.shape), p.dtype)
            s = ops.getitem(full, 0)
            table[s] = (full, True)
        else:
            s = h.input(h.fresh_name(p.name), p.shape, p.dtype)
        stand_ins.append(s)
    copies = copy_body(h, body, stand_ins)
    outs = [copies[o] for o in body.outputs]
    rebuild_batched(h, walk.descendants_within(walk.ancestors(outs), set(table)), table, m)
    found = [table.get(o, (o, False)) for o in outs]
    return h, [y for y, _ in found], [bt for _, bt in found]


def _batch(op: Scan, node: Node, ins, m):
    """One scan of the batched body. Scanned arrays arrive as (m, T, ...) and scan as
    (T, m, ...); a carry is batched where its initial value, or anything it depends on, is."""
    b = op.body
    P = list(b.graph.inputs)
    nc, nx = op.n_carry, op.n_xs
    ny = len(b.outputs) - nc
    ins = list(ins)
    if op.counted and ins[0][1]:
        return NotImplemented  # a trip count per row: row by row
    count_in = ins.pop(0)[0] if op.counted else None
    c_ins, x_ins, k_ins = ins[:nc], ins[nc:nc + nx], ins[nc + nx:]
    batched_c = [bt for _, bt in c_ins]
    nodes = walk.ancestors(list(b.outputs))
    while True:
        sources = {P[k] for k in range(nc) if batched_c[k]}
        sources |= {P[nc + j] for j in range(nx) if x_ins[j][1]}
        sources |= {P[nc + nx + j] for j in range(len(k_ins)) if k_ins[j][1]}
        reached = {id(n) for n in walk.descendants_within(nodes, sources)}
        grown = [batched_c[k] or id(b.outputs[k]) in reached for k in range(nc)]
        if grown == batched_c:
            break
        batched_c = grown
    flags = batched_c + [bt for _, bt in x_ins] + [bt for _, bt in k_ins]
    h, outs, out_batched = batched_copy(b, flags, m)
    new_outs = []
    for k, (o, bt) in enumerate(zip(outs, out_batched)):
        if k < nc and batched_c[k] and not bt:
            o = ops.broadcast_to(o, (m, *o.shape))
        new_outs.append(o)
    ys_batched = out_batched[nc:]
    close_views(h)
    body = Body(h, new_outs)
    g = node.graph
    operands = []
    for k, (x, bt) in enumerate(c_ins):
        operands.append(x if bt or not batched_c[k] else
                        ops.broadcast_to(x, (m, *x.shape)))
    for x, bt in x_ins:
        operands.append(ops.moveaxis(x, 0, 1) if bt else x)
    operands += [x for x, _ in k_ins]
    if op.counted:
        operands.insert(0, count_in)
    S = g.apply(replace(op, body=body), operands)
    views = g.views(S)
    result = []
    for k in range(nc):
        v = views[k]
        result.append(v if batched_c[k] else ops.broadcast_to(v, (m, *v.shape)))
    for k in range(ny):
        v = views[nc + k]
        result.append(ops.moveaxis(v, 1, 0) if ys_batched[k] else
                      ops.broadcast_to(v, (m, *v.shape)))
    return result
