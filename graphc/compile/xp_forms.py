"""Each op written against an Array API namespace `xp`: the table the array_api, dask and cupy
backends (xp_backend.py) generate code from, in one place.

An elementwise op whose NumPy ufunc has a standard name is written as that function
(`np.arctan` -> `xp.atan`, `NAMES`); a few are written as a short template (`TEMPLATES`:
`sigmoid` is `1 / (1 + exp(-x))`, as SciPy's expit computes it). Every other op has a form
`form(xp, op, *arrays)` in `FORMS`, using only functions of the standard (2025.12, with its
`linalg` extension), so one compiled graph runs on NumPy, array-api-strict, Dask, CuPy or
PyTorch arrays alike.

What the standard lacks is said once, here, per namespace family (`MISSING`): an op listed
there has no form on that family, and compiling (or, for `backend="array_api"`, calling) a
graph that uses it raises `GraphError` naming the node, the op and the reason.
`OVERRIDES` gives a family its own form of an op (SciPy's `erf` ufunc on Dask chunks,
`cupyx.scipy.special.erf` on the GPU); Dask also runs any op without a form as one task over
whole arrays (`SINGLE_BLOCK`), which is right for the small parameter-sized values such ops
see in a data-parallel graph.
"""

from __future__ import annotations

import math

import numpy as np

# NumPy ufunc name -> the standard's name, where they differ (others are the same name)
NAMES = {"absolute": "abs", "arcsin": "asin", "arccos": "acos", "arctan": "atan",
         "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh", "arctan2": "atan2",
         "power": "pow", "true_divide": "divide", "rint": "round"}
STANDARD = frozenset({
    "negative", "exp", "log", "log1p", "expm1", "sqrt", "square", "abs", "sign", "sin", "cos",
    "tan", "tanh", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "log2",
    "log10", "reciprocal", "floor", "ceil", "round", "add", "subtract", "multiply", "divide",
    "pow", "maximum", "minimum", "atan2", "hypot", "logaddexp", "remainder", "less",
    "less_equal", "greater", "greater_equal", "equal", "not_equal"})

# elementwise ops the standard has no function for, as expressions of ones it has
TEMPLATES = {
    "sigmoid": "1.0 / (1.0 + xp.exp(-{0}))",  # SciPy's expit, term for term
    "softplus": "xp.logaddexp(xp.zeros_like({0}), {0})",  # np.logaddexp(0, x)
    "relu": "xp.maximum({0}, xp.zeros_like({0}))",
    "exp2": "2.0 ** {0}",
    "clip": "xp.minimum(xp.maximum({0}, {1}), {2})",  # np.clip: hi wins where lo > hi
}


def elementwise_form(op) -> str | None:
    """The op on operands `{0}`, `{1}`, ... as source over `xp`, or None."""
    if op.name in TEMPLATES:
        return TEMPLATES[op.name]
    uf = getattr(type(op), "ufunc", None)
    if uf is None or getattr(type(op), "ufunc_operands", None) is not None:
        return None
    name = NAMES.get(uf.__name__, uf.__name__)
    if name not in STANDARD:
        return None
    arity = uf.nin
    return f"xp.{name}({', '.join('{' + str(k) + '}' for k in range(arity))})"


def dtype_of(xp, dtype):
    """The namespace's dtype object for a NumPy dtype (`xp.float64`)."""
    name = "bool" if np.dtype(dtype) == np.bool_ else np.dtype(dtype).name
    return getattr(xp, name)


def _axes(axis, ndim):
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim if ndim else a for a in axes)


def _index(axis: int, ndim: int, piece) -> tuple:
    return (slice(None),) * (axis % ndim) + (piece, Ellipsis)


# -- the forms: one per op, over the namespace --------------------------------------------
def _where(xp, op, c, x, y):
    return xp.where(c, x, y)


def _cast(xp, op, x):
    return xp.astype(x, dtype_of(xp, op.dtype))


