"""Linear algebra: matmul (batched, NumPy semantics), trace, diag, inv, slogdet; dot and outer
derive from them. matmul is bilinear: its jvp applies matmul to one tangent at a time.

This module is also `gc.linalg`, NumPy's and SciPy's names: inv, slogdet, det, cholesky,
solve, solve_triangular, cho_solve, eigh, svd, qr, norm. The ops behind the last ones are
declared with their rules in factor.py (factorizations and solves) and spectral.py (eigh,
svd, qr), which build on this module; the functions here bring them in when first called."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Node, user_source_line
from graphc.ir.op import MultiOp, Op, entries, register
from graphc.ops import symbolic
from graphc.ops.base import atomic, build, graph_of, lift
from graphc.ops.einsum import trace as einsum_trace
from graphc.ops.elementwise import abs as _abs
from graphc.ops.elementwise import cast, mul, not_equal
from graphc.ops.reduce import max as _max
from graphc.ops.reduce import min as _min
from graphc.ops.reduce import sum as _sum
from graphc.ops.shape import (
    broadcast_to,
    expand_dims,
    getitem,
    reshape,
    squeeze,
    swapaxes,
    transpose,
)


@register
@dataclasses.dataclass(frozen=True)
class MatMul(Op):
    """`a @ b` with NumPy's rules: batch axes broadcast, 1-D operands are promoted."""

    name: ClassVar[str] = "matmul"
    arity: ClassVar[int] = 2
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward

    def infer(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ShapeError("matmul: operands must have at least one axis; use mul for scalars")
        k_a = a.shape[-1]
        k_b = b.shape[-2] if b.ndim >= 2 else b.shape[0]
        if not types.dim_eq(k_a, k_b):
            raise ShapeError(f"matmul: contracted axes differ ({k_a} vs {k_b}) for shapes "
                             f"{types.fmt_shape(a.shape)} @ {types.fmt_shape(b.shape)}")
        try:
            batch = types.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError as e:
            raise ShapeError(f"matmul: batch axes {e}") from None
        rows = a.shape[-2:-1] if a.ndim >= 2 else ()
        cols = b.shape[-1:] if b.ndim >= 2 else ()
        return batch + rows + cols, np.result_type(a.dtype, b.dtype)

    def forward(self, a, b):
        return np.matmul(a, b)

    def emit_numpy(self, node, args, ctx):
        if all(x.ndim in (1, 2) for x in node.inputs):  # same product; ~0.5 us less per call
            return f"{args[0]}.dot({args[1]})"
        return f"np.matmul({args[0]}, {args[1]})"

    def bprop(self, inputs, out, g, i):
        a, b = inputs
        if i == 0:
            if a.ndim == 1 and b.ndim == 1:
                return g * b
            if a.ndim == 1:        # (k,) @ (..., k, n): g is (..., n)
                return squeeze(matmul(b, expand_dims(g, -1)), -1)
            if b.ndim == 1:        # (..., m, k) @ (k,): g is (..., m)
                return expand_dims(g, -1) * b
            return matmul(g, swapaxes(b, -1, -2))
        if a.ndim == 1 and b.ndim == 1:
            return g * a
        if b.ndim == 1:
            return squeeze(matmul(expand_dims(g, -2), a), -2)
        if a.ndim == 1:
            return expand_dims(a, -1) * expand_dims(g, -2)
        return matmul(swapaxes(a, -1, -2), g)

    def jvp(self, inputs, out, t, i):
        a, b = inputs
        return matmul(t, b) if i == 0 else matmul(a, t)

    def cost(self, node):
        return 2.0 * entries(node.shape) * entries(node.inputs[0].shape[-1:])  # 2mkn

    def batch(self, node, ins, m):
        """One product wherever the batch axis can join a matrix axis: a batched left operand
        times an unbatched matrix is (m * rows, k) @ b, an unbatched left operand times a
        batched right one is (m * cols, k) @ a^T, two batched vectors are a sum of products.
        Otherwise (batched matrices on both sides, or batch axes in the unbatched operand):
        promote 1-D operands to matrices, align the batch axes of the batched operands to the
        result's (the leading m axis first), multiply, and drop the promoted axes again."""
        (a, a_b), (b, b_b) = ins
        a0, b0 = node.inputs
        if a_b and not b_b and b0.ndim <= 2:  # (m, ..., r, k) @ (k, n): the rows take m in
            if a0.ndim == 1:
                return matmul(a, b)
            rows = matmul(reshape(a, (-1, a0.shape[-1])), b)
            return reshape(rows, (m, *node.shape))
        if b_b and not a_b and b0.ndim <= 2:  # a @ (m, k, c): the columns take m in
            k = b0.shape[0]
            c = b0.shape[1] if b0.ndim == 2 else 1
            one_col = b0.ndim == 1 or (isinstance(c, int) and c == 1)
            cols = reshape(b, (-1, k)) if one_col else reshape(swapaxes(b, 1, 2), (-1, k))
            if a0.ndim == 1:  # (m * c,)
                return reshape(matmul(cols, a), (m, *node.shape))
            flat = reshape(a, (-1, a0.shape[-1]))  # (..., r, k) -> (P * r, k)
            prod = matmul(cols, swapaxes(flat, 0, 1))  # (m * c, P * r)
            if one_col:
                return reshape(prod, (m, *node.shape))
            prod = swapaxes(reshape(prod, (m, c, -1)), 1, 2)  # (m, P * r, c)
            return reshape(prod, (m, *node.shape))
        if a_b and b_b and a0.ndim == 1 and b0.ndim == 1:
            return _sum(a * b, axis=-1)
        drop = []
        if a0.ndim == 1:
            a = expand_dims(a, -2)
            drop.append(-2)
        if b0.ndim == 1:
            b = expand_dims(b, -1)
            drop.append(-1)
        n_batch = node.ndim - (a0.ndim >= 2) - (b0.ndim >= 2)  # the unbatched result's
        if a_b:
            a = _pad_batch(a, n_batch)
        if b_b:
            b = _pad_batch(b, n_batch)
        out = matmul(a, b)
        return squeeze(out, tuple(drop)) if drop else out


def _pad_batch(x, n_batch: int):
    """(m, *batch, r, c) -> (m, 1, ..., 1, *batch, r, c) with `n_batch` axes between m and r."""
    extra = n_batch - (x.ndim - 3)
    if extra <= 0:
        return x
    return reshape(x, (x.shape[0], *(1,) * extra, *x.shape[1:]))


@register
@dataclasses.dataclass(frozen=True)
class EyeLike(Op):
    """The identity pattern of a matrix's shape (ones on the main diagonal)."""

    name: ClassVar[str] = "eye_like"
    differentiable: ClassVar[bool] = False
    bounded: ClassVar[bool] = True
    shape_only: ClassVar[bool] = True
    fresh: ClassVar[bool] = True

    def infer(self, x):
        if x.ndim != 2:
            raise ShapeError(f"eye_like needs a matrix, got {types.fmt_shape(x.shape)}")
        return x.shape, x.dtype

    def forward(self, x):
        return np.eye(*x.shape, dtype=x.dtype)

    def sympy(self, node, x):
        return symbolic.object_array(np.eye(*x.shape, dtype=int))

    def batch(self, node, ins, m):  # the same pattern for every row
        return broadcast_to(build(self, getitem(ins[0][0], 0)), (m, *node.shape))


@register
@dataclasses.dataclass(frozen=True)
class Trace(Op):
    """Sum of a matrix's main diagonal."""

    name: ClassVar[str] = "trace"
    linear: ClassVar[bool] = True
    sympy = symbolic.run_forward

    def infer(self, x):
        if x.ndim != 2:
            raise ShapeError(f"trace needs a matrix, got {types.fmt_shape(x.shape)}")
        return (), x.dtype

    def forward(self, x):
        return np.asarray(np.trace(x))

    def bprop(self, inputs, out, g, i):
        return g * build(EyeLike(), inputs[0])

    def jvp(self, inputs, out, t, i):
        return trace(t)

    def batch(self, node, ins, m):
        x = ins[0][0]
        eye = node.graph.constant(np.eye(*node.inputs[0].shape, dtype=x.dtype))
        return _sum(x * eye, axis=(1, 2))


@register
@dataclasses.dataclass(frozen=True)
class Diag(Op):
    """NumPy's diag: a vector becomes a diagonal matrix, a matrix gives its main diagonal."""

    name: ClassVar[str] = "diag"
    linear: ClassVar[bool] = True
    fresh: ClassVar[bool] = True  # forward copies the diagonal NumPy would give as a view
    sympy = symbolic.run_forward

    def infer(self, x):
        if x.ndim == 1:
            return (x.shape[0], x.shape[0]), x.dtype
        if x.ndim == 2:
            m, n = x.shape
            if isinstance(m, int) and isinstance(n, int):
                return (builtins_min(m, n),), x.dtype
            if types.dim_eq(m, n):
                return (m,), x.dtype
            raise ShapeError(f"diag of {types.fmt_shape(x.shape)}: the symbolic dimensions "
                             "must be equal")
        raise ShapeError(f"diag needs a vector or a matrix, got {types.fmt_shape(x.shape)}")

    def forward(self, x):
        return np.diag(x).copy()

    def bprop(self, inputs, out, g, i):
        x = inputs[0]
        if x.ndim == 1:
            return diag(g)
        m, n = x.shape
        lift_axis = 0 if isinstance(m, int) and isinstance(n, int) and m > n else 1
        return build(EyeLike(), x) * expand_dims(g, lift_axis)

    def jvp(self, inputs, out, t, i):
        return diag(t)

    def batch(self, node, ins, m):
        x, src = ins[0][0], node.inputs[0]
        if src.ndim == 1:
            eye = node.graph.constant(np.eye(src.shape[0], dtype=x.dtype))
            return expand_dims(x, -1) * eye
        rows, cols = src.shape
        eye = node.graph.constant(np.eye(rows, cols, dtype=x.dtype))
        return _sum(x * eye, axis=-1 if rows <= cols else -2)


builtins_min = min


def _square(op: str, a) -> None:
    if a.ndim < 2 or not types.dim_eq(a.shape[-1], a.shape[-2]):
        raise ShapeError(f"{op} needs square matrices (..., n, n), got {types.fmt_shape(a.shape)}")
    if not types.is_float(a.dtype):
        raise ShapeError(f"{op} needs a float matrix, got {a.dtype}")


def _mT(x):
    return swapaxes(x, -1, -2)


def _sympy_matrices(a: np.ndarray, fn) -> np.ndarray:
    """`fn` on each sympy Matrix of a stack (..., n, n) of object entries; results stacked."""
    import sympy

    flat = a.reshape(-1, *a.shape[-2:])
    return [fn(sympy.Matrix(m.tolist())) for m in flat]


@register
@dataclasses.dataclass(frozen=True)
class Inv(Op):
    """The inverse of square matrices (..., n, n). d inv(A) = -inv(A) dA inv(A)."""

    name: ClassVar[str] = "inv"
    fresh: ClassVar[bool] = True

    def infer(self, a):
        _square("inv", a)
        return a.shape, a.dtype

    def forward(self, a):
        return np.linalg.inv(a)

    def bprop(self, inputs, out, g, i):
        return -matmul(matmul(_mT(out), g), _mT(out))

    def jvp(self, inputs, out, t, i):
        return -matmul(matmul(out, t), out)

    def batch(self, node, ins, m):
        return inv(ins[0][0])  # np.linalg.inv works on stacks

    def sympy(self, node, a):
        invs = _sympy_matrices(a, lambda mat: np.array(mat.inv().tolist(), dtype=object))
        return np.array(invs, dtype=object).reshape(a.shape)

    def cost(self, node) -> float:
        n = entries(node.shape[-1:])
        return entries(node.shape) * n


@register
@dataclasses.dataclass(frozen=True)
class Slogdet(MultiOp):
    """(sign, log|det|) of square matrices (..., n, n), as NumPy's slogdet: a log-determinant
    that does not overflow. The sign has no gradient (it is piecewise constant);
    d log|det A| = trace(inv(A) dA), so its cotangent is g inv(A)^T."""

    name: ClassVar[str] = "slogdet"

    def infer(self, a):
        _square("slogdet", a)
        return [(a.shape[:-2], a.dtype), (a.shape[:-2], a.dtype)]

    def forward(self, a):
        sign, logdet = np.linalg.slogdet(a)
        return np.asarray(sign, a.dtype), np.asarray(logdet, a.dtype)

    def bprop(self, inputs, outs, gs, i):
        g = gs[1]
        if g is None:
            return None
        a = inputs[0]
        return expand_dims(g, (a.ndim - 2, a.ndim - 1)) * _mT(inv(a))

    def jvp(self, inputs, outs, t, i):
        return [None, einsum_trace(solve(inputs[0], t))]  # tr(A^-1 dA), by a solve

    def batch(self, node, ins, m):
        return list(slogdet(ins[0][0]))  # np.linalg.slogdet works on stacks

    def sympy(self, node, a):
        import sympy

        dets = _sympy_matrices(a, lambda mat: mat.det())
        sign = np.array([sympy.sign(d) for d in dets], dtype=object).reshape(a.shape[:-2])
        logdet = np.array([sympy.log(sympy.Abs(d)) for d in dets], dtype=object
                          ).reshape(a.shape[:-2])
        return sign, logdet

    def cost(self, node) -> float:
        a = node.inputs[0]
        return entries(a.shape) * entries(a.shape[-1:])


@atomic
def inv(a):
    """The inverse of a square matrix (or of each matrix of a stack (..., n, n)).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a", shape=(2, 2))
        >>> gc.linalg.inv(a).eval({a: np.diag([2.0, 4.0])})
        array([[0.5 , 0.  ],
               [0.  , 0.25]])
    """
    g = graph_of(a)
    return g.apply(Inv(), [lift(a, g)])


@atomic
def slogdet(a) -> tuple[Node, Node]:
    """`(sign, logabsdet)` of a square matrix (or a stack), as `np.linalg.slogdet`: two nodes
    read from one `slogdet` node.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a", shape=(2, 2))
        >>> sign, logdet = gc.linalg.slogdet(a)
        >>> float(sign.eval({a: -np.eye(2) * 3})), float(np.exp(logdet.eval({a: np.eye(2) * 3})))
        (1.0, 9.000000000000002)
    """
    g = graph_of(a)
    return g.views(g.apply(Slogdet(), [lift(a, g)]))


def matmul(a, b):
    """`a @ b`, NumPy semantics (batched, with 1-D promotion)."""
    return build(MatMul(), a, b)


def trace(x):
    """Sum of the diagonal of a matrix."""
    return build(Trace(), x)


def diag(x):
    """Diagonal matrix from a vector, or the diagonal of a matrix."""
    return build(Diag(), x)


@atomic
def dot(a, b):
    """NumPy's dot for scalars, vectors and matrices (matmul, or mul with a scalar)."""
    g = graph_of(a, b)
    a, b = lift(a, g, b if hasattr(b, "graph") else None), lift(b, g, a)
    if a.ndim == 0 or b.ndim == 0:
        return mul(a, b)
    if a.ndim > 2 or b.ndim > 2:
        raise ShapeError(f"dot of {types.fmt_shape(a.shape)} and {types.fmt_shape(b.shape)}: "
                         "more than two axes; use matmul (batched) or sum of products")
    inner_a, inner_b = a.shape[-1], b.shape[0]
    if not types.dim_eq(inner_a, inner_b):  # named as the call the user wrote, not matmul
        raise ShapeError(f"dot of {types.fmt_shape(a.shape)} and {types.fmt_shape(b.shape)}: "
                         f"the contracted lengths differ ({inner_a} and {inner_b}) "
                         f"(at {user_source_line()})")
    return matmul(a, b)


@atomic
def outer(a, b):
    """Outer product of two vectors (other shapes are flattened first, as in NumPy)."""
    g = graph_of(a, b)
    a, b = lift(a, g), lift(b, g)
    a = a if a.ndim == 1 else reshape(a, (-1,))
    b = b if b.ndim == 1 else reshape(b, (-1,))
    return expand_dims(a, -1) * b





# -- gc.linalg: NumPy's and SciPy's functions ------------------------------------------------
def _matrix(name: str, a) -> Node:
    g = graph_of(a, caller=name)
    return lift(a, g)


@atomic
def det(a):
    """The determinant of a square matrix (or of each matrix of a stack (..., n, n)).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a", shape=(2, 2))
        >>> round(float(gc.linalg.det(a).eval({a: np.array([[2.0, 1.0], [1.0, 3.0]])})), 12)
        5.0
    """
    from graphc.ops.factor import Det

    a = _matrix("det", a)
    return a.graph.apply(Det(), [a])


@atomic
def cholesky(a):
    """The lower Cholesky factor L (a = L L^T) of a symmetric positive definite matrix, or of
    each matrix of a stack. The value reads a's lower triangle, as NumPy; the derivatives
    are those of a symmetric a (the gradient is symmetric).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a", shape=(2, 2))
        >>> gc.linalg.cholesky(a).eval({a: np.array([[4.0, 2.0], [2.0, 5.0]])})
        array([[2., 0.],
               [1., 2.]])
    """
    from graphc.ops.factor import Cholesky

    a = _matrix("cholesky", a)
    return a.graph.apply(Cholesky(), [a])


def _system(name: str, a, b) -> tuple[Node, Node]:
    g = graph_of(a, b, caller=name)
    return lift(a, g), lift(b, g)


@atomic
def solve(a, b):
    """x with a x = b, NumPy's rules: b is a vector (n,) or a stack of matrices (..., n, k);
    batch axes broadcast.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a, b = g.input("a", shape=(2, 2)), g.input("b", shape=(2,))
        >>> gc.linalg.solve(a, b).eval({a: np.diag([2.0, 4.0]), b: np.array([1.0, 1.0])})
        array([0.5 , 0.25])
    """
    from graphc.ops.factor import Solve

    a, b = _system("solve", a, b)
    return a.graph.apply(Solve(), [a, b])


_TRANS = {0: False, 1: True, 2: True, "N": False, "T": True, "C": True}


@atomic
def solve_triangular(a, b, lower=False, *, trans=0):
    """x with a x = b for a triangular `a` (SciPy's solve_triangular): only a's lower
    triangle is read when `lower`, else its upper one; `trans=1` (or "T") solves a^T x = b.
    b and batching as in `solve`.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a, b = g.input("a", shape=(2, 2)), g.input("b", shape=(2,))
        >>> L = np.array([[2.0, 0.0], [1.0, 1.0]])
        >>> gc.linalg.solve_triangular(a, b, lower=True).eval({a: L, b: np.array([2.0, 3.0])})
        array([1., 2.])
    """
    from graphc.ops.factor import SolveTriangular

    if not isinstance(lower, (bool, np.bool_, int, np.integer)):
        raise GraphError(f"solve_triangular: lower must be a bool, got {lower!r}")
    if not isinstance(trans, (str, int, np.integer)) or trans not in _TRANS:
        raise GraphError(f"solve_triangular: trans must be 0, 1, 2, 'N', 'T' or 'C', got "
                         f"{trans!r}")
    a, b = _system("solve_triangular", a, b)
    return a.graph.apply(SolveTriangular(bool(lower), _TRANS[trans]), [a, b])


@atomic
def cho_solve(c, b):
    """x with (c c^T) x = b from the lower Cholesky factor `c` (only its lower triangle is
    read). SciPy's form `cho_solve((c, lower), b)` works too (an upper factor u, a = u^T u).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a, b = g.input("a", shape=(2, 2)), g.input("b", shape=(2,))
        >>> x = gc.linalg.cho_solve(gc.linalg.cholesky(a), b)
        >>> x.eval({a: np.array([[4.0, 2.0], [2.0, 5.0]]), b: np.array([6.0, 7.0])})
        array([1., 1.])
    """
    from graphc.ops.factor import ChoSolve

    lower = True
    if isinstance(c, tuple):
        if len(c) != 2:
            raise GraphError(f"cho_solve: expected a factor or a (factor, lower) pair, got a "
                             f"tuple of {len(c)}")
        c, lower = c
    c, b = _system("cho_solve", c, b)
    if not lower:
        c = swapaxes(c, -1, -2) if c.ndim >= 2 else c  # a = u^T u: its lower factor is u^T
    return c.graph.apply(ChoSolve(), [c, b])


@atomic
def eigh(a, UPLO="L") -> tuple[Node, Node]:  # noqa: N803 - NumPy's name
    """`(w, v)`: the eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix
    or stack, as `np.linalg.eigh`; two nodes read from one `eigh` node. Eigenvector
    derivatives need distinct eigenvalues (see docs/ops.md).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a", shape=(2, 2))
        >>> w, v = gc.linalg.eigh(a)
        >>> w.eval({a: np.array([[2.0, 1.0], [1.0, 2.0]])})
        array([1., 3.])
    """
    from graphc.ops.spectral import Eigh

    if UPLO not in ("L", "U"):
        raise GraphError(f"eigh: UPLO must be 'L' or 'U', got {UPLO!r}")
    a = _matrix("eigh", a)
    if UPLO == "U" and a.ndim >= 2:
        a = swapaxes(a, -1, -2)  # the upper triangle is the transpose's lower one
    g = a.graph
    return g.views(g.apply(Eigh(), [a]))


@atomic
def svd(a, full_matrices=False) -> tuple[Node, Node, Node]:
    """`(u, s, vh)`: the reduced singular value decomposition a = u diag(s) vh of a matrix or
    stack (..., m, n), s descending, as `np.linalg.svd(a, full_matrices=False)`. Singular
    values are differentiable where they are distinct and non-zero; vectors likewise.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a", shape=(3, 2))
        >>> u, s, vh = gc.linalg.svd(a)
        >>> s.eval({a: np.array([[3.0, 0.0], [0.0, -2.0], [0.0, 0.0]])})
        array([3., 2.])
    """
    from graphc.ops.spectral import Svd

    if full_matrices:
        raise GraphError("svd: full_matrices=True is not supported: the extra singular "
                         "vectors are not unique, so they have no derivative; use "
                         "full_matrices=False")
    a = _matrix("svd", a)
    g = a.graph
    return g.views(g.apply(Svd(), [a]))


@atomic
def qr(a, mode="reduced") -> tuple[Node, Node]:
    """`(q, r)`: the reduced QR decomposition of a matrix or stack (..., m, n), as
    `np.linalg.qr(a)` (Householder: r's diagonal may be negative).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a", shape=(2, 2))
        >>> q, r = gc.linalg.qr(a)
        >>> (q @ r).eval({a: np.array([[1.0, 2.0], [3.0, 4.0]])})
        array([[1., 2.],
               [3., 4.]])
    """
    from graphc.ops.spectral import Qr

    if mode != "reduced":
        raise GraphError(f"qr: mode {mode!r} is not supported; only 'reduced'")
    a = _matrix("qr", a)
    g = a.graph
    return g.views(g.apply(Qr(), [a]))


@atomic
def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - NumPy's name
    """NumPy's norm: the vector norms (2, 1, inf, -inf, 0, any p) along one axis and the
    matrix norms ('fro', 'nuc', 1, -1, 2, -2, inf, -inf) over two; `axis=None` takes a
    vector's or a matrix's norm, or with `ord=None` the 2-norm of everything. The 2-norm
    and Frobenius norm are one `norm` node whose gradient at 0 is 0; the others are built
    from abs, sums, maxima and singular values.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2, 2))
        >>> float(gc.linalg.norm(x).eval({x: np.array([[3.0, 0.0], [0.0, 4.0]])}))
        5.0
        >>> gc.linalg.norm(x, ord=1, axis=1).eval({x: np.array([[3.0, -1.0], [0.0, 4.0]])})
        array([4., 4.])
    """
    from graphc.ops.factor import Norm

    x = _matrix("norm", x)
    g = x.graph
    if axis is None:
        if ord is None:
            return g.apply(Norm(tuple(range(x.ndim)), bool(keepdims)), [x])
        if x.ndim not in (1, 2):
            raise ShapeError(f"norm: ord={ord!r} with axis=None needs a vector or a matrix, "
                             f"got {types.fmt_shape(x.shape)}")
        axes = tuple(range(x.ndim))
    else:
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        try:
            axes = tuple(types.normalize_axis(a, x.ndim) for a in axes)
        except ValueError as e:
            raise ShapeError(f"norm: {e}") from None
        if len(axes) not in (1, 2) or len(set(axes)) != len(axes):
            raise ShapeError(f"norm: axis={axis!r}: expected one axis (a vector norm) or two "
                             "different axes (a matrix norm)")
    keep = bool(keepdims)
    if len(axes) == 1:
        return _vector_norm(x, ord, axes[0], keep)
    return _matrix_norm(x, ord, axes, keep)


def _vector_norm(x, ord, axis, keep):  # noqa: A002
    from graphc.ops.factor import Norm

    if ord is None or (_is_number(ord) and ord == 2):
        return x.graph.apply(Norm((axis,), keep), [x])
    if not _is_number(ord):
        raise GraphError(f"norm: ord={ord!r} is not a vector norm (2, 1, inf, -inf, 0 or a "
                         "number)")
    if ord == np.inf:
        return _max(_abs(x), axis, keep)
    if ord == -np.inf:
        return _min(_abs(x), axis, keep)
    if ord == 0:  # how many entries are not 0: no gradient
        return _sum(cast(not_equal(x, 0.0), x.dtype), axis, keep)
    if ord == 1:
        return _sum(_abs(x), axis, keep)
    return _sum(_abs(x) ** float(ord), axis, keep) ** (1.0 / float(ord))


def _matrix_norm(x, ord, axes, keep):  # noqa: A002
    from graphc.ops.factor import Norm

    row, col = axes
    if ord is None or ord == "fro":
        return x.graph.apply(Norm(tuple(sorted(axes)), keep), [x])
    if isinstance(ord, str) and ord != "nuc" or not (isinstance(ord, str) or _is_number(ord)):
        raise GraphError(f"norm: ord={ord!r} is not a matrix norm ('fro', 'nuc', 1, -1, 2, "
                         "-2, inf, -inf)")
    if ord in (1, -1, np.inf, -np.inf):  # the largest (smallest) column or row sum
        pick = _max if ord in (1, np.inf) else _min
        summed, over = (row, col) if ord in (1, -1) else (col, row)
        out = pick(_sum(_abs(x), summed, True), over, True)
        return out if keep else squeeze(out, axes)
    if ord not in (2, -2, "nuc"):
        raise GraphError(f"norm: ord={ord!r} is not a matrix norm ('fro', 'nuc', 1, -1, 2, "
                         "-2, inf, -inf)")
    rest = tuple(k for k in range(x.ndim) if k not in axes)
    moved = transpose(x, (*rest, row, col))
    s = svd(moved)[1]
    out = _sum(s, -1) if ord == "nuc" else _max(s, -1) if ord == 2 else _min(s, -1)
    return expand_dims(out, tuple(sorted(axes))) if keep else out


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
