"""Custom derivative rules without an op class: `custom_vjp` and `custom_jvp`, in JAX's shape.

`f = custom_vjp(fn, fwd, bwd)`: `f(*args)` is one node holding fn's graph (an inner graph,
like `gc.remat`'s), so its value is fn's. Reverse mode asks the user's rule: `fwd(*args) ->
(out, residuals)`, then `bwd(residuals, g) ->` one cotangent per argument, both called on the
node's operands and building ordinary graph nodes, so a differentiable rule is differentiated
again (grad of grad, reverse-over-reverse `hvp`). fwd runs in the backward pass, from the
arguments (as `remat` recomputes), and its `out` is not used: the node holds fn's value.
Forward mode has no rule, as in JAX: a `jvp` through the node raises `NoForwardRule` (a
`GraphError`), and the "auto" modes of `hvp` and `jacobian` pick reverse mode.

`f = custom_jvp(fn, jvp)`: forward mode asks `jvp(primals, tangents) -> (out, tangent_out)`,
once per argument with a tangent (the other tangents zero; None for integer arguments).
Reverse mode transposes the rule, which must be linear in the tangents (JAX's requirement
too): the cotangent for argument i is the vjp, with respect to a stand-in tangent T_i, of
tangent_out. So every mode and order works where the rule is differentiable.

Both ops batch like any op (`vmap`, `jacobian`, `hessian`): the body by the vectorizer, the
rule by `vmap` itself (the batched node's rule is the rule mapped over the rows).

The rules must take every node they use from their arguments, or from nodes that outlive the
call (model parameters): `fn` may use outer nodes, but a derivative with respect to one of
them is an error naming it (pass it as an argument), and a rule that kept a node a finished
`vmap` has removed is an error too. A file holds no code: `gc.save` writes such a node with
its forward graph and without its rule; loaded, it computes fn's value, and differentiating it
raises, naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from graphc import ops
from graphc.autodiff import bodies, memo
from graphc.autodiff.batching import batch_body, built_since, vmap
from graphc.autodiff.reverse import vjp
from graphc.errors import DisconnectedError, GraphError, ShapeError
from graphc.ir import types
from graphc.ir.body import BODY, Body
from graphc.ir.graph import Node
from graphc.ir.op import Op, register
from graphc.ir.params import CALLABLES, COUNT, Callables, param
from graphc.ops.base import lift


class NoForwardRule(GraphError):
    """Forward mode (a jvp) through a `custom_vjp` function, which has a reverse rule only."""


class _CustomRule(Op):
    """fn's value from its inner graph; derivatives from a user rule held in `rule`."""

    arity: ClassVar[int | None] = None
    body: Body
    rule: Callables | None
    n_args: int

    def infer(self, *inputs):
        if self.n_args > len(inputs):
            raise ShapeError(f"{self.name}: {self.n_args} arguments declared, "
                             f"{len(inputs)} operands given")
        return bodies.check_operands(self.name, self.body, inputs)

    def forward(self, *arrays):
        return self.body.run(*arrays)[0]

    def sympy(self, node, *args):
        return bodies.sympy_of(self.body, args)

    def cost(self, node) -> float:
        return bodies.cost_of(self.body)

    def rule_fn(self, out: Node, purpose: str):
        if self.rule is None:
            raise GraphError(
                f"{self.name}: node {out.name!r} has no rule for {purpose}: it was loaded from "
                f"a file, and a file holds no code (gc.save writes a custom rule's forward "
                f"graph only); build the node again with gc.{self.name}(...) to differentiate "
                "it")
        return self.rule.fns[0]

    def closed_over(self, inputs, out: Node, i: int) -> GraphError:
        x = inputs[i]
        return GraphError(
            f"{self.name}: node {out.name!r} needs a derivative with respect to {x.name!r}, "
            "which its function uses without taking it as an argument; the custom rule gives "
            f"derivatives for the {self.n_args} argument(s) only: pass {x.name!r} as an "
            "argument")

    def batched_op(self, node, ins, m, batch_rule):
        """The node over batched operands: the body vectorized, the rule mapped by vmap."""
        flags = tuple(b for _, b in ins)
        rule = None
        if self.rule is not None:
            rule = Callables((batch_rule(self.rule.fns[0], flags, self.n_args, node.name),),
                             f"vmap({self.rule.label})")
        op = type(self)(batch_body(self.body, ins, m), rule, self.n_args)
        return node.graph.apply(op, [x for x, _ in ins])


