"""Batching, symbol to symbol: `vmap`, and the vectorizer that `jacobian` and `hessian` use.

A function of nodes is called **once**, on stand-ins shaped like one row of its mapped
arguments; then every node it built is rebuilt with a leading batch axis of length m:

    for N in the nodes fn built, in topological order:
        if no input of N carries the batch axis:  N is rebuilt as it was (shared by all rows)
        else:                                     N.op.batch(N, inputs, m)  (the op's rule)

An op's `batch` hook (`graphc.ir.op.Op.batch`) gives its batched form: a reduction shifts its
axes by one, matmul folds the batch axis into a matrix axis, softmax moves its axis. Without
one, the general rule applies: an op declared `elementwise` broadcasts over the batch axis; any
other op runs once per row: for a small static m, m nodes whose results are stacked; for a
symbolic or larger m, one `row_loop` node that loops over the rows when the graph runs
(graphc/autodiff/row_loop.py). Correct for every op, user ops included; slow in proportion to
m where a rule would make one node do the work.

So `vmap(lambda xb, yb: grad(loss(xb, yb), W))(X, y)` builds the gradient graph once, on the
stand-ins, and batches it: per-example gradients cost one batched graph, linear in the batch,
not m gradient graphs. Everything composes because the result is ordinary nodes: `grad` of a
`vmap`, `vmap` of `hvp`, a `vmap` inside a `vmap` (the inner one's result is batched again by
the outer one).
"""

from __future__ import annotations

from collections.abc import Callable

from graphc import ops
from graphc.autodiff.row_loop import LOOP_ABOVE, row_loop
from graphc.errors import GraphError, ShapeError
from graphc.ir import types, walk
from graphc.ir.body import Body, copy_into
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Constant, Input, output_types
from graphc.ops.base import batch_by_rows, batch_elementwise, lift


# -- the public transform ----------------------------------------------------------------------
def vmap(fn: Callable, in_axes=0, out_axes=0) -> Callable:
    """`fn` mapped over an axis of its arguments, as one batched graph.

    `in_axes` says, per argument, which axis is mapped (an int), or `None` for an argument
    used as it is by every row; one int or None applies to all. `fn` gets nodes with the
    mapped axis removed and returns a node or a tuple/list of nodes; each result gets the
    batch axis at `out_axes` (an int, or a tuple with one per result). Arguments are nodes of
    one graph, or numbers and arrays (made constants of it).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> X = g.input("X", shape=(3, 2))
        >>> w = g.input("w", shape=(2,))
        >>> per_row = gc.vmap(lambda x: gc.grad(gc.tanh(x @ w), w))(X)   # one gradient per row
        >>> per_row.shape
        (3, 2)
        >>> Xv, wv = np.arange(6.0).reshape(3, 2) / 10, np.array([0.5, -1.0])
        >>> bool(np.allclose(per_row.eval({X: Xv, w: wv}),
        ...                  (1 - np.tanh(Xv @ wv) ** 2)[:, None] * Xv))
        True
    """
    if not callable(fn):
        raise GraphError(f"vmap: fn must be callable, got {type(fn).__name__}")
    _check_axes_spec("in_axes", in_axes)
    _check_axes_spec("out_axes", out_axes)
    name = getattr(fn, "__name__", "fn")

    def batched(*args):
        return _vmap_call(fn, name, in_axes, out_axes, args)

    batched.__name__ = f"vmap_{name}" if name.isidentifier() else "vmap_fn"
    batched.__doc__ = f"`{name}` mapped over in_axes={in_axes!r}, out_axes={out_axes!r} (gc.vmap)."
    return batched


def _check_axes_spec(what: str, spec) -> None:
    items = spec if isinstance(spec, (tuple, list)) else (spec,)
    if isinstance(spec, (tuple, list)) and not spec:
        raise GraphError(f"vmap: {what} must be an int, None or a non-empty tuple of them, "
                         "got ()")
    for a in items:
        if a is not None and (isinstance(a, bool) or not isinstance(a, int)):
            raise GraphError(f"vmap: {what} must hold ints or None, got {a!r} in {spec!r}")


