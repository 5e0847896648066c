"""`Function`: a compiled graph that runs on NumPy values, and `eval` for one-shot runs.

Compiling is: check and prune (schedule.py), rewrite to a smaller equivalent graph
(graphc.rewrite, when `optimize`), fuse large elementwise regions (fusion.py), plan memory and
generate one straight-line Python function (codegen.py). Compiled programs are cached by the
structure of the pruned graph (ops, parameters, names, edges, constants), so compiling the same
graph again costs one linear walk. A call keeps all its state in the generated function's
locals, so one Function can serve many threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from graphc.compile import codegen, loop_kernel
from graphc.compile import inputs as input_checks
from graphc.compile.checks import check_input_finite
from graphc.compile.schedule import Schedule, make_schedule
from graphc.errors import GraphcError, GraphError, InputError
from graphc.ir import types, walk
from graphc.ir.gcpause import collector_paused
from graphc.ir.graph import Graph, Node, node_list, set_compiler, set_evaluator, set_loop_compiler
from graphc.ir.op import Constant, Input, op_key


@dataclass(frozen=True)
class Compiled:
    """What compiling produced, shared by every Function with the same structure."""

    graph: Graph
    schedule: Schedule
    program: codegen.Program
    fired: tuple[str, ...]
    raw_size: int
    symbolic: frozenset


class Function:
    """A callable over NumPy arrays: `f(x_val, W_val)` or `f(x=x_val, W=W_val)`.

    Build it with `gc.function(inputs, outputs)`; `f.source` is the generated code and
    `f.graph` the (optimized) graph it runs.
    """

    def __init__(self, inputs, outputs, optimize: bool = True, check_finite: bool = False,
                 backend: str = "numpy"):
        self.single_output = isinstance(outputs, Node)
        in_list = node_list("function", "inputs", inputs)
        out_list = node_list("function", "outputs", outputs)
        for n in out_list:
            if n.op.multi:
                raise GraphError(f"function: {n.name!r} ({n.op.label()}) is a tuple of results; "
                                 "list its output views instead (what the op's builder "
                                 "returned, or graph.views(node))")
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
        self.optimize = optimize
        self.check_finite = check_finite
        self._emitter = codegen.get_backend(backend)  # an unknown name fails here, first
        self.backend = backend
        self._compiled = compile_graph(in_list, out_list, optimize, check_finite, backend)
        _check_sizes_bound(self.inputs, self._compiled.symbolic)
        self.graph: Graph = self._compiled.graph
        self.schedule: Schedule = self._compiled.schedule
        self._fn = self._compiled.program.fn
        self._checked = self._compiled.program.checked
        self._resolved: OrderedDict[tuple, dict[int, object]] = OrderedDict()
        self._resolved_lock = threading.Lock()
        self._arity = len(self.inputs)
        # the nodes whose symbolic sizes a call must check (>= 0 once the inputs bind them):
        # for each distinct symbolic size, the first node that has it (what the check names),
        # so a call looks at each size once, not at every node
        self._sized = (_first_with_each_size(walk.ancestors(self.outputs)) if any(
            not types.is_static(n.shape) for n in self.inputs) else [])
        # input shapes whose sizes passed that check: it depends on nothing else (the
        # `SIZED_SHAPES` first ones kept)
        self._sized_ok: set[tuple] = set()

    @property
    def source(self) -> str:
        """The generated Python source that a call runs."""
        return self._compiled.program.source

    @property
    def fired(self) -> tuple[str, ...]:
        """The rewrite rules that fired while compiling, in order."""
        return self._compiled.fired

    def __repr__(self) -> str:
        return (f"<Function ({', '.join(n.name for n in self.inputs)}) -> "
                f"({', '.join(n.name for n in self.outputs)}): {len(self.schedule.steps)} steps>")

    def __call__(self, /, *args, **kwargs):  # positional-only: any input name is a keyword
        if self._emitter.call is not None:  # arrays of another library (xp_backend.py)
            return self._emitter.call(self._fn, self.inputs, self._ops_for if
                                      self._compiled.symbolic else None, args, kwargs,
                                      self.single_output)
        if not kwargs and len(args) == self._arity:
            # fast path: the generated function runs at once when every value already is an
            # array of its input's exact static shape and dtype, else returns None
            try:
                results = self._fn(*args, None)
            except GraphcError:
                raise
            except Exception as e:
                raise self._failure(e) from e
            if results is not None:
                if self._checked:
                    results = _fresh_outputs(results, args)
                return results[0] if self.single_output else results
        values = input_checks.bind_args(self.inputs, args, kwargs)
        sized = self._sized
        shapes = None
        if sized:
            shapes = tuple([v.shape if type(v) is np.ndarray else None for v in values])
            if shapes in self._sized_ok:
                sized = ()  # these shapes bind the same sizes, already found >= 0
            elif None in shapes:
                shapes = None
        arrays, env = input_checks.check_values(self.inputs, values, sized)
        if shapes is not None and sized and len(self._sized_ok) < SIZED_SHAPES:
            self._sized_ok.add(shapes)
        if self.check_finite:
            for node, arr in zip(self.inputs, arrays):
                check_input_finite(node, arr)
        ops = self._ops_for(env) if self._compiled.symbolic else _NO_OPS
        try:
            results = self._fn(*arrays, ops)
        except GraphcError:
            raise
        except Exception as e:  # a value the graph's types could not rule out
            raise self._failure(e) from e
        if self._checked:
            results = _fresh_outputs(results, arrays)
        return results[0] if self.single_output else results

    def _failure(self, e: Exception) -> InputError:
        """The error for an exception raised inside the generated code, naming its node."""
        node = self._compiled.program.node_at(e.__traceback__)
        where = (f"node {node.name!r} ({node.op.label()}, built at {node.source})"
                 if node is not None else "the compiled function")
        return InputError(f"{where} failed at run time: {e}")

    # -- running ----------------------------------------------------------------------------
    def _ops_for(self, env: dict) -> dict[int, object]:
        """Ops with symbolic parameters, resolved for this call's sizes (cached per sizes, the
        `RESOLVED_SIZE` most recent, shared by threads)."""
        key = tuple(sorted((str(k), v) for k, v in env.items()))
        with self._resolved_lock:
            ops = self._resolved.get(key)
            if ops is not None:
                self._resolved.move_to_end(key)
                return ops
        sched = self.schedule
        ops = {sched.slot[n]: self._emitter.resolved(n.op.resolve(env))
               for n in self._compiled.symbolic}
        with self._resolved_lock:
            self._resolved[key] = ops
            self._resolved.move_to_end(key)
            while len(self._resolved) > RESOLVED_SIZE:
                self._resolved.popitem(last=False)
        return ops


def _check_sizes_bound(inputs, symbolic) -> None:
    """Every symbolic size of a step's parameters (`g.zeros(("n", 3))`) must be bound by the
    shape of an input, else no call could resolve it: a GraphError naming the node."""
    bound = types.free_symbols(tuple(tuple(n.shape) for n in inputs))
    for n in sorted(symbolic, key=lambda n: n.index):
        loose = n.op.free_symbols() - bound
        if loose:
            names = ", ".join(sorted(map(str, loose)))
            raise GraphError(f"function: node {n.name!r} ({n.op.label()}, built at {n.source}) "
                             f"has the symbolic size {names}, which no input's shape binds; "
                             "give an input that dimension, or use a number")


_NO_OPS: dict = {}  # `_ops` of a checked call to a function without symbolic parameters
RESOLVED_SIZE = 64  # sizes a function keeps resolved ops for (least recently used dropped)
SIZED_SHAPES = 64  # input shapes a function remembers as passing the size check


def _first_with_each_size(nodes) -> list[Node]:
    """The nodes that first (lowest index) hold each symbolic size, in index order: checking
    them finds the same sizes, at the same nodes and axes, as checking all of `nodes`."""
    first: dict = {}
    for n in sorted(nodes, key=lambda n: n.index):
        for d in n.shape:
            if not isinstance(d, int) and d not in first:
                first[d] = n
    return sorted(set(first.values()), key=lambda n: n.index)


# -- compiling and the cache -------------------------------------------------------------------
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 256
_LOCK = threading.Lock()


def structure_key(inputs: list[Node], outputs: list[Node], options: tuple):
    """A hashable description of what `outputs` compute from `inputs`, or None."""
    fed = set(inputs)
    nodes = list(inputs) + [n for n in walk.ancestors(outputs, stop=fed) if n not in fed]
    pos = {n: k for k, n in enumerate(nodes)}
    items = []
    for n in nodes:
        if n in fed:
            items.append(("in", n.name, n.shape, n.dtype.str))
        elif isinstance(n.op, Constant):
            v = n.op.value
            items.append(("c", n.name, v.dtype.str, v.shape, v.tobytes()) if v.size <= 4096
                         else ("C", n.name, n.op))
        else:
            items.append((op_key(n.op), n.name, n.shape, n.dtype.str,
                          tuple(pos[x] for x in n.inputs)))
    key = (tuple(items), tuple(pos[o] for o in outputs), options)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def compile_graph(inputs: list[Node], outputs: list[Node], optimize: bool,
                  check_finite: bool, backend: str = "numpy") -> Compiled:
    """Optimize (or just prune), fuse, schedule and generate code; cached by structure."""
    from graphc.compile import fusion
    from graphc.rewrite import optimize as rewrite

    key = structure_key(inputs, outputs, (optimize, check_finite, fusion.allowed(), backend))
    if key is not None:
        with _LOCK:
            hit = _CACHE.get(key)
            if hit is not None:
                _CACHE.move_to_end(key)
                return hit
    fed = set(inputs)
    if any(isinstance(n.op, Input) and n not in fed for n in walk.ancestors(outputs, stop=fed)):
        make_schedule(inputs, outputs)  # raises, naming the output and the missing input
    name = outputs[0].graph.name if outputs else "f"
    with collector_paused():
        opt = rewrite(inputs, outputs, rules=None if optimize else [])
        schedule = make_schedule(opt.inputs, opt.outputs)
        symbolic = frozenset(s.node for s in schedule.steps if s.node.op.free_symbols())
        # the backend's fusion tier finds the groups (None); a checked or unoptimized run
        # fuses none
        program = codegen.generate(schedule, name, check_finite=check_finite,
                                   groups=None if optimize and not check_finite else [],
                                   symbolic=symbolic, backend=backend)
    compiled = Compiled(opt.graph, schedule, program, tuple(opt.fired), opt.raw_size, symbolic)
    if key is not None:
        with _LOCK:
            _CACHE[key] = compiled
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return compiled


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


def function(inputs, outputs, optimize: bool = True, check_finite: bool = False,
             backend: str = "numpy") -> Function:
    """Compile `outputs` as a function of `inputs`.

    `backend` names the code generator (`graphc.compile.emit.BACKENDS`): "numpy" (the
    default: in-place plan, numba fusion), "array_api" (the namespace of the arrays a call
    gets), "dask" (a task graph on the current client; `f(..., compute=False)` gives Dask
    arrays) or "cupy" (docs/scaling.md).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> f = gc.function([x], 2.0 * x)
        >>> f(np.array([1.0, 3.0]))
        array([2., 6.])
    """
    return Function(inputs, outputs, optimize=optimize, check_finite=check_finite,
                    backend=backend)


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
    out_list = node_list("function", "outputs", outputs)
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
            node = graph.get(key)
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
    if fn is None:  # kept until a rollback removes one of its nodes
        fn = graph.cache.put(key, Function(nodes, outputs), [*out_list, *nodes])
    return fn(*feed.values())


set_evaluator(eval)  # `node.eval(feed)` is `gc.eval(node, feed)`
set_compiler(Function)  # `Body.function()`: an inner graph compiled once, run many times
set_loop_compiler(loop_kernel.compile_loop)  # a long scan: the body and loop as one kernel
