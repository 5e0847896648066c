"""Factorizations and solves of `gc.linalg`: cholesky (with its gradient op, cholesky_grad),
solve, solve_triangular, cho_solve, det, norm; and matrix_mask, the triangles and diagonals
their rules multiply by. The public functions are in graphc/ops/linalg.py.

Every matrix op works on stacks (..., m, n), NumPy's way; a right-hand side `b` of one axis
is a vector, any other is a stack of matrices (..., n, k) (NumPy 2's `solve`). The rules are
the standard matrix-calculus results (Giles 2008, "Collected matrix derivative results";
Murray 2016 for the Cholesky factor), written in graph ops, so every order works; where a
rule needs A^-1 B it solves (`solve_triangular`, `cho_solve`, `solve`), never inverting.

Notation in the comments: sym(X) = (X + X^T) / 2; tril(X) the lower triangle; Phi(X) the
lower triangle with the diagonal halved; X^-T = (X^-1)^T.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import scipy.linalg
import sympy

from graphc.errors import ShapeError
from graphc.ir import types
from graphc.ir.op import Op, entries, register
from graphc.ir.params import AXES, FLAG, param
from graphc.ops import symbolic
from graphc.ops.base import as_float_dtype, build
from graphc.ops.einsum import trace
from graphc.ops.elementwise import equal, where
from graphc.ops.linalg import inv, matmul
from graphc.ops.reduce import sum as _sum
from graphc.ops.shape import broadcast_to, expand_dims, getitem, reshape, squeeze, swapaxes

BLOCK = 64  # block size of cholesky_grad's blocked algorithm (Murray 2016)


# -- helpers of the rules -------------------------------------------------------------------
def mT(x):
    """The matrix transpose of a stack: the last two axes swapped."""
    return swapaxes(x, -1, -2)


def sym(x):
    return (x + mT(x)) * 0.5


def mask(x, lower=False, diagonal=False, upper=False):
    """A 0/1 matrix shaped like x's last two axes: the parts named are 1."""
    return build(MatrixMask(lower, diagonal, upper), x)


def tril(x, strict=False):
    return x * mask(x, lower=True, diagonal=not strict)


def triu(x, strict=False):
    return x * mask(x, upper=True, diagonal=not strict)


def phi(x):
    """The lower triangle with the diagonal halved (Murray's Phi)."""
    return x * (mask(x, lower=True) + mask(x, diagonal=True) * 0.5)


def mv(a, v):
    """A stack of matrices times a stack of vectors: (..., n, k) @ (..., k) -> (..., n)."""
    return squeeze(matmul(a, expand_dims(v, -1)), -1)


def outer(u, v):
    """Stacked outer products: (..., n), (..., k) -> (..., n, k)."""
    return expand_dims(u, -1) * expand_dims(v, -2)


def apply_to(op, a, b, vec: bool):
    """`op(a, b)` where b is a vector (or a stack of vectors when `vec`): a stack of vectors
    goes in as a stack of one-column matrices, since NumPy reads a 2-D b as a matrix."""
    g = a.graph
    if vec and b.ndim > 1:
        return squeeze(g.apply(op, [a, expand_dims(b, -1)]), -1)
    return g.apply(op, [a, b])


def tri_solve(a, b, lower=True, trans=False, vec=None):
    """op(a)^-1 b for a triangular a; op is the transpose when `trans`."""
    return apply_to(SolveTriangular(lower, trans), a, b, b.ndim == 1 if vec is None else vec)


def cholesky_tangent(low, s):
    """d chol for a symmetric tangent s of the matrix: L Phi(L^-1 s L^-T)."""
    z = tri_solve(low, mT(tri_solve(low, s)))  # L^-1 (L^-1 s)^T = L^-1 s L^-T (s symmetric)
    return matmul(low, phi(z))


def _pad_batch(x, n_batch: int):
    """(m, *batch, p, q) -> (m, 1, ..., 1, *batch, p, q) with n_batch axes between m and p."""
    extra = n_batch - (x.ndim - 3)
    if extra <= 0:
        return x
    return reshape(x, (x.shape[0], *(1,) * extra, *x.shape[1:]))


