"""The graph IR: an explicit, append-only DAG of symbolic tensor nodes.

Nodes are only ever appended, and a node's inputs must already be in its graph, so insertion
order is a topological order and a cycle cannot be built. Every node creation goes through
`Graph.apply`, which infers the shape and dtype first, so a failed build adds nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import networkx as nx
import numpy as np

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.op import Constant, Input, Op

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = ("forward", "grad")


def user_source_line() -> str:
    """`file:line` of the innermost caller outside graphc: the line a user wrote."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
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
        self._counter = 0
        self.cache: dict[Any, Any] = {}  # compiled functions; valid forever: nodes never change

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self.nodes)} nodes, {len(self.inputs)} inputs>"

    def __len__(self) -> int:
        return len(self.nodes)

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
            if x.graph is not self:
                raise GraphError(
                    f"{op.name}: node {x.name!r} belongs to graph {x.graph.name!r}, not to "
                    f"{self.name!r}; nodes of different graphs cannot be combined")
        if op.arity is not None and len(inputs) != op.arity:
            raise GraphError(f"{op.name} takes {op.arity} inputs, got {len(inputs)}")
        try:
            shape, dtype = op.infer(*inputs)
        except ShapeError as e:
            raise ShapeError(f"{e} (at {user_source_line()})") from None
        except (ValueError, TypeError) as e:
            shapes = ", ".join(types.fmt_shape(x.shape) for x in inputs)
            raise ShapeError(f"{op.label()} on inputs of shape {shapes}: {e} "
                             f"(at {user_source_line()})") from None
        return self._append(op, inputs, tuple(shape), np.dtype(dtype), name)

    def _append(self, op, inputs, shape, dtype, name) -> Node:
        index = len(self.nodes)
        if name is None:
            name = self._scoped(f"{op.name}_{index}")
        name = self._unique(name)
        node = Node(self, op, inputs, shape, dtype, name, self._role, index,
                    user_source_line())
        node.scope = "/".join(self._scopes)
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

    @contextlib.contextmanager
    def role(self, role: str):
        """Mark every node built inside with `role` ("grad" for what autodiff inserts)."""
        if role not in ROLES:
            raise GraphError(f"role must be one of {ROLES}, got {role!r}")
        saved, self._role = self._role, role
        try:
            yield self
        finally:
            self._role = saved

    @contextlib.contextmanager
    def transaction(self):
        """Undo every node appended inside if the block raises: no half-built graphs."""
        n_nodes, n_inputs = len(self.nodes), len(self.inputs)
        try:
            yield self
        except BaseException:
            self._truncate(n_nodes, n_inputs)
            raise

    @contextlib.contextmanager
    def scratch(self):
        """Build temporary nodes (a check, a probe) and remove them all on leaving."""
        n_nodes, n_inputs = len(self.nodes), len(self.inputs)
        try:
            yield self
        finally:
            self._truncate(n_nodes, n_inputs)

    def _truncate(self, n_nodes: int, n_inputs: int) -> None:
        if len(self.nodes) == n_nodes:
            return
        for node in self.nodes[n_nodes:]:
            if self._names.get(node.name) is node:
                del self._names[node.name]
        del self.nodes[n_nodes:]
        del self.inputs[n_inputs:]
        self.cache.clear()  # entries may refer to the removed nodes' indices

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


def check_name(what: str, name) -> None:
    """A name must be a non-empty str that files and drawings can hold (UTF-8 encodable).

    Any other text is allowed: names reach generated code only through `codegen.identifier`
    and escaped literals, never as code.
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