def _vmap_call(fn, name: str, in_axes, out_axes, args: tuple):
    where = f"vmap({name})"
    if not args:
        raise GraphError(f"{where}: called with no arguments; at least one must be mapped")
    if isinstance(in_axes, (tuple, list)):
        if len(in_axes) != len(args):
            raise GraphError(f"{where}: in_axes has {len(in_axes)} entries but {len(args)} "
                             f"arguments were given")
        axes = list(in_axes)
    else:
        axes = [in_axes] * len(args)
    g = next((a.graph for a in args if isinstance(a, Node)), None)
    if g is None:
        raise GraphError(f"{where}: at least one argument must be a graph node (graphc has no "
                         "default graph: put arrays into one with g.constant(value))")
    with g.transaction():
        nodes = []
        for k, a in enumerate(args):
            if not isinstance(a, Node):
                try:
                    a = lift(a, g)
                except GraphError as e:
                    raise GraphError(f"{where}: argument {k}: {e}") from None
            nodes.append(a)
        m, first = None, None
        moved: list[Node] = []
        for k, (a, ax) in enumerate(zip(nodes, axes)):
            if ax is None:
                moved.append(a)
                continue
            if a.ndim == 0:
                raise ShapeError(f"{where}: argument {k} ({a.name!r}) is a scalar, with no axis "
                                 f"{ax} to map over; give it in_axes None")
            if not -a.ndim <= ax < a.ndim:
                raise ShapeError(f"{where}: in_axes {ax} is out of range for argument {k} "
                                 f"({a.name!r}) of shape {types.fmt_shape(a.shape)}")
            ax %= a.ndim
            size = a.shape[ax]
            if m is None:
                m, first = size, (k, a, ax)
            elif not types.dim_eq(size, m):
                k0, a0, ax0 = first
                raise ShapeError(
                    f"{where}: argument {k} ({a.name!r}, shape {types.fmt_shape(a.shape)}) has "
                    f"{size} entries along its mapped axis {ax}, but argument {k0} "
                    f"({a0.name!r}, shape {types.fmt_shape(a0.shape)}) has {m} along axis "
                    f"{ax0}; mapped axes must have one length")
            if ax:
                a = ops.transpose(a, (ax, *(d for d in range(a.ndim) if d != ax)))
            moved.append(a)
        if m is None:
            raise GraphError(f"{where}: in_axes maps no argument (all None); nothing to map")
        mapped = [ax is not None for ax in axes]
        with g.built_at():
            outs, single = batch_function(g, fn, moved, mapped, m, where)
            if isinstance(out_axes, (tuple, list)):
                if len(out_axes) != len(outs):
                    raise GraphError(f"{where}: out_axes has {len(out_axes)} entries but fn "
                                     f"returned {len(outs)} results")
                oaxes = list(out_axes)
            else:
                oaxes = [out_axes] * len(outs)
            results = []
            for k, ((o, batched), oax) in enumerate(zip(outs, oaxes)):
                if o is None:
                    results.append(None)
                    continue
                if oax is None:
                    if batched:
                        raise GraphError(f"{where}: result {k} depends on the mapped "
                                         "arguments, so out_axes None (no batch axis) cannot "
                                         "hold it; give it an axis")
                    results.append(o)
                    continue
                if not batched:
                    o = ops.broadcast_to(o, (m, *o.shape))
                if not -o.ndim <= oax < o.ndim:
                    raise ShapeError(f"{where}: out_axes {oax} is out of range for result {k} "
                                     f"of shape {types.fmt_shape(o.shape[1:])} (with its batch "
                                     f"axis, rank {o.ndim})")
                oax %= o.ndim
                if oax:
                    perm = list(range(1, o.ndim))
                    perm.insert(oax, 0)
                    o = ops.transpose(o, tuple(perm))
                results.append(o)
    return results[0] if single is True else type_like(single, results)


def type_like(single, results):
    """The results in the container fn returned (a tuple or a list)."""
    return tuple(results) if single is tuple else list(results)


