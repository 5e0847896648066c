"""The control-flow builders: `scan`, `fori_loop`, `while_loop` and `cond`.

Each calls the user's function **once**, on the inputs of an inner graph (`Graph.inner`), so the
body is built once whatever the trip count; outer nodes the function uses are captured as
further operands. Carries and per-step results may be a node or a tuple/list of nodes; the
results come back in the same structure. A build that fails (a carry that changes shape, a
function returning the wrong structure) raises a named error and leaves the graph as it was.
"""

from __future__ import annotations

import math

import numpy as np

from graphc import ops
from graphc.autodiff.bodies import fn_name
from graphc.autodiff.branches import Cond
from graphc.autodiff.loops import Scan, close_views
from graphc.autodiff.while_loop import WhileLoop
from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.body import Body
from graphc.ir.graph import Graph, Node
from graphc.ops.base import lift

CHECKPOINTS = ("all", "sqrt", "none")


# -- structures: a node, or a tuple/list of nodes ---------------------------------------------
def _flatten(what: str, value, allow_none: bool = False) -> tuple[list, object]:
    """(the leaves, the structure) of a node or a tuple/list of nodes (None: no values)."""
    if value is None and allow_none:
        return [], None
    if isinstance(value, (tuple, list)):
        for k, v in enumerate(value):
            if isinstance(v, (tuple, list, dict)):
                raise GraphError(f"{what}[{k}] is a {type(v).__name__}; loops take a node or a "
                                 "flat tuple/list of nodes")
        return list(value), type(value)
    if isinstance(value, dict):
        raise GraphError(f"{what} is a dict; loops take a node or a tuple/list of nodes")
    return [value], Node


def _rebuild(structure, leaves: list):
    if structure is None:
        return None
    if structure is Node:
        return leaves[0]
    return structure(leaves)


def _describe(structure, n: int) -> str:
    if structure is None:
        return "None"
    if structure is Node:
        return "a node"
    return f"a {structure.__name__} of {n}"


def _graph_of(what: str, *values) -> Graph:
    for v in values:
        for x in (v if isinstance(v, (tuple, list)) else [v]):
            if isinstance(x, Node):
                return x.graph
    raise GraphError(f"{what}: no argument is a graph node (graphc has no default graph: put "
                     "arrays into one with g.constant(value))")


def _inner_node(what: str, h: Graph, v) -> Node:
    """A value the user's function returned, as a node of the inner graph `h`."""
    if isinstance(v, Node):
        if v.graph is h:
            return v
        if v.graph in h.enclosing():
            return h.capture(v)
        raise GraphError(f"{what} is node {v.name!r} of graph {v.graph.name!r}, which is not "
                         "around the loop")
    try:
        return lift(v, h)
    except GraphError as e:
        raise GraphError(f"{what}: {e}") from None


def _captured(h: Graph) -> list[Node]:
    return [o for o, _ in sorted(h.captured.items(), key=lambda kv: kv[1].index)]


def _check_carry(fn: str, k: int, p: Node, out: Node, single: bool) -> None:
    if not types.shape_eq(out.shape, p.shape) or out.dtype != p.dtype:
        entry = "the carry" if single else f"carry[{k}]"
        raise ShapeError(f"{fn}: {entry} enters the body as {types.fmt_shape(p.shape)} "
                         f"{p.dtype} but the body returns {types.fmt_shape(out.shape)} "
                         f"{out.dtype}; a carry must keep its shape and dtype (cast it, or "
                         "start from an initial value of the body's type)")


