"""The bridge to SciPy: Hessians as `LinearOperator`s and objectives for `scipy.optimize`.

Both adapters build `hvp` once, symbolically, and compile it in two parts:

- the *point* part: every node the product needs that does not depend on v (the forward pass
  and the gradient graph), evaluated once per point, together with the loss and its gradient;
- the *product* part: only the nodes that depend on v, plus the views (transposes, reshapes,
  slices) of point values they read, fed with the point part's values at their boundary and
  with the inputs themselves, evaluated once per `matvec`.

So a Krylov solver that asks for fifty products at one point runs the forward and gradient
passes once, not fifty times. Parameters are the wrt tensors, each flattened in C order and
concatenated in the order listed; the other inputs (the data) stay at their `at` values.

Both parts are built and compiled once per (loss, wrt, mode) and remembered in the graph
(`graphc.autodiff.memo`): every later operator or objective of that loss reuses them, and
`HessianOperator.update` and `Objective.with_data` move an existing one to new values (a new
minibatch, new parameters) without building a node or compiling anything.

Dask arrays in `at` (data spread over a cluster) compile the same two parts on the dask
backend (graphc/compile/xp_backend.py): the point part is computed once per point and its
values persisted on the workers, so each product ships only the vector out and the partial
products back (docs/scaling.md).
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse.linalg

from graphc import ops
from graphc.autodiff import memo
from graphc.autodiff.arguments import check_float, check_node
from graphc.autodiff.second_order import MODES, hvp_and_grad
from graphc.compile import fusion, xp_backend
from graphc.compile import inputs as input_checks
from graphc.compile.function import Function
from graphc.errors import GraphError, InputError, ShapeError
from graphc.ir import types, walk
from graphc.ir.graph import Node
from graphc.ir.op import Constant, Input
from graphc.ops.elementwise import AddN, Mul, Neg, StopGradient
from graphc.ops.shape import BroadcastTo, ExpandDims, GetItem, Reshape, Squeeze, Transpose

_F64 = np.dtype(np.float64)
# Views NumPy makes in constant time: the product part makes them again from the values it is
# fed rather than have them cross the boundary (a compiled function copies an output that is a
# view). broadcast_to is not among them: np.broadcast_to costs more per product
# than feeding the broadcast array, made once per point.
_VIEWS = (Reshape, Transpose, ExpandDims, Squeeze, GetItem, StopGradient)
_RECOMPUTED = 16  # at most this many nodes are made again to spare the product one fed array


class _Program:
    """Loss, gradient and Hessian-vector product of `loss` in `wrt`, compiled in two parts.

    Built once per (loss, wrt, mode) and shared by every operator and objective of that loss;
    it holds no values: those live in the operators and objectives (`values`, one array per
    node of `inputs`).
    """

    def __init__(self, loss: Node, xs: list[Node], vs: list[Node], gs: list[Node],
                 hv: list[Node], boundary: dict[Node, Node], mode: str, backend: str = "numpy"):
        self.xs, self.mode, self.backend = xs, mode, backend
        self.n_grad = len(gs)
        point_outputs = [loss, *gs, *boundary.values()]
        skip = set(vs) | set(boundary)
        # the inputs that the product reads itself (data, parameters: a matmul's operand)
        direct = [n for n in walk.ancestors(hv) if isinstance(n.op, Input) and n not in skip]
        needed = {n for n in walk.ancestors(point_outputs) if isinstance(n.op, Input)}
        needed.update(direct, xs)
        self.inputs: list[Node] = sorted(needed, key=lambda n: n.index)
        self.slot: dict[Node, int] = {n: k for k, n in enumerate(self.inputs)}
        self.wrt_slots = [self.slot[x] for x in xs]
        self.direct_slots = [self.slot[n] for n in direct]
        self.point = Function(self.inputs, point_outputs, backend=backend)
        self.product = Function([*boundary, *direct, *vs], hv, backend=backend)

    # -- values -------------------------------------------------------------------------------
    def feed(self, fn: str, at, base: list | None = None, params: bool = True) -> list:
        """The values of `self.inputs`: `base` (None: none yet) with `at`'s entries put in.

        Keys are input nodes or their names. Each value is checked as a compiled function
        checks its inputs (shape, symbolic sizes bound consistently across all of them, a
        dtype that casts safely) and converted; a value that might share memory with the
        caller's array is copied, so later writes to it change nothing here. Inputs the loss
        does not need are checked and then dropped. Raises before anything is changed.
        """
        if not isinstance(at, dict):
            raise GraphError(f"{fn}: `at` must map input nodes (or their names) to values, "
                             f"got {type(at).__name__}")
        g = self.xs[0].graph
        new: dict[Node, object] = {}
        for key, value in at.items():
            node = _input_node(fn, g, key)
            if not params and node in self.slot and self.slot[node] in self.wrt_slots:
                raise InputError(f"{fn}: {node.name!r} is a parameter (a wrt node): its "
                                 "values come from theta, not from `at`")
            new[node] = value
        if base is None:
            for x in self.xs:
                if x not in new:
                    raise GraphError(f"{fn}: `at` has no value for wrt node {x.name!r}")
            for n in self.inputs:
                if n not in new:
                    raise InputError(f"{fn}: `at` has no value for input {n.name!r} (shape "
                                     f"{types.fmt_shape(n.shape)}), which the loss needs")
        values = list(base) if base is not None else [None] * len(self.inputs)
        extra = [n for n in new if n not in self.slot]
        for n in self.inputs:
            if n in new:
                values[self.slot[n]] = new[n]
        try:
            arrays, _ = input_checks.check_values(
                (*self.inputs, *extra), [*values, *(new[n] for n in extra)],
                convert=None if self.backend == "numpy" else xp_backend.lazy_check)
        except InputError as e:
            raise InputError(f"{fn}: {e}") from None
        for n, value in new.items():
            k = self.slot.get(n)
            if k is not None:
                arr = arrays[k]
                if arr is value or (isinstance(value, np.ndarray)
                                    and np.may_share_memory(arr, value)):
                    arr = arr.copy()
                values[k] = _canonical(arr, n.dtype)
        if base is not None:
            for x, k in zip(self.xs, self.wrt_slots):
                if values[k].shape != base[k].shape:
                    raise InputError(
                        f"{fn}: wrt node {x.name!r} must keep its shape {base[k].shape} (the "
                        f"operator acts on {_length(self, base)} numbers), got "
                        f"{values[k].shape}")
        return values

    def evaluate(self, fn: str, values: list) -> tuple[list, tuple]:
        """The point part at `values`: ([loss, *grads, ...], the product's leading args)."""
        try:
            if self.backend == "dask":  # computed once, the product's values kept on workers
                out = xp_backend.persist_point(self.point(*values, compute=False),
                                               1 + self.n_grad)
            else:
                out = self.point(*values)
        except InputError as e:
            raise InputError(f"{fn}: {e}") from None
        fed = out[1 + self.n_grad:]
        args = (*(_canonical(a, n.dtype) for a, n in zip(fed, self.product.inputs)),
                *(values[k] for k in self.direct_slots))
        return out, args

    def layout(self, values: list) -> _Layout:
        return _Layout(self, [values[k] for k in self.wrt_slots])


class _Layout:
    """How the flat vector of n numbers maps to the wrt tensors: slices, shapes, dtypes."""

    def __init__(self, program: _Program, wrt_values: list[np.ndarray]):
        self.program = program
        self.names = ", ".join(repr(x.name) for x in program.xs)
        sizes = [v.size for v in wrt_values]
        ends = np.cumsum(sizes).tolist()
        self.size = int(ends[-1])
        self.shape = (self.size,)
        # (start, stop, shape, dtype to cast to or None) per wrt tensor
        self.parts = [(a, b, v.shape, None if x.dtype == _F64 else x.dtype)
                      for a, b, v, x in zip([0, *ends[:-1]], ends, wrt_values, program.xs)]

    def split(self, theta: np.ndarray) -> list[np.ndarray]:
        """Views of a float64 vector as the wrt tensors (copies where a wrt dtype differs)."""
        return [theta[a:b].reshape(shape) if cast is None else
                theta[a:b].reshape(shape).astype(cast) for a, b, shape, cast in self.parts]

    def product(self, args: tuple, p: np.ndarray) -> np.ndarray:
        """H p for a float64 vector p of the right shape, a fresh flat float64 array."""
        return _flat(self.program.product(*args, *self.split(_canonical(p, _F64))))

    def hessp(self, fn: str, args: tuple, p) -> np.ndarray:
        """H p, flattened; a complex p gives H Re(p) + i H Im(p) (the Hessian is real)."""
        p = self.check(fn, p, "the vector", complex_ok=True)
        if p.dtype.kind == "c":
            return self.product(args, p.real.copy()) + 1j * self.product(args, p.imag.copy())
        return self.product(args, p)

    def check(self, fn: str, theta, what: str, complex_ok: bool = False) -> np.ndarray:
        """`theta` as a float64 (or, if `complex_ok`, complex128) vector of the right size;
        an (n, 1) column is accepted, as SciPy passes one to `matvec`."""
        if type(theta) is np.ndarray and theta.dtype == _F64 and theta.shape == self.shape:
            return theta  # the common case, checked in a few attribute reads
        kinds = "biufc" if complex_ok else "biuf"
        expected = (f"{what} must hold {'real or complex' if complex_ok else 'real'} numbers "
                    f"in shape ({self.size},) (the flattened {self.names})")
        try:
            arr = np.asarray(theta)
        except (TypeError, ValueError) as e:  # a ragged list
            raise InputError(f"{fn}: {expected}, got {type(theta).__name__} that does not "
                             f"convert to an array ({e})") from None
        if arr.dtype.kind == "O":  # Python objects: numbers only (None would become NaN)
            items = arr.ravel().tolist()
            bad = [v for v in items if not isinstance(v, numbers.Number)]
            if bad:
                raise InputError(f"{fn}: {expected}, got {type(theta).__name__} holding "
                                 f"{type(bad[0]).__name__} {bad[0]!r:.40}, not a number")
            arr = np.array(items).reshape(arr.shape)
        if arr.dtype.kind not in kinds:
            raise InputError(f"{fn}: {expected}, got an array of dtype {arr.dtype} "
                             f"({type(theta).__name__})")
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.shape != self.shape:
            raise InputError(f"{fn}: {expected}, got shape {np.shape(theta)}")
        return arr.astype(np.complex128 if arr.dtype.kind == "c" else np.float64, copy=False)


def _input_node(fn: str, g, key) -> Node:
    """The input node that a key of `at` (a node or a name) stands for."""
    if isinstance(key, str):
        node = g.get(key)
        if node is None:
            raise GraphError(f"{fn}: `at` key {key!r} names no node of graph {g.name!r}")
    else:
        node = key
    check_node(fn, "a key of `at`", node, g)
    if not isinstance(node.op, Input):
        raise GraphError(f"{fn}: `at` key {node.name!r} is not an input node")
    return node


def _length(program: _Program, values: list) -> int:
    return int(sum(values[k].size for k in program.wrt_slots))


class HessianOperator(scipy.sparse.linalg.LinearOperator):
    """A symmetric `LinearOperator` whose products are Hessian-vector products at one point.

    `update(at)` moves it to new input values (a new minibatch, new parameters): one forward
    and gradient pass, no new graph nodes, no compiling. A vector of the wrong size or of
    non-numbers raises `gc.InputError` (a ValueError, as SciPy expects) that says which
    flattened parameters the operator acts on. A complex vector gives the complex product
    H Re(v) + i H Im(v) (the Hessian is real), as `eigsh` or `gmres` with a complex shift
    expect; an (n, 1) column gives an (n, 1) column.
    """

    def __init__(self, fn: str, program: _Program, layout: _Layout, values: list,
                 args: tuple):
        super().__init__(np.float64, (layout.size, layout.size))
        self._fn, self._program, self._layout = fn, program, layout
        self._values, self._args = values, args

    @property
    def mode(self) -> str:
        """The HVP mode used ("forward" or "reverse")."""
        return self._program.mode

    def update(self, at: dict) -> HessianOperator:
        """Move the operator to new values of any inputs (`at`: input node or name -> value;
        the others keep theirs), computing the point part once; returns the operator.

        Each value is checked as at construction; a bad key or value raises and leaves the
        operator as it was. The parameters (wrt nodes) keep their shapes.

        Examples:
            >>> import numpy as np, graphc as gc
            >>> g = gc.Graph()
            >>> x, a = g.input("x", shape=(2,)), g.input("a", shape=(2,))
            >>> H = gc.hessian_operator((a * x ** 3).sum(), x,
            ...                         at={x: np.ones(2), a: np.ones(2)})
            >>> H @ np.ones(2)                           # diag(6 a x)
            array([6., 6.])
            >>> (H.update(at={a: np.array([1.0, 2.0]), x: np.array([1.0, -1.0])})
            ...  @ np.ones(2))
            array([  6., -12.])
        """
        fn = f"{self._fn}.update"
        values = self._program.feed(fn, at, self._values)
        _, args = self._program.evaluate(fn, values)
        self._values, self._args = values, args
        return self

    def _matvec(self, p):
        return self._layout.hessp(self._fn, self._args, p)

    _rmatvec = _matvec

    def matvec(self, x):
        layout = self._layout
        if type(x) is np.ndarray and x.dtype == _F64 and x.shape == layout.shape:
            return layout.product(self._args, x)  # what Krylov solvers pass: no more checks
        arr = layout.check(self._fn, x, "the vector", complex_ok=True)
        return super().matvec(arr[:, None] if np.ndim(x) == 2 else arr)

    rmatvec = matvec


def _flat(parts: list[np.ndarray]) -> np.ndarray:
    """The products flattened and joined as one float64 vector; the compiled function's
    outputs are fresh arrays, so one float64 part is returned as a view of itself."""
    if len(parts) == 1:
        part = parts[0]
        return part.ravel() if part.dtype == _F64 else part.astype(np.float64).ravel()
    return np.concatenate([p.ravel() for p in parts], dtype=np.float64)


def _canonical(arr, dtype: np.dtype):
    """`arr` (of a dtype equal to `dtype`) as a view whose dtype is the `dtype` object itself:
    a compiled function's fast path compares dtypes by identity, and arrays made by a fused
    (numba) kernel carry an equal dtype that is another object, which would send every call
    through the full input checks."""
    return arr.view(dtype) if type(arr) is np.ndarray and arr.dtype is not dtype else arr


def _split_at_point(hv: list[Node], vs: list[Node]) -> tuple[dict[Node, Node], list[Node]]:
    """Rebuild the part of `hv` that depends on `vs` on top of new input nodes that stand for
    the values it reads from the rest (the point part), so each part compiles on its own.

    The product part gets only work that changes with v:

    - inputs and constants it reads stay as they are; views (transpose, reshape, slices) of
      point values are made again from their sources, where they cost nothing; so are short
      elementwise functions of the inputs when they are large enough to be fused into the
      product's kernel (Rosenbrock's `1200 x**2 - 400 y + 2`);
    - point-only factors are multiplied at the point: `(t * a) * b` becomes `t * (a * b)`
      and `-(t * a)` becomes `t * (-a)`, with `a * b` and `-a` computed once per point
      (forward mode builds such chains where it differentiates `1 - tanh(x) ** 2`); values
      computed from constants alone are left to the product's own constant folding;
    - a tangent broadcast only to be summed (`add_n(t, broadcast_to(b_dot))`, forward mode's
      tangent of a bias) becomes an `add` that broadcasts by itself.

    Returns {placeholder input: point node it stands for} and the rebuilt products.
    """
    g = hv[0].graph
    needed = walk.ancestors(hv)
    varying = set(walk.descendants_within(needed, set(vs)))
    absorbed = {n: flags for n in needed if n in varying and isinstance(n.op, AddN)
                and (flags := _absorbed(n)) is not None}
    # what each rebuilt node reads: through absorbed broadcasts, to their sources
    reads: dict[Node, list[Node]] = {
        n: [x.inputs[0] if flag else x for x, flag in zip(n.inputs, absorbed[n])]
        if n in absorbed else list(n.inputs) for n in varying}
    used, stack = set(), list(hv)
    while stack:
        n = stack.pop()
        if n not in used and n in varying:
            used.add(n)
            stack.extend(reads[n])
    boundary: dict[Node, Node] = {}
    made: dict[Node, Node] = {}  # point node -> what the product reads for it
    constant: dict[Node, bool] = {}
    for n in needed:  # in order, so `fixed` never recurses deeper than one new factor chain
        constant[n] = not isinstance(n.op, Input) and all(constant[x] for x in n.inputs)
    # varying node -> (rebuilt node, point factor or None): its value is their product
    rep: dict[Node, tuple[Node, Node | None]] = {v: (v, None) for v in vs}

    def fixed(x: Node) -> bool:
        """Whether `x` is computed from constants alone."""
        hit = constant.get(x)
        if hit is None:
            hit = constant[x] = not isinstance(x.op, Input) and all(map(fixed, x.inputs))
        return hit

    def recomputed(x: Node) -> list[Node] | None:
        """The nodes to make `x` again in the product part, if it is worth it: a few
        elementwise ops and views of inputs and constants, on arrays large enough for the
        compiler to fuse them into the product's kernel, which then reads the inputs instead
        of one array per point value (it is memory traffic, not arithmetic, that such a
        product costs)."""
        if not types.is_static(x.shape) or (
                types.concrete_size(x.shape) < fusion.FUSE_MIN_SIZE) or not fusion.enabled():
            return None  # (enabled() imports numba: asked only for large arrays)
        region: set[Node] = set()
        stack = [x]
        while stack:
            n = stack.pop()
            if n in region or n in made or isinstance(n.op, Input) or fixed(n):
                continue
            if (len(region) == _RECOMPUTED or n.op.multi
                    or not (n.op.elementwise or isinstance(n.op, _VIEWS))):
                return None
            region.add(n)
            stack.extend(n.inputs)
        return sorted(region, key=lambda n: n.index)

    def read(x: Node) -> Node:
        """The node that the product part reads for the original node `x`."""
        if x in rep:
            core, factor = rep[x]
            if factor is not None:
                core = ops.mul(core, read(factor))
                g.rename(core, x.name)
                rep[x] = (core, None)
            return core
        if isinstance(x.op, (Input, Constant)):
            return x
        chain, src = [], x  # views (of views) are made again from the value they view
        while src not in made and isinstance(src.op, _VIEWS) and len(src.inputs) == 1:
            chain.append(src)
            src = src.inputs[0]
        hit = made.get(src)
        if hit is None:
            if isinstance(src.op, Input) or fixed(src):
                hit = src  # fed to the product as it is, or folded there when it compiles
            elif region := recomputed(src):
                for n in region:  # in topological order
                    made[n] = g.apply(n.op, [made.get(i, i) for i in n.inputs], name=n.name)
                hit = made[src]
            else:
                hit = g.input(g.fresh_name(f"point({src.name})"), src.shape, src.dtype)
                boundary[hit] = src
            made[src] = hit
        for view in reversed(chain):
            hit = made[view] = g.apply(view.op, [hit], name=view.name)
        return hit

    for n in needed:
        if n not in used or n in rep:
            continue
        ins = reads[n]
        moving = [x in varying for x in ins]
        if (isinstance(n.op, Mul) and sum(moving) == 1
                and all(x.dtype == n.dtype for x in ins)):
            t, c = (ins[0], ins[1]) if moving[0] else (ins[1], ins[0])
            core, factor = rep[t]
            rep[n] = (core, c if factor is None else ops.mul(factor, c))
        elif isinstance(n.op, Neg):
            core, factor = rep[ins[0]]
            rep[n] = (core, g.constant(-1.0, dtype=n.dtype) if factor is None
                      else ops.neg(factor))
        elif n in absorbed:
            out = ops.add_n([read(x) for x, flag in zip(ins, absorbed[n]) if not flag])
            for x, flag in zip(ins, absorbed[n]):
                if flag:
                    out = ops.add(out, read(x))
            g.rename(out, n.name)
            rep[n] = (out, None)
        else:
            rep[n] = (g.apply(n.op, [read(x) for x in ins], name=n.name), None)
    return boundary, [read(h) for h in hv]


def _absorbed(n: Node) -> list[bool] | None:
    """For an add_n node: which inputs are broadcast_to nodes whose source an `add` can take
    as it is (same dtype, at least one full-size input left); None if none."""
    flags = [isinstance(x.op, BroadcastTo) and x.inputs[0].dtype == n.dtype for x in n.inputs]
    return flags if any(flags) and not all(flags) else None


def _program(fn: str, loss, wrt, at, mode: str) -> tuple[_Program, list]:
    """The program for (loss, wrt, mode), built and compiled on first use, and the checked
    values of `at`; a bad argument raises and leaves the graph as it was."""
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
    keys = {_input_node(fn, g, k) for k in at}
    for k, x in enumerate(xs):
        check_node(fn, f"wrt[{k}]", x, g)
        check_float(x, fn, f"wrt node {x.name!r}")
        if not isinstance(x.op, Input):
            raise GraphError(f"{fn}: wrt node {x.name!r} must be an input node (a "
                             f"parameter fed by value), got a {x.op.name} node")
        if x not in keys:
            raise GraphError(f"{fn}: `at` has no value for wrt node {x.name!r}")
    if len(set(xs)) != len(xs):
        raise GraphError(f"{fn}: a wrt node is listed twice")
    backend = xp_backend.backend_for(at.values())  # Dask data: the same program on Dask
    kind = "krylov" if backend == "numpy" else f"krylov-{backend}"
    hit = memo.lookup(g, kind, loss, xs, mode)
    if hit is not None:
        program = hit[1]
        return program, program.feed(fn, at)
    with g.transaction(), g.role("grad"):
        vs = [g.input(g.fresh_name(f"v({x.name})"), x.shape, x.dtype) for x in xs]
        gs, hv, mode_used = hvp_and_grad(loss, xs, vs, mode)
        boundary, hv = _split_at_point(hv, vs)
        program = _Program(loss, xs, vs, gs, hv, boundary, mode_used, backend)
        values = program.feed(fn, at)  # a bad value removes what was built, too
    memo.remember(g, kind, loss, xs, mode, value=((vs, gs, hv, boundary), program))
    return program, values


def hessian_operator(loss, wrt, at: dict, mode: str = "auto") -> HessianOperator:
    """The Hessian of `loss` in `wrt` at `at`, as a SciPy `LinearOperator` for cg/eigsh/minres.

    Built and compiled once per (loss, wrt, mode); `H.update(at=...)` moves it to new values.

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
    fn = "hessian_operator"
    program, values = _program(fn, loss, wrt, at, mode)
    _, args = program.evaluate(fn, values)
    return HessianOperator(fn, program, program.layout(values), values, args)


class Objective:
    """`fun`, `jac`, `hessp` and `hess_operator` of a loss over its flattened parameters.

    The loss, gradient and everything the Hessian-vector product needs apart from v are
    computed once per theta (the last theta is cached), so `fun` then `jac` then many `hessp`
    at one point cost one forward-and-gradient pass plus one product pass each.
    `with_data(at)` gives the objective at new data (a new minibatch), sharing the compiled
    program.
    """

    def __init__(self, fn: str, program: _Program, layout: _Layout, values: list,
                 x0: np.ndarray):
        self._fn, self._prog, self._layout, self._values = fn, program, layout, values
        self.x0: np.ndarray = x0
        self.mode: str = program.mode
        # (theta's bytes, (point outputs, product args, input values)): one tuple, replaced
        # whole, so threads sharing the objective never pair one theta with another's point
        self._cache: tuple[bytes, tuple[list, tuple, list]] | None = None

    def __repr__(self) -> str:
        return (f"<Objective over {self._layout.names}: {self._layout.size} parameters, "
                f"hvp mode {self.mode!r}>")

    def _at(self, theta) -> tuple[list, tuple, list]:
        """(point outputs, product args, input values) at theta; the last point is cached."""
        theta = self._layout.check(self._fn, theta, "theta")
        key = theta.tobytes()
        cache = self._cache
        if cache is not None and cache[0] == key:
            return cache[1]
        theta = theta.copy()  # the product reads the parameters: keep them from the caller
        values = list(self._values)
        for k, part in zip(self._prog.wrt_slots, self._layout.split(theta)):
            values[k] = part
        out, args = self._prog.evaluate(self._fn, values)
        self._cache = (key, (out, args, values))
        return out, args, values

    def fun(self, theta) -> float:
        """The loss at theta."""
        return float(self._at(theta)[0][0])

    def jac(self, theta) -> np.ndarray:
        """The gradient at theta, flattened (a fresh array)."""
        grads = self._at(theta)[0][1:1 + self._prog.n_grad]
        return np.concatenate([np.ravel(a) for a in grads], dtype=np.float64)

    def hessp(self, theta, p) -> np.ndarray:
        """The Hessian at theta times p."""
        return self._layout.hessp(self._fn, self._at(theta)[1], p)

    def hess_operator(self, theta) -> HessianOperator:
        """The Hessian at theta as a `LinearOperator` (the point part computed now, once)."""
        _, args, values = self._at(theta)
        return HessianOperator(self._fn, self._prog, self._layout, values, args)

    def with_data(self, at: dict) -> Objective:
        """This objective at new values of the non-parameter inputs (`at`: input node or name
        -> value; the others keep theirs), sharing the compiled program; `x0` is kept.

        Each value is checked as at construction; a bad one raises and leaves this
        objective as it was.

        Examples:
            >>> import numpy as np, graphc as gc
            >>> g = gc.Graph()
            >>> x, a = g.input("x", shape=(2,)), g.input("a", shape=("m",))
            >>> loss = (a.sum() * x ** 2).sum()
            >>> obj = gc.objective(loss, x, at={x: np.ones(2), a: np.ones(3)})
            >>> obj.fun(obj.x0), obj.with_data({a: np.ones(5)}).fun(obj.x0)
            (6.0, 10.0)
        """
        values = self._prog.feed(f"{self._fn}.with_data", at, self._values, params=False)
        return Objective(self._fn, self._prog, self._layout, values, self.x0.copy())


def objective(loss, wrt, at: dict, mode: str = "auto") -> Objective:
    """An object with `x0`, `fun`, `jac`, `hessp`, `hess_operator` for `scipy.optimize`.

    Built and compiled once per (loss, wrt, mode); `obj.with_data(at)` gives it new data.

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
    fn = "objective"
    program, values = _program(fn, loss, wrt, at, mode)
    layout = program.layout(values)
    x0 = np.concatenate([np.ravel(values[k]) for k in program.wrt_slots], dtype=np.float64)
    return Objective(fn, program, layout, values, x0)