def batch_solve(op, node, ins, m):
    """The batching rule of an (a, b) solve: b as a stack of matrices, batch axes aligned."""
    (a, a_b), (b, b_b) = ins
    vec = node.inputs[1].ndim == 1
    if vec:
        b = expand_dims(b, -1)
    n_batch = node.ndim - (1 if vec else 2)
    a = _pad_batch(a, n_batch) if a_b else a
    b = _pad_batch(b, n_batch) if b_b else b
    out = node.graph.apply(op, [a, b])
    return squeeze(out, -1) if vec else out


# -- checks ---------------------------------------------------------------------------------
def square(name: str, a) -> None:
    if a.ndim < 2 or not types.dim_eq(a.shape[-1], a.shape[-2]):
        raise ShapeError(f"{name} needs square matrices (..., n, n), got "
                         f"{types.fmt_shape(a.shape)}")
    if not types.is_float(a.dtype):
        raise ShapeError(f"{name} needs a float matrix, got {a.dtype}")


def solve_shape(name: str, a, b):
    """The result's shape of solving a (..., n, n) against b (n,) or (..., n, k)."""
    square(name, a)
    if not types.is_float(b.dtype):
        raise ShapeError(f"{name} needs a float right-hand side, got {b.dtype}")
    n = a.shape[-1]
    if b.ndim == 0 or not types.dim_eq(b.shape[-1 if b.ndim == 1 else -2], n):
        raise ShapeError(f"{name}: a is {types.fmt_shape(a.shape)} but b is "
                         f"{types.fmt_shape(b.shape)}; b must be ({n},) or (..., {n}, k)")
    try:
        if b.ndim == 1:
            return a.shape[:-1], np.result_type(a.dtype, b.dtype)
        batch = types.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError as e:
        raise ShapeError(f"{name}: the batch axes of {types.fmt_shape(a.shape)} and "
                         f"{types.fmt_shape(b.shape)} do not broadcast: {e}") from None
    return (*batch, n, b.shape[-1]), np.result_type(a.dtype, b.dtype)


SMALL = 32  # stacks of matrices up to this size go to NumPy's looping solve, in C


def solve_stacks(one, a: np.ndarray, b: np.ndarray, dtype, small=None) -> np.ndarray:
    """`one(a2, b2)` (one n x n system, b2 n x k) over stacks with NumPy's batch rules: a
    single matrix solves every right-hand side in one call; a stack of small matrices goes
    to `small(a, b)` (the same solve on whole stacks, NumPy's C loop), larger ones matrix by
    matrix (as the rows of a Jacobian, many small systems are the common stack)."""
    vec = b.ndim == 1
    if vec:
        b = b[:, None]
    n, k = b.shape[-2:]
    if a.ndim > 2 and small is not None and n <= SMALL:
        x = np.asarray(small(a, b), dtype=dtype)
        return x[..., 0] if vec else x
    if a.ndim == 2:
        if b.ndim == 2:
            x = one(a, b)
        else:  # every right-hand side side by side: one call
            cols = np.moveaxis(b, -2, 0).reshape(n, -1)
            x = np.moveaxis(one(a, cols).reshape((n, *b.shape[:-2], k)), 0, -2)
    else:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a = np.broadcast_to(a, (*batch, n, n))
        b = np.broadcast_to(b, (*batch, n, k))
        x = np.empty((*batch, n, k), dtype)
        for idx in np.ndindex(*batch):
            x[idx] = one(a[idx], b[idx])
    x = np.asarray(x, dtype=dtype)
    return x[..., 0] if vec else x


def stack_of(fn, a: np.ndarray, *rest: np.ndarray):
    """`fn` on each matrix of a stack (a and rest broadcast over their batch axes)."""
    if a.ndim == 2 and all(r.ndim == 2 for r in rest):
        return fn(a, *rest)
    batch = np.broadcast_shapes(*(x.shape[:-2] for x in (a, *rest)))
    arrays = [np.broadcast_to(x, (*batch, *x.shape[-2:])) for x in (a, *rest)]
    first = None
    for idx in np.ndindex(*batch):
        r = fn(*(x[idx] for x in arrays))
        if first is None:
            first = np.empty((*batch, *r.shape), r.dtype)
        first[idx] = r
    return first


