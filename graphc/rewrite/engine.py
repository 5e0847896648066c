"""The rewrite engine: named rules applied to a fixed point by a worklist, with merging.

The graph is append-only, so a rewrite never edits a node: it builds the replacement (nodes
appended to the working graph) and records `replaced[n] = r`. The worklist is the graph itself,
visited in insertion order; every node that a rule or a rebuild appends is visited in turn as
soon as it exists, so when a node is visited its inputs are already canonical (merged and fully
rewritten). Each visit:

1. rebuilds the node if an input was replaced (same op, canonical inputs);
2. merges it with an earlier node of the same op, parameters and inputs (hash-consing: common
   subexpression elimination);
3. offers it to each rule in order; the first rule that returns a different node replaces it.

A rule sees only a node and its (canonical) ancestors, so one pass in order reaches the fixed
point; nothing is recursive in the graph's depth. Dead-code elimination is the final copy
(`graphc.rewrite.dce`), which keeps only what the outputs need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from graphc.errors import GraphcError
from graphc.ir import types
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Constant, Input, Op, op_key


@dataclass(frozen=True)
class Rule:
    """A named rewrite: `fn(node)` returns a replacement node, or None when it does not apply.

    `ops` are the op classes the rule can match at the root (its pattern's dispatch key; a
    subclass matches too; None: any op) and `where` a test of the op's class (a flag such as
    `shape_only`), so that a node is offered only to the rules that may fire on it.
    """

    name: str
    family: str
    fn: Callable[[Node], Node | None]
    ops: tuple[type[Op], ...] | None = None
    where: Callable[[type[Op]], bool] | None = None

    def matches(self, cls: type[Op]) -> bool:
        return ((self.ops is None or issubclass(cls, self.ops))
                and (self.where is None or bool(self.where(cls))))

    def __call__(self, node: Node) -> Node | None:
        return self.fn(node)


RULES: list[Rule] = []


def rule(family: str, *ops: type[Op], where: Callable[[type[Op]], bool] | None = None):
    """Register a rule function under its own name (`<before>_to_<after>`), in file order;
    `ops` are the classes of the ops it matches (`@rule("algebra", AddN)`; none: any op),
    `where` a test of their flags (`where=lambda op: op.shape_only`)."""

    def deco(fn):
        RULES.append(Rule(fn.__name__, family, fn, ops or None, where))
        return fn

    return deco


def dispatch(rules: list[Rule]) -> Callable[[type[Op]], list[Rule]]:
    """The rules to try on a node, by the class of its op, in their order."""
    table: dict[type, list[Rule]] = {}

    def lookup(cls: type[Op]) -> list[Rule]:
        found = table.get(cls)
        if found is None:
            found = table[cls] = [r for r in rules if r.matches(cls)]
        return found

    return lookup


# -- merging ---------------------------------------------------------------------------------
SMALL_CONSTANT = 4096  # constants up to this many entries are merged by value


def merge_key(node: Node):
    """The hash-consing key: op (type and parameters) and the identities of the inputs."""
    op = node.op
    if isinstance(op, Input) or not op.pure:
        return None  # inputs (and impure ops) are distinct values even when they look alike
    if isinstance(op, Constant):
        v = op.value
        if v.size > SMALL_CONSTANT:
            return None
        return ("constant", v.dtype.str, v.shape, v.tobytes())
    return (op_key(op), tuple(id(x) for x in node.inputs))


# -- copying ---------------------------------------------------------------------------------
def copy_node(graph: Graph, node: Node, inputs, name: str | None = None) -> Node:
    """Append a node with `node`'s op, shape, dtype, role, scope and source line over `inputs`.

    The shape and dtype were inferred when `node` was built, and the op and input types are
    unchanged, so they are not inferred again (copying is then linear and cheap); see
    `Graph.append_copy`.
    """
    return graph.append_copy(node, inputs, name)


@dataclass
class Rewriter:
    """One rewriting run over a working graph; `fired` lists the rules that fired, in order."""

    graph: Graph
    rules: list[Rule]
    budget: int
    replaced: dict = field(default_factory=dict)
    fired: list[str] = field(default_factory=list)
    preferred: dict = field(default_factory=dict)  # node -> the name of what it stands for
    _table: dict = field(default_factory=dict)
    _done: set = field(default_factory=set)
    _original: int = 0
    _lookup: Callable = None

    def find(self, n: Node) -> Node:
        """The canonical node standing for `n` (path-compressed)."""
        root = n
        while root in self.replaced:
            root = self.replaced[root]
        while n is not root:
            nxt = self.replaced[n]
            self.replaced[n] = root
            n = nxt
        return root

    def run(self) -> None:
        self._original = len(self.graph.nodes)
        self._lookup = dispatch(self.rules)
        with np.errstate(all="ignore"):
            self.drain(0)

    def drain(self, start: int) -> None:
        nodes = self.graph.nodes
        k = start
        while k < len(nodes):
            n = nodes[k]
            if n not in self._done:
                self.visit(n)
            k += 1

    def _replace(self, n: Node, r: Node) -> None:
        self.replaced[n] = r
        if r.index >= self._original:  # a node the rewrite built stands for the one replaced
            self.preferred.setdefault(r, self.preferred.get(n, n.name))

    def visit(self, n: Node) -> None:
        self._done.add(n)
        replaced = self.replaced
        if any(x in replaced for x in n.inputs):
            ins = tuple(self.find(x) for x in n.inputs)
            mark = len(self.graph.nodes)
            with self.graph.role(n.role):
                m = copy_node(self.graph, n, ins, self.preferred.get(n, n.name))
            self._replace(n, m)
            self.drain(mark)
            return
        key = merge_key(n)
        if key is not None:
            prev = self._table.get(key)
            if prev is not None and prev is not n:
                self._replace(n, prev)
                return
            self._table[key] = n
        if self.budget <= 0:
            return
        rules = self._lookup(type(n.op))
        if not rules:
            return
        with self.graph.role(n.role):  # what a rule builds stands for n
            for r in rules:
                mark = len(self.graph.nodes)
                try:
                    out = r.fn(n)
                except GraphcError:  # the pattern matched but its replacement does not type
                    out = None
                if out is not None and out is not n and (
                        out.dtype != n.dtype or not types.shape_eq(out.shape, n.shape)):
                    out = None  # a result of another type is refused
                if out is None or out is n:
                    if len(self.graph.nodes) != mark:
                        self.graph.rollback(mark)
                    continue
                self.budget -= 1
                self.fired.append(r.name)
                self._replace(n, out)
                self.drain(mark)
                return