# -- scan ----------------------------------------------------------------------------------------
def scan(step, init, xs=None, length=None, checkpoint="all", reverse: bool = False):
    """`step(carry, x) -> (new_carry, y)` applied along the leading axis of `xs`, as one node.

    Returns `(final_carry, ys)`: the carry after the last step, and the y's stacked on a new
    leading axis (None where `step` returns None for y). `carry`, `x` and `y` may each be a
    node or a tuple/list of nodes. Without `xs`, `length` steps run with `x` None.
    `checkpoint` says what the gradient keeps: "all" (every step's residuals: fastest),
    "sqrt" (every k-th carry, k about sqrt(T), and recomputes each segment during the
    backward pass: memory O(sqrt T)), "none" (only the carries entering each step: the
    backward step recomputes the body's other values from them; for a body whose values are
    large beside its carries), or an int k (every k-th carry). `reverse` scans from the last
    row to the first.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> xs = g.input("xs", shape=(4,))
        >>> total, running = gc.scan(lambda c, x: (c + x, c + x), 0.0 * xs[0], xs)
        >>> feed = {xs: np.array([1.0, 2.0, 3.0, 4.0])}
        >>> float(total.eval(feed)), running.eval(feed).tolist()
        (10.0, [1.0, 3.0, 6.0, 10.0])
        >>> gc.grad((running * running).sum(), xs).eval(feed).tolist()   # 2 * suffix sums
        [40.0, 38.0, 32.0, 20.0]
    """
    if not callable(step):
        raise GraphError(f"scan: step must be callable, got {type(step).__name__}")
    if not (checkpoint in CHECKPOINTS or (type(checkpoint) is int and checkpoint >= 1)):
        raise GraphError(f"scan: checkpoint must be 'all', 'sqrt', 'none' or an int >= 1, got "
                         f"{checkpoint!r}")
    if type(reverse) is not bool:
        raise GraphError(f"scan: reverse must be True or False, got {reverse!r}")
    g = _graph_of("scan", init, xs)
    with g.transaction():
        c_leaves, c_struct = _flatten("scan: init", init)
        x_leaves, x_struct = _flatten("scan: xs", xs, allow_none=True)
        c_leaves = [_lift_outer("scan", f"init[{k}]", g, v) for k, v in enumerate(c_leaves)]
        x_leaves = [_lift_outer("scan", f"xs[{k}]", g, v) for k, v in enumerate(x_leaves)]
        T = _length(x_leaves, length)
        k_seg = _segment(checkpoint, T)
        if k_seg is not None:
            return _segmented(step, c_leaves, c_struct, x_leaves, x_struct, T, k_seg, reverse)
        views, y_struct, n_ys = _scan_node(step, g, c_leaves, c_struct, x_leaves, x_struct, T,
                                           reverse, remat=checkpoint == "none")
        nc = len(c_leaves)
        return _rebuild(c_struct, views[:nc]), _rebuild(y_struct, views[nc:nc + n_ys])


def _lift_outer(fn: str, what: str, g: Graph, v) -> Node:
    if isinstance(v, Node):
        if v.graph is not g:
            raise GraphError(f"{fn}: {what} ({v.name!r}) belongs to graph {v.graph.name!r}, "
                             f"not {g.name!r}")
        return v
    try:
        return lift(v, g)
    except GraphError as e:
        raise GraphError(f"{fn}: {what}: {e}") from None


def _length(x_leaves: list[Node], length):
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)
                               or length < 0):
        raise GraphError(f"scan: length must be an int >= 0, got {length!r}")
    if not x_leaves:
        if length is None:
            raise GraphError("scan: without xs, give length (the number of steps)")
        return length
    for k, x in enumerate(x_leaves):
        if x.ndim == 0:
            raise ShapeError(f"scan: xs[{k}] ({x.name!r}) is a scalar; xs are scanned along "
                             "their leading axis")
    T = x_leaves[0].shape[0]
    for k, x in enumerate(x_leaves[1:], 1):
        if not types.dim_eq(x.shape[0], T):
            raise ShapeError(f"scan: xs[{k}] ({x.name!r}) has {x.shape[0]} rows but xs[0] has "
                             f"{T}; every scanned array needs the same leading length")
    if length is not None and not types.dim_eq(length, T):
        raise ShapeError(f"scan: length={length} but xs have {T} rows")
    return T


def _segment(checkpoint, T) -> int | None:
    """The segment length of a checkpointed scan, or None for a flat one."""
    if checkpoint in ("all", "none"):
        return None
    if not isinstance(T, int):
        raise GraphError(f"scan: checkpoint={checkpoint!r} needs a static number of steps, got "
                         f"{T}")
    k = max(1, math.isqrt(T - 1) + 1) if checkpoint == "sqrt" and T > 1 else checkpoint
    if k == "sqrt" or k >= T or k <= 1:
        return None  # one segment (or one step per segment) is a flat scan
    return k


def _role_name(fn, role: str) -> str:
    """A function's name for messages, or the role it plays when it has none (a lambda)."""
    name = fn_name(fn)
    return role if name == "block" else name


