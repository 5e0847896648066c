"""A loop run as one native kernel: the body written as numba code inside the loop.

A scan's body runs once per step. Run from Python, each step pays a call of the compiled body
and one NumPy call per op: a few microseconds, which is the whole cost when the arrays are
small (a 64-wide tanh step, the 2-state ODE of an RK4 integrator). Here the loop *and* the body
become one `numba.njit` function: the body, after the rewrites, is written op by op as NumPy
calls that numba compiles (`np.dot`, ufuncs and array expressions, reductions, reshapes,
slices), the carries are local variables and each step's results are written into the stacked
outputs in place.

Only what numba types reliably is written: float64, int64 and bool values of static shapes and
the ops of `_EMITTERS`; anything else (another dtype, a symbolic size, an op without an entry)
makes `kernel_for` return None and the loop runs from Python, as before. Compiling costs about
a second the first time a body of a given form is seen, so only long loops use a kernel
(`JIT_STEPS`), and kernels are shared by source text: two loops with the same body compile
once per process. The source embeds only names made here, checked literals
(`graphc.compile.emit.literal`) and `repr` of finite floats; array constants are arguments.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from graphc.compile.emit import declared, literal
from graphc.ir.graph import Node
from graphc.ir.op import Constant, Input, Output
from graphc.ops import elementwise, linalg, reduce, scatter, shape

JIT_STEPS = 32  # loops of fewer steps run from Python: a kernel's compile would not pay off
_DTYPES = {np.dtype(np.float64): "np.float64", np.dtype(np.int64): "np.int64",
           np.dtype(np.bool_): "np.bool_"}
_KERNELS: OrderedDict = OrderedDict()  # source -> numba function, most recent last
_KERNELS_MAX = 256
_LOCK = threading.Lock()


class Unsupported(Exception):
    """The body has something the kernel does not write: the loop runs from Python."""


def _static(n: Node) -> tuple[int, ...]:
    if n.dtype not in _DTYPES or not all(isinstance(d, int) for d in n.shape):
        raise Unsupported(f"{n.name}: {n.dtype} {n.shape}")
    return tuple(n.shape)


def _float(v) -> str:
    v = float(v)
    if v != v:
        return "np.nan"
    if v in (float("inf"), float("-inf")):
        return "np.inf" if v > 0 else "-np.inf"
    return repr(v)


def _scalar_literal(n: Node) -> str:
    v = n.op.value.reshape(()).item()
    if n.dtype.kind == "b":
        return "True" if v else "False"
    if n.dtype.kind in "iu":
        return repr(int(v))
    return _float(v)


def _shape(s) -> str:
    return literal(tuple(s))


# -- the emitters: node, argument names -> (statements, expression) ----------------------------
def _entrywise(op) -> bool:
    """Computed entry by entry (with broadcasting): written as a scalar form in a loop."""
    return (op.elementwise or isinstance(op, elementwise.AddN)) and not op.multi


def _scalar_form(n: Node, a: list[str]) -> str:
    """The op on scalars `a` (entries of its operands), for an explicit loop."""
    op = n.op
    if isinstance(op, elementwise.AddN):
        return "(" + " + ".join(a) + ")"
    if isinstance(op, elementwise.Where):
        return f"({a[1]} if {a[0]} else {a[2]})"
    if isinstance(op, elementwise.Cast):
        return f"{_DTYPES[n.dtype]}({a[0]})"
    form = declared(op, "scalar")
    if form is not None:
        return "(" + form.format(*a, zero="0.0") + ")"
    uf = declared(op, "ufunc")
    if uf is not None and getattr(np, uf.__name__, None) is uf:
        operands = declared(op, "ufunc_operands")
        args = operands.format(*a, zero="0.0" if n.dtype.kind == "f" else "0") if operands \
            else ", ".join(a)
        return f"np.{uf.__name__}({args})"
    raise Unsupported(op.name)


def _matmul(n, a):
    if not all(x.ndim in (1, 2) for x in n.inputs):
        raise Unsupported("batched matmul")
    return f"np.dot(np.ascontiguousarray({a[0]}), np.ascontiguousarray({a[1]}))"


def _sum(n, a):
    x = n.inputs[0]
    axes = tuple(n.op.axis) if n.op.axis else tuple(range(x.ndim))
    if x.ndim == 0:
        return a[0]
    if set(axes) == set(range(x.ndim)):
        expr = f"np.sum({a[0]})"
    else:
        expr = a[0]
        for ax in sorted(axes, reverse=True):
            expr = f"np.sum({expr}, axis={int(ax)})"
    if n.op.keepdims:
        expr = _reshape_expr(expr, len(axes) == x.ndim, n)
    return expr


def _reshape_expr(expr: str, from_scalar: bool, n: Node) -> str:
    if n.ndim == 0:
        return expr if from_scalar else f"np.ascontiguousarray({expr}).reshape(-1)[0]"
    if from_scalar:
        return f"np.full({_shape(n.shape)}, {expr})"
    return f"np.ascontiguousarray({expr}).reshape({_shape(n.shape)})"


def _reshape(n, a):
    return _reshape_expr(a[0], n.inputs[0].ndim == 0, n)


def _transpose(n, a):
    perm = literal(tuple(n.op.perm)) if hasattr(n.op, "perm") else None
    if n.inputs[0].ndim < 2:
        return a[0]
    return f"np.transpose({a[0]}, {perm})" if perm else f"np.transpose({a[0]})"


def _broadcast(n, a):
    if n.inputs[0].ndim == 0:
        return f"np.full({_shape(n.shape)}, {a[0]})"
    return f"np.broadcast_to({a[0]}, {_shape(n.shape)})"


def _getitem(n, a):
    idx = literal(n.op.index)
    if idx is None or n.inputs[0].ndim == 0:
        raise Unsupported("getitem")
    return f"{a[0]}[{idx}]"


def _stack(n, a):
    if all(x.ndim == 0 for x in n.inputs) and n.op.axis == 0:
        return f"np.array(({', '.join(a)},))"
    return f"np.stack(({', '.join(a)},), axis={int(n.op.axis)})"


def _concatenate(n, a):
    return f"np.concatenate(({', '.join(a)},), axis={int(n.op.axis)})"


def _fill(value: str):
    def emit(n, a):
        if n.ndim == 0:
            return value if n.dtype.kind == "f" else str(int(float(value)))
        return f"np.full({_shape(n.shape)}, {value}, {_DTYPES[n.dtype]})"
    return emit


def _cast(n, a):
    if n.ndim == 0:
        return f"{_DTYPES[n.dtype]}({a[0]})"
    return f"{a[0]}.astype({_DTYPES[n.dtype]})"


def _identity(n, a):
    return a[0]


_VIEWS = (shape.Reshape, shape.ExpandDims, shape.Squeeze, shape.Transpose, shape.BroadcastTo,
          shape.GetItem, elementwise.StopGradient)  # the emitters that may return a view

_EMITTERS = {
    linalg.MatMul: _matmul,
    reduce.Sum: _sum,
    shape.Reshape: _reshape,
    shape.ExpandDims: _reshape,
    shape.Squeeze: _reshape,
    shape.Transpose: _transpose,
    shape.BroadcastTo: _broadcast,
    shape.GetItem: _getitem,
    shape.Stack: _stack,
    shape.Concatenate: _concatenate,
    elementwise.ZerosLike: _fill("0.0"),
    elementwise.OnesLike: _fill("1.0"),
    elementwise.Cast: _cast,
    elementwise.StopGradient: _identity,
}


def _scatter_add(n: Node, a: list[str], v: str) -> list[str]:
    op = n.op
    dense, windows = a[1:1 + op.n_dense], a[1 + op.n_dense:]
    if n.ndim == 0:
        raise Unsupported("scatter_add into a scalar")
    if dense:
        first = f"np.ascontiguousarray({dense[0]}).copy()" if len(dense) == 1 else \
            "(" + " + ".join(dense) + ")"
        lines = [f"{v} = np.ascontiguousarray({first}).astype({_DTYPES[n.dtype]})"]
    else:
        lines = [f"{v} = np.zeros({_shape(n.shape)}, {_DTYPES[n.dtype]})"]
    for index, w in zip(op.indices, windows):
        idx = literal(index)
        if idx is None:
            raise Unsupported("scatter_add index")
        lines.append(f"{v}[{idx}] += {w}")
    return lines


# -- the kernel ---------------------------------------------------------------------------------
class LoopKernel:
    """A scan's whole loop as one numba function over (steps, carries, xs, consts)."""

    def __init__(self, source: str, fn_name: str, consts: list[np.ndarray], carry_types,
                 ys_types, n_xs: int, inner: list | None = None):
        self.source, self.fn_name = source, fn_name
        self.consts = consts
        self.inner = inner or []  # the kernels of scans inside the body, called as L0, L1, ...
        self.key = (source, *(k.key for k in self.inner))
        self.carry_types, self.ys_types, self.n_xs = carry_types, ys_types, n_xs
        self.broken: str | None = None
        self._fn = None

    def _compiled(self):
        if self._fn is None:
            inner = {f"L{j}": k._compiled() for j, k in enumerate(self.inner)}
            with _LOCK:
                fn = _KERNELS.get(self.key)
                if fn is None:
                    import numba

                    env = {"np": np, **inner}
                    exec(compile(self.source, "<graphc-loop-kernel>", "exec"), env)  # noqa: S102
                    fn = numba.njit(cache=False, nogil=True)(env[self.fn_name])
                    _KERNELS[self.key] = fn
                    while len(_KERNELS) > _KERNELS_MAX:
                        _KERNELS.popitem(last=False)
                else:
                    _KERNELS.move_to_end(self.key)
            self._fn = fn
        return self._fn

    def __call__(self, steps: int, T: int, carries, xs, consts):
        """(final carries..., stacked ys...), or None when numba cannot compile the body
        (the caller then runs the loop from Python)."""
        if self.broken is not None or steps < JIT_STEPS:
            return None
        args = [steps]
        for c, (dims, dtype) in zip(carries, self.carry_types):  # carries: the kernel's own
            args.append(np.array(c, dtype) if dims else c.item() if c.dtype == dtype else
                        np.asarray(c, dtype).item())
        for x in (*xs, *consts):
            args.append(x.item() if x.ndim == 0 else
                        x if x.flags.c_contiguous else np.ascontiguousarray(x))
        args += self.consts
        alloc = np.zeros if steps < T else np.empty
        ys = [alloc((T, *dims), dtype) for dims, dtype in self.ys_types]
        args += ys
        try:
            fn = self._compiled()
            out = fn(*args)
        except Exception as e:  # numba's typing or lowering errors: run from Python instead
            from numba.core.errors import NumbaError

            if isinstance(e, NumbaError):
                self.broken = str(e).splitlines()[0][:200]
                return None
            raise
        carries_out = [v if dims else np.asarray(v, dtype)  # (never a view of an argument:
                       for v, (dims, dtype) in zip(out, self.carry_types)]  # see `_build`)
        return (*carries_out, *ys)