def sympy_stack(a: np.ndarray, fn, *rest: np.ndarray) -> np.ndarray:
    """`fn` on sympy Matrices, one stack entry at a time; results stacked as object arrays."""
    batch = np.broadcast_shapes(*(x.shape[:-2] for x in (a, *rest)))
    arrays = [np.broadcast_to(x, (*batch, *x.shape[-2:])) for x in (a, *rest)]
    results = [fn(*(sympy.Matrix(x[idx].tolist()) for x in arrays))
               for idx in np.ndindex(*batch)]
    first = symbolic.object_array(results[0])
    out = np.empty((*batch, *first.shape), dtype=object)
    for idx, r in zip(np.ndindex(*batch), results):
        out[idx] = symbolic.object_array(r)
    return out


def sympy_solve(a: np.ndarray, b: np.ndarray, fn) -> np.ndarray:
    """`fn(A, B)` (sympy Matrices) over stacks, b a vector or a stack of matrices."""
    if b.ndim == 1:
        return sympy_stack(a, fn, b[:, None])[..., 0]
    return sympy_stack(a, fn, b)


def _tril_matrix(m):
    return sympy.Matrix(m.rows, m.cols, lambda i, j: m[i, j] if j <= i else 0)


def _triu_matrix(m):
    return sympy.Matrix(m.rows, m.cols, lambda i, j: m[i, j] if j >= i else 0)


# -- masks ----------------------------------------------------------------------------------
@register
@dataclasses.dataclass(frozen=True)
class MatrixMask(Op):
    """1 on the parts of a matrix named (strict lower triangle, diagonal, strict upper
    triangle), 0 elsewhere, shaped like the input's last two axes: tril, triu, the identity
    and Phi's halved diagonal are products with it. It reads only its input's shape, and
    gives the same read-only array for the same shape (kept, as a mask of a 1,000 x 1,000
    matrix costs more to make than to apply)."""

    name: ClassVar[str] = "matrix_mask"
    differentiable: ClassVar[bool] = False
    bounded: ClassVar[bool] = True
    shape_only: ClassVar[bool] = True
    lower: bool = param(FLAG, False)
    diagonal: bool = param(FLAG, False)
    upper: bool = param(FLAG, False)

    def infer(self, x):
        if x.ndim < 2:
            raise ShapeError(f"matrix_mask needs a matrix, got {types.fmt_shape(x.shape)}")
        return x.shape[-2:], as_float_dtype(x.dtype)

    def _pattern(self, m: int, n: int) -> np.ndarray:
        i, j = np.arange(m)[:, None], np.arange(n)[None, :]
        return ((j < i) & self.lower) | ((j == i) & self.diagonal) | ((j > i) & self.upper)

    def forward(self, x):
        dtype = as_float_dtype(x.dtype)
        key = (self.lower, self.diagonal, self.upper, *x.shape[-2:], dtype.str)
        hit = _MASKS.get(key)
        if hit is None:
            hit = self._pattern(*x.shape[-2:]).astype(dtype)
            hit.flags.writeable = False
            if len(_MASKS) >= MAX_MASKS:
                _MASKS.clear()
            _MASKS[key] = hit
        return hit

    def sympy(self, node, x):
        return symbolic.object_array(self._pattern(*x.shape[-2:]).astype(int))

    def batch(self, node, ins, m):  # the same pattern for every row
        x = ins[0][0]
        return broadcast_to(build(self, getitem(x, 0)), (m, *node.shape))


MAX_MASKS = 16
_MASKS: dict[tuple, np.ndarray] = {}  # (parts, m, n, dtype) -> the read-only pattern