def _identity(xp, op, x):
    return x


def _zeros_like(xp, op, x):
    return xp.zeros_like(x)


def _ones_like(xp, op, x):
    return xp.ones_like(x)


def _reshape(xp, op, x):
    return xp.reshape(x, tuple(int(d) for d in op.shape))


def _broadcast_to(xp, op, x):
    return xp.broadcast_to(x, tuple(int(d) for d in op.shape))


def _expand_dims(xp, op, x):
    axes = (op.axis,) if isinstance(op.axis, int) else tuple(op.axis)
    ndim = x.ndim + len(axes)
    for a in sorted(a % ndim for a in axes):
        x = xp.expand_dims(x, axis=a)
    return x


def _squeeze(xp, op, x):
    axes = (tuple(a for a, d in enumerate(x.shape) if d == 1) if op.axis is None
            else _axes(op.axis, x.ndim))
    return xp.squeeze(x, axis=axes) if axes else x


def _transpose(xp, op, x):
    axes = tuple(range(x.ndim))[::-1] if op.axes is None else tuple(op.axes)
    return xp.permute_dims(x, axes)


def _concatenate(xp, op, *xs):
    return xp.concat(list(xs), axis=op.axis)


def _stack(xp, op, *xs):
    return xp.stack(list(xs), axis=op.axis)


def _split(xp, op, x):
    n = x.shape[op.axis]
    if isinstance(op.indices, int):
        step = n // op.indices
        bounds = [k * step for k in range(op.indices + 1)]
    else:
        bounds = [0, *(i % n if i < 0 else min(i, n) for i in op.indices), n]
    return tuple(x[_index(op.axis, x.ndim, slice(a, max(a, b)))]
                 for a, b in zip(bounds[:-1], bounds[1:]))


def _spelled(index) -> tuple:
    """A basic index spelled out for every axis: the standard reads no implicit trailing
    `:` (NumPy's `x[1]` of a matrix is `x[1, ...]`)."""
    index = index if isinstance(index, tuple) else (index,)
    return index if any(i is Ellipsis for i in index) else (*index, Ellipsis)


def _getitem(xp, op, x):
    index = _spelled(op.index)
    if not any(i is None for i in index):
        return x[index]
    # new axes inserted after indexing: array-api-strict refuses None beside an Ellipsis
    kept = sum(1 for i in index if i is not None and i is not Ellipsis)
    out, new = 0, []
    for i in index:
        if i is None:
            new.append(out)
            out += 1
        elif i is Ellipsis:
            out += x.ndim - kept
        elif isinstance(i, slice):
            out += 1
    x = x[tuple(i for i in index if i is not None)]
    for a in new:
        x = xp.expand_dims(x, axis=a)
    return x


def _scatter_index(xp, op, v, like):
    out = xp.zeros(like.shape, dtype=like.dtype)
    _add_into(xp, out, op.index, v, add=False)
    return out


def _add_into(xp, out, index, v, add=True):
    """out[index] (+)= v; the new axes (None) of a basic index are dropped from v's shape,
    which the standard's assignment does not read."""
    index = _spelled(index)
    if any(i is None for i in index):
        index = tuple(i for i in index if i is not None)
        v = xp.reshape(v, out[index].shape)
    out[index] = out[index] + v if add else v


def _scatter_add(xp, op, like, *terms):
    dense, windows = terms[:op.n_dense], terms[op.n_dense:]
    if dense:
        out = dense[0]
        for t in dense[1:]:
            out = out + t
        out = xp.astype(xp.broadcast_to(out, like.shape), like.dtype, copy=True)
    else:
        out = xp.zeros(like.shape, dtype=like.dtype)
    for index, v in zip(op.indices, windows):
        _add_into(xp, out, index, v)
    return out


def _reduction(name):
    def form(xp, op, x):
        axis = _axes(op.axis, x.ndim)
        return getattr(xp, name)(x, axis=axis, keepdims=op.keepdims)
    form.__name__ = f"_{name}"
    return form


