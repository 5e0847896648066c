"""Backends over an Array API namespace: `array_api` (the namespace of the arrays a call gets),
`dask` and `cupy` (the namespace fixed, each library's own tuning).

They share the plan (plan.py) with the NumPy backend and differ only in how a step is
written: an elementwise op is its standard function (`xp.exp(x)`), any other op a call to its
form in xp_forms.py (`_sum_4(xp, _op_4, x)`); nothing is written in place (`out=` is NumPy's)
and nothing is fused into numba kernels. The generated function reads its namespace from
`_ops["xp"]`, which the call path (`ArrayApiBackend.call`) fills after checking the values
against the inputs' types without converting them to NumPy (a Dask array stays lazy).

Dask runs any op without a form as one task over whole arrays (`single_block`): the op's
NumPy forward, on values the size of parameters in a data-parallel graph. A call computes the
results on the current `dask.distributed` client (the threaded scheduler when there is none)
unless it passes `compute=False`; NumPy inputs (the parameters) are scattered to every worker
as one key of the task graph, which each worker fetches once, not embedded in each task.
"""

from __future__ import annotations

import functools
import importlib
from typing import ClassVar

import numpy as np

from graphc.compile import inputs as input_checks
from graphc.compile import xp_forms
from graphc.compile.emit import Backend, Context, identifier, register_backend
from graphc.errors import GraphError, InputError
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import output_types

# ops whose inputs are all cast to the node's dtype first (the standard does not promote
# across kinds: int64 @ float64 is an error in array-api-strict, a float64 in NumPy)
_CAST_ALL = frozenset({"matmul", "add_n", "concatenate", "stack"})
_COMPARISONS = frozenset({"less", "less_equal", "greater", "greater_equal", "equal",
                          "not_equal"})