# -- Cholesky -------------------------------------------------------------------------------
@register
@dataclasses.dataclass(frozen=True)
class Cholesky(Op):
    """The lower Cholesky factor L of symmetric positive definite matrices, A = L L^T.

    The value reads A's lower triangle (NumPy, LAPACK); the derivatives are those of a
    symmetric A: dL = L Phi(L^-1 sym(dA) L^-T), and the gradient cholesky_grad(L, g) is
    symmetric (Murray 2016, "Differentiation of the Cholesky decomposition")."""

    name: ClassVar[str] = "cholesky"
    fresh: ClassVar[bool] = True

    def infer(self, a):
        square("cholesky", a)
        return a.shape, a.dtype

    def forward(self, a):
        if a.ndim == 2:
            return scipy.linalg.cholesky(a, lower=True, check_finite=False)
        return np.linalg.cholesky(a)

    def bprop(self, inputs, out, g, i):
        return build(CholeskyGrad(), out, g)

    def jvp(self, inputs, out, t, i):
        return cholesky_tangent(out, sym(t))

    def batch(self, node, ins, m):
        return build(self, ins[0][0])

    def sympy(self, node, a):
        return sympy_stack(a, lambda m: m.cholesky(hermitian=False))

    def cost(self, node):
        n = entries(node.shape[-1:])
        return entries(node.shape) * n / 3.0


@register
@dataclasses.dataclass(frozen=True)
class CholeskyGrad(Op):
    """The gradient of a function of L = chol(A) with respect to the symmetric A, from L and
    the cotangent Lb: S = sym(L^-T Phi(L^T Lb) L^-1), reading the lower triangles of L and Lb.

    Run by Murray's blocked algorithm (about 2n^3/3 flops, mostly matrix products); its own
    derivatives are in graph ops: it is linear in Lb, with the adjoint Lb = L Phi(L^-1 sym(G)
    L^-T) (cholesky's jvp), and dS = sym(L^-T Phi(dL^T Lb) L^-1 - 2 S dL L^-1) in L."""

    name: ClassVar[str] = "cholesky_grad"
    arity: ClassVar[int] = 2
    fresh: ClassVar[bool] = True

    def infer(self, low, lbar):
        square("cholesky_grad", low)
        square("cholesky_grad", lbar)
        try:
            shape = types.broadcast_shapes(low.shape, lbar.shape)
        except ValueError as e:
            raise ShapeError(f"cholesky_grad: {e}") from None
        return shape, np.result_type(low.dtype, lbar.dtype)

    def forward(self, low, lbar):
        dtype = np.result_type(low.dtype, lbar.dtype)
        if (low.ndim > 2 or lbar.ndim > 2) and low.shape[-1] <= SMALL:
            return _cholesky_grad_small(low, lbar, dtype)
        return stack_of(lambda a, b: _cholesky_grad(a, b, dtype), low, lbar)

    def bprop(self, inputs, out, g, i):
        low, lbar = inputs
        low_t = tril(low)
        sg = sym(g)
        q = phi(tri_solve(low, mT(tri_solve(low, sg))))  # Phi(L^-1 sym(G) L^-T)
        if i == 1:
            return matmul(low_t, q)
        # tril(Lb Q^T - 2 S sym(G) L^-T), with S sym(G) L^-T = (L^-1 sym(G) S)^T
        return tril(matmul(tril(lbar), mT(q)) - mT(tri_solve(low, matmul(sg, out))) * 2.0)

    def jvp(self, inputs, out, t, i):
        low, lbar = inputs
        if i == 1:
            return build(self, low, t)
        dl = tril(t)
        p = phi(matmul(mT(dl), tril(lbar)))
        y = tri_solve(low, p, trans=True)  # L^-T Phi(dL^T Lb)
        first = mT(tri_solve(low, mT(y), trans=True))  # ... L^-1
        dl_linv = mT(tri_solve(low, mT(dl), trans=True))  # dL L^-1
        return sym(first - matmul(out, dl_linv) * 2.0)

    def batch(self, node, ins, m):
        low, lbar = (_pad_batch(x, node.ndim - 2) if b else x for x, b in ins)
        return build(self, low, lbar)

    def sympy(self, node, low, lbar):
        def grad(lo, lb):
            lo, lb = _tril_matrix(lo), _tril_matrix(lb)
            p = lo.T * lb
            p = sympy.Matrix(p.rows, p.cols, lambda r, c: p[r, c] if c < r else
                             p[r, c] / 2 if c == r else 0)
            linv = lo.inv()
            x = linv.T * p * linv
            return (x + x.T) / 2
        return sympy_stack(low, grad, lbar)

    def cost(self, node):
        n = entries(node.shape[-1:])
        return entries(node.shape) * n * 2.0 / 3.0


