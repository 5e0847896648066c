"""Implicit differentiation: `gc.fixed_point` and `gc.root`, ops that solve an equation at run
time and are differentiated by the implicit function theorem, not through their iterations.

`fixed_point(f, x0, params)` solves x = f(x, p) by iterating f; `root(F, x0, params)` solves
F(x, p) = 0 by Newton's method. Each builds its function's body once, on the inputs of an
inner graph (outer nodes it uses are captured as further parameters, like `gc.remat`'s), and
adds one node over (x0, params..., captures...). The body is compiled once (`Body.function`)
and run as many times as the solve needs.

The derivative rules. At the solution x*, write the equation as x = y(x, p) + (x - A x) for
fixed points (y = f, A = I - df/dx) and for roots (y = -F, A = dF/dx); either way
A dx* = dy/dp dp, so

    tangent:    x*' = A^{-1} (dy/dp p')                      (jvp, operand by operand)
    cotangent:  w = A^{-T} g,  g_p = (dy/dp)^T w              (bprop; w shared by all params)

with A and y built as graph nodes from the body (`gc.jacobian` of a copy of it at x*), inside
`Implicit` nodes: blocks like `gc.remat`'s whose operands are x* (the solve's own node), the
params and g (or t). So differentiating a rule again differentiates the body's derivatives
and, through x*, the solve itself: every order works where f is smooth at the solution.

x0 is not differentiated: the solution does not depend on where the iteration starts (its
gradient is zero). The linear solve is `inv(A)` applied to a vector (`gc.linalg.inv`); it is
dense, so the rules suit small and medium x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graphc import ops
from graphc.autodiff.forward import jvp as forward_jvp
from graphc.autodiff.rematerialize import Remat
from graphc.autodiff.reverse import vjp
from graphc.autodiff.second_order import jacobian
from graphc.errors import GraphError, ShapeError
from graphc.ir import types, walk
from graphc.ir.body import BODY, Body
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Op, register
from graphc.ir.params import Kind, param
from graphc.ops.base import lift


class _Tolerance(Kind):
    name = "a finite float >= 0"

    def check(self, v, where):
        if type(v) is not float or not math.isfinite(v) or v < 0:
            self.fail(v, where)


class _Steps(Kind):
    name = "an int from 1 to 10**9"

    def check(self, v, where):
        if type(v) is not int or not 1 <= v <= 10**9:
            self.fail(v, where)


TOLERANCE = _Tolerance()
STEPS = _Steps()


class NotConverged(ArithmeticError):
    """A solve that did not converge; the compiled function reports it as `gc.InputError`
    naming the node, its op and the line that built it."""


@register
@dataclass(frozen=True)
class Implicit(Remat):
    """A block of an implicit-function rule (a linear solve with the Jacobian at a solution),
    computed from its operands like `remat`'s, and differentiated the same way."""

    name: ClassVar[str] = "implicit"


