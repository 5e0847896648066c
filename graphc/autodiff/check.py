"""`check_grad`: derivatives of any order against central finite differences.

Like PyTensor's verify_grad and JAX's check_grads, it compares along random directions rather
than entry by entry: order m checks that the graph's derivative of s_{m-1} along a random
direction u_m equals the finite difference of s_{m-1} along u_m, where s_0 = z (contracted with
a random cotangent if z is not scalar) and s_m = sum_k <grad(s_{m-1}, x_k), u_{m,k}>.
The tests use this same function.
"""

from __future__ import annotations

import numpy as np

from graphc import ops
from graphc.autodiff.forward import jvp
from graphc.autodiff.reverse import grad
from graphc.compile import Function
from graphc.errors import GradCheckError, GraphError
from graphc.ir import types
from graphc.ir.graph import Graph, Node

# Step and tolerance by dtype: a fourth-order difference has error O(eps**4) + O(ulp/eps).
_STEP = {"float64": 1e-3, "float32": 3e-2, "float16": 1e-1}
_TOL = {"float64": 1e-6, "float32": 3e-2, "float16": 2e-1}


_MODE_NAMES = {"reverse": "reverse", "forward": "forward", "rev": "reverse", "fwd": "forward"}


def _modes(modes) -> tuple[str, ...]:
    """API.md's names, "reverse" and "forward" (the short "rev", "fwd" are read too)."""
    given = (modes,) if isinstance(modes, str) else tuple(modes)
    if not given or not all(isinstance(m, str) and m in _MODE_NAMES for m in given):
        raise GraphError(f"check_grad: modes must name 'reverse' and/or 'forward', got "
                         f"{modes!r}")
    return tuple(_MODE_NAMES[m] for m in given)


def check_grad(z, wrt, at: dict | None = None, order: int = 1, eps: float | None = None,
               tol: float | None = None, seed: int = 0,
               modes=("reverse", "forward")) -> float:
    """Largest relative error of derivatives of orders 1..`order`; raises above `tol`.

    Each order is checked by reverse mode (the ops' `bprop` rules) and forward mode (their
    `jvp` rules) unless `modes` names only one, as in JAX's check_grads.

    `z` is a node, differentiated with respect to the nodes `wrt` at the values `at`; or, as
    JAX's check_grads, a function of nodes, with `wrt` the list of argument values (`at`
    omitted): it is applied to fresh inputs of those shapes and checked in all of them.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> err = gc.check_grad(gc.sin(x).sum(), x, at={x: np.array([0.1, 0.2, 0.3])}, order=2)
        >>> err < 1e-6
        True
        >>> gc.check_grad(lambda a, b: gc.tanh(a * b), [np.ones(2), 0.5], order=3) < 1e-6
        True
    """
    if callable(z) and not isinstance(z, Node):
        return _check_function(z, wrt, at, order, eps, tol, seed, modes)
    if not isinstance(z, Node):
        raise GraphError(f"check_grad: z must be a graph node, got {type(z).__name__}")
    targets = [wrt] if isinstance(wrt, Node) else list(wrt)
    if not isinstance(at, dict):
        raise GraphError("check_grad: `at` must map input nodes to values")
    if not isinstance(order, int) or order < 1:
        raise GraphError(f"check_grad: order must be a positive int, got {order!r}")
    modes = _modes(modes)
    feed_nodes = list(at)
    for x in targets:
        if not any(x is n for n in feed_nodes):
            raise GraphError(f"check_grad: no value for wrt node {x.name!r} in `at`")
    dtype = str(np.result_type(*(x.dtype for x in targets)))
    eps = _STEP.get(dtype, 1e-3) if eps is None else eps
    tol = _TOL.get(dtype, 1e-6) if tol is None else tol
    rng = np.random.default_rng(seed)
    g = z.graph
    worst = 0.0
    extra: dict[Node, np.ndarray] = {}  # directions, fed as inputs of the wrt nodes' shapes

    def fed(like: Node, value: np.ndarray) -> Node:
        node = g.input(g.fresh_name("check_grad_direction"), shape=like.shape, dtype=like.dtype)
        extra[node] = value
        return node

    with g.scratch():
        s = z
        if z.shape != ():
            r = rng.standard_normal(_concrete(z, at)).astype(z.dtype)
            s = ops.sum(z * fed(z, r))
        for m in range(1, order + 1):
            grads = grad(s, targets)
            directions = [rng.standard_normal(np.shape(at[x])).astype(x.dtype) for x in targets]
            u_nodes = [fed(x, u) for x, u in zip(targets, directions)]
            s_next = ops.add_n([ops.sum(gk * u) for gk, u in zip(grads, u_nodes)])
            outs = {"reverse": s_next}
            if "forward" in modes:
                outs["forward"] = jvp(s, targets, u_nodes)
            f = Function(feed_nodes + list(extra), [s, *outs.values()])
            base = [np.asarray(at[n]) for n in feed_nodes] + list(extra.values())

            def value_along(h, f=f, directions=directions):
                vals = list(base)
                for x, u in zip(targets, directions):
                    k = next(i for i, n in enumerate(feed_nodes) if n is x)
                    vals[k] = base[k] + h * u
                return float(f(*vals)[0])

            fd = (-value_along(2 * eps) + 8 * value_along(eps) - 8 * value_along(-eps)
                  + value_along(-2 * eps)) / (12 * eps)
            results = f(*base)[1:]
            for mode, value in zip(outs, results):
                if mode not in modes:
                    continue
                analytic = float(value)
                err = abs(fd - analytic) / max(1.0, abs(fd), abs(analytic))
                worst = max(worst, err)
                if not err <= tol:  # NaN fails too
                    how = "bprop (reverse" if mode == "reverse" else "jvp (forward"
                    raise GradCheckError(
                        f"check_grad: order-{m} derivative of {z.name!r} along a random "
                        f"direction is {analytic!r} by the graph's {how} mode) but {fd!r} by "
                        f"finite differences (relative error {err:.3g} > tolerance {tol:.3g})")
            s = s_next
    return worst


def _check_function(fn, args, at, order, eps, tol, seed, modes) -> float:
    """check_grad of `fn(*inputs)` in all its inputs, fed with `args`, in a graph of its own."""
    if at is not None:
        raise GraphError("check_grad: with a function, pass the argument values as the second "
                         "argument (a list) and no `at`")
    if not isinstance(args, (list, tuple)):
        args = [args]
    values = [np.asarray(a) for a in args]
    values = [v if v.dtype.kind == "f" else v.astype(np.float64) for v in values]
    name = getattr(fn, "__name__", "fn")
    g = Graph(f"check_grad({name})")
    xs = [g.input(f"x{k}", shape=v.shape, dtype=v.dtype) for k, v in enumerate(values)]
    z = fn(*xs)
    if not isinstance(z, Node) or z.graph is not g:
        raise GraphError(f"check_grad: {name} must return a node built from its arguments, "
                         f"got {type(z).__name__}")
    return check_grad(z, xs, dict(zip(xs, values)), order, eps, tol, seed, modes)


def _concrete(z: Node, at: dict) -> tuple[int, ...]:
    if types.is_static(z.shape):
        return tuple(z.shape)
    return np.shape(Function(list(at), z)(*at.values()))