def _cholesky_grad(low: np.ndarray, lbar: np.ndarray, dtype) -> np.ndarray:
    """Murray's blocked reverse-mode Cholesky (2016, `chol_blocked_rev`), each diagonal block
    by the formula: the lower triangle R of the gradient (S = (R + R^T) / 2) is built in place
    from tril(Lb), block column by block column from the last."""
    n = low.shape[0]
    acc = np.tril(lbar).astype(dtype, copy=False)  # np.tril made a new array
    for k in range(n, 0, -BLOCK):
        j = max(0, k - BLOCK)
        r_, d_, b_, c_ = low[j:k, :j], low[j:k, j:k], low[k:, :j], low[k:, j:k]
        rb, db, bb, cb = acc[j:k, :j], acc[j:k, j:k], acc[k:, :j], acc[k:, j:k]
        if k < n:
            cb[:] = scipy.linalg.solve_triangular(d_, cb.T, trans=1, lower=True,
                                                  check_finite=False).T  # Cb D^-1
            bb -= cb @ r_
            db -= cb.T @ c_
        db[:] = _block_grad(d_, np.tril(db))
        if j:
            rb -= cb.T @ b_ + (db + db.T) @ r_
    out = acc + acc.T
    out *= 0.5
    return out


def _cholesky_grad_small(low: np.ndarray, lbar: np.ndarray, dtype) -> np.ndarray:
    """The formula on whole stacks of small matrices, by NumPy's stacked products and solves."""
    low = np.tril(low)
    p = np.tril(np.swapaxes(low, -1, -2) @ np.tril(lbar))
    n = low.shape[-1]
    p[..., range(n), range(n)] *= 0.5
    upper = np.swapaxes(low, -1, -2)
    x = np.linalg.solve(upper, p)  # L^-T P
    x = np.linalg.solve(upper, np.swapaxes(x, -1, -2))  # (L^-T P L^-1)^T
    return np.asarray((x + np.swapaxes(x, -1, -2)) * 0.5, dtype=dtype)


def _block_grad(d: np.ndarray, dbar: np.ndarray) -> np.ndarray:
    """The lower triangle R (S = (R + R^T) / 2) of sym(D^-T Phi(D^T Db) D^-1) for one block."""
    d = np.tril(d)
    p = np.tril(d.T @ dbar)
    p[np.diag_indices_from(p)] *= 0.5
    x = scipy.linalg.solve_triangular(d, p, trans=1, lower=True, check_finite=False)
    x = scipy.linalg.solve_triangular(d, x.T, trans=1, lower=True, check_finite=False)
    return np.tril(x + x.T) - np.diag(np.diag(x))  # x is (D^-T P D^-1)^T


# -- solves ---------------------------------------------------------------------------------
@register
@dataclasses.dataclass(frozen=True)
class SolveTriangular(Op):
    """x = op(A)^-1 b for triangular A (op: the transpose when `trans`), reading A's lower
    (or upper) triangle only. With x: b_bar = op(A)^-T g; op(A)_bar = -b_bar x^T, kept on
    A's triangle; dx = op(A)^-1 (db - op(dA) x)."""

    name: ClassVar[str] = "solve_triangular"
    arity: ClassVar[int] = 2
    fresh: ClassVar[bool] = True
    lower: bool = param(FLAG, False)
    trans: bool = param(FLAG, False)

    def infer(self, a, b):
        return solve_shape("solve_triangular", a, b)

    def forward(self, a, b):
        def one(a2, b2):
            return scipy.linalg.solve_triangular(a2, b2, trans=int(self.trans), lower=self.lower,
                                                 check_finite=False)

        def small(a, b):  # the triangle only, by NumPy's stacked solve
            a = np.tril(a) if self.lower else np.triu(a)
            return np.linalg.solve(np.swapaxes(a, -1, -2) if self.trans else a, b)
        return solve_stacks(one, a, b, np.result_type(a.dtype, b.dtype), small)

    def _tri(self, x):
        return tril(x) if self.lower else triu(x)

    def bprop(self, inputs, out, g, i):
        a, b = inputs
        vec = b.ndim == 1
        bbar = tri_solve(a, g, self.lower, not self.trans, vec)
        if i == 1:
            return bbar
        abar = outer(bbar, out) if vec else matmul(bbar, mT(out))
        return -self._tri(mT(abar) if self.trans else abar)

    def jvp(self, inputs, out, t, i):
        a, b = inputs
        vec = b.ndim == 1
        if i == 0:
            da = self._tri(t)
            da = mT(da) if self.trans else da
            t = -(mv(da, out) if vec else matmul(da, out))
        return tri_solve(a, t, self.lower, self.trans, vec)

    def batch(self, node, ins, m):
        return batch_solve(self, node, ins, m)

    def sympy(self, node, a, b):
        def solve(am, bm):
            if self.trans:
                am = am.T
                lower = not self.lower
            else:
                lower = self.lower
            if lower:
                return _tril_matrix(am).lower_triangular_solve(bm)
            return _triu_matrix(am).upper_triangular_solve(bm)
        return sympy_solve(a, b, solve)

    def cost(self, node):
        a = node.inputs[0]
        return entries(node.shape) * entries(a.shape[-1:])


