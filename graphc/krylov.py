"""The bridge to SciPy: Hessians as `LinearOperator`s and objectives for `scipy.optimize`.

Both adapters build `hvp` once, symbolically, and compile it in two parts:

- the *point* part: every node the product needs that does not depend on v (the forward pass
  and the gradient graph), evaluated once per parameter vector theta, together with the loss
  and its gradient;
- the *product* part: only the nodes that depend on v, fed with the point part's values at
  their boundary, evaluated once per `matvec`.

So a Krylov solver that asks for fifty products at one point runs the forward and gradient
passes once, not fifty times. Parameters are the wrt tensors, each flattened in C order and
concatenated in the order listed; the other inputs stay at their `at` values.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse.linalg

from graphc.autodiff import memo
from graphc.autodiff.arguments import check_float, check_node
from graphc.autodiff.second_order import MODES, hvp_and_grad
from graphc.compile.function import Function
from graphc.errors import GraphError, InputError, ShapeError
from graphc.ir import types, walk
from graphc.ir.graph import Node
from graphc.ir.op import Constant, Input


class _Program:
    """loss, gradient and Hessian-vector product of `loss` in `wrt`, compiled in two parts."""

    def __init__(self, fn: str, loss, wrt, at, mode: str):
        if mode not in MODES:
            raise GraphError(f"{fn}: mode must be one of {MODES}, got {mode!r}")
        check_node(fn, "loss", loss)
        if loss.shape != ():
            raise ShapeError(f"{fn}: loss must be a scalar, got node {loss.name!r} of shape "
                             f"{types.fmt_shape(loss.shape)}")
        check_float(loss, fn, "loss")
        g = loss.graph
        xs = [wrt] if isinstance(wrt, Node) else list(wrt) if isinstance(
            wrt, (list, tuple)) else None
        if not xs:
            raise GraphError(f"{fn}: wrt must be an input node or a non-empty list of them, "
                             f"got {wrt!r}")
        if not isinstance(at, dict):
            raise GraphError(f"{fn}: `at` must map input nodes to values, got "
                             f"{type(at).__name__}")
        feed: dict[Node, np.ndarray] = {}
        for key, value in at.items():
            node = g[key] if isinstance(key, str) else key
            check_node(fn, "a key of `at`", node, g)
            if not isinstance(node.op, Input):
                raise GraphError(f"{fn}: `at` key {node.name!r} is not an input node")
            feed[node] = value
        for k, x in enumerate(xs):
            check_node(fn, f"wrt[{k}]", x, g)
            check_float(x, fn, f"wrt node {x.name!r}")
            if not isinstance(x.op, Input):
                raise GraphError(f"{fn}: wrt node {x.name!r} must be an input node (a "
                                 f"parameter fed by value), got a {x.op.name} node")
            if x not in feed:
                raise GraphError(f"{fn}: `at` has no value for wrt node {x.name!r}")
        if len(set(xs)) != len(xs):
            raise GraphError(f"{fn}: a wrt node is listed twice")
        self.fn, self.xs = fn, xs
        self.feed_nodes = list(feed)
        # A throwaway call checks every value (shapes, dtypes, symbolic sizes) up front.
        values = Function(self.feed_nodes, self.xs)(*feed.values())
        self.values = [np.array(feed[n], dtype=n.dtype) for n in self.feed_nodes]
        self.shapes = [v.shape for v in values]
        self.sizes = [v.size for v in values]
        self.size = int(sum(self.sizes))
        self.dtype = np.result_type(*(x.dtype for x in xs))
        self.wrt_slot = [next(k for k, n in enumerate(self.feed_nodes) if n is x) for x in xs]
        self.x0 = np.concatenate([v.ravel() for v in values]).astype(np.float64)
        # the vector inputs and product nodes built for (loss, wrt, mode) are reused by every
        # later operator or objective of the same loss: the graph does not grow per call
        built = memo.lookup(g, "krylov", loss, xs, mode)
        with g.transaction(), g.role("grad"):
            if built is None:
                vs = [g.input(g.fresh_name(f"v({x.name})"), x.shape, x.dtype) for x in xs]
                gs, hv, mode_used = hvp_and_grad(loss, xs, vs, mode)
                boundary, hv = _split_at_point(hv, vs)
                built = (vs, gs, hv, boundary, mode_used)
            vs, gs, hv, boundary, self.mode = built
            missing = [n for n in walk.ancestors([loss, *gs, *boundary.values()])
                       if isinstance(n.op, Input) and n not in feed]
            if missing:
                raise InputError(f"{fn}: `at` has no value for input {missing[0].name!r} "
                                 f"(shape {types.fmt_shape(missing[0].shape)}), which the "
                                 "loss needs")
            self.point = Function(self.feed_nodes, [loss, *gs, *boundary.values()])
            self.product = Function([*boundary.keys(), *vs], hv)
        memo.remember(g, "krylov", loss, xs, mode, value=built)
        self.n_grad = len(gs)
        self._theta_key: bytes | None = None
        self._point_values: list | None = None

    def at_point(self, theta) -> list:
        """[loss, *grads, *boundary values] at theta; the last point's are cached."""
        theta = self.check_theta(theta, "theta")
        key = theta.tobytes()
        if key != self._theta_key:
            values = list(self.values)
            for slot, part, shape in zip(self.wrt_slot, self.split(theta), self.shapes):
                values[slot] = part.reshape(shape)
            self._point_values = self.point(*values)
            self._theta_key = key
        return self._point_values

    def fun(self, theta) -> float:
        return float(self.at_point(theta)[0])

    def jac(self, theta) -> np.ndarray:
        return _flat(self.at_point(theta)[1:1 + self.n_grad], copy=True)

    def hessp_at(self, point: list, p) -> np.ndarray:
        """H p, flattened; a complex p gives H Re(p) + i H Im(p) (the Hessian is real)."""
        p = self.check_theta(p, "the vector", complex_ok=True)
        if p.dtype.kind == "c":
            re, im = self.hessp_at(point, p.real), self.hessp_at(point, p.imag)
            return re + 1j * im
        vs = [part.reshape(shape) for part, shape in zip(self.split(p), self.shapes)]
        return _flat(self.product(*point[1 + self.n_grad:], *vs), copy=False)

    def split(self, theta: np.ndarray) -> list[np.ndarray]:
        cuts = np.cumsum(self.sizes)[:-1]
        return [part.astype(x.dtype, copy=False) for part, x in
                zip(np.split(theta, cuts), self.xs)]

    def check_theta(self, theta, what: str, complex_ok: bool = False) -> np.ndarray:
        """`theta` as a float64 (or, if `complex_ok`, complex128) vector of the right size;
        an (n, 1) column is accepted, as SciPy passes one to `matvec`."""
        kinds = "biufc" if complex_ok else "biuf"
        expected = (f"{what} must hold {'real or complex' if complex_ok else 'real'} numbers "
                    f"in shape ({self.size},) (the flattened "
                    + ", ".join(repr(x.name) for x in self.xs) + ")")
        try:
            arr = np.asarray(theta)
        except (TypeError, ValueError) as e:  # a ragged list
            raise InputError(f"{self.fn}: {expected}, got {type(theta).__name__} that does not "
                             f"convert to an array ({e})") from None
        if arr.dtype.kind == "O":  # Python objects: numbers only (None would become NaN)
            items = arr.ravel().tolist()
            bad = [v for v in items if not isinstance(v, numbers.Number)]
            if bad:
                raise InputError(f"{self.fn}: {expected}, got {type(theta).__name__} holding "
                                 f"{type(bad[0]).__name__} {bad[0]!r:.40}, not a number")
            arr = np.array(items).reshape(arr.shape)
        if arr.dtype.kind not in kinds:
            raise InputError(f"{self.fn}: {expected}, got an array of dtype {arr.dtype} "
                             f"({type(theta).__name__})")
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.shape != (self.size,):
            raise InputError(f"{self.fn}: {expected}, got shape {np.shape(theta)}")
        return arr.astype(np.complex128 if arr.dtype.kind == "c" else np.float64, copy=False)

    def operator(self, point: list) -> scipy.sparse.linalg.LinearOperator:
        return HessianOperator(self, point)


