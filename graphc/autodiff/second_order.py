"""Second order: Hessian-vector products, Jacobians and Hessians, all as nodes of the same graph.

`hvp` builds the book's `Hv = grad_x[(grad_x f)^T v]` (section 6.5.10) two ways:

- `"reverse"`: reverse-over-reverse, exactly the book's formula, `grad(sum(grad(z, x) * v), x)`;
- `"forward"`: forward-over-reverse, Pearlmutter's R-op: the tangent `v` pushed forward
  through the gradient graph, `jvp(grad(z, x), x, v)`;
- `"auto"`: builds both in a scratch graph and keeps the cheaper by `cost`, a count of flops
  and memory traffic over everything the result needs: a matmul costs 2mkn, a view (reshape,
  transpose, indexing, broadcast) nothing, any other op one per entry it reads and writes
  (elementwise ops are memory-bound). Ties go to forward mode, which keeps fewer values
  alive. docs/second-order.md has the timings that back the model.

`v` is never differentiated through: forward mode only seeds it as a tangent; reverse mode wraps
it in `stop_gradient` when it depends on `x` (the book's caveat).

`jacobian` and `hessian` build one graph, not one per entry: the directional derivative is built
once for a stand-in direction, then *vectorized* (`vectorize`): every node that depends on the
direction is rebuilt with a leading axis over the rows of an identity matrix, by a batching rule
per op family (elementwise ops broadcast, axes shift by one, matmul pads its batch axes);
nodes that do not depend on the direction are built once and shared by all rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import sympy

from graphc import ops
from graphc.autodiff import memo
from graphc.autodiff.forward import _as_list, jvp
from graphc.autodiff.reverse import _check_node, _check_scalar, _float, grad, vjp
from graphc.errors import GraphError, ShapeError
from graphc.ir import types, walk
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Constant, Input
from graphc.ops import elementwise as ew
from graphc.ops import linalg, nn, reduce, shape
from graphc.ops.base import Elementwise, lift

MODES = ("auto", "forward", "reverse")
SYMBOLIC_DIM = 128  # what a symbolic dimension counts as in the cost model


# -- Hessian-vector products ---------------------------------------------------------------
def hvp(z, wrt, v, mode: str = "auto"):
    """The Hessian of scalar `z` times `v` (`v` shaped like `wrt`), never differentiating `v`.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> z = (x[0] ** 2 * x[1]).sum()          # H = [[2 x1, 2 x0], [2 x0, 0]]
        >>> hv = gc.hvp(z, x, np.array([1.0, 0.0]))
        >>> hv.eval({x: np.array([3.0, 5.0])})
        array([10.,  6.])
    """
    if mode not in MODES:
        raise GraphError(f"hvp: mode must be one of {MODES}, got {mode!r}")
    _check_scalar("hvp", z, "reduce it (sum/mean) first")
    g = z.graph
    single = isinstance(wrt, Node)
    xs = _as_list("hvp", "wrt", wrt)
    vs = _as_list("hvp", "v", v, like=wrt)
    if len(xs) != len(vs):
        raise GraphError(f"hvp: got {len(xs)} wrt nodes but {len(vs)} vectors v")
    # vectors given as nodes are remembered by identity (arrays become new constants)
    key = (z, xs, single, vs, mode)
    remembered = all(isinstance(n, Node) for n in [*xs, *vs])
    out = memo.lookup(g, "hvp", *key) if remembered else None
    if out is None:
        with g.transaction(), g.role("grad"):
            vs = _lift_like("hvp", xs, vs, g)
            mark = len(g.nodes)
            _, out, _ = hvp_and_grad(z, xs, vs, mode)
            for x, h in zip(xs, out):
                if h.index >= mark:
                    g.rename(h, f"hvp({z.name}, {x.name})")
        if remembered:
            memo.remember(g, "hvp", *key, value=out)
    return out[0] if single else list(out)


def hvp_and_grad(z: Node, xs: list[Node], vs: list[Node], mode: str = "auto"):
    """(grad(z, xs), H v, the mode used), the HVP built on that same gradient graph.

    The building block of `hvp` and of the Krylov adapters, which compute the gradient once
    per point and reuse it for every product. Arguments are checked by the callers.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> gs, hv, mode = hvp_and_grad((x ** 3.0).sum(), [x], [g.constant(np.ones(2))])
        >>> gc.eval(gs + hv, {x: np.array([1.0, 2.0])})
        [array([ 3., 12.]), array([ 6., 12.])]
    """
    if mode == "auto":
        mode = choose_mode(z, xs, vs)
    gs = grad(z, xs)
    return gs, (_hvp_forward if mode == "forward" else _hvp_reverse)(z, xs, vs, gs), mode


def _hvp_reverse(z: Node, xs: list[Node], vs: list[Node], gs: list[Node]) -> list[Node]:
    """Reverse-over-reverse: grad(sum_k <grad(z, x_k), v_k>, x), the book's formula."""
    vs = [ops.stop_gradient(v) if _depends_on(v, xs) else v for v in vs]
    s = ops.add_n([ops.sum(gk * vk) for gk, vk in zip(gs, vs)])
    return grad(s, xs)