def compile_loop(inputs: list[Node], outputs: list[Node], n_carry: int, n_xs: int,
                 reverse: bool) -> LoopKernel | None:
    """The registered loop compiler (`graphc.ir.graph.compiled_loop`): the body rewritten
    (`graphc.rewrite.optimize`), then written as a kernel; None when numba is off or
    missing, or the body holds what the kernel does not write."""
    from graphc.compile import fusion
    from graphc.rewrite import optimize

    if not fusion.enabled():
        return None
    opt = optimize(list(inputs), list(outputs))
    return kernel_for(opt.inputs, opt.outputs, n_carry, n_xs, reverse)


def kernel_for(inputs: list[Node], outputs: list[Node], n_carry: int, n_xs: int,
               reverse: bool) -> LoopKernel | None:
    """The loop over the body (`inputs` -> `outputs`, already rewritten) as a kernel, or None
    where the body holds something the kernel does not write."""
    try:
        return _build(inputs, outputs, n_carry, n_xs, reverse)
    except Unsupported:
        return None


def _build(inputs, outputs, n_carry, n_xs, reverse) -> LoopKernel:
    names: dict[Node, str] = {}
    params, consts = ["steps"], []
    carries, xs, rest = inputs[:n_carry], inputs[n_carry:n_carry + n_xs], inputs[n_carry + n_xs:]
    for k, c in enumerate(carries):
        _static(c)
        names[c] = f"c{k}"
        params.append(f"c{k}")
    for j, x in enumerate(xs):
        _static(x)
        params.append(f"xs{j}")
        names[x] = f"x{j}"
    for j, c in enumerate(rest):
        _static(c)
        names[c] = f"k{j}"
        params.append(f"k{j}")
    body = [f"x{j} = xs{j}[t]" for j in range(len(xs))]
    nested: list[LoopKernel] = []  # kernels of the scans in the body
    results: dict[Node, list[str]] = {}  # such a scan -> the names of its outputs
    order = _topological(outputs, set(inputs))
    uses: dict[Node, int] = {}
    for n in order:
        for x in n.inputs:
            uses[x] = uses.get(x, 0) + 1
    for o in outputs:
        uses[o] = uses.get(o, 0) + 2  # an output is read after the step: never inlined
    # a carry summed into itself (a running sum of gradients) is updated in place
    inplace = {}
    for k, (c, o) in enumerate(zip(carries, outputs[:n_carry])):
        if (isinstance(o.op, (elementwise.Add, elementwise.AddN)) and c.ndim
                and uses.get(c, 0) == 1 and sum(x is c for x in o.inputs) == 1
                and tuple(o.shape) == tuple(c.shape) and o.dtype == c.dtype
                and sum(p is o for p in outputs) == 1):
            inplace[o] = k
    # elementwise nodes read once by an elementwise node are computed inside its loop
    looped = {n for n in order if n not in names and _entrywise(n.op) and n.ndim > 0}
    consumers: dict[Node, Node] = {}
    for n in order:
        for x in n.inputs:
            consumers[x] = n
    inner = {n for n in looped if uses.get(n, 0) == 1 and consumers.get(n) in looped}

    def entry(x: Node, root: Node, idx: list[str]) -> str:
        """Entry `idx` (the root's loop indices) of operand x, broadcast to the root."""
        if x in inner:
            return _scalar_form(x, [entry(y, root, idx) for y in x.inputs])
        name = names[x]
        if x.ndim == 0:
            return name
        lead = root.ndim - x.ndim
        return f"{name}[" + ", ".join("0" if d == 1 and root.shape[lead + k] != 1
                                       else idx[lead + k] for k, d in enumerate(x.shape)) + "]"

    def loops(target: str, root: Node, expr_of, op: str = "=") -> list[str]:
        idx = [f"i{k}" for k in range(root.ndim)]
        out = []
        for k, d in enumerate(root.shape):
            out.append("    " * k + f"for {idx[k]} in range({int(d)}):")
        out.append("    " * root.ndim + f"{target}[{', '.join(idx)}] {op} {expr_of(idx)}")
        return out

    for n in order:
        if n in names or n in inner:
            continue
        v = f"v{len(names)}"
        if isinstance(n.op, Output) and n.inputs[0] in results:
            names[n] = results[n.inputs[0]][n.op.index]
            continue
        if n.op.multi and n.op.name == "scan":  # a loop in the body: its kernel, called
            body += _inner_scan(n, names, consts, nested, results, v)
            names[n] = v
            continue
        _static(n)
        if isinstance(n.op, Input):
            raise Unsupported("an input that is not an operand")
        if isinstance(n.op, Constant):
            if n.ndim == 0:
                names[n] = _scalar_literal(n)
                continue
            names[n] = f"a{len(consts)}"
            consts.append(np.ascontiguousarray(n.op.value))
            continue
        if n.op.multi:
            raise Unsupported("multi-output op")
        if isinstance(n.op, scatter.ScatterAdd):
            body += _scatter_add(n, [names[x] for x in n.inputs], v)
            names[n] = v
            continue
        if isinstance(n.op, shape.ScatterIndex):
            idx = literal(n.op.index)
            if idx is None or n.ndim == 0:
                raise Unsupported("scatter_index")
            body += [f"{v} = np.zeros({_shape(n.shape)}, {_DTYPES[n.dtype]})",
                     f"{v}[{idx}] = {names[n.inputs[0]]}"]
            names[n] = v
            continue
        if n in inplace:  # c += terms, entry by entry
            k = inplace[n]
            others = [x for x in n.inputs if x is not carries[k]]
            body += loops(f"c{k}", n, lambda idx, others=others, n=n: " + ".join(
                f"({entry(x, n, idx)})" for x in others), "+=")
            names[n] = f"c{k}"
            continue
        if n in looped:  # one explicit loop over the entries, operands read in place
            body.append(f"{v} = np.empty({_shape(n.shape)}, {_DTYPES[n.dtype]})")
            body += loops(v, n, lambda idx, n=n: _scalar_form(
                n, [entry(x, n, idx) for x in n.inputs]))
            names[n] = v
            continue
        a = [names[x] for x in n.inputs]
        emit = _EMITTERS.get(type(n.op))
        if _entrywise(n.op):  # a scalar (0-d) value
            expr = _scalar_form(n, a)
        elif emit is not None:
            expr = emit(n, a)
        else:
            raise Unsupported(n.op.name)
        reader = consumers.get(n)
        if uses.get(n, 0) == 1 and len(expr) < 400 and reader not in looped \
                and reader not in inplace:
            names[n] = f"({expr})"  # read once: written into its reader, where numba fuses
            continue  # the elementwise parts into one loop without temporaries
        body.append(f"{v} = {expr}")
        names[n] = v
    params += [f"a{j}" for j in range(len(consts))]
    ys = outputs[n_carry:]
    params += [f"ys{k}" for k in range(len(ys))]
    for k, y in enumerate(ys):
        body.append(f"ys{k}[t] = {names[y]}")
    for k, (c, o) in enumerate(zip(carries, outputs[:n_carry])):
        if o.dtype != c.dtype or tuple(o.shape) != tuple(c.shape):
            raise Unsupported("carry type")
        new = names[o]
        if new == f"c{k}":
            body.append(f"n{k} = c{k}")
            continue
        if not c.ndim:
            body.append(f"n{k} = {_DTYPES[c.dtype]}({new})")
        elif isinstance(o.op, (Input, Constant)) or type(o.op) in _VIEWS:
            body.append(f"n{k} = np.copy({new})")  # the carry owns its memory: never a view
        else:  # of an argument (a scan's result must not alias what it was given)
            body.append(f"n{k} = np.ascontiguousarray({new})")
    body += [f"c{k} = n{k}" for k in range(n_carry)]
    step = "t = steps - 1 - i" if reverse else "t = i"
    src = [f"def loop({', '.join(params)}):", "    for i in range(steps):", f"        {step}"]
    src += [f"        {line}" for line in body]
    ret = ", ".join(f"c{k}" for k in range(n_carry))
    src.append(f"    return ({ret}{',' if n_carry else ''})")
    source = "\n".join(src) + "\n"
    carry_types = [(tuple(c.shape), c.dtype) for c in carries]
    ys_types = [(tuple(y.shape), y.dtype) for y in ys]
    return LoopKernel(source, "loop", consts, carry_types, ys_types, len(xs), nested)