def _arg_reduction(name):
    def form(xp, op, x):
        axis = op.axis if op.axis is None or isinstance(op.axis, int) else op.axis[0]
        return getattr(xp, name)(x, axis=axis, keepdims=op.keepdims)
    form.__name__ = f"_{name}"
    return form


def _count(xp, op, x):
    size = math.prod(int(x.shape[a]) for a in op.axis)
    return xp.asarray(size, dtype=dtype_of(xp, op.dtype))


def _matmul(xp, op, a, b):
    return xp.matmul(a, b)


def _eye_like(xp, op, x):
    return xp.eye(x.shape[-2], x.shape[-1], dtype=x.dtype)


def _trace(xp, op, x):
    n, m = x.shape
    k = min(n, m)
    flat = xp.reshape(x, (-1,))
    return xp.sum(flat[: (k - 1) * (m + 1) + 1 : m + 1] if k else flat[:0])


def _diag(xp, op, x):
    if x.ndim == 1:
        n = x.shape[0]
        out = xp.zeros((n * n,), dtype=x.dtype)
        out[:: n + 1] = x
        return xp.reshape(out, (n, n))
    n, m = x.shape
    k = min(n, m)
    flat = xp.reshape(x, (-1,))
    return xp.asarray(flat[: (k - 1) * (m + 1) + 1 : m + 1] if k else flat[:0], copy=True)


def _inv(xp, op, a):
    return xp.linalg.inv(a)


def _slogdet(xp, op, a):
    sign, logdet = xp.linalg.slogdet(a)
    return sign, logdet


def _det(xp, op, a):
    return xp.linalg.det(a)


def _cholesky(xp, op, a):
    return xp.linalg.cholesky(a)


def _solve_general(xp, a, b):
    """np.linalg.solve's rule: a 1-d b is one vector, else a stack of matrices."""
    if b.ndim == 1:
        return xp.linalg.solve(a, b[:, None])[..., 0]
    return xp.linalg.solve(a, b)


def _solve(xp, op, a, b):
    return _solve_general(xp, a, b)


def _solve_triangular(xp, op, a, b):
    a = xp.tril(a) if op.lower else xp.triu(a)
    if op.trans:
        a = xp.matrix_transpose(a)
    return _solve_general(xp, a, b)


def _cho_solve(xp, op, c, b):
    c = xp.tril(c)
    return _solve_general(xp, xp.matrix_transpose(c), _solve_general(xp, c, b))


def _norm(xp, op, x):
    axis = _axes(op.axis, x.ndim)
    return xp.sqrt(xp.sum(xp.square(x), axis=axis, keepdims=op.keepdims))


def _matrix_mask(xp, op, x):
    m, n = x.shape[-2:]
    i = xp.reshape(xp.arange(m), (m, 1))
    j = xp.reshape(xp.arange(n), (1, n))
    mask = xp.zeros((m, n), dtype=xp.bool)
    if op.lower:
        mask = mask | (j < i)
    if op.diagonal:
        mask = mask | (j == i)
    if op.upper:
        mask = mask | (j > i)
    dtype = x.dtype if xp.isdtype(x.dtype, "real floating") else xp.float64
    return xp.astype(mask, dtype)


def _eigh(xp, op, a):
    w, v = xp.linalg.eigh(a)
    return w, v


def _svd(xp, op, a):
    u, s, vh = xp.linalg.svd(a, full_matrices=False)
    return u, s, vh


def _qr(xp, op, a):
    q, r = xp.linalg.qr(a, mode="reduced")
    return q, r


def _normal_indices(xp, idx, n):
    """Negative indices counted from the end, as NumPy reads them."""
    return xp.where(idx < 0, idx + n, idx)


