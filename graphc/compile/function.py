"""`Function`: a compiled graph that runs on NumPy values, and `eval` for one-shot runs.

A Function holds a schedule (what to run, in order, and when each value dies) and runs it
step by step, freeing every intermediate after its last use. Calls are re-entrant: all state of
a call lives in that call, so one Function can serve many threads.
"""

from __future__ import annotations

import numpy as np

from graphc.compile import inputs as input_checks
from graphc.compile.schedule import Schedule, make_schedule
from graphc.errors import GraphcError, GraphError, InputError, NonFiniteError
from graphc.ir import types, walk
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Input


class Function:
    """A callable over NumPy arrays: `f(x_val, W_val)` or `f(x=x_val, W=W_val)`.

    Build it with `gc.function(inputs, outputs)`.
    """

    def __init__(self, inputs, outputs, optimize: bool = True, check_finite: bool = False):
        self.single_output = isinstance(outputs, Node)
        in_list = _node_list("inputs", inputs)
        out_list = _node_list("outputs", outputs)
        graphs = {n.graph for n in in_list + out_list}
        if len(graphs) > 1:
            raise GraphError("function: inputs and outputs come from different graphs: "
                             + ", ".join(repr(g.name) for g in graphs))
        seen: set[Node] = set()
        for n in in_list:
            if n in seen:
                raise GraphError(f"function: input {n.name!r} is listed twice")
            seen.add(n)
        self.inputs: tuple[Node, ...] = tuple(in_list)
        self.outputs: tuple[Node, ...] = tuple(out_list)
        self.graph: Graph | None = next(iter(graphs), None)
        self.optimize = optimize
        self.check_finite = check_finite
        self.schedule: Schedule = make_schedule(in_list, out_list)
        self._symbolic = {s.out for s in self.schedule.steps if s.node.op.free_symbols()}
        self._resolved: dict[tuple, dict[int, object]] = {}

    def __repr__(self) -> str:
        return (f"<Function ({', '.join(n.name for n in self.inputs)}) -> "
                f"({', '.join(n.name for n in self.outputs)}): {len(self.schedule.steps)} steps>")

    def __call__(self, *args, **kwargs):
        values = input_checks.bind_args(self.inputs, args, kwargs)
        arrays, env = input_checks.check_values(self.inputs, values)
        results = self._run(arrays, env)
        return results[0] if self.single_output else results

    # -- running ----------------------------------------------------------------------------
    def _ops_for(self, env: dict) -> dict[int, object]:
        """Ops with symbolic parameters, resolved for this call's sizes (cached per sizes)."""
        if not self._symbolic:
            return {}
        key = tuple(sorted((str(k), v) for k, v in env.items()))
        ops = self._resolved.get(key)
        if ops is None:
            ops = {s.out: s.node.op.resolve(env) for s in self.schedule.steps
                   if s.out in self._symbolic}
            self._resolved[key] = ops
        return ops

    def _run(self, arrays: list[np.ndarray], env: dict) -> list[np.ndarray]:
        sched = self.schedule
        slots: list = [None] * len(sched.slot)
        for node, arr in zip(self.inputs, arrays):
            slots[sched.slot[node]] = arr
            if self.check_finite:
                _check_input_finite(node, arr)
        resolved = self._ops_for(env)
        for step in sched.steps:
            op = resolved.get(step.out, step.node.op)
            args = [slots[s] for s in step.args]
            try:
                value = op.forward(*args)
            except GraphcError:
                raise
            except Exception as e:  # a value the graph's types could not rule out
                raise InputError(f"node {step.node.name!r} ({step.node.op.label()}, built at "
                                 f"{step.node.source}) failed at run time: {e}") from e
            slots[step.out] = value
            if self.check_finite:
                _check_finite(step.node, value, args)
            for s in step.free:
                slots[s] = None
        return _fresh_outputs([slots[s] for s in sched.output_slots], arrays)


def _node_list(what: str, value) -> list[Node]:
    items = [value] if isinstance(value, Node) else value
    if not isinstance(items, (list, tuple)):
        raise GraphError(f"function: {what} must be a node or a list of nodes, got "
                         f"{type(value).__name__}")
    for k, n in enumerate(items):
        if not isinstance(n, Node):
            raise GraphError(f"function: {what}[{k}] must be a graph node, got "
                             f"{type(n).__name__}")
    return list(items)


def _fresh_outputs(values: list, fed: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs as arrays that alias neither the inputs, the graph's constants, nor each other."""
    fed_ids = {id(a) for a in fed}
    out, seen = [], set()
    for v in values:
        arr = np.asarray(v)
        if (id(v) in fed_ids or id(arr) in seen or not arr.flags.owndata
                or not arr.flags.writeable):
            arr = arr.copy()
        seen.add(id(arr))
        out.append(arr)
    return out


def _check_input_finite(node: Node, arr: np.ndarray) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise NonFiniteError(f"input {node.name!r} contains NaN or Inf")


def _check_finite(node: Node, value, args) -> None:
    arr = np.asarray(value)
    if arr.dtype.kind != "f" or np.isfinite(arr).all():
        return
    bad = "NaN" if np.isnan(arr).any() else "Inf"
    ins = ", ".join(f"{x.name} {types.fmt_shape(np.shape(a))}" for x, a in zip(node.inputs, args))
    raise NonFiniteError(f"node {node.name!r} ({node.op.label()}, built at {node.source}) "
                         f"produced {bad} from finite inputs ({ins})")


def function(inputs, outputs, optimize: bool = True, check_finite: bool = False) -> Function:
    """Compile `outputs` as a function of `inputs`.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> f = gc.function([x], 2.0 * x)
        >>> f(np.array([1.0, 3.0]))
        array([2., 6.])
    """
    return Function(inputs, outputs, optimize=optimize, check_finite=check_finite)


def eval(outputs, feed: dict | None = None):  # noqa: A001 - the API's name
    """Evaluate `outputs` once; `feed` maps input nodes (or their names) to values.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x")
        >>> gc.eval(x * x + 1.0, {x: 3.0})
        array(10.)
    """
    feed = {} if feed is None else feed
    if not isinstance(feed, dict):
        raise InputError(f"eval: the feed must be a dict of input -> value, got "
                         f"{type(feed).__name__}")
    out_list = _node_list("outputs", outputs)
    if not out_list:
        return []
    graph = out_list[0].graph
    nodes = []
    for key in feed:
        if isinstance(key, Node):
            if key.graph is not graph:
                raise InputError(f"eval: feed key {key.name!r} belongs to graph "
                                 f"{key.graph.name!r}, not {graph.name!r}")
            nodes.append(key)
        elif isinstance(key, str):
            node = graph._names.get(key)
            if node is None:
                raise InputError(f"eval: unknown input {key!r} in the feed; graph "
                                 f"{graph.name!r} has no node of that name")
            nodes.append(node)
        else:
            raise InputError(f"eval: feed keys must be nodes or names, got {key!r}")
    fed = set(nodes)
    for n in walk.ancestors(out_list, stop=fed):
        if isinstance(n.op, Input) and n not in fed:
            raise InputError(f"eval: missing input {n.name!r} ({input_checks.describe(n)})")
    key = ("eval", tuple(n.index for n in out_list), isinstance(outputs, Node),
           tuple(n.index for n in nodes))
    fn = graph.cache.get(key)
    if fn is None:
        fn = Function(nodes, outputs)
        graph.cache[key] = fn
    return fn(*feed.values())


def _node_eval(self: Node, feed: dict | None = None):
    """This node's value given `feed` (see gc.eval)."""
    return eval(self, feed)


Node.eval = _node_eval