def require(module: str, extra: str, backend: str):
    """Import `module`, or a GraphError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise GraphError(f"backend {backend!r} needs the package {module.split('.')[0]!r}, "
                         f"which is not installed ({e}); install it with "
                         f"pip install \"graphc[{extra}]\"") from None


@register_backend
class ArrayApiBackend(Backend):
    """Code over any Array API namespace, taken from the arrays a call gets."""

    name: ClassVar[str] = "array_api"
    namespace: ClassVar[dict] = {"xp": None}  # reserved: the generated code's namespace
    family: ClassVar[str | None] = None  # fixed by a subclass (dask, cupy)
    extra: ClassVar[str] = "array-api"

    def __init__(self):
        self.compat = require("array_api_compat", self.extra, self.name)

    # -- emission ---------------------------------------------------------------------------
    def guard(self, plan, ctx: Context) -> list[str]:
        """No fast path (every call is checked without converting), then the namespace and
        the constants converted into it (once per namespace, cached)."""
        lines = ["    if _ops is None:", "        return None", "    xp = _ops['xp']"]
        if plan.constants:
            values = [n.op.value for n in plan.constants]
            cached = ctx.bind("_constants", _Constants(values, self.family))
            targets = ", ".join(plan.names[n] for n in plan.constants)
            lines.append(f"    {targets}{',' if len(values) == 1 else ''} = {cached}(xp)")
        return lines

    def step(self, node: Node, args: list[str], out, target: str, ctx: Context) -> list[str]:
        op = node.op
        reason = self.unsupported(node)
        if reason is not None:
            raise GraphError(f"function: node {node.name!r} ({op.label()}, built at "
                             f"{node.source}) cannot run on the {self.name} backend: "
                             f"{reason}; see docs/scaling.md for the ops each backend runs")
        args = self._cast(node, args, ctx)
        if op.elementwise and not op.multi:
            form = xp_forms.elementwise_form(op)
            if form is not None and (self.family is None
                                     or op.name not in xp_forms.OVERRIDES.get(self.family, {})):
                return [form.format(*args)]
        fn = self.form(node, ctx)
        opref = ctx.bind(f"_op_{node.index}", op)
        return [f"{fn}(xp, {opref}{''.join(', ' + a for a in args)})"]

    def symbolic_call(self, node: Node, slot: int, args: list[str], ctx: Context) -> str:
        """An op with symbolic parameters, resolved for the call's sizes: its form applied to
        the resolved op (`_ops[slot]`)."""
        reason = self.unsupported(node)
        if reason is not None:
            raise GraphError(f"function: node {node.name!r} ({node.op.label()}) cannot run on "
                             f"the {self.name} backend: {reason}")
        fn = self.form(node, ctx)
        return f"{fn}(xp, _ops[{slot}]{''.join(', ' + a for a in self._cast(node, args, ctx))})"

    def resolved(self, op):
        return op

    def form(self, node: Node, ctx: Context) -> str:
        """A global holding the node's form: for a fixed family its override, its form, or
        (Dask) the single block path; for `array_api`, a dispatch on the call's namespace."""
        name = node.op.name
        fam = self.family
        if fam is None:
            return ctx.bind(f"_{identifier(name)}_{node.index}",
                            functools.partial(_dispatch, node), key=("form", node.index))
        if name in xp_forms.OVERRIDES.get(fam, {}):
            return ctx.bind(f"_{identifier(name)}", xp_forms.OVERRIDES[fam][name],
                            key=("override", name))
        if name in xp_forms.SINGLE_BLOCK.get(fam, ()) or name not in xp_forms.FORMS:
            return ctx.bind(f"_{identifier(name)}_whole_{node.index}", self.whole(node),
                            key=("whole", node.index))
        return ctx.bind(f"_{identifier(name)}", xp_forms.FORMS[name], key=("form", name))

    def whole(self, node: Node):
        raise GraphError(f"function: node {node.name!r} ({node.op.label()}) has no form on "
                         f"the {self.name} backend")

    def unsupported(self, node: Node) -> str | None:
        """Why this backend cannot run the node, known when compiling (None: it can, or, for
        `array_api`, only the namespace of a call will tell)."""
        if self.family is None:
            return None
        return xp_forms.missing(node.op.name, self.family)

    def _cast(self, node: Node, args: list[str], ctx: Context) -> list[str]:
        """Operands cast to the dtype the op computes in, where they differ (NumPy promotes
        across kinds, the standard does not)."""
        op = node.op
        if op.multi:
            return args
        if op.name in _COMPARISONS:
            want = np.result_type(*(x.dtype for x in node.inputs))
            which = range(len(args))
        elif op.name == "where":
            want, which = node.dtype, (1, 2)
        elif (op.elementwise and node.dtype.kind in "fc") or op.name in _CAST_ALL:
            want, which = node.dtype, range(len(args))
        else:
            return args
        out = list(args)
        for k in which:
            if node.inputs[k].dtype != want:
                out[k] = f"xp.astype({args[k]}, xp.{_dtype_name(want)})"
        return out

    def result(self, node: Node, var: str) -> str:
        return var

    def took(self, expression: str, out: str) -> bool:
        return False

    # -- calling ----------------------------------------------------------------------------
    def call(self, fn, inputs: tuple[Node, ...], resolve, args: tuple, kwargs: dict,
             single: bool):
        """Check the values against the inputs (shapes, dtypes, symbolic sizes) without
        converting them to NumPy, run the generated function in their namespace, and return
        its results (one, or a list)."""
        kwargs = dict(kwargs)
        options = self.options(kwargs)
        values = input_checks.bind_args(inputs, args, kwargs)
        xp = self.namespace_of(inputs, values)
        arrays, env = input_checks.check_values(
            inputs, values, convert=functools.partial(self.convert, xp))
        ops = dict(resolve(env)) if resolve is not None else {}
        ops["xp"] = xp
        ops["sizes"] = env
        arrays = self.place(xp, arrays, options)
        results = fn(*arrays, ops)
        results = self.finish(xp, results, values, options)
        return results[0] if single else results

    def options(self, kwargs: dict) -> dict:
        """Call options taken out of `kwargs` (none here; Dask's `compute`)."""
        return {}

    def namespace_of(self, inputs, values):
        """The one namespace of the array arguments (NumPy when all are NumPy or numbers)."""
        found = {}
        for node, v in zip(inputs, values):
            if _is_foreign(v):
                try:
                    xp = self.compat.array_namespace(v)
                except TypeError as e:
                    raise InputError(f"input {node.name!r}: expected an array of an Array API "
                                     f"library, got {type(v).__name__}: {e}") from None
                found.setdefault(xp, node.name)
        if len(found) > 1:
            names = ", ".join(f"{getattr(x, '__name__', x)} ({n!r})" for x, n in found.items())
            raise InputError(f"the inputs mix array libraries: {names}; pass arrays of one "
                             "library (NumPy arrays are converted to it)")
        if found:
            return next(iter(found))
        return self.compat.array_namespace(np.zeros(0))

    def convert(self, xp, node: Node, value):
        """One argument checked against its input node and put into `xp`."""
        if not _is_foreign(value):
            arr = input_checks.as_array(node, value)
            return arr if self.family == "dask" else xp.asarray(arr)
        dtype = _numpy_dtype(value.dtype)
        if dtype is None or dtype.kind not in types.SUPPORTED_KINDS:
            raise InputError(f"input {node.name!r}: expected {input_checks.describe(node)}, "
                             f"got a value of dtype {value.dtype} ({type(value).__name__})")
        if dtype != node.dtype:
            if not np.can_cast(dtype, node.dtype, "safe"):
                raise InputError(f"input {node.name!r}: expected dtype {node.dtype}, got "
                                 f"{dtype}, which does not cast safely; convert it first")
            value = xp.astype(value, xp_forms.dtype_of(xp, node.dtype))
        return value

    def place(self, xp, arrays: list, options: dict) -> list:
        """The arrays as the generated code gets them (Dask scatters the parameters)."""
        return arrays

    def finish(self, xp, results: list, values: list, options: dict) -> list:
        """Results that alias no input (an input returned as it is is copied)."""
        fed = {id(v) for v in values}
        return [xp.asarray(r, copy=True) if id(r) in fed else r for r in results]


