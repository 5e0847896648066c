"""What the IR knows of an operation: the `Op` interface, the registry, inputs and constants.

An op is a frozen dataclass whose fields are its parameters, so equality and hashing (the key
for merging repeated subexpressions), `repr` and serialisation come for free. Its registered
`name` is the public function name, the JSON `"op"`, the DOT label and the comment in generated
code. The op library (`graphc.ops`) declares the concrete ops against this interface.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from graphc.ir import types
from graphc.ir.params import check_params

if TYPE_CHECKING:
    from graphc.ir.graph import Node

OPS: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Add an op class to the registry under its `name` (used by save/load and drawings)."""
    if cls.name in OPS and OPS[cls.name] is not cls:
        raise ValueError(f"an op named {cls.name!r} is already registered")
    OPS[cls.name] = cls
    return cls


class Op:
    """One operation: forward on NumPy arrays, shape rule, and derivative rules as graph nodes.

    `bprop(inputs, out, g, i)` returns the cotangent contribution for input `i` (a node built
    from ops, so it can be differentiated again) or `None` where no gradient flows; it may
    return a node of the broadcast shape, and `grad` sums it down to the input's shape.
    `jvp(inputs, out, t, i)` returns the tangent of `out` due to the tangent `t` of input `i`.
    """

    name: ClassVar[str] = "op"
    arity: ClassVar[int | None] = 1  # None: any number of inputs
    differentiable: ClassVar[bool] = True  # False: no gradient flows through it, by design

    def infer(self, *inputs: Node) -> tuple[types.Shape, np.dtype]:
        raise NotImplementedError

    def forward(self, *arrays: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def bprop(self, inputs, out, g, i):
        return None

    def jvp(self, inputs, out, t, i):
        return None

    # -- parameters -------------------------------------------------------------------------
    def __post_init__(self) -> None:
        """Check the declared parameters (`graphc.ir.params`): builders and files alike."""
        check_params(self)

    def params(self) -> dict:
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {}

    def label(self) -> str:
        """Short text for drawings and listings: the name and the parameters that are set."""
        shown = [f"{k}={_fmt_param(v)}" for k, v in self.params().items() if v is not None]
        return f"{self.name}({', '.join(shown)})" if shown else self.name

    def free_symbols(self) -> set:
        return types.free_symbols(tuple(self.params().values()))

    def resolve(self, env: dict) -> Op:
        """This op with its symbolic parameters replaced by the sizes bound in one call."""
        if not dataclasses.is_dataclass(self) or not self.free_symbols():
            return self
        return dataclasses.replace(
            self, **{k: types.substitute(v, env) for k, v in self.params().items()})


def _fmt_param(v) -> str:
    if isinstance(v, np.dtype):
        return str(v)
    if isinstance(v, slice):
        parts = ["" if p is None else str(p) for p in (v.start, v.stop, v.step)]
        return ":".join(parts[:2] if v.step is None else parts)
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt_param(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if v is Ellipsis:
        return "..."
    return str(v)


@register
@dataclasses.dataclass(frozen=True)
class Input(Op):
    """A placeholder fed at call time; its name is the key users feed it by."""

    name: ClassVar[str] = "input"
    differentiable: ClassVar[bool] = False
    arity: ClassVar[int | None] = 0


@register
@dataclasses.dataclass(frozen=True, eq=False)
class Constant(Op):
    """A value baked into the graph. Compared by identity: arrays have no cheap equality."""

    name: ClassVar[str] = "constant"
    differentiable: ClassVar[bool] = False
    arity: ClassVar[int | None] = 0
    value: np.ndarray = dataclasses.field(repr=False)

    def forward(self) -> np.ndarray:
        return self.value

    def label(self) -> str:
        v = self.value
        if v.size == 1:
            return f"constant({v.reshape(()).item():.6g})"
        return f"constant{types.fmt_shape(v.shape)}"
