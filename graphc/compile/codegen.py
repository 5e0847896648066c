"""Code generation: a schedule becomes one straight-line Python function, planned once and
written by a backend.

Each step is one line, `name = call(args)  # op  'node name'`, in schedule order; a value is
deleted right after its last use; a step whose operand dies there may write into that
operand's buffer (`out=`); a fused group (fusion.py) is one kernel call. `generate` makes the
plan (plan.py: the order, last uses, in-place plan, scatter windows, names) and asks the
backend (emit.py; `"numpy"` in numpy_backend.py, `"array_api"`, `"dask"` and `"cupy"` in
xp_backend.py) to write and compile it;
each op's line comes from the op's own declaration (`graphc.ir.op.Op`, "hooks: code
emission"). No user text ever reaches the source as code: names come from one `Namer`,
parameters are written only as validated literals and comments are escaped (emit.py). No
expression nests deeper than a constant (an `add_n` of any length is one statement per term),
whatever the graph's width. The source is compiled once; the function keeps no state between
calls, so threads can share it.
"""

from __future__ import annotations

from graphc.compile import (
    numpy_backend,  # noqa: F401 - registers the "numpy" backend
    xp_backend,  # noqa: F401 - registers "array_api", "dask", "cupy"
)
from graphc.compile.emit import Backend, Program, get_backend
from graphc.compile.plan import make_plan
from graphc.compile.schedule import Schedule


def generate(schedule: Schedule, name: str = "f", check_finite: bool = False, groups=None,
             symbolic=frozenset(), backend: str | Backend = "numpy") -> Program:
    """Plan, emit and compile the schedule; `groups` are fused kernels (None: the backend's
    fusion tier finds them), `symbolic` the nodes whose op is resolved per call (passed in
    `_ops`, keyed by the node's slot), `backend` a registered backend's name.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> from graphc.compile.schedule import make_schedule
        >>> g = gc.Graph("double")
        >>> x = g.input("x", shape=(2,))
        >>> program = generate(make_schedule([x], [2.0 * x]), "double")
        >>> print(program.source.splitlines()[4])
            mul_2 = np.multiply(c_constant_1, x)  # mul  'mul_2'
        >>> program.fn(np.array([1.0, 3.0]), None)
        [array([2., 6.])]
        >>> generate(make_schedule([x], [x]), backend="tpu")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        graphc.errors.GraphError: unknown code-generation backend 'tpu'; registered: ..., numpy
    """
    emitter = get_backend(backend)
    if groups is None:
        groups = [] if check_finite else emitter.fuse(schedule)
    plan = make_plan(schedule, emitter, name, groups, symbolic, check_finite)
    return emitter.emit(plan)
