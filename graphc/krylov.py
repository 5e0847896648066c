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

The same machinery serves every curvature operator (`graphc.curvature`: the generalised
Gauss-Newton matrix, the empirical Fisher, the Jacobian): a `_Program` holds the nodes
computed once per point (its `head`: the loss and gradient here) and one or more products,
each a list of vector inputs and the nodes of its result, split at the point as above.

With `batches=` (a re-iterable of feed dicts for the data inputs) nothing is cached per point:
each product is a pass over the data set that runs the product's whole graph once per batch
and sums the results, so no more than one batch's data and intermediates are held at once.
The estimators of `graphc.estimators` (trace, diagonal, spectral density, top eigenvalues,
inverse) are re-exported here: `krylov.trace(H)`.

Dask arrays in `at` (data spread over a cluster) compile the same parts on the dask backend
(graphc/compile/xp_backend.py): the point part is computed once per point and its values
persisted on the workers, so each product ships only the vector out and the partial products
back (docs/scaling.md).
"""

from __future__ import annotations

import math
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
from graphc.estimators import (  # noqa: F401 (krylov.trace etc.: API.md, "Curvature")
    diagonal,
    inverse,
    plot_density,
    spectral_density,
    top_eigenvalues,
    trace,
)
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


class _Product:
    """One product of a program: the inputs standing for its vector, the nodes of its result
    as built (`outs`), its product part (`function`), the point outputs it reads (`picks`,
    positions in the point part's outputs) and the inputs it reads itself (`direct`, slots)."""

    __slots__ = ("vs", "outs", "function", "picks", "direct", "whole")

    def __init__(self, vs, outs, function, picks, direct):
        self.vs, self.outs, self.function = vs, outs, function
        self.picks, self.direct = picks, direct
        self.whole: Function | None = None  # the unsplit product, compiled for data sets


class _Program:
    """Values computed once per point and products, each compiled in two parts.

    `head`: nodes the point part computes besides what the products read (the loss and its
    gradient for `objective`, the outputs whose shapes a Jacobian needs); `products`: one
    (vector inputs, result nodes) pair per product, each split at the point by
    `_split_at_point`. Built once per operator kind, loss, wrt and mode (inside the graph's
    transaction) and shared by every operator and objective of them; it holds no values:
    those live in the operators and objectives (`values`, one array per node of `inputs`).
    """

    def __init__(self, xs: list[Node], head: list[Node],
                 products: list[tuple[list[Node], list[Node]]], mode: str,
                 backend: str = "numpy"):
        self.xs, self.mode, self.head, self.backend = xs, mode, list(head), backend
        self.n_grad = len(head) - 1  # for objectives: head = [loss, *gradients]
        sources: dict[Node, int] = {}  # point node read by a product -> its output position
        parts, self.made = [], []
        for vs, outs in products:
            boundary, rebuilt = _split_at_point(outs, vs)
            for src in boundary.values():
                sources.setdefault(src, len(self.head) + len(sources))
            skip = set(vs) | set(boundary)
            # the inputs that the product reads itself (data, parameters: a matmul's operand)
            direct = [n for n in walk.ancestors(rebuilt)
                      if isinstance(n.op, Input) and n not in skip]
            unsplit = [n for n in walk.ancestors(outs)
                       if isinstance(n.op, Input) and n not in skip]
            parts.append((vs, outs, boundary, rebuilt, direct, unsplit))
            self.made += [*boundary, *rebuilt]
        point_outputs = [*self.head, *sources]
        needed = {n for n in walk.ancestors(point_outputs) if isinstance(n.op, Input)}
        for *_, direct, unsplit in parts:
            needed.update(direct, unsplit)
        needed.update(xs)
        self.inputs: list[Node] = sorted(needed, key=lambda n: n.index)
        self.slot: dict[Node, int] = {n: k for k, n in enumerate(self.inputs)}
        self.wrt_slots = [self.slot[x] for x in xs]
        self.point = Function(self.inputs, point_outputs, backend=backend)
        self.products = [
            _Product(vs, outs, Function([*boundary, *direct, *vs], rebuilt, backend=backend),
                     [sources[src] for src in boundary.values()],
                     [self.slot[n] for n in direct])
            for vs, outs, boundary, rebuilt, direct, _ in parts]
        self._head_only: Function | None = None

    @property
    def product(self) -> Function:
        """The (first) product part."""
        return self.products[0].function

    def whole(self, k: int) -> Function:
        """Product `k` in one function of the inputs and the vector, point part included:
        what a pass over a data set runs per batch (compiled on first use)."""
        part = self.products[k]
        if part.whole is None:
            part.whole = Function([*self.inputs, *part.vs], part.outs, backend=self.backend)
        return part.whole

    def head_only(self) -> Function:
        """The head alone (loss and gradient), for a pass over a data set; compiled once."""
        if self._head_only is None:
            self._head_only = Function(self.inputs, self.head, backend=self.backend)
        return self._head_only

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

    def evaluate(self, fn: str, values: list) -> tuple[list, list[tuple]]:
        """The point part at `values`: ([*head, ...], each product's leading args)."""
        try:
            if self.backend == "dask":  # computed once, the products' values kept on workers
                out = xp_backend.persist_point(self.point(*values, compute=False),
                                               len(self.head))
            else:
                out = self.point(*values)
        except InputError as e:
            raise InputError(f"{fn}: {e}") from None
        args = [(*(_canonical(out[i], n.dtype) for i, n in zip(p.picks, p.function.inputs)),
                 *(values[k] for k in p.direct)) for p in self.products]
        return out, args

    def layout(self, values: list) -> _Layout:
        return _Layout(self.xs, [values[k].shape for k in self.wrt_slots])


class _Layout:
    """How a flat vector of n numbers maps to tensors (the wrt nodes, or a Jacobian's
    outputs): slices, shapes, dtypes."""

    def __init__(self, nodes: list[Node], shapes: list[tuple[int, ...]]):
        self.names = ", ".join(repr(x.name) for x in nodes)
        ends = np.cumsum([math.prod(shape) for shape in shapes]).tolist()
        self.size = int(ends[-1])
        self.shape = (self.size,)
        # (start, stop, shape, dtype to cast to or None) per tensor
        self.parts = [(a, b, tuple(shape), None if x.dtype == _F64 else x.dtype)
                      for a, b, shape, x in zip([0, *ends[:-1]], ends, shapes, nodes)]

    def split(self, theta: np.ndarray) -> list[np.ndarray]:
        """Views of a float64 vector as the tensors (copies where a dtype differs)."""
        return [theta[a:b].reshape(shape) if cast is None else
                theta[a:b].reshape(shape).astype(cast) for a, b, shape, cast in self.parts]

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


def _input_node(fn: str, g, key, what: str = "`at` key") -> Node:
    """The input node that a key of `at` or of a batch (a node or a name) stands for."""
    if isinstance(key, str):
        node = g.get(key)
        if node is None:
            raise GraphError(f"{fn}: {what} {key!r} names no node of graph {g.name!r}")
    else:
        node = key
    check_node(fn, f"a {what}", node, g)
    if not isinstance(node.op, Input):
        raise GraphError(f"{fn}: {what} {node.name!r} is not an input node")
    return node


def _length(program: _Program, values: list) -> int:
    return int(sum(values[k].size for k in program.wrt_slots))


class _DataSet:
    """`batches=`: a data set given as a re-iterable of feed dicts for the data inputs.

    The data inputs are the program's inputs that `at` does not hold. Every product (and an
    objective's loss and gradient) is one pass over the batches that sums the batches'
    results; the batches are read again on every pass, so they must be re-iterable (a list,
    or a loader whose `__iter__` starts afresh), and every pass must give as many batches as
    the first. Made while the operator is built, which reads the first batch to check it.
    """

    def __init__(self, fn: str, program: _Program, batches, at: dict, progress: bool):
        if isinstance(batches, dict):
            raise GraphError(f"{fn}: batches must be a re-iterable of feed dicts (a list of "
                             "dicts), got one dict; pass [feed] for a single batch")
        try:
            first_pass = iter(batches)
        except TypeError:
            raise GraphError(f"{fn}: batches must be a re-iterable of feed dicts (a list of "
                             f"dicts), got {type(batches).__name__}, which is not "
                             "iterable") from None
        if first_pass is batches:
            raise GraphError(f"{fn}: batches must be re-iterable (a list, or an object whose "
                             f"__iter__ starts afresh): every product is a pass over them, but "
                             f"{type(batches).__name__} is an iterator, which the first pass "
                             "would use up")
        g = program.xs[0].graph
        self.graph, self.batches, self.progress = g, batches, bool(progress)
        self.program, self.passes = program, 0
        self.count: int | None = None  # batches per pass, known after the first
        self.wrt = set(program.xs)
        self.fixed = {_input_node(fn, g, key) for key in at}
        self.data_slots = [k for k, n in enumerate(program.inputs) if n not in self.fixed]
        first = next(first_pass, None)
        if first is None:
            raise GraphError(f"{fn}: batches gave no batch: a data set needs at least one")
        self.first = self.resolve(fn, 0, first)

    def resolve(self, fn: str, k: int, batch) -> dict[int, object]:
        """Batch `k` checked (a dict; data inputs only; every one the program needs) as
        {slot in the program's inputs: value}; inputs the program does not need are left out."""
        if not isinstance(batch, dict):
            raise GraphError(f"{fn}: batch {k} must be a dict mapping data inputs (nodes or "
                             f"names) to values, got {type(batch).__name__}")
        out: dict[int, object] = {}
        for key, value in batch.items():
            node = _input_node(fn, self.graph, key, what=f"batch {k} key")
            if node in self.wrt:
                raise InputError(f"{fn}: batch {k} feeds {node.name!r}, a parameter (a wrt "
                                 "node): with batches=, `at` holds the parameters and the "
                                 "batches the data")
            if node in self.fixed:
                raise InputError(f"{fn}: batch {k} feeds {node.name!r}, which `at` holds "
                                 "already: an input comes from `at` or from the batches, "
                                 "not both")
            slot = self.program.slot.get(node)
            if slot is not None:
                out[slot] = value
        for slot in self.data_slots:
            if slot not in out:
                n = self.program.inputs[slot]
                raise InputError(f"{fn}: batch {k} has no value for data input {n.name!r} "
                                 f"(shape {types.fmt_shape(n.shape)}), which the operator "
                                 "needs (`at` does not hold it)")
        return out

    def completed(self, at: dict) -> dict:
        """`at` with the first batch's data put in: what the values are checked against once,
        and what they hold between passes."""
        inputs = self.program.inputs
        return {**at, **{inputs[slot]: value for slot, value in self.first.items()}}

    def refuse(self, fn: str, at: dict) -> None:
        """A data input in `at` (of `update`, `with_data`) is an error: the batches feed it."""
        data = {self.program.inputs[slot] for slot in self.data_slots}
        for key in at:
            node = _input_node(fn, self.graph, key)
            if node in data:
                raise InputError(f"{fn}: {node.name!r} is a data input, fed by the batches; "
                                 "`at` holds the other inputs")

    def total(self, fn: str, values: list, call, size: int) -> np.ndarray:
        """The sum over the batches of `call(values with the batch's data put in)`, a flat
        float64 array of `size` numbers per batch; a tqdm bar shows the pass if asked for."""
        batches = iter(self.batches)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(self.batches) if hasattr(self.batches, "__len__") else None,
                       desc=f"{fn}: batches", unit="batch", leave=False)
        total, count = None, 0
        try:
            for count, batch in enumerate(batches, start=1):  # noqa: B007 (count after)
                k = count - 1
                vals = list(values)
                for slot, value in self.resolve(fn, k, batch).items():
                    vals[slot] = value
                try:
                    part = call(vals)
                except InputError as e:
                    raise InputError(f"{fn}: batch {k}: {e}") from None
                if part.size != size:
                    raise InputError(f"{fn}: batch {k} gives {part.size} numbers where the "
                                     f"operator's shape says {size}: the product's shape must "
                                     "not depend on the batch")
                if total is None:
                    total = part
                else:
                    total += part
                if bar is not None:
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
        self.passes += 1
        if self.count is not None and count != self.count or count == 0:
            raise GraphError(f"{fn}: pass {self.passes} over batches gave {count} batches, "
                             f"the first {self.count or 'at least 1'}: batches must give the "
                             "same batches on every pass (a list, or a loader whose __iter__ "
                             "starts afresh), not an iterable that a pass uses up")
        self.count = count
        return total