@register
@dataclass(frozen=True)
class CustomVJP(_CustomRule):
    """A function with a user-given reverse rule (`gc.custom_vjp`)."""

    name: ClassVar[str] = "custom_vjp"
    body: Body = param(BODY)
    rule: Callables | None = param(CALLABLES, None)  # (vjp(args, g) -> cotangents,)
    n_args: int = param(COUNT, 0)  # operands beyond these are outer nodes fn used

    def bprop(self, inputs, out, g, i):
        if not bodies.reaches(self.body, i):
            return None
        if i >= self.n_args:
            raise self.closed_over(inputs, out, i)
        return self.cotangents(inputs, out, g)[i]

    def cotangents(self, inputs, out: Node, g: Node) -> list:
        """The rule's cotangents for all arguments, built once per (node, cotangent)."""
        graph = out.graph
        hit = memo.lookup(graph, "custom_vjp", out, g)
        if hit is not None:
            return hit
        rule = self.rule_fn(out, "reverse mode")
        mark = len(graph.nodes)
        cts = rule(list(inputs[:self.n_args]), g)
        check_alive(f"custom_vjp node {out.name!r}", graph, mark, cts)
        return memo.remember(graph, "custom_vjp", out, g, value=list(cts))

    def jvp(self, inputs, out, t, i):
        raise NoForwardRule(
            f"custom_vjp: node {out.name!r} has a reverse-mode rule only (as in JAX), so "
            "forward mode cannot go through it; use reverse mode (gc.grad, gc.vjp, "
            "gc.hvp(..., mode='reverse'), gc.jacobian(..., mode='reverse'); their 'auto' modes "
            "pick it), or give the function a forward rule with gc.custom_jvp")

    def batch(self, node, ins, m):
        return self.batched_op(node, ins, m, batched_vjp)


@register
@dataclass(frozen=True)
class CustomJVP(_CustomRule):
    """A function with a user-given forward rule (`gc.custom_jvp`); reverse mode transposes it."""

    name: ClassVar[str] = "custom_jvp"
    body: Body = param(BODY)
    rule: Callables | None = param(CALLABLES, None)  # (jvp(primals, tangents) -> (_, t_out),)
    n_args: int = param(COUNT, 0)

    def tangent_out(self, inputs, out: Node, i: int, t: Node) -> Node:
        """The rule's tangent of the output when argument i moves along t (the others do not),
        broadcast to the output's shape."""
        rule = self.rule_fn(out, "its derivatives")
        args = list(inputs[:self.n_args])
        tangents = [t if k == i else zero_tangent(x) for k, x in enumerate(args)]
        mark = len(out.graph.nodes)
        _, tan = rule(args, tangents)
        check_alive(f"custom_jvp node {out.name!r}", out.graph, mark, [tan])
        if not types.shape_eq(tan.shape, out.shape):
            try:
                tan = ops.broadcast_to(tan, out.shape)
            except ShapeError:
                raise ShapeError(f"custom_jvp: the rule's tangent for node {out.name!r} has "
                                 f"shape {types.fmt_shape(tan.shape)}, which does not "
                                 f"broadcast to the output's {types.fmt_shape(out.shape)}"
                                 ) from None
        return tan if tan.dtype == out.dtype else ops.cast(tan, out.dtype)

    def jvp(self, inputs, out, t, i):
        if i >= self.n_args:
            raise self.closed_over(inputs, out, i)
        return self.tangent_out(inputs, out, i, t)

    def bprop(self, inputs, out, g, i):
        if not bodies.reaches(self.body, i):
            return None
        if i >= self.n_args:
            raise self.closed_over(inputs, out, i)
        stand_in = ops.zeros_like(inputs[i])  # the tangent the linear rule is transposed at
        out.graph.rename(stand_in, f"tangent({inputs[i].name})")
        tan = self.tangent_out(inputs, out, i, stand_in)
        try:
            return vjp(tan, stand_in, g, disconnected="raise")
        except DisconnectedError:
            return None  # the rule gives this argument no tangent

    def batch(self, node, ins, m):
        return self.batched_op(node, ins, m, batched_jvp)