def _scan_node(step, g: Graph, c_leaves, c_struct, x_leaves, x_struct, T, reverse: bool,
               remat: bool, name: str | None = None):
    """One Scan node (the step's body built once); its views, ys structure and count."""
    fname = name or _role_name(step, "step")
    with g.inner(f"scan_{fname}") as h:
        c_in = [h.input(h.fresh_name(c.name), c.shape, c.dtype) for c in c_leaves]
        x_in = [h.input(h.fresh_name(x.name), x.shape[1:], x.dtype) for x in x_leaves]
        result = step(_rebuild(c_struct, c_in), _rebuild(x_struct, x_in))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise GraphError(f"scan: {fname} must return (new_carry, y), a pair; got "
                             f"{_show(result)}")
        new_c, y = result
        nc_leaves, nc_struct = _flatten(f"scan: {fname}'s new carry", new_c)
        if nc_struct is not c_struct and not (
                nc_struct in (tuple, list) and c_struct in (tuple, list)) \
                or len(nc_leaves) != len(c_leaves):
            raise GraphError(f"scan: {fname} returned {_describe(nc_struct, len(nc_leaves))} "
                             f"as the new carry, but init is "
                             f"{_describe(c_struct, len(c_leaves))}; they must match")
        y_leaves, y_struct = _flatten(f"scan: {fname}'s y", y, allow_none=True)
        single = c_struct is Node
        outs = []
        for k, (p, v) in enumerate(zip(c_in, nc_leaves)):
            v = _inner_node(f"scan: {fname}'s new carry", h, v)
            if isinstance(v, Node) and v.dtype != p.dtype and types.shape_eq(v.shape, p.shape) \
                    and not isinstance(nc_leaves[k], Node):
                v = ops.cast(v, p.dtype)  # a Python number returned as a carry
            _check_carry("scan", k, p, v, single)
            outs.append(v)
        for k, v in enumerate(y_leaves):
            outs.append(_inner_node(f"scan: {fname}'s y[{k}]", h, v))
        close_views(h)
    op = Scan(Body(h, outs), length=T, n_carry=len(c_in), n_xs=len(x_in), reverse=reverse,
              remat=remat)
    node = g.apply(op, [*c_leaves, *x_leaves, *_captured(h)])
    return g.views(node), y_struct, len(y_leaves)


def _show(v) -> str:
    if isinstance(v, (tuple, list)):
        return f"a {type(v).__name__} of {len(v)}"
    return type(v).__name__


def _segmented(step, c_leaves, c_struct, x_leaves, x_struct, T: int, k: int, reverse: bool):
    """A checkpointed scan: an outer scan over segments of k steps, each an inner scan. The
    outer scan's gradient stores one carry per segment and, in its backward step, recomputes
    the segment's inner scan with its residuals: O(T/k + k) values live, one extra forward."""
    g = c_leaves[0].graph if c_leaves else x_leaves[0].graph
    n_seg, rest = divmod(T, k)
    name = fn_name(step)
    nc = len(c_leaves)
    y_info: dict = {"struct": None, "n": 0}

    def segment(cs, xseg):
        cs, xseg = list(cs), list(xseg or ())
        h = (cs or xseg)[0].graph
        views, y_struct, n_ys = _scan_node(step, h, cs, c_struct, xseg, x_struct, k, reverse,
                                           remat=False, name=name)
        y_info["struct"], y_info["n"] = y_struct, n_ys
        return tuple(views[:nc]), tuple(views[nc:nc + n_ys])

    segment.__name__ = f"{name}_segment"
    head = [x[:n_seg * k] for x in x_leaves] if rest else list(x_leaves)
    tail = [x[n_seg * k:] for x in x_leaves] if rest else []
    seg_xs = [ops.reshape(x, (n_seg, k, *x.shape[1:])) for x in head]
    carries = list(c_leaves)
    head_ys, tail_ys = [], []
    for part in (("tail", "head") if reverse else ("head", "tail")):
        if part == "head":
            views, _, n_out = _scan_node(segment, g, carries, tuple, seg_xs,
                                         tuple if seg_xs else None, n_seg, reverse,
                                         remat=False, name=f"{name}_segments")
            carries = list(views[:nc])
            head_ys = [ops.reshape(v, (n_seg * k, *v.shape[2:]))
                       for v in views[nc:nc + n_out]]
        elif rest:
            views, _, n_ys = _scan_node(step, g, carries, c_struct, tail, x_struct, rest,
                                        reverse, remat=False, name=name)
            carries = list(views[:nc])
            tail_ys = list(views[nc:nc + n_ys])
    ys = [ops.concatenate([hy, ty], axis=0) for hy, ty in zip(head_ys, tail_ys)] \
        if rest else head_ys
    return _rebuild(c_struct, carries), _rebuild(y_info["struct"], ys)