class HessianOperator(scipy.sparse.linalg.LinearOperator):
    """A symmetric `LinearOperator` whose products are Hessian-vector products at one point.

    A vector of the wrong size or of non-numbers raises `gc.InputError` (a ValueError, as
    SciPy expects) that says which flattened parameters the operator acts on. A complex vector
    gives the complex product H Re(v) + i H Im(v) (the Hessian is real), as `eigsh` or `gmres`
    with a complex shift expect; an (n, 1) column gives an (n, 1) column.
    """

    def __init__(self, program: _Program, point: list):
        super().__init__(np.float64, (program.size, program.size))
        self._program, self._point = program, point

    def _matvec(self, p):
        return self._program.hessp_at(self._point, p)

    _rmatvec = _matvec

    def matvec(self, x):
        arr = self._program.check_theta(x, "the vector", complex_ok=True)
        return super().matvec(arr[:, None] if np.ndim(x) == 2 else arr)

    rmatvec = matvec


def _flat(parts: list[np.ndarray], copy: bool) -> np.ndarray:
    """The parts flattened and joined as one fresh float64 vector (one part: no extra copy
    unless `copy`, the compiled function's outputs being fresh arrays already)."""
    if len(parts) == 1:
        return np.array(np.ravel(parts[0]), dtype=np.float64, copy=copy or None)
    return np.concatenate([np.ravel(p) for p in parts], dtype=np.float64)