@register_backend
class CupyBackend(ArrayApiBackend):
    """CuPy arrays on a GPU: NumPy inputs are moved to the device, results stay there."""

    name: ClassVar[str] = "cupy"
    family: ClassVar[str | None] = "cupy"
    extra: ClassVar[str] = "gpu"

    def __init__(self):
        super().__init__()
        self.cupy = require("cupy", "gpu", self.name)

    def namespace_of(self, inputs, values):
        return self.compat.array_namespace(self.cupy.zeros(0))

    def convert(self, xp, node: Node, value):
        if not _is_foreign(value):
            return xp.asarray(input_checks.as_array(node, value))
        if self.compat.array_namespace(value) is not xp:
            raise InputError(f"input {node.name!r}: the cupy backend takes CuPy or NumPy "
                             f"arrays, got {type(value).__name__}")
        return super().convert(xp, node, value)


@register_backend
class DaskBackend(ArrayApiBackend):
    """Dask arrays chunked along a data axis: the generated code builds a task graph."""

    name: ClassVar[str] = "dask"
    family: ClassVar[str | None] = "dask"
    extra: ClassVar[str] = "dask"

    def __init__(self):
        super().__init__()
        self.dask = require("dask", "dask", self.name)
        self.da = require("dask.array", "dask", self.name)

    def options(self, kwargs: dict) -> dict:
        compute = kwargs.pop("compute", True)
        if not isinstance(compute, bool):
            raise InputError(f"compute must be True or False, got {compute!r}")
        return {"compute": compute}

    def namespace_of(self, inputs, values):
        return self.compat.array_namespace(self.da.zeros(0))

    def convert(self, xp, node: Node, value):
        if xp is None:
            xp = self.namespace_of((), ())
        if _is_foreign(value) and not isinstance(value, self.da.Array):
            raise InputError(f"input {node.name!r}: the dask backend takes Dask or NumPy "
                             f"arrays, got {type(value).__name__}")
        return super().convert(xp, node, value)

    def whole(self, node: Node):
        """The node's op as one task over whole arrays (its NumPy forward)."""
        if node.op.multi:
            outs = output_types(node)
            return functools.partial(_single_block, node.op.forward,
                                     [s for s, _ in outs], [d for _, d in outs], True)
        return functools.partial(_single_block, node.op.forward, [node.shape], [node.dtype],
                                 False)

    def place(self, xp, arrays: list, options: dict) -> list:
        """NumPy arrays (the parameters) as one-chunk Dask arrays: one key in the task graph
        that every task reads (each worker fetches it once), not a copy inside each task.
        Not `client.scatter`: scattered data has no recipe, so a worker lost with it could
        not be recomputed, and the values persisted from it would be lost for good."""
        return [self.da.from_array(a, chunks=a.shape) if isinstance(a, np.ndarray) else a
                for a in arrays]

    def finish(self, xp, results: list, values: list, options: dict) -> list:
        fed = {id(v) for v in values}
        if not options["compute"]:
            return [self.da.asarray(r) if not isinstance(r, self.da.Array) else r
                    for r in results]
        try:
            computed = self.dask.compute(*results)
        except Exception as e:  # a worker lost for good, a task that raised on a worker, ...
            raise GraphError(f"the Dask computation failed: {type(e).__name__}: {e}") from e
        return [np.array(r, copy=True) if id(r) in fed or not isinstance(r, np.ndarray)
                or not r.flags.writeable else r for r in computed]