# -- fori_loop -----------------------------------------------------------------------------------
def fori_loop(lower, upper, body, init, checkpoint="all"):
    """`body(i, carry) -> carry` for i = lower, ..., upper - 1; returns the final carry.

    With int bounds this is a `scan` over `arange(lower, upper)` (reverse-differentiable, its
    trip count static); with node bounds, a `while_loop` (the trip count decided when the graph
    runs).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x")
        >>> p = gc.fori_loop(0, 5, lambda i, c: c * x, 1.0 + 0.0 * x)      # x ** 5
        >>> float(p.eval({x: 2.0})), float(gc.grad(p, x).eval({x: 2.0}))
        (32.0, 80.0)
    """
    if not callable(body):
        raise GraphError(f"fori_loop: body must be callable, got {type(body).__name__}")
    static = all(isinstance(b, (int, np.integer)) and not isinstance(b, bool)
                 for b in (lower, upper))
    name = fn_name(body)
    if static:
        lower, upper = int(lower), int(upper)
        g = _graph_of("fori_loop", init)
        with g.transaction():
            count = max(0, upper - lower)
            idx = g.constant(np.arange(lower, lower + count, dtype=np.int64))

            def step(c, i):
                return body(i, c), None

            step.__name__ = name
            carry, _ = scan(step, init, idx, checkpoint=checkpoint)
            return carry
    for b, what in ((lower, "lower"), (upper, "upper")):
        if isinstance(b, Node) and (b.shape != () or b.dtype.kind not in "iu"):
            raise ShapeError(f"fori_loop: {what} ({b.name!r}) must be an int scalar, got "
                             f"{types.fmt_shape(b.shape)} {b.dtype}")
        if not isinstance(b, (Node, int, np.integer)) or isinstance(b, bool):
            raise GraphError(f"fori_loop: {what} must be an int or an int scalar node, got "
                             f"{type(b).__name__}")
    g = _graph_of("fori_loop", lower, upper, init)
    with g.transaction():
        lo = _lift_outer("fori_loop", "lower", g, np.int64(lower) if not isinstance(
            lower, Node) else lower)
        hi = _lift_outer("fori_loop", "upper", g, np.int64(upper) if not isinstance(
            upper, Node) else upper)
        lo, hi = ops.cast(lo, np.int64), ops.cast(hi, np.int64)
        c_leaves, c_struct = _flatten("fori_loop: init", init)

        def cond_fn(state):
            return state[0] < hi

        def body_fn(state):
            new = body(state[0], _rebuild(c_struct, list(state[1:])))
            leaves, _ = _flatten(f"fori_loop: {name}'s result", new)
            return (state[0] + 1, *leaves)

        body_fn.__name__ = name
        out = while_loop(cond_fn, body_fn, (lo, *c_leaves))
        return _rebuild(c_struct, list(out[1:]))


# -- while_loop ----------------------------------------------------------------------------------
def while_loop(cond_fun, body_fun, init, max_steps=None):
    """`while cond_fun(carry): carry = body_fun(carry)`, the trip count decided when the graph
    runs; returns the final carry.

    `cond_fun` returns a bool scalar node. The loop records its trip count, so its gradient
    runs the same number of steps backwards (recomputing the forward once, storing the
    carries); with `max_steps`, running more steps raises `gc.InputError` naming the loop.
    Reverse mode stores the carries in a buffer of `max_steps` rows, so it needs `max_steps`;
    forward mode (`jvp`) does not.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a")
        >>> newton = lambda x: 0.5 * (x + a / x)                      # x -> sqrt(a)
        >>> r = gc.while_loop(lambda x: gc.abs(x * x - a) > 1e-12 * a, newton, a,
        ...                   max_steps=100)
        >>> round(float(r.eval({a: 2.0})), 12), round(float(gc.grad(r, a).eval({a: 4.0})), 12)
        (1.414213562373, 0.25)
    """
    for f, what in ((cond_fun, "cond_fun"), (body_fun, "body_fun")):
        if not callable(f):
            raise GraphError(f"while_loop: {what} must be callable, got {type(f).__name__}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)
                                  or not 1 <= max_steps <= 10**9):
        raise GraphError(f"while_loop: max_steps must be None or an int from 1 to 10**9, got "
                         f"{max_steps!r}")
    g = _graph_of("while_loop", init)
    name = _role_name(body_fun, "body_fun")
    with g.transaction():
        c_leaves, c_struct = _flatten("while_loop: init", init)
        c_leaves = [_lift_outer("while_loop", f"init[{k}]", g, v)
                    for k, v in enumerate(c_leaves)]
        single = c_struct is Node
        with g.inner(f"while_{name}") as h:
            c_in = [h.input(h.fresh_name(c.name), c.shape, c.dtype) for c in c_leaves]
            cname = _role_name(cond_fun, "cond_fun")
            pred = _inner_node(f"while_loop: {cname}'s result", h,
                               cond_fun(_rebuild(c_struct, c_in)))
            if pred.shape != () or pred.dtype != np.bool_:
                raise ShapeError(f"while_loop: {cname} must return a bool scalar "
                                 f"node, got {types.fmt_shape(pred.shape)} {pred.dtype} "
                                 f"({pred.name!r}); compare, e.g. gc.abs(r) > tol")
            new = body_fun(_rebuild(c_struct, c_in))
            n_leaves, n_struct = _flatten(f"while_loop: {name}'s result", new)
            if len(n_leaves) != len(c_leaves) or (n_struct is Node) != single:
                raise GraphError(f"while_loop: {name} returned "
                                 f"{_describe(n_struct, len(n_leaves))}, but init is "
                                 f"{_describe(c_struct, len(c_leaves))}; they must match")
            outs = []
            for k, (p, v) in enumerate(zip(c_in, n_leaves)):
                v = _inner_node(f"while_loop: {name}'s result", h, v)
                _check_carry("while_loop", k, p, v, single)
                outs.append(v)
            close_views(h)
        op = WhileLoop(Body(h, [pred, *outs]), n_carry=len(c_in),
                       max_steps=max_steps if max_steps is not None else 0)
        node = g.apply(op, [*c_leaves, *_captured(h)])
        views = g.views(node)
        return _rebuild(c_struct, list(views[:len(c_in)]))