def _hvp_forward(z: Node, xs: list[Node], vs: list[Node], gs: list[Node]) -> list[Node]:
    """Forward-over-reverse: the R-op, the tangent v pushed through the gradient graph."""
    return jvp(gs, xs, vs)


def choose_mode(z: Node, xs: list[Node], vs: list[Node]) -> str:
    """The cheaper HVP mode by the flop model `cost`, each built in a scratch graph.

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> n = len(g.nodes)
        >>> choose_mode(gc.tanh(x).sum(), [x], [x]) in ("forward", "reverse")
        True
        >>> len(g.nodes) == n + 2     # the tanh and the sum; the candidates were rolled back
        True
    """
    costs = {}
    for mode, build in (("forward", _hvp_forward), ("reverse", _hvp_reverse)):
        with memo.kept(z.graph), z.graph.scratch():
            costs[mode] = cost(build(z, xs, vs, grad(z, xs)))
    return "forward" if costs["forward"] <= costs["reverse"] else "reverse"


def cost(outputs: list[Node]) -> float:
    """Estimated flops to evaluate `outputs` from the inputs (see the module docstring).

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph()
        >>> A, B = g.input("A", shape=(2, 3)), g.input("B", shape=(3, 4))
        >>> cost([gc.exp(A @ B)])      # 2*2*3*4 for the matmul, 8 read + 8 written for exp
        64.0
    """
    return float(sum(flops(n) for n in walk.ancestors(outputs)))


_VIEWS = (shape.Reshape, shape.ExpandDims, shape.Squeeze, shape.Transpose, shape.GetItem,
          shape.BroadcastTo, ew.StopGradient, Input, Constant)


def flops(n: Node) -> float:
    """One node's estimated cost: 2mkn for matmul, 0 for views, else entries read + written."""
    if isinstance(n.op, _VIEWS):
        return 0.0
    if isinstance(n.op, linalg.MatMul):
        return 2.0 * _numel(n.shape) * _numel(n.inputs[0].shape[-1:])
    return _numel(n.shape) + sum(_numel(x.shape) for x in n.inputs)


def _numel(shape_: types.Shape) -> float:
    size = types.size(shape_)
    if isinstance(size, sympy.Expr):
        size = size.subs({s: SYMBOLIC_DIM for s in size.free_symbols})
    return float(size)


def _depends_on(v: Node, xs: list[Node]) -> bool:
    targets = set(xs)
    return any(n in targets for n in walk.ancestors([v]))


def _lift_like(fn: str, xs: list[Node], vs: list, g: Graph) -> list[Node]:
    out = []
    for k, (x, v) in enumerate(zip(xs, vs)):
        _check_node(fn, f"wrt[{k}]" if len(xs) > 1 else "wrt", x, g)
        _float(x, fn, f"wrt node {x.name!r}")
        v = lift(v, g, x)
        _check_node(fn, f"v[{k}]" if len(xs) > 1 else "v", v, g)
        if not types.shape_eq(v.shape, x.shape):
            raise ShapeError(f"{fn}: v for {x.name!r} must have its shape "
                             f"{types.fmt_shape(x.shape)}, got {types.fmt_shape(v.shape)}")
        out.append(v if v.dtype == x.dtype else ops.cast(v, x.dtype))
    if len(set(xs)) != len(xs):
        raise GraphError(f"{fn}: a wrt node is listed twice")
    return out


