"""Decompositions with several results, for `gc.linalg`: eigh -> (w, v), svd -> (u, s, vh)
(reduced: full_matrices=False) and qr -> (q, r) (reduced). Each is one multi-output node read
through `Output` views (`graphc.ir.op.MultiOp`); the public functions are in
graphc/ops/linalg.py.

The rules are the standard ones, in graph ops so that every order works: eigh from Giles
(2008), svd from Townsend (2016, "Differentiating the singular value decomposition"), qr from
Walter & Lehmann (2018) and Seeger et al. (2017), as JAX and PyTorch write them. Eigenvectors
and singular vectors are defined up to sign (and, for a repeated value, up to a rotation of
the eigenspace): their derivatives hold where the values are distinct, and involve
1 / (w_j - w_i) (or 1 / (s_j^2 - s_i^2)) otherwise. SymPy has no closed form for any of the
three, so `to_sympy` refuses them.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.op import MultiOp, entries, register
from graphc.ops.einsum import diagonal
from graphc.ops.elementwise import zeros_like
from graphc.ops.factor import mask, mT, square, sym, tri_solve, tril
from graphc.ops.linalg import matmul
from graphc.ops.shape import concatenate, expand_dims, getitem


def _no_sympy(op):
    raise GraphError(f"{op}: SymPy has no closed form for it (to_sympy writes ops that have "
                     "one); evaluate the graph numerically instead")


def _reciprocal_gaps(d):
    """F_ij = 1 / d_ij off the diagonal, 0 on it (d: a stack of square gap matrices)."""
    eye = mask(d, diagonal=True)
    return (1.0 - eye) / (d + eye)


def _add(a, b):
    return b if a is None else a + b


def _short_side(name: str, a) -> tuple:
    """(m, n, k = min(m, n)) of a stack of matrices (..., m, n)."""
    if a.ndim < 2 or not types.is_float(a.dtype):
        raise ShapeError(f"{name} needs a float matrix (..., m, n), got "
                         f"{types.fmt_shape(a.shape)} of {a.dtype}")
    m, n = a.shape[-2:]
    if isinstance(m, int) and isinstance(n, int):
        return m, n, min(m, n)
    if types.dim_eq(m, n):
        return m, n, m
    raise ShapeError(f"{name} of {types.fmt_shape(a.shape)}: min(m, n) must be known when "
                     "the graph is built (static sizes, or equal symbolic ones)")


def _may_exceed(p, q) -> bool:
    """Whether size p may be larger than size q (unknown symbolic sizes: maybe)."""
    if isinstance(p, int) and isinstance(q, int):
        return p > q
    return not types.dim_eq(p, q)


# -- eigh -----------------------------------------------------------------------------------
@register
@dataclasses.dataclass(frozen=True)
class Eigh(MultiOp):
    """Eigenvalues (ascending) and eigenvectors of symmetric matrices, A = V diag(w) V^T.

    The value reads A's lower triangle (NumPy); the derivatives are for symmetric A: with
    M = V^T sym(dA) V, dw = diag(M) and dV = V (F o M), F_ij = 1 / (w_j - w_i) (0 on the
    diagonal); the gradient is sym(V (diag(w_bar) + F o (V^T V_bar)) V^T)."""

    name: ClassVar[str] = "eigh"

    def infer(self, a):
        square("eigh", a)
        return [(a.shape[:-1], a.dtype), (a.shape, a.dtype)]

    def forward(self, a):
        w, v = np.linalg.eigh(a)
        return w, v

    def bprop(self, inputs, outs, gs, i):
        w, v = outs
        gw, gv = gs
        inner = None
        if gw is not None:
            inner = expand_dims(gw, -2) * mask(v, diagonal=True)  # diag(w_bar)
        if gv is not None:
            inner = _add(inner, _gaps(w) * matmul(mT(v), gv))
        if inner is None:
            return None
        return sym(matmul(matmul(v, inner), mT(v)))

    def jvp(self, inputs, outs, t, i):
        w, v = outs
        m = matmul(matmul(mT(v), sym(t)), v)
        return [diagonal(m), matmul(v, _gaps(w) * m)]

    def batch(self, node, ins, m):
        from graphc.ops.linalg import eigh

        return list(eigh(ins[0][0]))

    def sympy(self, node, a):
        _no_sympy("eigh")

    def cost(self, node):
        a = node.inputs[0]
        return 9.0 * entries(a.shape) * entries(a.shape[-1:])


def _gaps(w):
    """F_ij = 1 / (w_j - w_i), 0 on the diagonal."""
    return _reciprocal_gaps(expand_dims(w, -2) - expand_dims(w, -1))


# -- svd ------------------------------------------------------------------------------------
@register
@dataclasses.dataclass(frozen=True)
class Svd(MultiOp):
    """The reduced singular value decomposition A = U diag(s) Vh, s descending, k = min(m, n).

    With dP = U^T dA V and F_ij = 1 / (s_j^2 - s_i^2) (0 on the diagonal): ds = diag(dP),
    dU = U (F o (dP S + S dP^T)) + (I - U U^T) dA V S^-1, dV likewise with dP^T and A^T
    (Townsend 2016); the gradient is the adjoint of that map."""

    name: ClassVar[str] = "svd"

    def infer(self, a):
        m, n, k = _short_side("svd", a)
        batch = a.shape[:-2]
        return [((*batch, m, k), a.dtype), ((*batch, k), a.dtype), ((*batch, k, n), a.dtype)]

    def forward(self, a):
        u, s, vh = np.linalg.svd(a, full_matrices=False)
        return u, s, vh

    def _parts(self, inputs, outs):
        u, s, vh = outs
        m, n = inputs[0].shape[-2:]
        row, col = expand_dims(s, -2), expand_dims(s, -1)  # s_j by column, s_i by row
        gaps = _reciprocal_gaps((row + col) * (row - col))  # 1 / (s_j^2 - s_i^2)
        return u, vh, mT(vh), row, col, gaps, _may_exceed(m, n), _may_exceed(n, m)

    def jvp(self, inputs, outs, t, i):
        u, vh, v, row, col, gaps, tall, wide = self._parts(inputs, outs)
        dp = matmul(matmul(mT(u), t), v)
        dps, sdp = dp * row, col * dp  # dP S, S dP
        du = matmul(u, gaps * (dps + mT(dps)))
        dv = matmul(v, gaps * (sdp + mT(sdp)))
        if tall:  # the part of dA V outside U's columns
            dav = matmul(t, v)
            du = du + (dav - matmul(u, matmul(mT(u), dav))) / row
        if wide:
            dau = matmul(mT(t), u)
            dv = dv + (dau - matmul(v, matmul(mT(v), dau))) / row
        return [du, diagonal(dp), mT(dv)]

    def bprop(self, inputs, outs, gs, i):
        gu, gs_, gvh = gs
        u, vh, v, row, col, gaps, tall, wide = self._parts(inputs, outs)
        inner = None
        if gs_ is not None:
            inner = expand_dims(gs_, -2) * mask(gaps, diagonal=True)  # diag(s_bar)
        if gu is not None:
            j = matmul(mT(u), gu)
            inner = _add(inner, (gaps * (j - mT(j))) * row)  # (F o (J - J^T)) S
        if gvh is not None:
            gv = mT(gvh)
            kk = matmul(vh, gv)
            inner = _add(inner, col * (gaps * (kk - mT(kk))))  # S (F o (K - K^T))
        if inner is None:
            return None
        out = matmul(matmul(u, inner), vh)
        if tall and gu is not None:  # (I - U U^T) U_bar S^-1 V^T
            out = out + matmul((gu - matmul(u, j)) / row, vh)
        if wide and gvh is not None:  # U S^-1 V_bar^T (I - V V^T)
            out = out + matmul(u, mT((gv - matmul(v, kk)) / row))
        return out

    def batch(self, node, ins, m):
        from graphc.ops.linalg import svd

        return list(svd(ins[0][0]))

    def sympy(self, node, a):
        _no_sympy("svd")

    def cost(self, node):
        a = node.inputs[0]
        m, n = (entries(a.shape[-2:-1]), entries(a.shape[-1:]))
        return 4.0 * entries(a.shape) * min(m, n) + 8.0 * entries(a.shape[:-2]) * min(m, n) ** 3


# -- qr -------------------------------------------------------------------------------------
@register
@dataclasses.dataclass(frozen=True)
class Qr(MultiOp):
    """The reduced QR decomposition A = Q R (Householder, as NumPy): Q (m, k) orthonormal
    columns, R (k, n) upper triangular, k = min(m, n); R must be non-singular for the
    derivatives. For m >= n, with C = Q^T dA R^-1 and W = tril(C, -1) - tril(C, -1)^T:
    dQ = Q (W - C) + dA R^-1, dR = (C - W) R; the gradient is (Q_bar + Q copyltu(M)) R^-T with
    M = R R_bar^T - Q_bar^T Q. A wide A = [X | Y] is X's QR with R's last columns Q^T Y."""

    name: ClassVar[str] = "qr"

    def infer(self, a):
        m, n, k = _short_side("qr", a)
        batch = a.shape[:-2]
        return [((*batch, m, k), a.dtype), ((*batch, k, n), a.dtype)]

    def forward(self, a):
        q, r = np.linalg.qr(a, mode="reduced")
        return q, r

    def _wide(self, a) -> bool:
        m, n = a.shape[-2:]
        if isinstance(m, int) and isinstance(n, int):
            return m < n
        if types.dim_eq(m, n):
            return False
        raise GraphError(f"qr of {types.fmt_shape(a.shape)}: its derivative needs to know "
                         "whether the matrix is wide or tall; give it static sizes")

    def jvp(self, inputs, outs, t, i):
        a = inputs[0]
        q, r = outs
        if not self._wide(a):
            return list(_qr_tangent(q, r, t))
        m = a.shape[-2]
        left, right = (Ellipsis, slice(None, m)), (Ellipsis, slice(m, None))
        dq, dr1 = _qr_tangent(q, getitem(r, left), getitem(t, left))
        dr2 = matmul(mT(dq), getitem(a, right)) + matmul(mT(q), getitem(t, right))
        return [dq, concatenate([dr1, dr2], axis=-1)]

    def bprop(self, inputs, outs, gs, i):
        a = inputs[0]
        q, r = outs
        gq, gr = gs
        if gq is None and gr is None:
            return None
        if not self._wide(a):
            return _qr_cotangent(q, r, gq, gr)
        m = a.shape[-2]
        left, right = (Ellipsis, slice(None, m)), (Ellipsis, slice(m, None))
        y = getitem(a, right)
        if gr is None:
            return concatenate([_qr_cotangent(q, getitem(r, left), gq, None), zeros_like(y)],
                               axis=-1)
        gr1, gr2 = getitem(gr, left), getitem(gr, right)
        gq = _add(gq, matmul(y, mT(gr2)))  # R2 = Q^T Y also depends on Q
        return concatenate([_qr_cotangent(q, getitem(r, left), gq, gr1), matmul(q, gr2)],
                           axis=-1)

    def batch(self, node, ins, m):
        from graphc.ops.linalg import qr

        return list(qr(ins[0][0]))

    def sympy(self, node, a):
        _no_sympy("qr")

    def cost(self, node):
        a = node.inputs[0]
        m, n = (entries(a.shape[-2:-1]), entries(a.shape[-1:]))
        return 4.0 * entries(a.shape) * min(m, n)


def _qr_tangent(q, r, t):
    """(dQ, dR) of a square or tall QR."""
    x = mT(tri_solve(r, mT(t), lower=False, trans=True))  # dA R^-1
    c = matmul(mT(q), x)
    low = tril(c, strict=True)
    w = low - mT(low)
    return matmul(q, w - c) + x, matmul(c - w, r)


def _qr_cotangent(q, r, gq, gr):
    """A_bar of a square or tall QR: (Q_bar + Q copyltu(M)) R^-T, M = R R_bar^T - Q_bar^T Q."""
    m = None
    if gr is not None:
        m = matmul(r, mT(gr))
    if gq is not None:
        m = _add(m, -matmul(mT(gq), q))
    m = tril(m) + mT(tril(m, strict=True))  # the lower triangle mirrored: symmetric
    y = matmul(q, m)
    y = y if gq is None else gq + y
    return mT(tri_solve(r, mT(y), lower=False))  # Y R^-T