class _Solve(Op):
    """What `FixedPoint` and `Root` share: the operands (x0, params..., captures...), the
    shape rule, and the derivative rules of the implicit function theorem."""

    arity: ClassVar[int | None] = None
    outputs: ClassVar[int] = 1  # the body's outputs

    def infer(self, *inputs):
        params = self.body.graph.inputs
        if len(inputs) != len(params):
            raise ShapeError(f"{self.name}: the body {self.body!r} takes {len(params)} "
                             f"operands, got {len(inputs)}")
        for k, (x, p) in enumerate(zip(inputs, params)):
            if not types.shape_eq(x.shape, p.shape) or x.dtype != p.dtype:
                raise ShapeError(
                    f"{self.name}: operand {k} ({x.name!r}) is {types.fmt_shape(x.shape)} "
                    f"{x.dtype}, the body's input {p.name!r} is {types.fmt_shape(p.shape)} "
                    f"{p.dtype}")
        if len(self.body.outputs) != self.outputs:
            raise GraphError(f"{self.name}: the body {self.body!r} has "
                             f"{len(self.body.outputs)} outputs, expected {self.outputs}")
        x, y = params[0], self.body.outputs[0]
        if not types.shape_eq(x.shape, y.shape) or x.dtype != y.dtype:
            raise ShapeError(f"{self.name}: the body maps x of {types.fmt_shape(x.shape)} "
                             f"{x.dtype} to {types.fmt_shape(y.shape)} {y.dtype}; they must "
                             "match")
        if not types.is_float(x.dtype):
            raise ShapeError(f"{self.name}: x must be a float, got {x.dtype}")
        return x.shape, x.dtype

    def sympy(self, node, *args):
        raise GraphError(f"to_sympy: {self.name} ({node.name!r}) solves its equation by "
                         "iteration; it has no closed form")

    def cost(self, node) -> float:  # one evaluation of the body; the steps are unknown
        return float(sum(n.op.cost(n) for n in walk.ancestors(self.body.outputs)))

    # -- the implicit function theorem, as graph nodes ---------------------------------------
    def linearize(self, h: Graph, x: Node, params: list[Node]) -> tuple[Node, Node]:
        """In `h`, over the body's inputs `x` and `params`: (y, A) with A dx* = dy/dp dp at a
        solution x*, A as an (n, n) matrix."""
        raise NotImplementedError

    def residual(self, h: Graph, x: Node, params: list[Node]) -> Node:
        """In `h`: y alone (the node whose parameter derivatives the rules take)."""
        raise NotImplementedError

    def bprop(self, inputs, out, g, i):
        if i == 0 or not self._reaches(i):
            return None  # x0: the solution does not depend on it
        w = self._cotangent(inputs, out, g)
        h, x, params = self._rule_graph(f"vjp{i}", out)
        w_in = h.input(h.fresh_name("w"), out.shape, out.dtype)
        gp = vjp(self.residual(h, x, params), params[i - 1], w_in)
        return out.graph.apply(Implicit(Body(h, [gp])), [out, *inputs[1:], w])

    def jvp(self, inputs, out, t, i):
        if i == 0 or not self._reaches(i):
            return None
        h, x, params = self._rule_graph(f"jvp{i}", out)
        t_in = h.input(h.fresh_name("tangent"), inputs[i].shape, inputs[i].dtype)
        y, A = self.linearize(h, x, params)
        u = forward_jvp(y, params[i - 1], t_in)
        n = _size(self.name, out)
        x_dot = ops.reshape(ops.matmul(ops.linalg.inv(A), ops.reshape(u, (n,))), out.shape)
        return out.graph.apply(Implicit(Body(h, [x_dot])), [out, *inputs[1:], t])

    def _cotangent(self, inputs, out, g) -> Node:
        """w = A^{-T} g at the solution: one node per (solution, cotangent), shared by the
        gradients of all the params."""
        key = ("implicit_cotangent", out.index, g.index)
        hit = out.graph.cache.get(key)
        if hit is not None and hit[0] is out and hit[1] is g and hit[2] in out.graph:
            return hit[2]
        h, x, params = self._rule_graph("cotangent", out)
        ct = h.input(h.fresh_name("cotangent"), out.shape, out.dtype)
        _, A = self.linearize(h, x, params)
        n = _size(self.name, out)
        w = ops.reshape(ops.matmul(ops.reshape(ct, (n,)), ops.linalg.inv(A)), out.shape)
        node = out.graph.apply(Implicit(Body(h, [w])), [out, *inputs[1:], g])
        out.graph.cache.put(key, (out, g, node), [node])
        return node

    def _rule_graph(self, rule: str, out: Node) -> tuple[Graph, Node, list[Node]]:
        """A new inner graph with inputs like the body's: x (standing for x*) and params."""
        h = Graph(f"{self.body.graph.name}.{rule}")
        x = h.input("x", out.shape, out.dtype)
        params = [h.input(p.name, p.shape, p.dtype) for p in self.body.graph.inputs[1:]]
        return h, x, params

    def _reaches(self, i: int) -> bool:
        """Whether body input i reaches the body's first output through differentiable ops."""
        x = self.body.graph.inputs[i]
        if not types.is_float(x.dtype):
            return False
        y = self.body.outputs[0]
        reached = walk.descendants_within(walk.ancestors([y]), {x},
                                          through=lambda n: n.op.differentiable)
        return any(n is y for n in reached)

    def _copy(self, h: Graph, inputs: list[Node], *ks: int) -> list[Node]:
        """The body's outputs `ks` rebuilt in `h` over `inputs` (their ancestors only)."""
        wanted = [self.body.outputs[k] for k in ks]
        new = dict(zip(self.body.graph.inputs, inputs))
        for n in walk.ancestors(wanted):
            if n not in new:
                new[n] = h.append_copy(n, [new[x] for x in n.inputs])
        return [new[o] for o in wanted]


def _tolerance(tol: float, dtype: np.dtype) -> float:
    """`tol`, raised to 8 machine epsilons of x's dtype (1.8e-15 in float64, 9.5e-7 in
    float32): closer than that, rounding can keep an iteration from ever meeting it."""
    return max(tol, 8.0 * float(np.finfo(dtype).eps))


def _size(fn: str, x: Node) -> int:
    n = types.size(x.shape)
    if not isinstance(n, int):
        raise GraphError(f"{fn}: differentiating needs x of static shape, got "
                         f"{types.fmt_shape(x.shape)} (the rule solves an n x n system)")
    return n