# -- Jacobians and Hessians ----------------------------------------------------------------
def jacobian(y, wrt, mode: str = "auto"):
    """dy/dx as one node of shape `y.shape + x.shape` (a list for a list of wrt nodes).

    `mode="auto"` pushes tangents (forward) when x has fewer entries than y, else cotangents.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> J = gc.jacobian(gc.stack([x[0] * x[1], gc.sin(x[0])]), x)
        >>> J.eval({x: np.array([2.0, 3.0])}).round(3)
        array([[ 3.   ,  2.   ],
               [-0.416,  0.   ]])
    """
    if mode not in MODES:
        raise GraphError(f"jacobian: mode must be one of {MODES}, got {mode!r}")
    _check_node("jacobian", "y", y)
    _float(y, "jacobian", "y")
    single = isinstance(wrt, Node)
    xs = _as_list("jacobian", "wrt", wrt)
    g = y.graph
    m = _static_size("jacobian", y)
    remembered = all(isinstance(x, Node) for x in xs)
    out = memo.lookup(g, "jacobian", y, xs, single, mode) if remembered else None
    if out is None:
        out = _jacobian(y, xs, single, mode, m)
        if remembered:
            memo.remember(g, "jacobian", y, xs, single, mode, value=out)
    return out[0] if single else list(out)


def _jacobian(y: Node, xs: list, single: bool, mode: str, m: int) -> list[Node]:
    g = y.graph
    with g.transaction(), g.role("grad"):
        out = []
        for k, x in enumerate(xs):
            _check_node("jacobian", f"wrt[{k}]" if not single else "wrt", x, g)
            _float(x, "jacobian", f"wrt node {x.name!r}")
            n = _static_size("jacobian", x)
            forward = mode == "forward" or (mode == "auto" and n < m)
            if forward:   # rows of the identity over x as tangents: R[k] = J e_k
                rows = vectorize(lambda t, x=x: [jvp(y, x, t[0])], [x], [_identity(x)])[0]
                J = ops.reshape(ops.transpose(ops.reshape(rows, (n, m))), y.shape + x.shape)
            else:         # rows of the identity over y as cotangents: R[k] = e_k^T J
                rows = vectorize(lambda u, x=x: [vjp(y, x, u[0])], [y], [_identity(y)])[0]
                J = ops.reshape(rows, y.shape + x.shape)
            g.rename(J, f"jacobian({y.name}, {x.name})")
            out.append(J)
        return out


def hessian(z, wrt, mode: str = "auto"):
    """d2z/dx2 as one node of shape `x.shape + x.shape`; blocks `H[i][j]` for a list of wrt.

    Built as `hvp(z, x, v, mode)` vectorized over the rows of the identity.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> H = gc.hessian((x[0] ** 2 * x[1]).sum(), x)
        >>> H.eval({x: np.array([3.0, 5.0])})
        array([[10.,  6.],
               [ 6.,  0.]])
    """
    if mode not in MODES:
        raise GraphError(f"hessian: mode must be one of {MODES}, got {mode!r}")
    _check_scalar("hessian", z, "use gc.jacobian of its gradient")
    single = isinstance(wrt, Node)
    xs = _as_list("hessian", "wrt", wrt)
    remembered = all(isinstance(x, Node) for x in xs)
    blocks = memo.lookup(z.graph, "hessian", z, xs, single, mode) if remembered else None
    if blocks is None:
        blocks = _hessian(z, xs, single, mode)
        if remembered:
            memo.remember(z.graph, "hessian", z, xs, single, mode, value=blocks)
    return blocks[0][0] if single else [list(row) for row in blocks]


def _hessian(z: Node, xs: list, single: bool, mode: str) -> list[list[Node]]:
    g = z.graph
    with g.transaction(), g.role("grad"):
        for k, x in enumerate(xs):
            _check_node("hessian", f"wrt[{k}]" if not single else "wrt", x, g)
            _float(x, "hessian", f"wrt node {x.name!r}")
        sizes = [_static_size("hessian", x) for x in xs]
        blocks: list[list] = [[None] * len(xs) for _ in xs]
        for j, xj in enumerate(xs):
            def column(t, j=j):  # H times the direction t placed in block j, zeros elsewhere
                vs = [t[0] if k == j else ops.zeros_like(x) for k, x in enumerate(xs)]
                return hvp(z, xs, vs, mode=mode)
            cols = vectorize(column, [xj], [_identity(xj)])
            for i, xi in enumerate(xs):  # cols[i][k] = H_ij e_k: the k-th column of block ij
                flat = ops.transpose(ops.reshape(cols[i], (sizes[j], sizes[i])))
                H = ops.reshape(flat, xi.shape + xj.shape)
                g.rename(H, f"hessian({z.name}, {xi.name}, {xj.name})" if not single
                         else f"hessian({z.name}, {xi.name})")
                blocks[i][j] = H
        return blocks