# -- the core: call once on stand-ins, rebuild batched ------------------------------------------
def batch_function(g: Graph, fn: Callable, args: list[Node], mapped: list[bool], m,
                   where: str = "vmap"):
    """`fn` called on one row of the mapped `args` (which carry the batch axis first) and the
    others as they are, then rebuilt batched. Returns ([(node, batched)] per result, form):
    form is True for a single node, else `tuple` or `list` (what fn returned); a result is
    None where fn returned None."""
    with g.scratch():
        mark = len(g.nodes)
        stand_ins = []
        for a, b in zip(args, mapped):
            if b:
                stand_ins.append(g.input(g.fresh_name(f"{a.name}[i]"), a.shape[1:], a.dtype))
            else:
                stand_ins.append(a)
        out = fn(*stand_ins)
        single = True if isinstance(out, Node) else tuple if isinstance(
            out, tuple) else list if isinstance(out, list) else None
        flat = [out] if single is True else list(out) if single is not None else None
        if not flat:
            raise GraphError(f"{where}: fn must return a graph node or a non-empty tuple/list "
                             f"of them, got {type(out).__name__ if flat is None else out!r}")
        for k, o in enumerate(flat):
            if o is not None and not isinstance(o, Node):
                raise GraphError(f"{where}: result {k} of fn is a {type(o).__name__}, not a "
                                 "graph node")
            if o is not None and o.graph is not g:
                raise GraphError(f"{where}: result {k} of fn ({o.name!r}) belongs to graph "
                                 f"{o.graph.name!r}, not to the arguments' graph {g.name!r}")
        made = built_since(g, mark, [o for o in flat if o is not None])
        seeds = {s for s, b in zip(stand_ins, mapped) if b}
    table = {s: (a, True) for s, a, b in zip(stand_ins, args, mapped) if b}
    rebuild_batched(g, [n for n in made if n not in seeds], table, m)
    return [None if o is None else table.get(o, (o, False)) for o in flat], single


def built_since(g: Graph, mark: int, outputs: list[Node]) -> list[Node]:
    """The nodes of `g` from index `mark` on that `outputs` depend on, in topological order
    (a walk that stops at older nodes, so its cost does not grow with the graph)."""
    seen: set[Node] = set()
    stack = [o for o in outputs if o.graph is g and o.index >= mark]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(x for x in n.inputs if x.graph is g and x.index >= mark)
    return sorted(seen, key=lambda n: n.index)


def vectorize(build, like: list[Node], batches: list[Node]) -> list[Node]:
    """`build(stand_ins)` for every row of `batches` at once, as one graph.

    `build` maps stand-in nodes (shaped like `like`) to a list of output nodes. It runs once;
    each node it made is rebuilt with a leading batch axis (of the length of `batches`) where
    it depends on a stand-in, as it was otherwise. Results have shape `(m,) + output.shape`.
    (`vmap` with every argument mapped along axis 0; `jacobian` and `hessian` use it.)

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
    for x, b in zip(like, batches):
        if not types.shape_eq(b.shape[1:], x.shape):
            raise ShapeError(f"vectorize: a batch of shape {types.fmt_shape(b.shape)} does not "
                             f"hold rows shaped like {x.name!r} {types.fmt_shape(x.shape)}")
    outs, _ = batch_function(g, lambda *s: list(build(list(s))), list(batches),
                             [True] * len(batches), m, "vectorize")
    return [node if batched else ops.broadcast_to(node, (m, *node.shape))
            for node, batched in outs]


def rebuild_batched(g: Graph, made: list[Node], table: dict, m) -> None:
    """Rebuild `made` (in topological order) in `g`, each over its inputs' entries in `table`
    (node -> (its rebuilt node, whether that carries the batch axis of length m)): batched by
    its op's batching rule where an input is batched, as it was otherwise; fills `table`.
    Each rebuilt node keeps its template's role and (for a node the rule made) its name."""
    start, renamed = len(g.nodes), set()
    for n in made:
        if n in table:
            continue
        ins = [table.get(x, (x, False)) for x in n.inputs]
        with g.role(n.role):
            if isinstance(n.op, Constant):
                c = g.constant(n.op.value)
                g.rename(c, n.name)
                table[n] = (c, False)
            elif isinstance(n.op, Input):
                raise GraphError(f"vectorize: the function made the input {n.name!r}; a "
                                 "batched function may only use inputs made outside it")
            elif not any(b for _, b in ins):
                table[n] = (g.apply(n.op, [x for x, _ in ins], name=n.name), False)
            elif n.op.multi:  # one batched node per output; its views pick theirs
                table[n] = (batch_multi(n, ins, m), True)
            else:
                out = batch_node(n, ins, m)
                if not types.shape_eq(out.shape, (m, *n.shape)):
                    raise ShapeError(f"vectorize: the batching rule of {n.op.label()} gave "
                                     f"{types.fmt_shape(out.shape)}, expected "
                                     f"{types.fmt_shape((m, *n.shape))}")
                if out.dtype != n.dtype:
                    raise ShapeError(f"vectorize: the batching rule of {n.op.label()} gave "
                                     f"dtype {out.dtype}, expected {n.dtype}")
                if out.graph is g and out.index >= start and out not in renamed:
                    g.rename(out, n.name)  # the batched node reads as its template did
                    renamed.add(out)
                table[n] = (out, True)