def zero_tangent(x: Node) -> Node | None:
    """The tangent of an argument that does not move: zeros, or None for an integer one."""
    return ops.zeros_like(x) if types.is_float(x.dtype) else None


def check_alive(where: str, graph, mark: int, results) -> None:
    """A rule's results, and everything it built, must use only nodes still in the graph: a
    node kept from a finished vmap (its stand-ins are removed) would compute nothing."""
    outs = [r for r in results if isinstance(r, Node)]
    for r in outs:
        if r.graph is not graph:
            raise GraphError(f"{where}: the rule returned node {r.name!r} of graph "
                             f"{r.graph.name!r}, not of {graph.name!r}")
    for n in [*built_since(graph, mark, outs), *outs]:
        for x in (n, *n.inputs):
            if x not in x.graph:
                raise GraphError(
                    f"{where}: the rule used node {x.name!r}, which is no longer in its graph "
                    "(a stand-in of a finished vmap, or a node rolled back): a rule must take "
                    "its nodes from its arguments or from nodes outside the function")


# -- the rules the user gives, checked; and mapped over a batch ----------------------------------
def vjp_rule(where: str, fwd, bwd):
    """`vjp(args, g)`: bwd(fwd(*args)[1], g), checked: one cotangent per argument, of its
    shape (None, or an integer argument's, for none)."""

    def rule(args, g):
        res = fwd(*args)
        if not isinstance(res, (tuple, list)) or len(res) != 2:
            raise GraphError(f"{where}: fwd must return a pair (out, residuals), got "
                             f"{_show(res)}")
        cts = bwd(res[1], g)
        if isinstance(cts, Node) and len(args) == 1:
            cts = (cts,)
        if not isinstance(cts, (tuple, list)) or len(cts) != len(args):
            raise GraphError(f"{where}: bwd must return a tuple of {len(args)} cotangent(s), "
                             f"one per argument of fn (None for none), got {_show(cts)}")
        return [_cotangent(where, k, c, a) for k, (c, a) in enumerate(zip(cts, args))]

    return rule


def _cotangent(where: str, k: int, c, a: Node) -> Node | None:
    if c is None or not types.is_float(a.dtype):
        return None
    if not isinstance(c, Node):
        try:
            c = ops.broadcast_to(lift(c, a.graph, a), a.shape)
        except (GraphError, ShapeError) as e:
            raise GraphError(f"{where}: bwd's cotangent {k} ({_show(c)}) does not fit argument "
                             f"{k} ({a.name!r}, shape {types.fmt_shape(a.shape)}): {e}") from None
    if not types.is_float(c.dtype):
        raise GraphError(f"{where}: bwd's cotangent {k} ({c.name!r}) has dtype {c.dtype}; "
                         "cotangents are floats")
    if not types.shape_eq(c.shape, a.shape):
        raise ShapeError(f"{where}: bwd's cotangent {k} has shape {types.fmt_shape(c.shape)}, "
                         f"but argument {k} ({a.name!r}) has shape {types.fmt_shape(a.shape)}")
    return c if c.dtype == a.dtype else ops.cast(c, a.dtype)


def jvp_rule(where: str, jvp):
    """`rule(primals, tangents) -> (out, tangent_out)`, checked: tangent_out a float node."""

    def rule(primals, tangents):
        res = jvp(tuple(primals), tuple(tangents))
        if not isinstance(res, (tuple, list)) or len(res) != 2:
            raise GraphError(f"{where}: jvp must return a pair (out, tangent_out), got "
                             f"{_show(res)}")
        out, tan = res
        if not isinstance(tan, Node):
            anchor = next(p for p in primals if isinstance(p, Node))
            try:
                tan = lift(tan, anchor.graph, anchor)
            except GraphError:
                raise GraphError(f"{where}: jvp's tangent_out must be a graph node, got "
                                 f"{_show(tan)}") from None
        if not types.is_float(tan.dtype):
            raise GraphError(f"{where}: jvp's tangent_out ({tan.name!r}) has dtype {tan.dtype}; "
                             "tangents are floats")
        return out, tan

    return rule


def _no_batched_closure(flags, n_args: int, node: str) -> None:
    if any(flags[n_args:]):
        raise GraphError(
            f"vmap: the custom rule of node {node!r} cannot be mapped: its function uses a node "
            "of the mapped function without taking it as an argument, and the rule cannot see "
            "it; pass it as an argument")


