"""Run-time value checks shared by `Function` (its inputs) and generated code (each step).

With `check_finite`, a Function checks its inputs, and the generated code calls
`check_finite` after every step, so a NaN or Inf is reported at the node that produced it.
"""

from __future__ import annotations

import numpy as np

from graphc.errors import NonFiniteError
from graphc.ir import types
from graphc.ir.graph import Node


def check_input_finite(node: Node, arr: np.ndarray) -> None:
    """A float input value must hold no NaN or Inf."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise NonFiniteError(f"input {node.name!r} contains NaN or Inf")


def check_finite(node: Node, value, args) -> None:
    """`value`, what `node` computed from the finite `args`, must hold no NaN or Inf; the
    error names the node, its op, the line that built it and the shapes of its inputs."""
    arr = np.asarray(value)
    if arr.dtype.kind != "f" or np.isfinite(arr).all():
        return
    bad = "NaN" if np.isnan(arr).any() else "Inf"
    ins = ", ".join(f"{x.name} {types.fmt_shape(np.shape(a))}" for x, a in zip(node.inputs, args))
    raise NonFiniteError(f"node {node.name!r} ({node.op.label()}, built at {node.source}) "
                         f"produced {bad} from finite inputs ({ins})")