def _split_at_point(hv: list[Node], vs: list[Node]) -> tuple[dict[Node, Node], list[Node]]:
    """Rebuild the part of `hv` that depends on `vs` on top of new input nodes that stand for
    the values it reads from the rest (the point part), so each part compiles on its own.

    Returns {placeholder input: point node it stands for} and the rebuilt products.
    """
    g = hv[0].graph
    needed = walk.ancestors(hv)
    varying = set(walk.descendants_within(needed, set(vs)))
    outputs = set(hv)
    users = walk.consumers(needed)
    table: dict[Node, Node] = {v: v for v in vs}
    boundary: dict[Node, Node] = {}
    for n in needed:
        if n in varying or isinstance(n.op, Constant):
            continue
        if n in outputs or any(c in varying for c, _ in users[n]):
            holder = g.input(g.fresh_name(f"point({n.name})"), n.shape, n.dtype)
            table[n] = holder
            boundary[holder] = n
    for n in needed:
        if n in varying and n not in table:
            table[n] = g.apply(n.op, [table.get(x, x) for x in n.inputs], name=n.name)
    return boundary, [table[h] for h in hv]


def hessian_operator(loss, wrt, at: dict, mode: str = "auto"):
    """The Hessian of `loss` in `wrt` at `at`, as a SciPy `LinearOperator` for cg/eigsh/minres.

    Examples:
        >>> import numpy as np, scipy.sparse.linalg as sla, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> H = gc.hessian_operator((gc.exp(x) * x).sum(), x, at={x: np.zeros(3)})
        >>> H.shape, H @ np.ones(3)
        ((3, 3), array([2., 2., 2.]))
        >>> sla.cg(H, np.ones(3))[0]
        array([0.5, 0.5, 0.5])
    """
    prog = _Program("hessian_operator", loss, wrt, at, mode)
    return prog.operator(prog.at_point(prog.x0))


class Objective:
    """`fun`, `jac`, `hessp` and `hess_operator` of a loss over its flattened parameters.

    The loss, gradient and everything the Hessian-vector product needs apart from v are
    computed once per theta (the last theta is cached), so `fun` then `jac` then many `hessp`
    at one point cost one forward-and-gradient pass plus one product pass each.
    """

    def __init__(self, program: _Program):
        self._prog = program
        self.x0: np.ndarray = program.x0.copy()
        self.mode: str = program.mode

    def __repr__(self) -> str:
        return (f"<Objective over {', '.join(x.name for x in self._prog.xs)}: "
                f"{self._prog.size} parameters, hvp mode {self.mode!r}>")

    def fun(self, theta) -> float:
        """The loss at theta."""
        return self._prog.fun(theta)

    def jac(self, theta) -> np.ndarray:
        """The gradient at theta, flattened."""
        return self._prog.jac(theta)

    def hessp(self, theta, p) -> np.ndarray:
        """The Hessian at theta times p."""
        return self._prog.hessp_at(self._prog.at_point(theta), p)

    def hess_operator(self, theta) -> scipy.sparse.linalg.LinearOperator:
        """The Hessian at theta as a `LinearOperator` (the point part computed now, once)."""
        return self._prog.operator(self._prog.at_point(theta))


def objective(loss, wrt, at: dict, mode: str = "auto") -> Objective:
    """An object with `x0`, `fun`, `jac`, `hessp`, `hess_operator` for `scipy.optimize`.

    Examples:
        >>> import numpy as np, scipy.optimize, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> loss = ((x - np.array([1.0, -2.0])) ** 2).sum() + gc.exp(x[0])
        >>> obj = gc.objective(loss, x, at={x: np.zeros(2)})
        >>> res = scipy.optimize.minimize(obj.fun, obj.x0, jac=obj.jac, hessp=obj.hessp,
        ...                               method="trust-krylov")
        >>> res.success, res.x.round(4)
        (True, array([ 0.3149, -2.    ]))
    """
    return Objective(_Program("objective", loss, wrt, at, mode))
