"""The graph IR: an explicit, append-only DAG of symbolic tensor nodes.

Nodes are only ever appended, and a node's inputs must already be in its graph, so insertion
order is a topological order and a cycle cannot be built. Every new node goes through
`Graph.apply`, which infers the shape and dtype first, so a failed build adds nothing; only
`append_copy` skips the inference, for a copy of a node that already passed it.

What the layers above need from a graph is public here, so none of them touches a private
member: `append_copy` (the rewriter copies nodes keeping op, role, scope and source line),
`fresh_name`, `get` and `in` (names and membership: of a name, or of a node), `rollback`
(remove what was appended since a mark; `transaction` and `scratch` use it), `cache` (what a
layer above remembers about the graph, dropped with the nodes it refers to) and
`set_evaluator` (how `Node.eval` runs: the compiler registers it, so the IR imports nothing
above itself).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import networkx as nx
import numpy as np

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.gcpause import collector_paused
from graphc.ir.op import TUPLE, Constant, Input, Op, Output, output_types

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONTEXTLIB = contextlib.__file__  # graphc's `with` blocks (built_at) run under its frames
ROLES = ("forward", "grad")


def user_source_line() -> str:
    """`file:line` of the innermost caller outside graphc: the line a user wrote."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE_DIR)
                                 or frame.f_code.co_filename == _CONTEXTLIB):
        frame = frame.f_back
    if frame is None:
        return "<graphc>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class Node:
    """A symbolic tensor: the output of `op` applied to `inputs`, with a static shape and dtype.

    Operators (`+`, `@`, `==`, ...) are installed by `graphc.ops`; nodes hash by identity.
    """

    __slots__ = ("graph", "op", "inputs", "shape", "dtype", "name", "role", "index", "source",
                 "scope", "__weakref__")

    def __init__(self, graph, op, inputs, shape, dtype, name, role, index, source):
        self.graph: Graph = graph
        self.op: Op = op
        self.inputs: tuple[Node, ...] = inputs
        self.shape: types.Shape = shape
        self.dtype: np.dtype = dtype
        self.name: str = name
        self.role: str = role
        self.index: int = index
        self.source: str = source
        self.scope: str = ""  # the `Graph.scope` path it was built in ("layer1/attn"), or ""

    __hash__ = object.__hash__

    def eval(self, feed: dict | None = None):
        """This node's value given `feed` (input nodes or their names -> values); see `gc.eval`.

        Examples:
            >>> import graphc as gc
            >>> g = gc.Graph()
            >>> x = g.input("x")
            >>> (x * x + 1.0).eval({x: 3.0})
            array(10.)
        """
        if _evaluator is None:
            raise GraphError("Node.eval needs the compiler: `import graphc` registers it")
        return _evaluator(self, feed)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> types.Dim:
        return types.size(self.shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError(f"len() of the scalar node {self.name!r}")
        d = self.shape[0]
        if not isinstance(d, int):
            raise TypeError(f"len() of node {self.name!r} whose first dimension {d} is symbolic")
        return d

    def __bool__(self):
        raise GraphError(
            f"the truth value of node {self.name!r} is unknown until it runs; use gc.where for "
            "a choice inside the graph")

    def __iter__(self):
        raise TypeError(f"node {self.name!r} is not iterable; index it with x[i] instead")

    def __repr__(self) -> str:
        args = ", ".join(i.name for i in self.inputs[:4])
        if len(self.inputs) > 4:
            args += f", ... {len(self.inputs) - 4} more"
        op = self.op.label()
        body = f"{op}({args})" if self.inputs else op
        return (f"<Node {self.name}: {body} shape={types.fmt_shape(self.shape)} "
                f"dtype={self.dtype}{'' if self.role == 'forward' else ' role=' + self.role}>")


class Graph:
    """An append-only DAG; `nodes` is in insertion order, which is a topological order.

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph("demo")
        >>> x = g.input("x", shape=(3,))
        >>> y = gc.tanh(x).sum()
        >>> [n.op.name for n in g.nodes]
        ['input', 'tanh', 'sum']
    """

    def __init__(self, name: str = "graph"):
        check_name("a graph name", name)
        self.name = name
        self.nodes: list[Node] = []
        self.inputs: list[Node] = []
        self._names: dict[str, Node] = {}
        self._scopes: list[str] = []
        self._role = "forward"
        self._source: str | None = None  # inside `built_at`: the source line of every new node
        self.cache = GraphCache()  # what layers above remember about this graph (see GraphCache)
        self.parent: Graph | None = None  # while an inner graph is built: the graph around it
        self.captured: dict[Node, Node] = {}  # outer node -> the input that stands for it here

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self.nodes)} nodes, {len(self.inputs)} inputs>"

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, item) -> bool:
        """`name in g`: a node of `g` has that name; `node in g`: the node is one of `g`'s (not
        one of another graph, nor one a rollback removed)."""
        if isinstance(item, Node):
            return (item.graph is self and item.index < len(self.nodes)
                    and self.nodes[item.index] is item)
        return isinstance(item, str) and item in self._names

    def get(self, name: str, default=None):
        """The node named `name`, or `default` (`g[name]` raises instead)."""
        return self._names.get(name, default)

    def fresh_name(self, base: str) -> str:
        """`base`, or the first of `base_1`, `base_2`, ... that no node of this graph has."""
        return self._unique(base)

    # -- building ---------------------------------------------------------------------------
    def input(self, name: str, shape=(), dtype="float64") -> Node:
        """A placeholder fed at call time; a `str` in `shape` is a symbolic dimension."""
        check_name("an input name", name)
        full = self._scoped(name)
        if full in self._names:
            raise GraphError(f"graph {self.name!r} already has a node named {full!r}")
        try:
            shape = types.as_shape(shape)
            dtype = types.as_dtype(dtype)
        except (ValueError, TypeError) as e:
            raise ShapeError(f"input {full!r}: {e}") from None
        node = self._append(Input(), (), shape, dtype, full)
        self.inputs.append(node)
        return node

    def constant(self, value, name: str | None = None, dtype=None) -> Node:
        """A value baked into the graph (copied, read-only)."""
        arr = np.array(value, dtype=dtype, copy=True)
        if arr.dtype.kind not in types.SUPPORTED_KINDS:
            raise GraphError(f"constant {name or ''!r}: dtype {arr.dtype} is not supported "
                             "(bool, integer or float only)")
        arr.flags.writeable = False
        if name is not None:
            check_name("a constant's name", name)
        if name is not None and self._scoped(name) in self._names:
            raise GraphError(f"graph {self.name!r} already has a node named {name!r}")
        return self._append(Constant(arr), (), tuple(arr.shape), arr.dtype,
                            self._scoped(name) if name else None)

    def apply(self, op: Op, inputs, name: str | None = None) -> Node:
        """Append `op(*inputs)` after checking graphs and inferring shape and dtype."""
        inputs = tuple(inputs)
        if name is not None:
            check_name(f"the name of a {op.name} node", name)
        for x in inputs:
            if not isinstance(x, Node):
                raise GraphError(f"{op.name}: expected graph nodes as inputs, got {x!r}")
        if any(x.graph is not self for x in inputs):  # inner graphs (or a mistake): rare
            home = self
            for x in inputs:
                if x.graph is not home and home in x.graph.enclosing():
                    home = x.graph  # a node of an inner graph being built: the node goes there
            if home is not self:
                return home.apply(op, inputs, name)
            for x in inputs:
                if x.graph is not self and x.graph not in self.enclosing():
                    raise GraphError(
                        f"{op.name}: node {x.name!r} belongs to graph {x.graph.name!r}, not "
                        f"to {self.name!r}; nodes of different graphs cannot be combined")
        if op.arity is not None and len(inputs) != op.arity:
            raise GraphError(f"{op.name} takes {op.arity} inputs, got {len(inputs)}")
        mark = len(self.nodes)
        try:
            inputs = tuple(x if x.graph is self else self.capture(x) for x in inputs)
            if op.multi:  # its value is the tuple: the views carry each output's type
                op.infer(*inputs)
                shape, dtype = (), TUPLE
            else:
                shape, dtype = op.infer(*inputs)
        except ShapeError as e:
            self.rollback(mark)  # the captures made for this node
            raise ShapeError(f"{e} (at {user_source_line()})") from None
        except (ValueError, TypeError) as e:
            self.rollback(mark)
            shapes = ", ".join(types.fmt_shape(x.shape) for x in inputs)
            raise ShapeError(f"{op.label()} on inputs of shape {shapes}: {e} "
                             f"(at {user_source_line()})") from None
        except BaseException:
            self.rollback(mark)
            raise
        return self._append(op, inputs, tuple(shape), np.dtype(dtype), name)

    # -- inner graphs -----------------------------------------------------------------------
    def enclosing(self) -> list[Graph]:
        """The graphs this one is being built inside, innermost first (empty when none)."""
        out, g = [], self.parent
        while g is not None:
            out.append(g)
            g = g.parent
        return out

    def capture(self, outer: Node) -> Node:
        """The input of this inner graph that stands for `outer`, a node of a graph it is
        being built inside (made on first use, then reused): how an inner function's use of
        an outer node becomes an explicit input, and so an operand of the op that holds it.

        Examples:
            >>> import graphc as gc
            >>> g = gc.Graph("outer")
            >>> W = g.input("W", shape=(2,))
            >>> with g.inner("body") as h:
            ...     x = h.input("x", shape=(2,))
            ...     y = x * W                      # W is captured
            >>> [n.name for n in h.inputs], h.captured[W] is h.inputs[1]
            (['x', 'W'], True)
        """
        hit = self.captured.get(outer)
        if hit is not None and hit in self:
            return hit
        if self.parent is None or outer.graph not in self.enclosing():
            raise GraphError(f"capture: node {outer.name!r} of graph {outer.graph.name!r} is "
                             f"not in a graph that {self.name!r} is being built inside")
        if outer.graph is not self.parent:  # from further out: captured by each level between
            outer = self.parent.capture(outer)  # (the parent's stand-in is the key: the operand)
            hit = self.captured.get(outer)
            if hit is not None and hit in self:
                return hit
        node = self._append(Input(), (), outer.shape, outer.dtype, outer.name, role="forward",
                            scope="", source=outer.source)
        self.inputs.append(node)
        self.captured[outer] = node
        return node

    @contextlib.contextmanager
    def inner(self, name: str):
        """A new graph built inside this one: nodes of this graph (or of graphs around it)
        that its nodes use are captured as its inputs (`capture`). Leaving the block ends the
        building: from then on the inner graph is closed, like any other graph."""
        g = Graph(name)
        g.parent = self
        try:
            yield g
        finally:
            g.parent = None

    def views(self, node: Node) -> tuple[Node, ...]:
        """The `Output(k)` views of a multi-output apply node, one per output, built the
        first time they are asked for (named `node[k]`) and the same nodes after that.

        Examples:
            >>> import graphc as gc
            >>> g = gc.Graph()
            >>> x = g.input("x", shape=(5,))
            >>> a, b = gc.split(x, [2])
            >>> [v.name for v in g.views(a.inputs[0])], a.shape, b.shape
            (['split_1[0]', 'split_1[1]'], (2,), (3,))
        """
        if node not in self or not node.op.multi:
            raise GraphError(f"views: {node!r} is not a multi-output node of {self.name!r}")
        key = ("views", node.index)
        hit = self.cache.get(key)
        if hit is None or hit[0] is not node:
            n = node.op.n_outputs(*node.inputs)
            with self.role(node.role):
                made = tuple(self._append(Output(k), (node,), s, d, f"{node.name}[{k}]",
                                          scope=node.scope, source=node.source)
                             for k, (s, d) in zip(range(n), output_types(node)))
            hit = self.cache.put(key, (node, made), made)
        return hit[1]

    def append_copy(self, node: Node, inputs=(), name: str | None = None, *,
                    as_input: bool = False) -> Node:
        """Append a copy of `node` over `inputs`: its op, shape, dtype, role, scope and source
        line, named `name` (default: `node`'s name) made unique with `fresh_name`.

        The shape and dtype are not inferred again (they were when `node` was built, and the
        op and input types are the same), so copying a graph is linear and cheap. With
        `as_input`, the copy is an input of `node`'s shape and dtype instead (a fed node
        becomes a leaf); an input copy joins `inputs`, like `input` would add it.

        Examples:
            >>> import graphc as gc
            >>> g, h = gc.Graph("g"), gc.Graph("h")
            >>> with g.scope("layer"):
            ...     x = g.input("x", shape=(2,))
            ...     y = gc.exp(x)
            >>> x2 = h.append_copy(x)
            >>> y2 = h.append_copy(y, [x2])
            >>> y2.name, y2.scope, y2.shape, h.inputs[0] is x2
            ('layer/exp_1', 'layer', (2,), True)
        """
        inputs = tuple(inputs)
        op = Input() if as_input else node.op
        if name is not None and name != node.name:
            check_name("a node name", name)
        if isinstance(op, Input) and inputs:
            raise GraphError(f"append_copy: an input copy of {node.name!r} takes no inputs, "
                             f"got {len(inputs)}")
        if op.arity is not None and len(inputs) != op.arity:
            raise GraphError(f"append_copy: {op.name} takes {op.arity} inputs, got "
                             f"{len(inputs)}")
        for x in inputs:
            if not isinstance(x, Node) or x.graph is not self:
                raise GraphError(f"append_copy: the inputs of a copy of {node.name!r} must be "
                                 f"nodes of graph {self.name!r}, got {x!r}")
        new = self._append(op, inputs, node.shape, node.dtype,
                           node.name if name is None else name,
                           role=node.role, scope=node.scope, source=node.source)
        if isinstance(op, Input):
            self.inputs.append(new)
        return new

    def _append(self, op, inputs, shape, dtype, name, role: str | None = None,
                scope: str | None = None, source: str | None = None) -> Node:
        index = len(self.nodes)
        if name is None:
            name = self._scoped(f"{op.name}_{index}")
        name = self._unique(name)
        if source is None:
            source = self._source or user_source_line()
        node = Node(self, op, inputs, shape, dtype, name, self._role if role is None else role,
                    index, source)
        node.scope = ("/".join(self._scopes) if self._scopes else "") if scope is None else scope
        self.nodes.append(node)
        self._names[name] = node
        return node

    def _unique(self, name: str) -> str:
        if name not in self._names:
            return name
        k = 1
        while f"{name}_{k}" in self._names:
            k += 1
        return f"{name}_{k}"

    def _scoped(self, name: str) -> str:
        return "/".join([*self._scopes, name])

    def rename(self, node: Node, name: str) -> str:
        """Give `node` a new name (made unique); returns the name it got."""
        check_name("a node name", name)
        if self._names.get(node.name) is node:
            del self._names[node.name]
        node.name = self._unique(name)
        self._names[node.name] = node
        return node.name

    def __getitem__(self, name: str) -> Node:
        try:
            return self._names[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no node named {name!r}") from None

    # -- context ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self, name: str):
        """Prefix the names of nodes built inside with `name/`; drawings cluster by scope."""
        check_name("a scope name", name)
        if "/" in name:
            raise GraphError(f"a scope name must not contain '/', got {name!r}")
        self._scopes.append(name)
        try:
            yield self
        finally:
            self._scopes.pop()

    def role(self, role: str) -> _RoleBlock:
        """Mark every node built inside with `role` ("grad" for what autodiff inserts).

        A `with` block; cheap, since the rewrite engine enters one per node it offers to rules.
        """
        return _RoleBlock(self, role)

    @contextlib.contextmanager
    def built_at(self, source: str | None = None):
        """Give every node built inside the source line `source` (default: the caller's line
        outside graphc), found once, not per node: `grad` and friends build thousands of nodes
        from one user call, and walking the stack for each cost a tenth of their time."""
        if self._source is not None:  # an enclosing block already chose the line
            yield self
            return
        self._source = source or user_source_line()
        try:
            yield self
        finally:
            self._source = None

    @contextlib.contextmanager
    def deriving(self):
        """The block that autodiff builds in: all or nothing (`transaction`), role "grad",
        the user's line found once (`built_at`), the garbage collector paused
        (`graphc.ir.gcpause`)."""
        with collector_paused(), self.transaction(), self.role("grad"), self.built_at():
            yield self

    @contextlib.contextmanager
    def transaction(self):
        """Undo every node appended inside if the block raises: no half-built graphs."""
        mark = len(self.nodes)
        try:
            yield self
        except BaseException:
            self.rollback(mark)
            raise

    @contextlib.contextmanager
    def scratch(self):
        """Build temporary nodes (a check, a probe) and remove them all on leaving."""
        mark = len(self.nodes)
        try:
            yield self
        finally:
            self.rollback(mark)

    def rollback(self, mark: int) -> None:
        """Remove every node appended since the graph had `mark` nodes (`len(g)` then): their
        names, the inputs among them, and the `cache` entries that refer to them.

        Examples:
            >>> import graphc as gc
            >>> g = gc.Graph()
            >>> x = g.input("x")
            >>> mark = len(g)
            >>> y = gc.exp(x)
            >>> g.rollback(mark)
            >>> len(g), y in g, y.name in g
            (1, False, False)
        """
        if isinstance(mark, bool) or not isinstance(mark, int) or not 0 <= mark <= len(
                self.nodes):
            raise GraphError(f"rollback: mark must be an int in 0..{len(self.nodes)} (a "
                             f"length of graph {self.name!r}), got {mark!r}")
        if len(self.nodes) == mark:
            return
        for node in self.nodes[mark:]:
            if self._names.get(node.name) is node:
                del self._names[node.name]
        del self.nodes[mark:]
        while self.inputs and self.inputs[-1].index >= mark:
            self.inputs.pop()  # inputs are in index order: the removed ones are a suffix
        for outer, node in list(self.captured.items()):
            if node.index >= mark:
                del self.captured[outer]
        self.cache._drop_from(mark)

    # -- views ------------------------------------------------------------------------------
    def to_networkx(self) -> nx.DiGraph:
        """A `networkx.DiGraph` over node names, edges from input to consumer.

        Node attributes: `op` (registered name), `label`, `shape`, `dtype`, `role`, `index`.
        Edge attribute `position` is the argument position (a list when a node feeds several).
        """
        dg = nx.DiGraph(name=self.name)
        for n in self.nodes:
            dg.add_node(n.name, op=n.op.name, label=n.op.label(), shape=n.shape,
                        dtype=n.dtype, role=n.role, index=n.index)
        for n in self.nodes:
            for pos, x in enumerate(n.inputs):
                if dg.has_edge(x.name, n.name):
                    dg.edges[x.name, n.name]["position"].append(pos)
                else:
                    dg.add_edge(x.name, n.name, position=[pos])
        return dg

    # -- constants of a shape, symbolic sizes too (zeros ones full eye arange linspace) ------
    # The op library (graphc/ops/creation.py) registers the builders in `creators`, since the
    # IR imports nothing above itself; `g.zeros(...)` is `gc.zeros(..., like=<a node of g>)`.
    creators: dict[str, Callable] = {}

    def _create(self, name: str, *args, **kwargs) -> Node:
        make = Graph.creators.get(name)
        if make is None:
            raise GraphError(f"Graph.{name} needs the op library: `import graphc` registers it")
        return make(self, *args, **kwargs)

    def zeros(self, shape, dtype="float64") -> Node:
        """Zeros of `shape`; a str entry is a symbolic size, bound when a function runs.

        Examples:
            >>> import numpy as np, graphc as gc
            >>> g = gc.Graph()
            >>> x = g.input("x", shape=("n",))
            >>> (x + g.zeros("n")).eval({x: np.arange(3.0)})
            array([0., 1., 2.])
        """
        return self._create("zeros", shape, dtype)

    def ones(self, shape, dtype="float64") -> Node:
        """Ones of `shape` (str entries are symbolic sizes)."""
        return self._create("ones", shape, dtype)

    def full(self, shape, fill_value, dtype=None) -> Node:
        """`fill_value` in every entry of `shape` (str entries are symbolic sizes)."""
        return self._create("full", shape, fill_value, dtype)

    def eye(self, N, M=None, k=0, dtype="float64") -> Node:
        """The N x M identity, ones on diagonal `k` (a str size is symbolic)."""
        return self._create("eye", N, M, k, dtype)

    def arange(self, start, stop=None, step=1, dtype=None) -> Node:
        """np.arange's values; `g.arange("n")` is 0 .. n - 1 for a symbolic size n.

        Examples:
            >>> import graphc as gc
            >>> g = gc.Graph()
            >>> g.arange(1.0, 2.0, 0.25).eval()
            array([1.  , 1.25, 1.5 , 1.75])
        """
        return self._create("arange", start, stop, step, dtype)

    def linspace(self, start, stop, num=50, endpoint=True, dtype=None) -> Node:
        """`num` evenly spaced values from start to stop (`num` may be a symbolic size)."""
        return self._create("linspace", start, stop, num, endpoint, dtype)


class _RoleBlock:
    """The `with` block of `Graph.role` (a class: cheaper to enter than a generator)."""

    __slots__ = ("graph", "role", "saved")

    def __init__(self, graph: Graph, role: str):
        self.graph, self.role = graph, role

    def __enter__(self) -> Graph:
        if self.role not in ROLES:
            raise GraphError(f"role must be one of {ROLES}, got {self.role!r}")
        g = self.graph
        self.saved, g._role = g._role, self.role
        return g

    def __exit__(self, *exc) -> None:
        self.graph._role = self.saved


class GraphCache:
    """What the layers above remember about one graph (compiled `eval` functions, derivatives
    built, symbolic sizes), each entry tied to the nodes it refers to.

    A graph only grows and a node never changes, so an entry stays valid while its nodes are
    in the graph; `Graph.rollback` drops exactly the entries that refer to a removed node.
    Keys belong to their owner (a tuple whose first item names it) and should name nodes by
    index, so that no key comparison calls a node's overloaded `==`. Each call is one dict
    operation, so threads may share a cache.

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x")
        >>> mark = len(g)
        >>> y = gc.exp(x)
        >>> g.cache.put(("demo", x.index), "x only", [x])
        'x only'
        >>> g.cache.put(("demo", y.index), "needs y", [x, y])
        'needs y'
        >>> g.rollback(mark)  # removes y and the entry that refers to it
        >>> g.cache.get(("demo", x.index)), g.cache.get(("demo", y.index))
        ('x only', None)
    """

    __slots__ = ("_entries",)

    def __init__(self):
        self._entries: dict[Any, tuple[int, Any]] = {}  # key -> (latest node index, value)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def get(self, key, default=None):
        """The value remembered under `key`, or `default`."""
        hit = self._entries.get(key)
        return default if hit is None else hit[1]

    def put(self, key, value, nodes: Iterable[Node] = ()):
        """Remember `value` under `key` until a rollback removes one of `nodes` (the nodes it
        refers to; a rollback removes the latest nodes, so naming the latest one is enough).
        Returns `value`."""
        self._entries[key] = (max((n.index for n in nodes), default=-1), value)
        return value

    def pop(self, key, default=None):
        """Forget `key`; returns what was remembered, or `default`."""
        hit = self._entries.pop(key, None)
        return default if hit is None else hit[1]

    def clear(self) -> None:
        """Forget everything (the next use recompiles or rebuilds)."""
        self._entries.clear()

    def _drop_from(self, mark: int) -> None:
        """Forget the entries that refer to a node at index `mark` or later."""
        for key, (latest, _) in self._entries.copy().items():  # one C-level copy
            if latest >= mark:
                self._entries.pop(key, None)


# -- how Node.eval runs -------------------------------------------------------------------------
Evaluator = Callable[[Node, "dict | None"], Any]  # (node, feed) -> its value
_evaluator: Evaluator | None = None


def set_evaluator(evaluate: Evaluator) -> None:
    """Install what `Node.eval` calls: `graphc.compile` registers `gc.eval` when imported.

    The IR is the bottom layer and imports nothing above it; the compiler plugs itself in
    here (one typed hook) instead of patching a method onto `Node`.
    """
    global _evaluator
    if not callable(evaluate):
        raise TypeError(f"set_evaluator: expected a callable, got {evaluate!r}")
    _evaluator = evaluate


def evaluate(outputs, feed: dict):
    """The values of `outputs` (a node or a list) given `feed`, by the registered evaluator
    (`gc.eval`): how an op that holds a graph runs its body without the IR importing the
    compiler."""
    if _evaluator is None:
        raise GraphError("evaluating a graph needs the compiler: `import graphc` registers it")
    return _evaluator(outputs, feed)


# -- how an op compiles a graph it runs many times --------------------------------------------
Compiler = Callable[[list, list], Callable]  # (inputs, outputs) -> fn(*arrays) -> [values]
_compiler: Compiler | None = None


def set_compiler(compiler: Compiler) -> None:
    """Install what `compiled` calls: `graphc.compile` registers `gc.function` when imported,
    as it registers `gc.eval` with `set_evaluator`."""
    global _compiler
    if not callable(compiler):
        raise TypeError(f"set_compiler: expected a callable, got {compiler!r}")
    _compiler = compiler


def compiled(inputs: list, outputs: list) -> Callable:
    """`outputs` as a function of `inputs` compiled by the registered compiler (`gc.function`):
    how an op that runs its body many times in one call (`gc.fixed_point`) pays for the
    compilation once and for `gc.eval`'s per-call feed checks never."""
    if _compiler is None:
        raise GraphError("compiling a graph needs the compiler: `import graphc` registers it")
    return _compiler(list(inputs), list(outputs))


# -- how a loop op runs its whole loop natively ---------------------------------------------
LoopCompiler = Callable[[list, list, int, int, bool], Any]  # -> a kernel, or None
_loop_compiler: LoopCompiler | None = None


def set_loop_compiler(compiler: LoopCompiler) -> None:
    """Install what `compiled_loop` calls: `graphc.compile` registers its loop kernels."""
    global _loop_compiler
    if not callable(compiler):
        raise TypeError(f"set_loop_compiler: expected a callable, got {compiler!r}")
    _loop_compiler = compiler


def compiled_loop(inputs: list, outputs: list, n_carry: int, n_xs: int, reverse: bool):
    """A kernel running a whole scan over the body `inputs` -> `outputs` (carries, then
    scanned slices, then the rest), or None where the compiler writes none (the loop then
    runs the body from Python, step by step)."""
    if _loop_compiler is None:
        return None
    return _loop_compiler(list(inputs), list(outputs), n_carry, n_xs, reverse)


def check_name(what: str, name) -> None:
    """A name must be a non-empty str that files and drawings can hold (UTF-8 encodable).

    Any other text is allowed: names reach generated code only through
    `graphc.compile.emit.identifier` and escaped literals, never as code.
    """
    if not isinstance(name, str):
        raise GraphError(f"{what} must be a str, got {type(name).__name__} {name!r}")
    if not name:
        raise GraphError(f"{what} must not be empty")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise GraphError(f"{what} must be text that UTF-8 can encode, got {name!r} ({e.reason} "
                         f"at position {e.start})") from None


def node_list(caller: str, what: str, value) -> list[Node]:
    """`value` (a node, or a list or tuple of nodes) as a list, or a GraphError naming the
    caller, the argument and the offending item."""
    items = [value] if isinstance(value, Node) else value
    if not isinstance(items, (list, tuple)):
        raise GraphError(f"{caller}: {what} must be a node or a list of nodes, got "
                         f"{type(value).__name__}")
    for k, n in enumerate(items):
        if not isinstance(n, Node):
            raise GraphError(f"{caller}: {what}[{k}] must be a graph node, got "
                             f"{type(n).__name__}")
    return list(items)
