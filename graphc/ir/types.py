"""Shapes and dtypes of nodes.

A shape is a tuple whose entries are `int` or `sympy.Expr`; a symbolic dimension is a positive
integer sympy symbol, created from a `str` entry ("batch"). Broadcasting follows NumPy's rules,
with one addition for symbols: a symbol only matches itself or 1, because a symbol that must
equal a number would make the graph valid for one size only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import sympy

Dim = int | sympy.Expr
Shape = tuple[Dim, ...]

FLOAT_KINDS = "f"
SUPPORTED_KINDS = "biuf"


def symbol(name: str) -> sympy.Symbol:
    """The symbol of a named dimension; equal names give equal symbols across graphs."""
    return sympy.Symbol(name, integer=True, positive=True)


def as_dim(d) -> Dim:
    if isinstance(d, str):
        if not d.isidentifier():
            raise ValueError(f"a symbolic dimension must be an identifier, got {d!r}")
        return symbol(d)
    if isinstance(d, (bool, np.bool_)):
        raise ValueError(f"a dimension must be an int or a name, got {d!r}")
    if isinstance(d, (int, np.integer)):
        if d < 0:
            raise ValueError(f"a dimension must be >= 0, got {d}")
        return int(d)
    if isinstance(d, sympy.Expr):
        if d.is_Integer:
            return int(d)
        # any sympy Symbol means the size symbol of its name, so that sympy.Symbol("n"),
        # Symbol("n", integer=True) and the str "n" are one dimension
        renamed = {s: symbol(s.name) for s in d.free_symbols
                   if isinstance(s, sympy.Symbol) and s != symbol(s.name)}
        if renamed:
            d = d.xreplace(renamed)
            if d.is_Integer:
                return int(d)
        return d
    raise ValueError(f"a dimension must be an int, a str or a sympy expression, got {d!r}")


def as_shape(shape) -> Shape:
    if isinstance(shape, (int, np.integer, str, sympy.Expr)):
        shape = (shape,)
    return tuple(as_dim(d) for d in shape)


def is_static(shape: Shape) -> bool:
    return all(isinstance(d, int) for d in shape)


def dim_eq(a: Dim, b: Dim) -> bool:
    """Whether two sizes are equal for every value of their symbols, in bounded time.

    Never `simplify` (a short expression from a file could keep it busy for minutes): the
    difference, with floor/Mod/Max/Min calls taken as opaque atoms, is a rational function of
    the symbols, and it is zero iff it vanishes at random integer points (Schwartz-Zippel:
    a nonzero polynomial of degree d vanishes at a point drawn from 2^61 values with
    probability at most d / 2^61). Exact rational arithmetic, so each point costs microseconds.
    An identity that holds only through floor/Mod algebra is not recognised: dims differ.
    """
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if a is b or a == b:
        return True
    diff = _as_expr(a) - _as_expr(b)
    if diff.is_Integer:
        return diff == 0
    opaque = diff.atoms(sympy.floor, sympy.ceiling, sympy.Mod, sympy.Max, sympy.Min)
    if opaque:
        diff = diff.xreplace({f: sympy.Dummy() for f in opaque})
    symbols = sorted(diff.free_symbols, key=lambda s: (s.name, getattr(s, "dummy_index", 0)))
    for point in _POINTS[:3]:
        value = diff.xreplace({s: sympy.Integer(point[k % len(point)] + k)
                               for k, s in enumerate(symbols)})
        if value != 0:
            return False
    return True


def _as_expr(d) -> sympy.Expr:
    if isinstance(d, int) and not isinstance(d, bool):
        return sympy.Integer(d)
    if isinstance(d, sympy.Expr):
        return d
    raise TypeError(f"a size must be an int or a sympy expression, got {type(d).__name__}")


# Fixed large "random" points (drawn once from a seeded generator) for `dim_eq`: the result
# must not change between runs.
_POINTS = tuple(tuple(int(v) for v in np.random.default_rng(61 + k).integers(
    1 << 40, 1 << 61, size=16)) for k in range(3))


def shape_eq(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(dim_eq(x, y) for x, y in zip(a, b))


def size(shape: Shape) -> Dim:
    if is_static(shape):
        return math.prod(shape)
    out = sympy.Integer(1)
    for d in shape:
        out = out * d
    return int(out) if isinstance(out, (int, sympy.Integer)) else out


def fmt_dim(d: Dim) -> str:
    return str(d)


def fmt_shape(shape: Shape) -> str:
    inner = ", ".join(fmt_dim(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting on possibly symbolic shapes; ValueError when they do not fit."""
    if shapes and all(s == shapes[0] for s in shapes) and is_static(shapes[0]):
        return tuple(shapes[0])  # the common case (same static shape), answered at once
    ndim = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for axis in range(ndim):
        dims = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        result: Dim = 1
        for d in dims:
            if isinstance(d, int) and d == 1:
                continue
            if isinstance(result, int) and result == 1:
                result = d
            elif not dim_eq(result, d):
                raise ValueError("shapes " + ", ".join(fmt_shape(s) for s in shapes)
                                 + " do not broadcast")
        out.append(result)
    return tuple(out)


def normalize_axis(axis: int, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ValueError(f"axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for rank {ndim}")
    return int(axis) % ndim


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """`None` means all axes; an int or a tuple of ints gives sorted, non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, Iterable) and not isinstance(axis, str):
        axes = tuple(normalize_axis(a, ndim) for a in axis)
    else:
        axes = (normalize_axis(axis, ndim),)
    if len(set(axes)) != len(axes):
        raise ValueError(f"repeated axis in {axis!r}")
    return tuple(sorted(axes))


def as_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind not in SUPPORTED_KINDS:
        raise ValueError(f"dtype {dt} is not supported (bool, integer or float only)")
    return dt


def is_float(dtype: np.dtype) -> bool:
    return dtype.kind in FLOAT_KINDS


def free_symbols(value) -> set[sympy.Symbol]:
    """The sympy symbols inside an op parameter (nested tuples, slices)."""
    if isinstance(value, sympy.Basic):
        return set(value.free_symbols)
    if isinstance(value, slice):
        return free_symbols((value.start, value.stop, value.step))
    if isinstance(value, (tuple, list)):
        out: set[sympy.Symbol] = set()
        for v in value:
            out |= free_symbols(v)
        return out
    return set()


def substitute(value, env: dict):
    """Replace the symbols in an op parameter by the ints bound at run time."""
    if isinstance(value, sympy.Basic):
        return int(value.subs(env))
    if isinstance(value, slice):
        return slice(*substitute((value.start, value.stop, value.step), env))
    if isinstance(value, tuple):
        return tuple(substitute(v, env) for v in value)
    if isinstance(value, list):
        return [substitute(v, env) for v in value]
    return value


def concrete_size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)