@register
@dataclasses.dataclass(frozen=True)
class Solve(Op):
    """x = A^-1 b for square A (LU with pivoting). b_bar = A^-T g, A_bar = -b_bar x^T;
    dx = A^-1 (db - dA x)."""

    name: ClassVar[str] = "solve"
    arity: ClassVar[int] = 2
    fresh: ClassVar[bool] = True

    def infer(self, a, b):
        return solve_shape("solve", a, b)

    def forward(self, a, b):
        return np.asarray(np.linalg.solve(a, b), dtype=np.result_type(a.dtype, b.dtype))

    def bprop(self, inputs, out, g, i):
        a, b = inputs
        vec = b.ndim == 1
        bbar = apply_to(self, mT(a), g, vec)
        if i == 1:
            return bbar
        return -(outer(bbar, out) if vec else matmul(bbar, mT(out)))

    def jvp(self, inputs, out, t, i):
        a, b = inputs
        vec = b.ndim == 1
        if i == 0:
            t = -(mv(t, out) if vec else matmul(t, out))
        return apply_to(self, a, t, vec)

    def batch(self, node, ins, m):
        return batch_solve(self, node, ins, m)

    def sympy(self, node, a, b):
        return sympy_solve(a, b, lambda am, bm: am.LUsolve(bm))

    def cost(self, node):
        a = node.inputs[0]
        n = entries(a.shape[-1:])
        return entries(a.shape) * n * 2.0 / 3.0 + entries(node.shape) * n


@register
@dataclasses.dataclass(frozen=True)
class ChoSolve(Op):
    """x = (C C^T)^-1 b from the lower Cholesky factor C (its lower triangle is read).
    b_bar = cho_solve(C, g); with A_bar = -b_bar x^T, C_bar = tril((A_bar + A_bar^T) C)
    = -tril(b_bar (x^T C) + x (b_bar^T C)), never an n x n product of b_bar and x."""

    name: ClassVar[str] = "cho_solve"
    arity: ClassVar[int] = 2
    fresh: ClassVar[bool] = True

    def infer(self, c, b):
        return solve_shape("cho_solve", c, b)

    def forward(self, c, b):
        def one(c2, b2):
            return scipy.linalg.cho_solve((c2, True), b2, check_finite=False)

        def small(c, b):  # C^-T (C^-1 b), NumPy's stacked solves on the lower triangle
            c = np.tril(c)
            return np.linalg.solve(np.swapaxes(c, -1, -2), np.linalg.solve(c, b))
        return solve_stacks(one, c, b, np.result_type(c.dtype, b.dtype), small)

    def bprop(self, inputs, out, g, i):
        c, b = inputs
        vec = b.ndim == 1
        bbar = apply_to(self, c, g, vec)
        if i == 1:
            return bbar
        c = tril(c)  # only the lower triangle is read: the rule must not see the rest
        if vec:  # x^T C and b_bar^T C as vectors: C^T x, C^T b_bar
            return -tril(outer(bbar, mv(mT(c), out)) + outer(out, mv(mT(c), bbar)))
        return -tril(matmul(bbar, matmul(mT(out), c)) + matmul(out, matmul(mT(bbar), c)))

    def jvp(self, inputs, out, t, i):
        c, b = inputs
        vec = b.ndim == 1
        if i == 0:  # dA x = dC (C^T x) + C (dC^T x), dC = tril(t)
            dc = tril(t)
            c_low = tril(c)
            if vec:
                t = -(mv(dc, mv(mT(c_low), out)) + mv(c_low, mv(mT(dc), out)))
            else:
                t = -(matmul(dc, matmul(mT(c_low), out)) + matmul(c_low, matmul(mT(dc), out)))
        return apply_to(self, c, t, vec)

    def batch(self, node, ins, m):
        return batch_solve(self, node, ins, m)

    def sympy(self, node, c, b):
        def solve(cm, bm):
            low = _tril_matrix(cm)
            return low.T.upper_triangular_solve(low.lower_triangular_solve(bm))
        return sympy_solve(c, b, solve)

    def cost(self, node):
        c = node.inputs[0]
        return 2.0 * entries(node.shape) * entries(c.shape[-1:])