def batched_vjp(rule, flags: tuple, n_args: int, node: str):
    """`rule` mapped over the batch: batched arguments row by row, the cotangent of an
    argument shared by all rows summed over them."""

    def rule_b(args, g):
        _no_batched_closure(flags, n_args, node)
        in_axes = (*(0 if f else None for f in flags[:n_args]), 0)
        cts = vmap(lambda *xs: tuple(rule(list(xs[:-1]), xs[-1])), in_axes=in_axes)(*args, g)
        return [None if c is None else c if flags[k] else ops.sum(c, axis=0)
                for k, c in enumerate(cts)]

    return rule_b


def batched_jvp(rule, flags: tuple, n_args: int, node: str):
    """`rule` mapped over the batch; a tangent is batched where its argument is."""

    def rule_b(primals, tangents):
        _no_batched_closure(flags, n_args, node)
        moving = [k for k, t in enumerate(tangents) if t is not None]

        def row(*xs):
            ts = [None] * n_args
            for j, k in enumerate(moving):
                ts[k] = xs[n_args + j]
            return rule(list(xs[:n_args]), ts)[1]

        in_axes = (*(0 if f else None for f in flags[:n_args]),
                   *(0 if flags[k] else None for k in moving))
        return None, vmap(row, in_axes=in_axes)(*primals, *(tangents[k] for k in moving))

    return rule_b


def _show(v) -> str:
    text = repr(v)
    return f"{type(v).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


# -- the public functions ---------------------------------------------------------------------
def custom_vjp(fn, fwd, bwd):
    """`fn` with the reverse rule `fwd(*args) -> (out, residuals)`, `bwd(residuals, g) ->`
    a tuple of cotangents, one per argument (JAX's shape); the rules build graph nodes.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> clip_grad = gc.custom_vjp(lambda x: x * 1.0,              # identity forward,
        ...                           lambda x: (x * 1.0, None),      # gradient clipped
        ...                           lambda res, g: (gc.minimum(gc.maximum(g, -1.0), 1.0),))
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> gc.grad((clip_grad(x) * np.array([0.5, 3.0, -4.0])).sum(), x).eval(
        ...     {x: np.zeros(3)})
        array([ 0.5,  1. , -1. ])
    """
    for what, f in (("fn", fn), ("fwd", fwd), ("bwd", bwd)):
        if not callable(f):
            raise GraphError(f"custom_vjp: {what} must be callable, got {type(f).__name__}")
    name = bodies.fn_name(fn)
    rule = Callables((vjp_rule(f"custom_vjp({name})", fwd, bwd),),
                     f"{bodies.fn_name(fwd)}/{bodies.fn_name(bwd)}")

    def apply(*args):
        return bodies.trace("custom_vjp", fn, args, lambda body, n: CustomVJP(body, rule, n),
                            node_name=name)

    apply.__name__, apply.__doc__ = name, getattr(fn, "__doc__", None)
    return apply


def custom_jvp(fn, jvp):
    """`fn` with the forward rule `jvp(primals, tangents) -> (out, tangent_out)`, linear in
    the tangents (JAX's shape); reverse mode transposes it. The rule builds graph nodes.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> def log1pexp(x):                                  # stable derivative sigmoid(x)
        ...     return gc.log1p(gc.exp(x))
        >>> f = gc.custom_jvp(log1pexp, lambda p, t: (log1pexp(p[0]), gc.sigmoid(p[0]) * t[0]))
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> gc.grad(f(x).sum(), x).eval({x: np.array([0.0, 1000.0])})
        array([0.5, 1. ])
    """
    for what, f in (("fn", fn), ("jvp", jvp)):
        if not callable(f):
            raise GraphError(f"custom_jvp: {what} must be callable, got {type(f).__name__}")
    name = bodies.fn_name(fn)
    rule = Callables((jvp_rule(f"custom_jvp({name})", jvp),), bodies.fn_name(jvp))

    def apply(*args):
        return bodies.trace("custom_jvp", fn, args, lambda body, n: CustomJVP(body, rule, n),
                            node_name=name)

    apply.__name__, apply.__doc__ = name, getattr(fn, "__doc__", None)
    return apply

