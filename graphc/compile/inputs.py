"""Call-time checks of the values fed to a function, against the input nodes' types.

Each failure raises `InputError` naming the input, what was expected and what came. The checks
also bind the symbolic dimensions (`batch`) to sizes, consistently across all inputs of a call.
"""

from __future__ import annotations

import numpy as np
import sympy

from graphc.errors import InputError
from graphc.ir import types
from graphc.ir.graph import Node


def describe(node: Node) -> str:
    return f"shape {types.fmt_shape(node.shape)}, dtype {node.dtype}"


def bind_args(inputs: tuple[Node, ...], args: tuple, kwargs: dict) -> list:
    """Match positional and keyword arguments to input nodes, in the inputs' order."""
    if len(args) > len(inputs):
        raise InputError(f"got {len(args)} positional values for {len(inputs)} inputs "
                         f"({', '.join(n.name for n in inputs)})")
    by_name = {n.name: k for k, n in enumerate(inputs)}
    values = list(args) + [_MISSING] * (len(inputs) - len(args))
    for name, v in kwargs.items():
        k = by_name.get(name)
        if k is None:
            raise InputError(f"unknown input {name!r}; the inputs are "
                             f"{', '.join(repr(n.name) for n in inputs) or 'none'}")
        if values[k] is not _MISSING:
            raise InputError(f"input {name!r} given both by position and by name")
        values[k] = v
    for n, v in zip(inputs, values):
        if v is _MISSING:
            raise InputError(f"missing input {n.name!r} ({describe(n)})")
    return values


def check_values(inputs: tuple[Node, ...], values: list) -> tuple[list[np.ndarray], dict]:
    """Convert and check each value; returns the arrays and the symbol bindings."""
    env: dict[sympy.Symbol, int] = {}
    bound_by: dict[sympy.Symbol, str] = {}
    arrays = []
    for node, value in zip(inputs, values):
        arr = _as_array(node, value)
        if arr.ndim != node.ndim:
            raise InputError(f"input {node.name!r}: expected rank {node.ndim} "
                             f"({describe(node)}), got an array of shape {arr.shape}")
        for axis, (want, got) in enumerate(zip(node.shape, arr.shape)):
            if isinstance(want, int):
                if want != got:
                    raise InputError(f"input {node.name!r}: expected {describe(node)}, got "
                                     f"shape {arr.shape} (axis {axis} is {got}, not {want})")
            elif isinstance(want, sympy.Symbol):
                if want in env and env[want] != got:
                    raise InputError(
                        f"input {node.name!r}: dimension {want} is {env[want]} (bound by input "
                        f"{bound_by[want]!r}) but axis {axis} here has length {got}")
                env.setdefault(want, got)
                bound_by.setdefault(want, node.name)
        arrays.append(arr)
    for node, arr in zip(inputs, arrays):
        for axis, (want, got) in enumerate(zip(node.shape, arr.shape)):
            if isinstance(want, sympy.Expr) and not isinstance(want, sympy.Symbol):
                if int(want.subs(env)) != got:
                    raise InputError(f"input {node.name!r}: axis {axis} should be {want} = "
                                     f"{int(want.subs(env))}, got {got}")
    return arrays, env


def _as_array(node: Node, value) -> np.ndarray:
    if isinstance(value, Node):
        raise InputError(f"input {node.name!r}: expected a value, got the graph node "
                         f"{value.name!r}")
    is_array = isinstance(value, (np.ndarray, np.generic))
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise InputError(f"input {node.name!r}: expected an array ({describe(node)}), got "
                         f"{type(value).__name__}: {e}") from None
    if arr.dtype.kind not in types.SUPPORTED_KINDS:
        raise InputError(f"input {node.name!r}: expected {describe(node)}, got a value of "
                         f"dtype {arr.dtype} ({type(value).__name__})")
    if arr.dtype != node.dtype:
        rule = "safe" if is_array else "same_kind"
        if not np.can_cast(arr.dtype, node.dtype, rule):
            raise InputError(f"input {node.name!r}: expected dtype {node.dtype}, got "
                             f"{arr.dtype}, which does not cast safely; convert it first")
        arr = arr.astype(node.dtype)
    return arr


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()