def _values(fn: str, program: _Program, at, batches, progress: bool):
    """(`at`'s values checked, as `program.feed` gives them; the data set or None)."""
    if batches is None:
        return program.feed(fn, at), None
    if not isinstance(at, dict):
        raise GraphError(f"{fn}: `at` must map input nodes (or their names) to values, got "
                         f"{type(at).__name__}")
    data = _DataSet(fn, program, batches, at, progress)
    return program.feed(fn, data.completed(at)), data


class PointOperator(scipy.sparse.linalg.LinearOperator):
    """A `LinearOperator` whose products are a program's: the point part computed once per
    point (at construction and `update`), each product running the product part only; with
    `batches=`, each product is a pass over the data set instead (nothing is cached).

    Product 0 gives `matvec`; `rmatvec` is product `TRANSPOSE` (0 again for a symmetric
    operator). Vectors are checked as `HessianOperator`'s are: a float64 vector of the right
    size goes straight to the product; a complex one gives the product of its real and
    imaginary parts; an (n, 1) column gives a column; anything else raises `gc.InputError`.
    The base of `HessianOperator` and of `graphc.curvature`'s operators.
    """

    TRANSPOSE = 0

    def __init__(self, fn: str, program: _Program, values: list, data: _DataSet | None = None,
                 point: tuple[list, list] | None = None, outputs: list[Node] | None = None):
        self._fn, self._program, self._data = fn, program, data
        self._in = self._out = program.layout(values)
        self._outputs = outputs  # a non-square operator's: the head's first nodes
        super().__init__(np.float64, (self._in.size, self._in.size))
        self._move(fn, values, point)

    @property
    def mode(self) -> str:
        """The HVP mode used ("forward" or "reverse")."""
        return self._program.mode

    def _move(self, fn: str, values: list, point: tuple[list, list] | None = None) -> None:
        """Compute the point part at `values` (unless given, or the data come in batches) and
        only then take the new values: a failure leaves the operator as it was."""
        if point is None and self._data is None:
            point = self._program.evaluate(fn, values)
        out = self._in if self._outputs is None else self._output(values, point)
        self._values, self._args = values, None if point is None else point[1]
        self._out, self.shape = out, (out.size, self._in.size)

    def _output(self, values: list, point: tuple[list, list] | None) -> _Layout:
        """The layout of the results of product 0 (`outputs`, the first nodes of the head):
        their shapes at this point, the static ones, or those of the first batch."""
        nodes = self._outputs
        if point is not None:
            head = point[0]
        elif all(types.is_static(n.shape) for n in nodes):
            head = [np.empty(tuple(int(d) for d in n.shape), np.bool_) for n in nodes]
        else:  # with batches: `values` hold the first batch's data between passes
            head = self._program.head_only()(*values)
        return _Layout(nodes, [np.shape(a) for a in head[:len(nodes)]])

    def update(self, at: dict) -> PointOperator:
        """Move the operator to new input values (`at`: input node or name -> value; the
        others keep theirs), computing the point part once; returns the operator.

        Each value is checked as at construction; a bad key or value raises and leaves the
        operator as it was. The parameters (wrt nodes) keep their shapes. With `batches=`,
        `at` may not feed a data input (the batches do).

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
        if self._data is not None and isinstance(at, dict):
            self._data.refuse(fn, at)
        values = self._program.feed(fn, at, self._values)
        self._move(fn, values)
        return self

    def _product(self, k: int, into: _Layout, out: _Layout, p: np.ndarray) -> np.ndarray:
        """Product `k` of a float64 vector p (`into`'s layout), a fresh flat float64 array."""
        if self._data is None:
            return _flat(self._program.products[k].function(*self._args[k],
                                                             *into.split(_canonical(p, _F64))))
        whole, parts = self._program.whole(k), into.split(_canonical(p, _F64))
        return self._data.total(self._fn, self._values, lambda vals: _flat(whole(*vals, *parts)),
                                out.size)

    def _apply(self, k: int, into: _Layout, out: _Layout, p) -> np.ndarray:
        return _real_linear(self._fn, into, lambda q: self._product(k, into, out, q), p)

    def _matvec(self, p):
        return self._apply(0, self._in, self._out, p)

    def _rmatvec(self, p):
        return self._apply(self.TRANSPOSE, self._out, self._in, p)

    def matvec(self, x):
        into = self._in
        if type(x) is np.ndarray and x.dtype == _F64 and x.shape == into.shape:
            return self._product(0, into, self._out, x)  # what Krylov solvers pass: no checks
        arr = into.check(self._fn, x, "the vector", complex_ok=True)
        return super().matvec(arr[:, None] if np.ndim(x) == 2 else arr)

    def rmatvec(self, x):
        into = self._out
        if type(x) is np.ndarray and x.dtype == _F64 and x.shape == into.shape:
            return self._product(self.TRANSPOSE, into, self._in, x)
        arr = into.check(self._fn, x, "the vector", complex_ok=True)
        return super().rmatvec(arr[:, None] if np.ndim(x) == 2 else arr)


class HessianOperator(PointOperator):
    """A symmetric `LinearOperator` whose products are Hessian-vector products at one point.

    `update(at)` moves it to new input values (a new minibatch, new parameters): one forward
    and gradient pass, no new graph nodes, no compiling. A vector of the wrong size or of
    non-numbers raises `gc.InputError` (a ValueError, as SciPy expects) that says which
    flattened parameters the operator acts on. A complex vector gives the complex product
    H Re(v) + i H Im(v) (the Hessian is real), as `eigsh` or `gmres` with a complex shift
    expect; an (n, 1) column gives an (n, 1) column. With `batches=`, a product is the sum
    of the batches' Hessian-vector products, each batch's forward and gradient pass run again
    by every product.
    """


def _real_linear(fn: str, into: _Layout, product, p) -> np.ndarray:
    """`product` (of a float64 vector) of any vector `into.check` accepts; a complex p gives
    A Re(p) + i A Im(p), the operators being real."""
    p = into.check(fn, p, "the vector", complex_ok=True)
    if p.dtype.kind == "c":
        return product(p.real.copy()) + 1j * product(p.imag.copy())
    return product(p)


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


def _wrt_nodes(fn: str, g, wrt, at) -> list[Node]:
    """`wrt` checked (distinct float input nodes of `g`, each with a value in `at`), as a list."""
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
    return xs


def compile_products(fn: str, key: tuple, wrt, at, build, batches=None, progress=False):
    """(program, values, data set or None) for the products that `build` describes.

    The program is built and compiled on first use and remembered in the graph under `key`
    (a kind, then nodes and words: `("krylov", loss, mode)`) and the wrt nodes; `at`'s values
    are checked (completed with the first batch's data when `batches` is given). A bad
    argument raises and leaves the graph as it was. `build(xs, vs)` gets the wrt nodes and
    one new input per wrt node standing for the vector, and returns (head, [(vector inputs,
    result nodes), ...], the HVP mode used); it runs inside the graph's transaction. The
    building block of `hessian_operator`, `objective` and `graphc.curvature`.
    """
    g = key[1].graph
    xs = _wrt_nodes(fn, g, wrt, at)
    backend = xp_backend.backend_for(at.values())  # Dask data: the same program on Dask
    if backend != "numpy":
        key = (f"{key[0]}-{backend}", *key[1:])
    hit = memo.lookup(g, *key, xs)
    if hit is not None:
        program = hit[1]
        return program, *_values(fn, program, at, batches, progress)
    with g.transaction(), g.role("grad"):
        vs = [g.input(g.fresh_name(f"v({x.name})"), x.shape, x.dtype) for x in xs]
        head, products, mode_used = build(xs, vs)
        program = _Program(xs, head, products, mode_used, backend)
        # a bad value (or batch) removes what was built, too
        values, data = _values(fn, program, at, batches, progress)
    memo.remember(g, *key, xs, value=((vs, head, products, program.made), program))
    return program, values, data


def check_loss(fn: str, loss, mode: str) -> None:
    """`loss` must be a scalar float node and `mode` an HVP mode."""
    if mode not in MODES:
        raise GraphError(f"{fn}: mode must be one of {MODES}, got {mode!r}")
    check_node(fn, "loss", loss)
    if loss.shape != ():
        raise ShapeError(f"{fn}: loss must be a scalar, got node {loss.name!r} of shape "
                         f"{types.fmt_shape(loss.shape)}")
    check_float(loss, fn, "loss")


def _hessian_program(fn: str, loss, wrt, at, mode: str, batches, progress: bool):
    """The program of the loss, its gradient and its HVP in `wrt`: head [loss, *gradients]."""
    check_loss(fn, loss, mode)

    def build(xs, vs):
        gs, hv, mode_used = hvp_and_grad(loss, xs, vs, mode)
        return [loss, *gs], [(vs, hv)], mode_used

    return compile_products(fn, ("krylov", loss, mode), wrt, at, build, batches, progress)


def hessian_operator(loss, wrt, at: dict, mode: str = "auto", batches=None,
                     progress: bool = False) -> HessianOperator:
    """The Hessian of `loss` in `wrt` at `at`, as a SciPy `LinearOperator` for cg/eigsh/minres.

    Built and compiled once per (loss, wrt, mode); `H.update(at=...)` moves it to new values.
    With `batches` (a re-iterable of feed dicts for the data inputs; `at` then holds the
    parameters and any other fixed inputs), a product is the sum of the batches' products:
    for a loss that is a mean over its batch, the sum of the per-batch means' Hessians
    (`progress=True` shows each pass with tqdm).

    Examples:
        >>> import numpy as np, scipy.sparse.linalg as sla, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(3,))
        >>> H = gc.hessian_operator((gc.exp(x) * x).sum(), x, at={x: np.zeros(3)})
        >>> H.shape, H @ np.ones(3)
        ((3, 3), array([2., 2., 2.]))
        >>> sla.cg(H, np.ones(3))[0]
        array([0.5, 0.5, 0.5])
        >>> a = g.input("a", shape=("m",))            # data, in two batches
        >>> H = gc.hessian_operator((a.sum() * x ** 2).sum(), x, at={x: np.zeros(3)},
        ...                         batches=[{a: np.ones(2)}, {a: np.ones(3)}])
        >>> H @ np.ones(3)                            # 2 (2 + 3) per entry
        array([10., 10., 10.])
    """
    fn = "hessian_operator"
    program, values, data = _hessian_program(fn, loss, wrt, at, mode, batches, progress)
    return HessianOperator(fn, program, values, data)


class Objective:
    """`fun`, `jac`, `hessp` and `hess_operator` of a loss over its flattened parameters.

    The loss, gradient and everything the Hessian-vector product needs apart from v are
    computed once per theta (the last theta is cached), so `fun` then `jac` then many `hessp`
    at one point cost one forward-and-gradient pass plus one product pass each.
    `with_data(at)` gives the objective at new data (a new minibatch), sharing the compiled
    program. With `batches=`, `fun` and `jac` (one pass over the batches per theta, cached)
    and each `hessp` (one pass) are sums over the batches.
    """

    def __init__(self, fn: str, program: _Program, values: list, x0: np.ndarray,
                 data: _DataSet | None = None):
        self._fn, self._prog, self._values, self._data = fn, program, values, data
        self._layout = program.layout(values)
        self.x0: np.ndarray = x0
        self.mode: str = program.mode
        # (theta's bytes, (point outputs, product args, input values)): one tuple, replaced
        # whole, so threads sharing the objective never pair one theta with another's point
        self._cache: tuple[bytes, tuple[list, list, list]] | None = None

    def __repr__(self) -> str:
        return (f"<Objective over {self._layout.names}: {self._layout.size} parameters, "
                f"hvp mode {self.mode!r}>")

    def _at(self, theta) -> tuple[list, list, list]:
        """(point outputs, product args, input values) at theta; the last point is cached.
        With batches: ([loss, flat gradient] summed over the batches, None, input values)."""
        theta = self._layout.check(self._fn, theta, "theta")
        key = theta.tobytes()
        cache = self._cache
        if cache is not None and cache[0] == key:
            return cache[1]
        values = self._with(theta.copy())  # the product reads the parameters: keep a copy
        if self._data is None:
            out, args = self._prog.evaluate(self._fn, values)
        else:
            head = self._prog.head_only()
            sums = self._data.total(self._fn, values, lambda vals: _flat(head(*vals)),
                                    1 + self._layout.size)
            out, args = [sums[0], sums[1:]], None
        self._cache = (key, (out, args, values))
        return out, args, values

    def _with(self, theta: np.ndarray) -> list:
        """The input values with the parameters taken from (the float64 vector) theta."""
        values = list(self._values)
        for k, part in zip(self._prog.wrt_slots, self._layout.split(theta)):
            values[k] = part
        return values

    def fun(self, theta) -> float:
        """The loss at theta."""
        return float(self._at(theta)[0][0])

    def jac(self, theta) -> np.ndarray:
        """The gradient at theta, flattened (a fresh array)."""
        out = self._at(theta)[0]
        if self._data is not None:
            return out[1].copy()
        return np.concatenate([np.ravel(a) for a in out[1:1 + self._prog.n_grad]],
                              dtype=np.float64)

    def hessp(self, theta, p) -> np.ndarray:
        """The Hessian at theta times p."""
        if self._data is not None:
            return self.hess_operator(theta)._matvec(p)
        args, product, layout = self._at(theta)[1][0], self._prog.product, self._layout
        return _real_linear(self._fn, layout, lambda q: _flat(
            product(*args, *layout.split(_canonical(q, _F64)))), p)

    def hess_operator(self, theta) -> HessianOperator:
        """The Hessian at theta as a `LinearOperator` (the point part computed now, once)."""
        if self._data is not None:
            theta = self._layout.check(self._fn, theta, "theta")
            return HessianOperator(self._fn, self._prog, self._with(theta.copy()), self._data)
        out, args, values = self._at(theta)
        return HessianOperator(self._fn, self._prog, values, point=(out, args))

    def with_data(self, at: dict) -> Objective:
        """This objective at new values of the non-parameter inputs (`at`: input node or name
        -> value; the others keep theirs), sharing the compiled program; `x0` is kept.

        Each value is checked as at construction; a bad one raises and leaves this
        objective as it was. With `batches=`, the batches keep feeding the data inputs.

        Examples:
            >>> import numpy as np, graphc as gc
            >>> g = gc.Graph()
            >>> x, a = g.input("x", shape=(2,)), g.input("a", shape=("m",))
            >>> loss = (a.sum() * x ** 2).sum()
            >>> obj = gc.objective(loss, x, at={x: np.ones(2), a: np.ones(3)})
            >>> obj.fun(obj.x0), obj.with_data({a: np.ones(5)}).fun(obj.x0)
            (6.0, 10.0)
        """
        fn = f"{self._fn}.with_data"
        if self._data is not None and isinstance(at, dict):
            self._data.refuse(fn, at)
        values = self._prog.feed(fn, at, self._values, params=False)
        return Objective(self._fn, self._prog, values, self.x0.copy(), self._data)


def objective(loss, wrt, at: dict, mode: str = "auto", batches=None,
              progress: bool = False) -> Objective:
    """An object with `x0`, `fun`, `jac`, `hessp`, `hess_operator` for `scipy.optimize`.

    Built and compiled once per (loss, wrt, mode); `obj.with_data(at)` gives it new data.
    With `batches` (see `hessian_operator`), the loss, gradient and products are sums over
    the batches.

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
    program, values, data = _hessian_program(fn, loss, wrt, at, mode, batches, progress)
    x0 = np.concatenate([np.ravel(values[k]) for k in program.wrt_slots], dtype=np.float64)
    return Objective(fn, program, values, x0, data)