# -- determinant and norm -------------------------------------------------------------------
@register
@dataclasses.dataclass(frozen=True)
class Det(Op):
    """The determinant of square matrices (..., n, n). d det = det tr(A^-1 dA), so the
    gradient is g det A^-T (the adjugate; not finite where A is singular)."""

    name: ClassVar[str] = "det"

    def infer(self, a):
        square("det", a)
        return a.shape[:-2], a.dtype

    def forward(self, a):
        return np.asarray(np.linalg.det(a), dtype=a.dtype)

    def bprop(self, inputs, out, g, i):
        a = inputs[0]
        return expand_dims(g * out, (-2, -1)) * mT(inv(a))

    def jvp(self, inputs, out, t, i):
        return out * trace(apply_to(Solve(), inputs[0], t, False))  # det tr(A^-1 dA)

    def batch(self, node, ins, m):
        return build(self, ins[0][0])

    def sympy(self, node, a):
        return sympy_stack(a, lambda m: sympy.Matrix([[m.det()]]))[..., 0, 0]

    def cost(self, node):
        a = node.inputs[0]
        return entries(a.shape) * entries(a.shape[-1:]) * 2.0 / 3.0


@register
@dataclasses.dataclass(frozen=True)
class Norm(Op):
    """The Euclidean norm over `axis` (the vector 2-norm, or Frobenius over two axes).
    d|x| = <x, dx> / |x|; at x = 0 the gradient is 0 (a subgradient), not NaN."""

    name: ClassVar[str] = "norm"
    axis: tuple = param(AXES, ())
    keepdims: bool = param(FLAG, False)

    def infer(self, x):
        for k in self.axis:
            if k >= x.ndim:
                raise ShapeError(f"norm: axis {k} is out of range for "
                                 f"{types.fmt_shape(x.shape)}")
        if self.keepdims:
            shape = tuple(1 if k in self.axis else d for k, d in enumerate(x.shape))
        else:
            shape = tuple(d for k, d in enumerate(x.shape) if k not in self.axis)
        return shape, as_float_dtype(x.dtype)

    def forward(self, x):
        dtype = as_float_dtype(x.dtype)
        x = x.astype(dtype, copy=False)
        if len(self.axis) == x.ndim and x.ndim and not self.keepdims:
            flat = x.reshape(-1)
            return np.asarray(np.sqrt(np.dot(flat, flat)), dtype=dtype)
        return np.sqrt(np.sum(np.square(x), axis=self.axis, keepdims=self.keepdims))

    def _keep(self, v):
        return v if self.keepdims or not self.axis else expand_dims(v, self.axis)

    def _safe(self, n):
        return where(equal(n, 0.0), 1.0, n)  # x is 0 wherever its norm is

    def bprop(self, inputs, out, g, i):
        x = inputs[0]
        return self._keep(g) * x / self._keep(self._safe(out))

    def jvp(self, inputs, out, t, i):
        x = inputs[0]
        return _sum(x * t, self.axis, self.keepdims) / self._safe(out)

    def batch(self, node, ins, m):
        return build(Norm(tuple(k + 1 for k in self.axis), self.keepdims), ins[0][0])

    def sympy(self, node, x):
        return symbolic.over_axes(x, self.axis, self.keepdims,
                                  lambda r: sympy.sqrt(sympy.Add(*[v ** 2 for v in r])))
