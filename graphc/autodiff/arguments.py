"""The argument checks that grad, vjp, jvp, hvp, jacobian, hessian and the SciPy bridge share.

Each names the calling function and the argument, so an error reads as the user's call.
"""

from __future__ import annotations

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Graph, Node


def check_node(fn: str, what: str, x, graph: Graph | None = None) -> None:
    """`x` must be a graph node (of `graph`, when given)."""
    if not isinstance(x, Node):
        raise GraphError(f"{fn}: {what} must be a graph node, got {type(x).__name__}")
    if graph is not None and x.graph is not graph:
        raise GraphError(f"{fn}: {what} {x.name!r} belongs to graph {x.graph.name!r}, not "
                         f"to {graph.name!r}")


def check_scalar(fn: str, z, hint: str) -> None:
    """z must be a scalar float node: what grad, hvp and hessian differentiate."""
    check_node(fn, "z", z)
    if z.shape != ():
        raise ShapeError(f"{fn}: z must be a scalar, got node {z.name!r} of shape "
                         f"{types.fmt_shape(z.shape)}; {hint}")
    check_float(z, fn, "z")


def check_float(x: Node, fn: str, what: str) -> Node:
    """`x` must have a float dtype (derivatives need one); returns it."""
    if not types.is_float(x.dtype):
        raise GraphError(f"{fn}: {what} has dtype {x.dtype}; derivatives need a float dtype "
                         "(cast it with x.astype('float64'))")
    return x


def as_list(fn: str, what: str, value, like=None) -> list:
    """A node (or a value, for tangents) as a one-item list; lists and tuples as lists.

    With `like` (the wrt argument), `value` has wrt's form: one item when wrt is a node, a
    list of the same length when it is a list.
    """
    if like is not None:
        if isinstance(like, Node):
            return [value]
        if not isinstance(value, (list, tuple)):
            raise GraphError(f"{fn}: wrt is a list, so {what} must be a list of the same "
                             f"length, got {type(value).__name__}")
        return list(value)
    if isinstance(value, Node):
        return [value]
    if isinstance(value, (list, tuple)) and value:
        return list(value)
    raise GraphError(f"{fn}: {what} must be a node or a non-empty list of nodes, got "
                     f"{type(value).__name__}")