# -- cond ----------------------------------------------------------------------------------------
def cond(pred, true_fun, false_fun, *operands):
    """`true_fun(*operands)` if `pred` else `false_fun(*operands)`; only the chosen branch runs.

    Both branches return the same structure (a node or a tuple/list) of the same shapes and
    dtypes. The gradient is a `cond` of the branches' gradients: it flows through the chosen
    branch only.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x")
        >>> y = gc.cond(x > 0.0, lambda v: v * v, lambda v: -3.0 * v, x)
        >>> float(y.eval({x: 2.0})), float(gc.grad(y, x).eval({x: 2.0}))
        (4.0, 4.0)
        >>> float(y.eval({x: -1.0})), float(gc.grad(y, x).eval({x: -1.0}))
        (3.0, -3.0)
    """
    for f, what in ((true_fun, "true_fun"), (false_fun, "false_fun")):
        if not callable(f):
            raise GraphError(f"cond: {what} must be callable, got {type(f).__name__}")
    g = _graph_of("cond", pred, list(operands))
    with g.transaction():
        pred = _lift_outer("cond", "pred", g, pred)
        if pred.shape != () or pred.dtype != np.bool_:
            raise ShapeError(f"cond: pred ({pred.name!r}) must be a bool scalar node, got "
                             f"{types.fmt_shape(pred.shape)} {pred.dtype}")
        args = [_lift_outer("cond", f"operand {k}", g, v) for k, v in enumerate(operands)]
        branches = []
        extra: list[Node] = []  # outer nodes captured by the branches, in order
        for fun, label in ((true_fun, "true"), (false_fun, "false")):
            fname = _role_name(fun, f"{label}_fun")
            with g.inner(f"cond_{label}_{fn_name(fun)}") as h:
                ins = [h.input(h.fresh_name(a.name), a.shape, a.dtype) for a in args]
                for o in extra:  # the other branch's captures first, in the same order
                    h.capture(o)
                leaves, struct = _flatten(f"cond: {fname}'s result", fun(*ins))
                outs = [_inner_node(f"cond: {fname}'s result", h, v) for v in leaves]
                close_views(h)
            for o in _captured(h):
                if not any(o is e for e in extra):
                    extra.append(o)
            branches.append((h, outs, struct))
        (ht, t_outs, t_struct), (hf, f_outs, f_struct) = branches
        for o in extra[len(ht.inputs) - len(args):]:  # false's own captures, unused by true
            ht.append_copy(o, as_input=True)
        if len(t_outs) != len(f_outs) or (t_struct is Node) != (f_struct is Node):
            raise GraphError(f"cond: the branches return {_describe(t_struct, len(t_outs))} "
                             f"and {_describe(f_struct, len(f_outs))}; they must match")
        node = g.apply(Cond(Body(ht, t_outs), Body(hf, f_outs)), [pred, *args, *extra])
        return _rebuild(t_struct, list(g.views(node)))