def _identity(x: Node) -> Node:
    n = types.concrete_size(x.shape)
    eye = x.graph.constant(np.eye(n, dtype=x.dtype).reshape((n, *x.shape)))
    x.graph.rename(eye, f"eye({x.name})")
    return eye


def _static_size(fn: str, x: Node) -> int:
    if not types.is_static(x.shape):
        raise ShapeError(f"{fn}: node {x.name!r} has the symbolic shape "
                         f"{types.fmt_shape(x.shape)}; a dense {fn} needs static shapes "
                         "(use gc.hvp, gc.jvp or gc.vjp for products instead)")
    return types.concrete_size(x.shape)


# -- vectorizing a linear map over a leading axis ------------------------------------------
def vectorize(build, like: list[Node], batches: list[Node]) -> list[Node]:
    """`build(stand_ins)` for every row of `batches` at once, as one graph.

    `build` maps stand-in nodes (shaped like `like`) to output nodes. It runs once, in a
    scratch graph; then each node it made is rebuilt: with a leading batch axis (of the length
    of `batches`) where it depends on a stand-in, as it was otherwise. Results have shape
    `(m,) + output.shape`.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> rows = vectorize(lambda t: [gc.exp(x) * t[0]], [x], [g.constant(np.eye(2))])
        >>> rows[0].eval({x: np.log([2.0, 3.0])})   # row k: exp(x) * e_k
        array([[2., 0.],
               [0., 3.]])
    """
    g = like[0].graph
    m = batches[0].shape[0]
    with memo.kept(g), g.scratch():
        mark = len(g.nodes)
        stand_ins = [g.input(g._unique(f"vectorize_{k}"), x.shape, x.dtype)
                     for k, x in enumerate(like)]
        outs = build(stand_ins)
        made = [n for n in walk.ancestors(outs) if n.index >= mark and n not in set(stand_ins)]
    table: dict[Node, tuple[Node, bool]] = {s: (b, True) for s, b in zip(stand_ins, batches)}
    for n in made:
        if n in table:
            continue
        ins = [table.get(x, (x, False)) for x in n.inputs]
        if isinstance(n.op, Constant):
            c = g.constant(n.op.value)
            g.rename(c, n.name)
            table[n] = (c, False)
        elif not any(b for _, b in ins):
            table[n] = (g.apply(n.op, [x for x, _ in ins], name=n.name), False)
        else:
            out = _batch_rule(n, ins, m)
            if not types.shape_eq(out.shape, (m, *n.shape)):
                raise ShapeError(f"vectorize: the batching rule of {n.op.label()} gave "
                                 f"{types.fmt_shape(out.shape)}, expected "
                                 f"{types.fmt_shape((m, *n.shape))}")
            table[n] = (out, True)
    result = []
    for o in outs:
        node, batched = table.get(o, (o, False))
        result.append(node if batched else ops.broadcast_to(node, (m, *o.shape)))
    return result


