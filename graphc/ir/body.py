"""Graphs inside ops: a `Body` is an inner graph with explicit inputs and outputs.

An op that holds a graph (`gc.remat`'s, and the loops to come) keeps it as a parameter declared
`param(BODY)`. The body's inputs are its graph's inputs, in order, and match the outer node's
operands one for one; an outer node the inner function used was captured as one of those
inputs (`Graph.capture`), so it is an ordinary operand outside: pruning, merging, dead-code
elimination and scheduling see it without looking inside.

Bodies compare and hash by a *structural fingerprint* (ops and parameters, edges, shapes and
dtypes, constants by content; names are ignored), so two applications of the same inner graph
to the same operands merge even when each was built separately. The fingerprint is computed
once, in one walk of the body, when the op is first hashed or compared. A body's graph must not
change once the body is made.
"""

from __future__ import annotations

import hashlib

from graphc.errors import GraphError
from graphc.ir.graph import Graph, Node, compiled, compiled_loop, evaluate
from graphc.ir.op import Constant, Input, op_key
from graphc.ir.params import Kind


class Body:
    """An inner graph, its inputs (the graph's inputs, in order) and its outputs.

    Examples:
        >>> import graphc as gc
        >>> from graphc.ir.body import Body
        >>> def build():
        ...     h = gc.Graph("h")
        ...     x = h.input("x", shape=(2,))
        ...     return Body(h, [gc.tanh(x)])
        >>> a, b = build(), build()
        >>> a == b, hash(a) == hash(b), a.graph is b.graph
        (True, True, False)
    """

    __slots__ = ("graph", "outputs", "_key", "_hash")

    def __init__(self, graph: Graph, outputs):
        if not isinstance(graph, Graph):
            raise GraphError(f"Body: expected a Graph, got {type(graph).__name__}")
        outputs = tuple(outputs)
        if not outputs:
            raise GraphError(f"Body: the inner graph {graph.name!r} needs at least one output")
        for k, o in enumerate(outputs):
            if not isinstance(o, Node) or o.graph is not graph:
                raise GraphError(f"Body: output {k} must be a node of the inner graph "
                                 f"{graph.name!r}, got {o!r}")
        self.graph = graph
        self.outputs = outputs
        self._key = None
        self._hash = None

    @property
    def inputs(self) -> tuple[Node, ...]:
        return tuple(self.graph.inputs)

    def key(self) -> tuple:
        """The structural fingerprint: equal for bodies that compute the same thing the same
        way, whatever their names."""
        if self._key is None:
            items = []
            for n in self.graph.nodes:
                if isinstance(n.op, Constant):
                    v = n.op.value
                    op = ("constant", v.dtype.str, v.shape,
                          hashlib.sha256(v.tobytes()).hexdigest())
                elif isinstance(n.op, Input):
                    op = "input"
                else:
                    op = op_key(n.op)
                items.append((op, tuple(x.index for x in n.inputs), n.shape, n.dtype.str))
            self._key = (tuple(items), tuple(x.index for x in self.graph.inputs),
                         tuple(o.index for o in self.outputs))
        return self._key

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        return isinstance(other, Body) and self.key() == other.key()

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self.key())
        return self._hash

    def __repr__(self) -> str:
        return f"{self.graph.name}[{len(self.graph.nodes)} nodes]"

    def run(self, *arrays):
        """The outputs' values for the inputs' values `arrays` (a list, one per output)."""
        return evaluate(list(self.outputs), dict(zip(self.graph.inputs, arrays)))

    def function(self):
        """The body compiled once (`gc.function`, through the IR's compiler hook), kept in its
        graph's cache: `fn(*arrays)` gives the outputs' values as a list, like `run`, without
        `gc.eval`'s feed checks on each call (for an op that runs its body in a loop)."""
        key = ("body_function", tuple(o.index for o in self.outputs))  # bodies may share
        #                                                                   a graph (a loop's)
        fn = self.graph.cache.get(key)
        if fn is None:
            fn = self.graph.cache.put(key, compiled(self.graph.inputs, self.outputs),
                                      [*self.graph.inputs, *self.outputs])
        return fn


    def loop_kernel(self, n_carry: int, n_xs: int, reverse: bool):
        """The whole loop of a scan over this body as one native kernel (`compiled_loop`),
        made once and kept in the graph's cache; None where the compiler writes none."""
        key = ("loop_kernel", tuple(o.index for o in self.outputs), n_carry, n_xs, reverse)
        if key in self.graph.cache:
            return self.graph.cache.get(key)
        kernel = compiled_loop(self.graph.inputs, self.outputs, n_carry, n_xs, reverse)
        self.graph.cache.put(key, kernel, [*self.graph.inputs, *self.outputs])
        return kernel


class _BodyKind(Kind):
    name = "an inner graph (a Body)"

    def check(self, v, where):
        if not isinstance(v, Body):
            self.fail(v, where)


BODY = _BodyKind()  # the parameter kind of an op's inner graph: `body: Body = param(BODY)`


def bodies(op) -> list[tuple[str, Body]]:
    """The inner graphs an op holds, as (parameter, body) pairs: empty for most ops."""
    return [(k, v) for k, v in op.params().items() if isinstance(v, Body)]


def copy_into(graph: Graph, body: Body, inputs) -> list[Node]:
    """The body's nodes rebuilt in `graph` over the nodes `inputs` (one per body input), as
    they were (ops, roles, scopes; constants shared); returns the outputs' copies."""
    if len(inputs) != len(body.graph.inputs):
        raise GraphError(f"copy_into: body {body!r} takes {len(body.graph.inputs)} inputs, "
                         f"got {len(inputs)}")
    new = dict(zip(body.graph.inputs, inputs))
    for n in body.graph.nodes:
        if n not in new:
            new[n] = graph.append_copy(n, [new[x] for x in n.inputs])
    return [new[o] for o in body.outputs]