def _take(xp, op, x, idx):
    if op.axis is None:
        x, axis = xp.reshape(x, (-1,)), 0
    else:
        axis = op.axis % x.ndim
    n = x.shape[axis]
    flat = _normal_indices(xp, xp.reshape(xp.astype(xp.asarray(idx), xp.int64), (-1,)), n)
    out = xp.take(x, flat, axis=axis)
    return xp.reshape(out, (*x.shape[:axis], *idx.shape, *x.shape[axis + 1:]))


def _take_along_axis(xp, op, x, idx):
    axis = op.axis % x.ndim
    idx = _normal_indices(xp, xp.astype(idx, xp.int64), x.shape[axis])
    return xp.take_along_axis(x, idx, axis=axis)


def _logsumexp(xp, op, x):
    axis = _axes(op.axis, x.ndim)
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if op.keepdims else xp.squeeze(out, axis=axis if axis is not None
                                               else tuple(range(x.ndim)))


def _shifted(xp, x, axis):
    m = xp.max(x, axis=axis, keepdims=True)
    return x - xp.where(xp.isfinite(m), m, xp.zeros_like(m))


def _softmax(xp, op, x):
    e = xp.exp(_shifted(xp, x, op.axis))
    return e / xp.sum(e, axis=op.axis, keepdims=True)


def _log_softmax(xp, op, x):
    t = _shifted(xp, x, op.axis)
    return t - xp.log(xp.sum(xp.exp(t), axis=op.axis, keepdims=True))


def _one_hot(xp, op, labels):
    classes = xp.arange(op.depth, dtype=labels.dtype)
    return xp.astype(labels[..., None] == classes, dtype_of(xp, op.dtype))


def _softmax_cross_entropy(xp, op, logits, labels):
    dtype = op.out_dtype(np.dtype(str(logits.dtype).rsplit(".", 1)[-1]),
                         np.dtype(str(labels.dtype).rsplit(".", 1)[-1]))
    log_p = _log_softmax(xp, _LastAxis, xp.astype(logits, dtype_of(xp, dtype)))
    if xp.isdtype(labels.dtype, "integral"):
        idx = _normal_indices(xp, xp.astype(labels, xp.int64), logits.shape[-1])
        return -xp.take_along_axis(log_p, idx[..., None], axis=-1)[..., 0]
    return -xp.sum(xp.astype(labels, log_p.dtype) * log_p, axis=-1)


class _LastAxis:
    axis = -1


def _flipped(fn):
    def form(xp, op, x):
        axis = op.axis % x.ndim
        if op.reverse:
            return xp.flip(getattr(xp, fn)(xp.flip(x, axis=axis), axis=axis), axis=axis)
        return getattr(xp, fn)(x, axis=axis)
    form.__name__ = f"_{fn}"
    return form


def _sort(xp, op, x):
    return xp.sort(x, axis=op.axis, stable=True)


def _argsort(xp, op, x):
    return xp.argsort(x, axis=op.axis, stable=True)


def _pad(xp, op, x):
    for axis, (before, after) in enumerate(op.pad_width):
        parts = []
        shape = list(x.shape)
        for width in (before, after):
            shape[axis] = int(width)
            parts.append(xp.full(tuple(shape), op.value, dtype=x.dtype) if width else None)
        x = xp.concat([p for p in (parts[0], x, parts[1]) if p is not None], axis=axis)
    return x


def _tile(xp, op, x):
    return xp.tile(x, tuple(op.reps))


def _repeat(xp, op, x):
    if op.axis is None:
        x, axis = xp.reshape(x, (-1,)), 0
    else:
        axis = op.axis
    repeats = op.repeats if isinstance(op.repeats, int) else xp.asarray(op.repeats)
    return xp.repeat(x, repeats, axis=axis)


def _flip(xp, op, x):
    return xp.flip(x, axis=op.axis)


def _roll(xp, op, x):
    return xp.roll(x, op.shift, axis=op.axis) if op.axis else x


