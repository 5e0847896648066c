"""Ops on sympy values: the object-array helpers that the ops' `sympy` hooks are written with.

`gc.to_sympy` (graphc/export/sympy_bridge.py) runs a graph over NumPy object arrays of sympy
expressions, one array per node (0-d for a scalar), and each op's hook `sympy(node, *args)`
maps its inputs' arrays to its output's. Ops that only move, copy, sum or multiply entries
(reshape, getitem, sum, matmul, ...) use `run_forward`: their own NumPy forward runs on the
object arrays. Elementwise ops give a `formula` of sympy scalars, applied entry by entry with
NumPy broadcasting (`entrywise`); reductions and normalisations work along axes (`over_axes`,
`along`).
"""

from __future__ import annotations

import numpy as np
import sympy

from graphc.errors import GraphError


def sympify(v):
    """A sympy object for a number or a sympy object; text is refused, never parsed."""
    if isinstance(v, sympy.Basic):
        return v
    if isinstance(v, (str, bytes)) or not isinstance(v, (int, float, np.number, np.bool_)):
        raise GraphError(f"expected a number or a sympy expression, got {type(v).__name__} "
                         f"{v!r:.60}")
    return sympy.sympify(v)


def entries(arr) -> list:
    """The entries of a sympy Array or Matrix in C order (iterating an Array gives rows)."""
    return [arr[idx] for idx in np.ndindex(*arr.shape)]


def object_array(value) -> np.ndarray:
    """A NumPy object array of sympy entries (0-d for a scalar)."""
    if isinstance(value, (sympy.NDimArray, sympy.MatrixBase)):
        shape = tuple(value.shape)
        flat = entries(value)
        out = np.empty(len(flat), dtype=object)
        out[:] = [sympify(v) for v in flat]
        return out.reshape(shape)
    if isinstance(value, np.ndarray):
        out = np.empty(value.shape, dtype=object)
        for idx in np.ndindex(*value.shape):
            out[idx] = sympify(value[idx])
        return out
    out = np.empty((), dtype=object)
    out[()] = sympify(value)
    return out


def as_objects(out, shape) -> np.ndarray:
    """A hook's result as an object array of `shape` (a scalar or a smaller array broadcasts)."""
    if not isinstance(out, np.ndarray) or out.dtype != object:
        out = object_array(out) if not isinstance(out, np.ndarray) else \
            np.asarray(out, dtype=object)
    return np.broadcast_to(out, shape) if out.shape != tuple(shape) else out


def run_forward(op, node, *args) -> np.ndarray:
    """The `sympy` hook of an op that only moves, copies, sums or multiplies entries: its own
    NumPy forward, run on the object arrays (assign it in the class: `sympy = run_forward`)."""
    with np.errstate(all="ignore"):
        return op.forward(*args)


def entrywise(fn, nin: int):
    """A broadcasting NumPy ufunc over object arrays from a function of sympy scalars."""
    ufunc = np.frompyfunc(fn, nin, 1)

    def apply(*args):
        out = ufunc(*args)
        return out if isinstance(out, np.ndarray) else object_array(out)

    return apply


def over_axes(x: np.ndarray, axes: tuple[int, ...], keepdims: bool, fn) -> np.ndarray:
    """Reduce `axes` of an object array with `fn(list of entries)`."""
    keep = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, keep + list(axes))
    rest = moved.shape[:len(keep)]
    rows = moved.reshape(rest + (-1,))
    out = np.empty(rest, dtype=object)
    for idx in np.ndindex(*rest):
        out[idx] = fn(list(rows[idx]))
    if keepdims:
        out = np.expand_dims(out, axes)
    return out


def along(axis: int, x: np.ndarray, fn) -> np.ndarray:
    """fn(row of entries) -> row of entries, along one axis of an object array."""
    moved = np.moveaxis(x, axis, -1)
    out = np.empty(moved.shape, dtype=object)
    for idx in np.ndindex(*moved.shape[:-1]):
        out[idx] = fn(list(moved[idx]))
    return np.moveaxis(out, -1, axis)


def logsumexp_row(row):
    return sympy.log(sympy.Add(*[sympy.exp(v) for v in row]))


def softmax_row(row):
    es = [sympy.exp(v) for v in row]
    total = sympy.Add(*es)
    return [e / total for e in es]


def log_softmax_row(row):
    lse = logsumexp_row(row)
    return [v - lse for v in row]


def one_hot(depth: int, labels: np.ndarray) -> np.ndarray:
    """Rows of `depth` entries, 1 where the label equals the position (a Piecewise each)."""
    out = np.empty(labels.shape + (depth,), dtype=object)
    for idx in np.ndindex(*labels.shape):
        out[idx] = [sympy.Piecewise((1, sympy.Eq(labels[idx], k)), (0, True))
                    for k in range(depth)]
    return out