def _inner_scan(n: Node, names: dict, consts: list, inner: list, results: dict,
                v: str) -> list[str]:
    """Statements calling the kernel of a scan inside the body (a checkpoint's segment, a
    nested loop): the carries copied (the kernel updates them in place), the stacked results
    allocated here; `results[n]` names each output for its views."""
    op = n.op
    if not isinstance(op.length, int):
        raise Unsupported("inner scan of symbolic length")
    kernel = op.body.loop_kernel(op.n_carry, op.n_xs, op.reverse)
    if kernel is None or kernel.broken is not None:
        raise Unsupported("inner scan without a kernel")
    ins = list(n.inputs)
    steps = names[ins.pop(0)] if op.counted else str(op.length)
    nc, nx = op.n_carry, op.n_xs
    args = [steps]
    for x, (dims, dtype) in zip(ins[:nc], kernel.carry_types):
        args.append(f"np.copy({names[x]})" if dims else f"{_DTYPES[dtype]}({names[x]})")
    args += [f"np.ascontiguousarray({names[x]})" for x in ins[nc:nc + nx]]
    args += [names[x] if x.ndim == 0 else f"np.ascontiguousarray({names[x]})"
             for x in ins[nc + nx:]]
    for arr in kernel.consts:
        args.append(f"a{len(consts)}")
        consts.append(arr)
    lines, bufs = [], []
    for k, (dims, dtype) in enumerate(kernel.ys_types):
        bufs.append(f"{v}_y{k}")
        lines.append(f"{v}_y{k} = np.zeros({_shape((op.length, *dims))}, {_DTYPES[dtype]})")
    j = len(inner)
    inner.append(kernel)
    lines.append(f"{v} = L{j}({', '.join([*args, *bufs])})")
    results[n] = [f"{v}[{k}]" for k in range(nc)] + bufs
    return lines


def _topological(outputs: list[Node], stop: set[Node]) -> list[Node]:
    from graphc.ir import walk

    return walk.ancestors(outputs, stop=stop)
