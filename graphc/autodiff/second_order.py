"""Second order: Hessian-vector products, Jacobians and Hessians, all as nodes of the same graph.

`hvp` builds the book's `Hv = grad_x[(grad_x f)^T v]` (section 6.5.10) two ways:

- `"reverse"`: reverse-over-reverse, exactly the book's formula, `grad(sum(grad(z, x) * v), x)`;
- `"forward"`: forward-over-reverse, Pearlmutter's R-op: the tangent `v` pushed forward
  through the gradient graph, `jvp(grad(z, x), x, v)`;
- `"auto"`: builds both and keeps the cheaper by `cost` (the reverse one only in scratch), a
  count of flops and memory traffic over everything the result needs, each node's from its
  op's `cost` hook: a matmul costs 2mkn, a view (reshape, transpose, indexing, broadcast)
  nothing, any other op one per entry it reads and writes (elementwise ops are memory-bound;
  a symbolic dimension counts as `graphc.ir.op.SYMBOLIC_DIM`). Ties go to forward mode, which
  keeps fewer values alive. docs/second-order.md has the timings that back the model.

`v` is never differentiated through: forward mode only seeds it as a tangent; reverse mode wraps
it in `stop_gradient` when it depends on `x` (the book's caveat).

`jacobian` and `hessian` build one graph, not one per entry: the directional derivative is built
once for a stand-in direction, then *vectorized* (`vectorize` in graphc/autodiff/batching.py,
the machinery of `vmap`): every node that depends on the direction is rebuilt with a leading
axis over the rows of an identity matrix, by its op's `batch` hook (axes shift by one, matmul
pads its batch axes) or, for an op without one, the general rule (an elementwise op
broadcasts; any other op runs row by row and the rows are stacked); nodes that do not depend
on the direction are built once and shared by all rows.
"""

from __future__ import annotations

import numpy as np

from graphc import ops
from graphc.autodiff import memo
from graphc.autodiff.arguments import as_list, check_float, check_node, check_scalar
from graphc.autodiff.batching import vectorize
from graphc.autodiff.custom_rules import NoForwardRule
from graphc.autodiff.forward import jvp
from graphc.autodiff.reverse import grad, vjp
from graphc.errors import GraphError, ShapeError
from graphc.ir import types, walk
from graphc.ir.graph import Graph, Node
from graphc.ops.base import lift

MODES = ("auto", "forward", "reverse")


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
    check_scalar("hvp", z, "reduce it (sum/mean) first")
    g = z.graph
    single = isinstance(wrt, Node)
    xs = as_list("hvp", "wrt", wrt)
    vs = as_list("hvp", "v", v, like=wrt)
    if len(xs) != len(vs):
        raise GraphError(f"hvp: got {len(xs)} wrt nodes but {len(vs)} vectors v")
    # vectors given as nodes are remembered by identity (arrays become new constants)
    key = (z, xs, single, vs, mode)
    remembered = all(isinstance(n, Node) for n in [*xs, *vs])
    out = memo.lookup(g, "hvp", *key) if remembered else None
    if out is None:
        with g.deriving():
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
    gs = grad(z, xs)
    if mode != "auto":
        return gs, (_hvp_forward if mode == "forward" else _hvp_reverse)(z, xs, vs, gs), mode
    # the reverse candidate is costed in scratch and dropped; the forward one is built for
    # real and kept when it is no dearer (the usual case): one extra build, not three. A
    # function with a reverse rule only (gc.custom_vjp) has no forward mode: reverse it is.
    # Both need the gradient graph: only what each adds to it is costed.
    g, shared = z.graph, set(walk.ancestors(gs))
    with g.scratch():
        reverse = cost(_hvp_reverse(z, xs, vs, gs), shared)
    mark = len(g.nodes)
    try:
        out = _hvp_forward(z, xs, vs, gs)
    except NoForwardRule:
        out = None
    if out is not None and cost(out, shared) <= reverse:
        return gs, out, "forward"
    g.rollback(mark)
    return gs, _hvp_reverse(z, xs, vs, gs), "reverse"


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
        with z.graph.scratch():
            try:
                costs[mode] = cost(build(z, xs, vs, grad(z, xs)))
            except NoForwardRule:  # a gc.custom_vjp function: reverse mode only
                costs[mode] = float("inf")
    return "forward" if costs["forward"] <= costs["reverse"] else "reverse"