@register
@dataclass(frozen=True)
class FixedPoint(_Solve):
    """x* = f(x*, p), found by iterating x <- f(x, p) from x0 at run time. It stops when
    max|f(x) - x| <= tol * (1 + max|f(x)|) (tol at least 8 epsilons of x's dtype) and
    returns that f(x); not converging within max_steps raises at call time. Differentiated
    implicitly: A = I - df/dx, y = f."""

    name: ClassVar[str] = "fixed_point"
    body: Body = param(BODY)
    tol: float = param(TOLERANCE, 1e-10)
    max_steps: int = param(STEPS, 1000)

    def forward(self, x0, *rest):
        fn = self.body.function()
        x = np.array(x0, dtype=self.body.outputs[0].dtype)
        tol = _tolerance(self.tol, x.dtype)
        diff = math.inf
        for _ in range(self.max_steps):
            (fx,) = fn(x, *rest)
            with np.errstate(invalid="ignore", over="ignore"):
                diff = float(np.max(np.abs(fx - x), initial=0.0))
                scale = 1.0 + float(np.max(np.abs(fx), initial=0.0))
            x = fx
            if diff <= tol * scale:
                return x
            if not math.isfinite(diff):
                break
        raise NotConverged(
            f"fixed_point of {self.body.graph.name!r} did not converge in {self.max_steps} "
            f"steps: max|f(x) - x| = {diff:.3g} > tol = {self.tol:g} (relative to 1 + max|x|)"
            "; raise max_steps, loosen tol, or check that f is a contraction near the "
            "solution")

    def linearize(self, h, x, params):
        (fx,) = self._copy(h, [x, *params], 0)
        n = _size(self.name, x)
        J = ops.reshape(jacobian(fx, x), (n, n))
        eye = h.constant(np.eye(n, dtype=x.dtype))
        return fx, eye - J

    def residual(self, h, x, params):
        return self._copy(h, [x, *params], 0)[0]


@register
@dataclass(frozen=True)
class Root(_Solve):
    """x* with F(x*, p) = 0, found by Newton's method from x0 at run time: the body computes
    F and its Jacobian dF/dx (an (n, n) matrix, built by `gc.jacobian` when the body was
    made), and each step solves J dx = F densely. It stops when max|dx| <= tol * (1 +
    max|x|). Differentiated implicitly: A = dF/dx, y = -F."""

    name: ClassVar[str] = "root"
    outputs: ClassVar[int] = 2
    body: Body = param(BODY)
    tol: float = param(TOLERANCE, 1e-10)
    max_steps: int = param(STEPS, 100)

    def infer(self, *inputs):
        shape, dtype = super().infer(*inputs)
        J = self.body.outputs[1]
        n = types.size(shape)
        if not types.shape_eq(J.shape, (n, n)) or J.dtype != dtype:
            raise ShapeError(f"root: the body's Jacobian is {types.fmt_shape(J.shape)} "
                             f"{J.dtype}, expected {types.fmt_shape((n, n))} {dtype}")
        return shape, dtype

    def forward(self, x0, *rest):
        fn = self.body.function()
        x = np.array(x0, dtype=self.body.outputs[0].dtype)
        tol = _tolerance(self.tol, x.dtype)
        step = math.inf
        for k in range(self.max_steps):
            F, J = fn(x, *rest)
            if not np.all(np.isfinite(F)) or not np.all(np.isfinite(J)):
                break
            try:
                dx = np.linalg.solve(J, F.reshape(-1)).reshape(x.shape)
            except np.linalg.LinAlgError:
                raise NotConverged(f"root of {self.body.graph.name!r}: the Jacobian dF/dx is "
                                   f"singular at step {k}; start from another x0") from None
            x = x - dx
            with np.errstate(invalid="ignore", over="ignore"):
                step = float(np.max(np.abs(dx), initial=0.0))
                scale = 1.0 + float(np.max(np.abs(x), initial=0.0))
            if step <= tol * scale:
                return x
            if not math.isfinite(step):
                break
        raise NotConverged(
            f"root of {self.body.graph.name!r} did not converge in {self.max_steps} Newton "
            f"steps: the last step was {step:.3g} > tol = {self.tol:g} (relative to 1 + "
            "max|x|); start closer to the root, raise max_steps or loosen tol")

    def linearize(self, h, x, params):
        F, J = self._copy(h, [x, *params], 0, 1)
        return -F, J

    def residual(self, h, x, params):
        return -self._copy(h, [x, *params], 0)[0]


