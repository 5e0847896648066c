"""Linear algebra: matmul (batched, NumPy semantics), trace, diag, inv, slogdet; dot and outer
derive from them. matmul is bilinear: its jvp applies matmul to one tangent at a time."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from graphc.errors import ShapeError
from graphc.ir import types
from graphc.ir.graph import Node, user_source_line
from graphc.ir.op import MultiOp, Op, entries, register
from graphc.ops import symbolic
from graphc.ops.base import atomic, build, graph_of, lift
from graphc.ops.elementwise import mul
from graphc.ops.reduce import sum as _sum
from graphc.ops.shape import broadcast_to, expand_dims, getitem, reshape, squeeze, swapaxes


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
        return [None, _sum(_mT(inv(inputs[0])) * t, axis=(-2, -1))]

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