def batch_multi(n: Node, ins: list[tuple[Node, bool]], m) -> list[Node]:
    """A multi-output node batched: one node of shape (m, *output shape) per output, from its
    op's `batch` hook or, without one, row by row (each output's rows stacked)."""
    outs = n.op.batch(n, ins, m)
    if outs is NotImplemented:
        if not isinstance(m, int):
            raise GraphError(f"vectorize: op {n.op.label()} has no 'batch' hook and the batch "
                             f"size {m} is symbolic; define {type(n.op).__name__}.batch")
        g = n.graph
        rows = [g.views(g.apply(n.op, [ops.getitem(x, k) if b else x for x, b in ins]))
                for k in range(m)]
        outs = [ops.stack(list(col)) for col in zip(*rows)]
    for k, (o, (shape, _)) in enumerate(zip(outs, output_types(n))):
        if not types.shape_eq(o.shape, (m, *shape)):
            raise ShapeError(f"vectorize: the batching rule of {n.op.label()} gave "
                             f"{types.fmt_shape(o.shape)} for output {k}, expected "
                             f"{types.fmt_shape((m, *shape))}")
    return list(outs)


def batch_node(n: Node, ins: list[tuple[Node, bool]], m) -> Node:
    """`n.op` applied to inputs of which some carry a leading batch axis of length m: the
    op's own `batch` hook, or where it has none the general rule (broadcasting for an op
    declared `elementwise`, else row by row: m nodes, or one `row_loop`)."""
    out = n.op.batch(n, ins, m)
    if out is NotImplemented:
        if n.op.elementwise:
            out = batch_elementwise(n, ins)
        elif isinstance(m, int) and m <= LOOP_ABOVE:
            out = batch_by_rows(n, ins, m)
        else:  # a symbolic or large batch: one node looping over the rows at run time
            out = row_loop(n, ins, m)
    return out


def batch_body(body: Body, ins, m) -> Body:
    """The body rebuilt over operands of which some carry a leading batch axis of length m
    (`ins`: (node, batched) pairs): its inputs take the operands' shapes, and its output
    has shape (m, *output shape); the vectorizer of `vmap` does the work inside."""
    h = Graph(f"{body.graph.name}.batch")
    stand_ins, table = [], {}
    for p, (x, is_batched) in zip(body.graph.inputs, ins):
        if is_batched:  # the batched operand, and row 0 of it standing for the body's input
            b = h.input(p.name, x.shape, p.dtype)
            s = ops.getitem(b, 0)
            table[s] = (b, True)
        else:
            s = h.input(p.name, p.shape, p.dtype)
        stand_ins.append(s)
    (y,) = copy_into(h, body, stand_ins)
    seeds = set(table)
    rebuild_batched(h, walk.descendants_within(walk.ancestors([y]), seeds), table, m)
    out, is_batched = table.get(y, (y, False))
    if not is_batched:
        out = ops.broadcast_to(out, (m, *y.shape))
    return Body(h, [out])