def cost(outputs: list[Node], known: set[Node] | None = None) -> float:
    """Estimated flops to evaluate `outputs` from the inputs (see the module docstring); with
    `known`, the flops beyond those nodes (already computed: not counted, nor walked through).

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph()
        >>> A, B = g.input("A", shape=(2, 3)), g.input("B", shape=(3, 4))
        >>> cost([gc.exp(A @ B)])      # 2*2*3*4 for the matmul, 8 read + 8 written for exp
        64.0
    """
    if known is None:
        return float(sum(flops(n) for n in walk.ancestors(outputs)))
    return float(sum(flops(n) for n in walk.ancestors(outputs, stop=known) if n not in known))


def flops(n: Node) -> float:
    """One node's estimated cost, its op's `cost` hook: 2mkn for matmul, 0 for views, inputs
    and constants, else entries read + written (the default of `Op.cost`)."""
    return float(n.op.cost(n))


def _depends_on(v: Node, xs: list[Node]) -> bool:
    targets = set(xs)
    return any(n in targets for n in walk.ancestors([v]))


def _lift_like(fn: str, xs: list[Node], vs: list, g: Graph) -> list[Node]:
    out = []
    for k, (x, v) in enumerate(zip(xs, vs)):
        check_node(fn, f"wrt[{k}]" if len(xs) > 1 else "wrt", x, g)
        check_float(x, fn, f"wrt node {x.name!r}")
        v = lift(v, g, x)
        check_node(fn, f"v[{k}]" if len(xs) > 1 else "v", v, g)
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
    check_node("jacobian", "y", y)
    check_float(y, "jacobian", "y")
    single = isinstance(wrt, Node)
    xs = as_list("jacobian", "wrt", wrt)
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
    with g.deriving():
        out = []
        for k, x in enumerate(xs):
            check_node("jacobian", f"wrt[{k}]" if not single else "wrt", x, g)
            check_float(x, "jacobian", f"wrt node {x.name!r}")
            n = _static_size("jacobian", x)
            forward = mode == "forward" or (mode == "auto" and n < m)
            J = None
            if forward:   # rows of the identity over x as tangents: R[k] = J e_k
                mark = len(g.nodes)
                try:
                    rows = vectorize(lambda t, x=x: [jvp(y, x, t[0])], [x], [_identity(x)])[0]
                    J = ops.reshape(ops.transpose(ops.reshape(rows, (n, m))),
                                    y.shape + x.shape)
                except NoForwardRule:  # a gc.custom_vjp function: auto takes reverse mode
                    if mode == "forward":
                        raise
                    g.rollback(mark)
            if J is None:  # rows of the identity over y as cotangents: R[k] = e_k^T J
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
    check_scalar("hessian", z, "use gc.jacobian of its gradient")
    single = isinstance(wrt, Node)
    xs = as_list("hessian", "wrt", wrt)
    remembered = all(isinstance(x, Node) for x in xs)
    blocks = memo.lookup(z.graph, "hessian", z, xs, single, mode) if remembered else None
    if blocks is None:
        blocks = _hessian(z, xs, single, mode)
        if remembered:
            memo.remember(z.graph, "hessian", z, xs, single, mode, value=blocks)
    return blocks[0][0] if single else [list(row) for row in blocks]


def _hessian(z: Node, xs: list, single: bool, mode: str) -> list[list[Node]]:
    g = z.graph
    with g.deriving():
        for k, x in enumerate(xs):
            check_node("hessian", f"wrt[{k}]" if not single else "wrt", x, g)
            check_float(x, "hessian", f"wrt node {x.name!r}")
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