def _batch_rule(n: Node, ins: list[tuple[Node, bool]], m: int) -> Node:
    """`n.op` applied to inputs of which some carry a leading batch axis of length m."""
    op, g = n.op, n.graph
    xs = [x for x, _ in ins]
    if isinstance(op, ew.AddN) or isinstance(op, (shape.Concatenate, shape.Stack)):
        xs = [x if b else ops.broadcast_to(x, (m, *x.shape)) for x, b in ins]
        if isinstance(op, ew.AddN):
            return g.apply(op, xs)
        return g.apply(dataclasses.replace(op, axis=_shift(op.axis)), xs)
    if isinstance(op, (Elementwise, ew.Where, ew.Cast, ew.StopGradient, ew.ZerosLike,
                       ew.OnesLike)):
        xs = [_pad(x, n.ndim) if b else x for x, b in ins]
        return g.apply(op, xs)
    x = xs[0]
    if isinstance(op, (reduce.Sum, reduce.Max, reduce.Min, reduce.Count)):
        return g.apply(dataclasses.replace(op, axis=tuple(a + 1 for a in op.axis)), [x])
    if isinstance(op, (shape.ExpandDims, shape.Squeeze)):
        return g.apply(dataclasses.replace(op, axis=tuple(a + 1 for a in op.axis)), [x])
    if isinstance(op, shape.Reshape):
        return g.apply(shape.Reshape((m, *op.shape)), [x])
    if isinstance(op, shape.BroadcastTo):
        return g.apply(shape.BroadcastTo((m, *op.shape)), [_pad(x, len(op.shape))])
    if isinstance(op, shape.Transpose):
        return g.apply(shape.Transpose((0, *(a + 1 for a in op.axes))), [x])
    if isinstance(op, shape.GetItem):
        return g.apply(shape.GetItem((slice(None), *op.index)), [x])
    if isinstance(op, shape.ScatterIndex):
        v, like = (b_x if b else ops.broadcast_to(b_x, (m, *b_x.shape)) for b_x, b in ins)
        return g.apply(shape.ScatterIndex((slice(None), *op.index)), [v, like])
    if isinstance(op, (nn.Softmax, nn.LogSoftmax, nn.LogSumExp)):
        return g.apply(dataclasses.replace(op, axis=_shift(op.axis)), [x])
    if isinstance(op, linalg.MatMul):
        return _batch_matmul(n, ins, m)
    if isinstance(op, linalg.Trace):
        eye = g.constant(np.eye(*n.inputs[0].shape, dtype=x.dtype))
        return ops.sum(x * eye, axis=(1, 2))
    if isinstance(op, linalg.Diag):
        src = n.inputs[0]
        if src.ndim == 1:
            eye = g.constant(np.eye(src.shape[0], dtype=x.dtype))
            return ops.expand_dims(x, -1) * eye
        rows, cols = src.shape
        eye = g.constant(np.eye(rows, cols, dtype=x.dtype))
        return ops.sum(x * eye, axis=-1 if rows <= cols else -2)
    raise GraphError(f"vectorize: no batching rule for op {op.label()} (node {n.name!r}); "
                     "jacobian and hessian need one for every op that carries the direction")


def _shift(axis: int) -> int:
    """An axis of the unbatched op, counted in the batched one (negative axes stay)."""
    return axis if axis < 0 else axis + 1


def _pad(x: Node, ndim: int) -> Node:
    """A batched node (m, *s) reshaped to (m, 1, ..., 1, *s) of rank ndim + 1 for broadcasting."""
    extra = ndim + 1 - x.ndim
    if extra <= 0:
        return x
    return ops.reshape(x, (x.shape[0], *(1,) * extra, *x.shape[1:]))


def _batch_matmul(n: Node, ins: list[tuple[Node, bool]], m: int) -> Node:
    """Promote 1-D operands to matrices, align the batch axes of the batched operands to the
    result's (the leading m axis first), multiply, and drop the promoted axes again."""
    (a, a_b), (b, b_b) = ins
    a0, b0 = n.inputs
    drop = []
    if a0.ndim == 1:
        a = ops.expand_dims(a, -2)
        drop.append(-2)
    if b0.ndim == 1:
        b = ops.expand_dims(b, -1)
        drop.append(-1)
    n_batch = n.ndim - (a0.ndim >= 2) - (b0.ndim >= 2)  # batch axes of the unbatched result
    if a_b:
        a = _pad_batch(a, n_batch)
    if b_b:
        b = _pad_batch(b, n_batch)
    out = linalg.matmul(a, b)
    return ops.squeeze(out, tuple(drop)) if drop else out


def _pad_batch(x: Node, n_batch: int) -> Node:
    """(m, *batch, r, c) -> (m, 1, ..., 1, *batch, r, c) with `n_batch` axes between m and r."""
    extra = n_batch - (x.ndim - 3)
    if extra <= 0:
        return x
    return ops.reshape(x, (x.shape[0], *(1,) * extra, *x.shape[1:]))