class _Constants:
    """A graph's constants converted into a namespace, once per namespace (a CuPy constant
    crosses to the GPU once, not per call); Dask reads NumPy constants as they are."""

    def __init__(self, values: list, family: str | None):
        self.values, self.family = values, family
        self.cache: dict = {}

    def __call__(self, xp):
        if xp_forms.family(xp) == "numpy":
            return self.values
        hit = self.cache.get(id(xp))
        if hit is None or hit[0] is not xp:
            hit = self.cache[id(xp)] = (xp, [xp.asarray(v) for v in self.values])
        return hit[1]


def _dispatch(node: Node, xp, op, *arrays):
    """The op's form for the call's namespace (`array_api`: known only per call): the
    family's own, else the standard one, else a GraphError saying what the family lacks."""
    fam = xp_forms.family(xp)
    form = xp_forms.OVERRIDES.get(fam, {}).get(op.name)
    if form is None:
        reason = (xp_forms.MISSING.get(fam, {}).get(op.name)
                  or xp_forms.MISSING["*"].get(op.name))
        form = xp_forms.FORMS.get(op.name)
        if reason is not None or form is None:
            _refuse(node, xp, reason or "it has no Array API form")
    return form(xp, op, *arrays)


def _refuse(node: Node, xp, reason: str):
    raise GraphError(f"node {node.name!r} ({node.op.label()}, built at {node.source}) cannot "
                     f"run on the namespace {getattr(xp, '__name__', xp)}: {reason}; see "
                     "docs/scaling.md for the ops each backend runs")


def _single_block(forward, shapes, dtypes, multi, xp, op, *arrays):
    """`forward` as one Dask task over whole arrays (delayed), as Dask arrays again."""
    import dask
    import dask.array as da

    result = dask.delayed(forward, pure=True)(*arrays)
    parts = [result[k] for k in range(len(shapes))] if multi else [result]
    out = []
    for part, shape, dtype in zip(parts, shapes, dtypes):
        if not types.is_static(shape):
            dims = [a.shape for a in arrays]
            raise GraphError(f"{op.name}: runs as one Dask task, which needs static result "
                             f"sizes; got {types.fmt_shape(shape)} from inputs of shapes "
                             f"{dims}")
        out.append(da.from_delayed(part, tuple(int(d) for d in shape), dtype=dtype))
    return tuple(out) if multi else out[0]


def _is_foreign(value) -> bool:
    """An array of a library other than NumPy (something with shape, dtype and a namespace)."""
    return (not isinstance(value, (np.ndarray, np.generic, Node)) and hasattr(value, "shape")
            and hasattr(value, "dtype") and hasattr(value, "__array_namespace__")
            or type(value).__module__.split(".")[0] in ("dask", "cupy", "torch", "jax",
                                                        "jaxlib"))


def _numpy_dtype(dtype) -> np.dtype | None:
    """The NumPy dtype of another library's dtype (by name: `torch.float64` -> float64)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        pass
    name = str(dtype).rsplit(".", 1)[-1]
    try:
        return np.dtype(name)
    except TypeError:
        return None


def _dtype_name(dtype: np.dtype) -> str:
    return "bool" if dtype == np.bool_ else dtype.name


# -- the Krylov bridge's hooks (graphc/krylov.py): Dask values in `at` ------------------------
def backend_for(values) -> str:
    """"dask" when any value is a Dask array (the data of a curvature operator spread over a
    cluster), else "numpy"."""
    return "dask" if any(type(v).__module__.startswith("dask.") for v in values) else "numpy"


def lazy_check(node: Node, value):
    """A value of `at` checked against its input node without computing it: a Dask array
    stays lazy, anything else becomes a NumPy array of the node's dtype."""
    if type(value).__module__.startswith("dask."):
        backend = get_dask()
        return backend.convert(None, node, value)
    return input_checks.as_array(node, value)


def get_dask() -> DaskBackend:
    return DaskBackend()


def persist_point(outputs: list, n_small: int) -> list:
    """The point part's outputs on Dask: computed together once, the first `n_small` (the loss
    and the gradients) brought back as NumPy arrays, the rest (the values each product reads)
    kept on the workers (`persist`), so a product ships only the vector out."""
    import dask

    try:
        kept = dask.persist(*outputs)
        small = dask.compute(*kept[:n_small])
    except Exception as e:  # a lost worker whose data could not be recomputed, ...
        raise GraphError(f"the Dask computation of the point part failed: "
                         f"{type(e).__name__}: {e}") from e
    return [np.asarray(a) for a in small] + list(kept[n_small:])