# -- the builders ----------------------------------------------------------------------------
def _build(kind: str, fn, x0, params, tol, max_steps):
    """One `kind` node over (x0, params..., captures...) whose body is `fn`'s, called once."""
    if not callable(fn):
        raise GraphError(f"{kind}: the function must be callable, got {type(fn).__name__}")
    single = isinstance(params, Node) or not isinstance(params, (list, tuple))
    plist = [params] if single else list(params)
    graph = next((a.graph for a in [x0, *plist] if isinstance(a, Node)), None)
    if graph is None:
        raise GraphError(f"{kind}: x0 or one of params must be a graph node (graphc has no "
                         "default graph)")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) \
            or tol < 0:
        raise GraphError(f"{kind}: tol must be a finite number >= 0, got {tol!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise GraphError(f"{kind}: max_steps must be an int >= 1, got {max_steps!r}")
    name = getattr(fn, "__name__", "f").strip("<>")  # "<lambda>" -> "lambda"
    name = name if name.isidentifier() else "f"
    with graph.transaction():
        x0 = lift(x0, graph)
        plist = [lift(p, graph) for p in plist]
        for k, a in enumerate([x0, *plist]):
            if a.graph is not graph:
                raise GraphError(f"{kind}: {'x0' if k == 0 else f'params[{k - 1}]'} "
                                 f"({a.name!r}) belongs to graph {a.graph.name!r}, not "
                                 f"{graph.name!r}")
        if not types.is_float(x0.dtype):
            raise GraphError(f"{kind}: x0 must be a float node or array, got {x0.dtype}")
        with graph.inner(f"{kind}_{name}") as h:
            x = h.input("x", x0.shape, x0.dtype)
            inner = [h.input(h.fresh_name(p.name), p.shape, p.dtype) for p in plist]
            out = fn(x, inner[0] if single else type(params)(inner))
            if not isinstance(out, Node):
                raise GraphError(f"{kind}: {name} must return a graph node, got "
                                 f"{type(out).__name__}")
            if out.graph is not h:
                out = h.capture(out) if out.graph in h.enclosing() else out
                if out.graph is not h:
                    raise GraphError(f"{kind}: {name} returned node {out.name!r} of graph "
                                     f"{out.graph.name!r}, which is not around the solve")
            if not types.shape_eq(out.shape, x.shape) or out.dtype != x.dtype:
                raise ShapeError(f"{kind}: {name}(x, params) is {types.fmt_shape(out.shape)} "
                                 f"{out.dtype}, but x (x0) is {types.fmt_shape(x.shape)} "
                                 f"{x.dtype}; they must match")
            outputs = [out]
            if kind == "root":
                n = types.size(x.shape)
                if not isinstance(n, int):
                    raise GraphError(f"root: x must have a static shape (Newton solves an "
                                     f"n x n system), got {types.fmt_shape(x.shape)}")
                outputs.append(ops.reshape(jacobian(out, x), (n, n)))
        captured = [o for o, _ in sorted(h.captured.items(), key=lambda kv: kv[1].index)]
        op = (FixedPoint if kind == "fixed_point" else Root)(
            Body(h, outputs), float(tol), max_steps)
        return graph.apply(op, [x0, *plist, *captured])


def fixed_point(f, x0, params, tol=1e-10, max_steps=1000):
    """x* = f(x*, params), found at run time by iterating from x0; its derivatives with
    respect to params come from the implicit function theorem (one linear solve with
    I - df/dx at x*), not from the iterations. `f(x, params)` builds nodes and is called once;
    params is a node or a list/tuple of nodes, passed to f the same way. x0 is not
    differentiated. Not converging in max_steps raises gc.InputError when the graph runs.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> p = g.input("p")
        >>> x = gc.fixed_point(lambda x, p: gc.cos(p * x), 0.0, p)
        >>> feed = {p: 0.8}
        >>> xs = float(x.eval(feed))
        >>> round(xs, 6), bool(np.isclose(xs, np.cos(0.8 * xs)))
        (0.801418, True)
        >>> dx = float(gc.grad(x, p).eval(feed))       # -x sin(px) / (1 + p sin(px))
        >>> bool(np.isclose(dx, -xs * np.sin(0.8 * xs) / (1 + 0.8 * np.sin(0.8 * xs))))
        True
    """
    return _build("fixed_point", f, x0, params, tol, max_steps)


def root(F, x0, params, tol=1e-10, max_steps=100):
    """x* with F(x*, params) = 0, found at run time by Newton's method from x0 (a dense solve
    with F's Jacobian, which `gc.jacobian` builds once from F's body); derivatives with respect
    to params by the implicit function theorem (one solve with dF/dx at x*). F(x, params) must
    have x's shape; params as in `fixed_point`; x0 is not differentiated.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a")
        >>> r = gc.root(lambda x, a: x * x * x - a, 1.0, a)     # the cube root of a
        >>> float(r.eval({a: 27.0})), round(float(gc.grad(r, a).eval({a: 27.0})), 6)
        (3.0, 0.037037)
    """
    return _build("root", F, x0, params, tol, max_steps)