def _triangle(name):
    def form(xp, op, x):
        return getattr(xp, name)(x, k=op.k)
    form.__name__ = f"_{name}"
    return form


def _zeros(xp, op):
    return xp.zeros(tuple(int(d) for d in op.shape), dtype=dtype_of(xp, op.dtype))


def _ones(xp, op):
    return xp.ones(tuple(int(d) for d in op.shape), dtype=dtype_of(xp, op.dtype))


def _full(xp, op):
    return xp.full(tuple(int(d) for d in op.shape), op.value, dtype=dtype_of(xp, op.dtype))


def _eye(xp, op):
    return xp.eye(int(op.n), None if op.m is None else int(op.m), k=op.k,
                  dtype=dtype_of(xp, op.dtype))


def _arange(xp, op):
    return xp.arange(op.start, op.stop, op.step, dtype=dtype_of(xp, op.dtype))


def _linspace(xp, op):
    return xp.linspace(op.start, op.stop, int(op.num), endpoint=op.endpoint,
                       dtype=dtype_of(xp, op.dtype))


def _add_n(xp, op, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = xp.add(out, x)
    return out


def _einsum(xp, op, *arrays):
    """A sum of products by broadcasting: each operand laid out over the labels seen so
    far, multiplied in, and each label summed out once no later operand reads it."""
    order = list(op.output)
    for sub in op.subscripts:
        order += [k for k in sub if k not in order]
    acc, have = None, []
    for k, (sub, x) in enumerate(zip(op.subscripts, arrays)):
        sub = list(sub)
        while len(set(sub)) != len(sub):  # a repeated label reads a diagonal
            a = next(a for a in sub if sub.count(a) > 1)
            i, j = [m for m, b in enumerate(sub) if b == a][:2]
            rest = [m for m in range(len(sub)) if m not in (i, j)]
            x = xp.linalg.diagonal(xp.permute_dims(x, (*rest, i, j)))
            sub = [sub[m] for m in rest] + [a]
        mine = sorted(sub, key=order.index)
        x = xp.permute_dims(x, tuple(sub.index(a) for a in mine))
        labels = sorted(set(have) | set(sub), key=order.index)
        x = xp.reshape(x, tuple(x.shape[mine.index(a)] if a in mine else 1 for a in labels))
        if acc is None:
            acc = x
        else:
            acc = xp.reshape(acc, tuple(acc.shape[have.index(a)] if a in have else 1
                                        for a in labels)) * x
        later = {a for s in op.subscripts[k + 1:] for a in s} | set(op.output)
        done = tuple(i for i, a in enumerate(labels) if a not in later)
        if done:
            acc = xp.sum(acc, axis=done)
            labels = [a for a in labels if a in later]
        have = labels
    return acc


def _recurrence(xp, op, a, b):
    """h_i = a_i h_(i-1) + b_i along the axis, one step per entry of it."""
    a, b = xp.broadcast_arrays(a, b)
    axis = op.axis % b.ndim
    n = b.shape[axis]
    steps = range(n - 1, -1, -1) if op.reverse else range(n)
    out, h = [None] * n, None
    for i in steps:
        bi = b[_index(axis, b.ndim, i)]
        h = bi if h is None else a[_index(axis, a.ndim, i)] * h + bi
        out[i] = h
    return xp.stack(out, axis=axis)


def _segment_sum(xp, op, data, ids):
    """Sums grouped by id as a product with the one-hot matrix of the ids (the standard has
    no scatter-add)."""
    axis = op.axis % data.ndim
    n = int(op.num_segments)
    ids = _normal_indices(xp, xp.astype(ids, xp.int64), n)
    onehot = xp.astype(xp.reshape(ids, (1, -1)) == xp.reshape(xp.arange(n), (-1, 1)),
                       data.dtype)  # (n, len(ids))
    out = xp.tensordot(onehot, data, axes=([1], [axis]))  # segments first
    return xp.permute_dims(out, (*range(1, axis + 1), 0, *range(axis + 1, data.ndim)))


def _permute_along(xp, op, x, p):
    p = xp.astype(p, xp.int64)
    if op.inverse:  # out[p[i]] = x[i]: read x through the inverse permutation
        p = xp.argsort(p, axis=op.axis, stable=True)
    return xp.take_along_axis(x, p, axis=op.axis)


def _output(xp, op, t):
    return t[op.index]


FORMS = {
    "where": _where, "cast": _cast, "stop_gradient": _identity, "zeros_like": _zeros_like,
    "ones_like": _ones_like, "add_n": _add_n, "output": _output,
    "reshape": _reshape, "broadcast_to": _broadcast_to, "expand_dims": _expand_dims,
    "squeeze": _squeeze, "transpose": _transpose, "concatenate": _concatenate,
    "split": _split, "stack": _stack, "getitem": _getitem, "scatter_index": _scatter_index,
    "scatter_add": _scatter_add,
    "sum": _reduction("sum"), "max": _reduction("max"), "min": _reduction("min"),
    "prod": _reduction("prod"), "any": _reduction("any"), "all": _reduction("all"),
    "argmax": _arg_reduction("argmax"), "argmin": _arg_reduction("argmin"), "count": _count,
    "matmul": _matmul, "eye_like": _eye_like, "trace": _trace, "diag": _diag, "inv": _inv,
    "slogdet": _slogdet, "det": _det, "cholesky": _cholesky, "solve": _solve,
    "solve_triangular": _solve_triangular, "cho_solve": _cho_solve, "norm": _norm,
    "matrix_mask": _matrix_mask, "eigh": _eigh, "svd": _svd, "qr": _qr,
    "take": _take, "take_along_axis": _take_along_axis,
    "logsumexp": _logsumexp, "softmax": _softmax, "log_softmax": _log_softmax,
    "one_hot": _one_hot, "softmax_cross_entropy": _softmax_cross_entropy,
    "cumsum": _flipped("cumulative_sum"), "cumprod": _flipped("cumulative_prod"),
    "sort": _sort, "argsort": _argsort, "pad": _pad, "tile": _tile, "repeat": _repeat,
    "flip": _flip, "roll": _roll, "triu": _triangle("triu"), "tril": _triangle("tril"),
    "zeros": _zeros, "ones": _ones, "full": _full, "eye": _eye, "arange": _arange,
    "linspace": _linspace, "einsum": _einsum, "recurrence": _recurrence,
    "segment_sum": _segment_sum, "permute_along": _permute_along,
}

# Ops without a form in the standard: what each namespace family lacks, and why. "*" holds
# for every family; a family's own line adds to it, and OVERRIDES (or, for Dask, the single
# block path) takes ops back out.
_SCATTER = ("scatter-adds with repeated indices: the standard has no scatter-add (index_add, "
            "np.add.at)")
_LOOPS = "a Python-level loop over NumPy arrays inside its forward"
_BODY = "an inner graph run by graphc's NumPy evaluator"
MISSING: dict[str, dict[str, str]] = {
    "*": {
        "add_along_axis": _SCATTER, "at_add": _SCATTER,
        "at_set": "assignment through integer-array indices (not in the standard)",
        "gather": "integer-array indexing of several axes (not in the standard)",
        "last_write": "np.unique over integer-array indices (not in the standard)",
        "cholesky_grad": _LOOPS,
        "conv": "strided windows (no as_strided or convolution in the standard)",
        "conv_transpose": "strided windows (no convolution in the standard)",
        "conv_weight_vjp": "strided windows (no convolution in the standard)",
        "max_pool": "strided windows (no pooling in the standard)",
        "max_pool_vjp": "strided windows (no pooling in the standard)",
        "max_pool_jvp": "strided windows (no pooling in the standard)",
        "avg_pool": "strided windows (no pooling in the standard)",
        "avg_pool_vjp": "strided windows (no pooling in the standard)",
        "erf": "special functions are not in the standard",
        "erfc": "special functions are not in the standard",
        "remat": _BODY, "implicit": _BODY, "fixed_point": _BODY, "root": _BODY,
        "row_loop": _BODY, "custom_vjp": _BODY, "custom_jvp": _BODY,
    },
}


def _dask_erf(name):
    def form(xp, op, x):
        import scipy.special
        return getattr(scipy.special, name)(x)  # a ufunc: Dask maps it over the chunks
    return form


def _cupy_special(name):
    def form(xp, op, x):
        import cupyx.scipy.special
        return getattr(cupyx.scipy.special, name)(x)
    return form


def _dask_softmax_cross_entropy(xp, op, logits, labels):
    """Class ids picked by a one-hot mask and a sum over the last axis, chunk by chunk (Dask
    has no take_along_axis)."""
    if not xp.isdtype(labels.dtype, "integral"):
        return _softmax_cross_entropy(xp, op, logits, labels)
    dtype = op.out_dtype(np.dtype(logits.dtype), np.dtype(labels.dtype))
    log_p = _log_softmax(xp, _LastAxis, xp.astype(logits, dtype_of(xp, dtype)))
    depth = logits.shape[-1]
    ids = _normal_indices(xp, xp.astype(labels, xp.int64), depth)
    hit = ids[..., None] == xp.arange(depth)
    return -xp.sum(xp.where(hit, log_p, xp.zeros_like(log_p)), axis=-1)


def _dask_reshape(xp, op, x):
    """Dask reshapes within chunks: the trailing axes are made whole first (the data axis,
    leading, keeps its chunks), and the whole array where even that does not do."""
    shape = tuple(int(d) for d in op.shape)
    try:
        return xp.reshape(x, shape)
    except NotImplementedError:
        pass
    try:
        return xp.reshape(x.rechunk({a: -1 for a in range(1, x.ndim)}), shape)
    except NotImplementedError:
        return xp.reshape(x.rechunk(-1), shape)


# a family's own forms of ops the standard lacks (or has, where the family's is better)
OVERRIDES: dict[str, dict] = {
    "dask": {"erf": _dask_erf("erf"), "erfc": _dask_erf("erfc"),
             "softmax_cross_entropy": _dask_softmax_cross_entropy, "reshape": _dask_reshape},
    "cupy": {"erf": _cupy_special("erf"), "erfc": _cupy_special("erfc")},
}

# Dask: the linear algebra of small matrices (dask.array.linalg has no slogdet, det, eigh;
# its svd and qr are for tall-and-skinny data) and every op listed in MISSING run as one task
# over whole arrays (the op's NumPy forward), which is right for the parameter-sized values
# they see in a data-parallel graph.
SINGLE_BLOCK = {"dask": frozenset({"inv", "slogdet", "det", "cholesky", "solve", "cho_solve",
                                   "solve_triangular", "eigh", "svd", "qr",
                                   # no take_along_axis; sorts only along one chunk
                                   "take_along_axis", "permute_along", "sort", "argsort"})}


def family(xp) -> str:
    """The family of a namespace: `dask`, `cupy`, `torch`, `jax`, `numpy`, `array_api_strict`."""
    name = getattr(xp, "__name__", "")
    for fam in ("dask", "cupy", "torch", "jax", "array_api_strict", "numpy"):
        if fam in name:
            return fam
    return name


def missing(op_name: str, fam: str) -> str | None:
    """Why `fam` cannot run the op, or None when it can."""
    if op_name in OVERRIDES.get(fam, {}) or op_name in SINGLE_BLOCK.get(fam, ()):
        return None
    if fam == "dask" and op_name in MISSING["*"]:
        return None  # the single block path runs any op over whole arrays
    return MISSING.get(fam, {}).get(op_name) or MISSING["*"].get(op_name)
