"""NumPy functions on nodes: `np.sin(x)`, `np.sum(x, axis=0)`, `np.dot(W, x)` build the same
nodes as `gc.sin(x)`, `gc.sum(x, axis=0)`, `gc.dot(W, x)`.

Nodes implement NumPy's two override protocols (NEP 13 `__array_ufunc__`, NEP 18
`__array_function__`), so NumPy hands any call with a node among its arguments to graphc,
whatever the argument order (`np.add(array, node)`, `array * node`). The table from NumPy's
callables to graphc's is built once, on first use, from what `graphc.ops` exports: a graphc
function with a NumPy name (`sin`, `sum`, `concatenate`, `linalg.inv`; a few NumPy spellings
in `ALIASES`) whose parameters line up with NumPy's is picked up, so a new op with a NumPy
name needs no entry here.

Lining up: NumPy's leading positional parameters pair with graphc's by position (`np.swapaxes
(a, axis1, axis2)` with `gc.swapaxes(x, a, b)`), the rest by name (`axis`, `keepdims`); every
required graphc parameter must be reached. At call time a NumPy keyword that graphc lacks is
accepted only at NumPy's default (`np.trace(x, offset=0)`); anything else (`out=`, `dtype=`,
`where=`, `order="F"`) is a GraphError naming the function and the keyword. A NumPy function
graphc has not is a GraphError naming it and the closest graphc function (difflib), and
`np.asarray(node)` explains that a node has no value until it is evaluated.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field

import numpy as np

from graphc.errors import GraphError
from graphc.ir.graph import Node, user_source_line

# NumPy's name -> graphc's, where they differ (np.abs, np.pow, np.max are graphc's names)
ALIASES = {"subtract": "sub", "multiply": "mul", "divide": "div", "true_divide": "div",
           "negative": "neg", "power": "pow", "absolute": "abs", "amax": "max", "amin": "min"}

# ufunc.reduce -> the reduction it is (taken where graphc has it)
REDUCTIONS = {"add": "sum", "maximum": "max", "minimum": "min", "multiply": "prod",
              "logical_and": "all", "logical_or": "any"}

# ufunc keywords and the value at which each changes nothing
UFUNC_DEFAULTS = {"where": True, "dtype": None, "casting": "same_kind", "order": "K",
                  "subok": True, "signature": None}

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VAR = inspect.Parameter.VAR_POSITIONAL
SPREAD = "*"  # a pair's target "*k": NumPy's *args fill graphc's positionals from index k


@dataclass
class Translation:
    """How one NumPy function's arguments become a graphc function's."""

    np_name: str                 # "np.sum", as the user wrote it
    gc_name: str                 # "gc.sum"
    fn: object                   # the graphc function
    np_sig: inspect.Signature
    gc_sig: inspect.Signature
    pairs: dict = field(default_factory=dict)  # NumPy parameter -> graphc parameter

    def __call__(self, args, kwargs):
        try:
            bound = self.np_sig.bind(*args, **kwargs)
        except TypeError as e:
            raise _error(f"{self.np_name}: {e}") from None
        values = {}
        for name, value in bound.arguments.items():
            target = self.pairs.get(name)
            if target is not None and target.startswith(SPREAD):
                self._spread(values, list(value), int(target[1:]))
                continue
            if target is not None:
                values[target] = value
                continue
            if name == "out" and value is not None:
                raise _out_error(self.np_name)
            if self.np_sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                for k, v in value.items():  # NumPy's **kwargs: none that graphc knows
                    raise _error(f"{self.np_name}(..., {k}={_show(v)}) on graph nodes: "
                                 f"{self.gc_name}{self.gc_sig} has no {k!r}")
                continue
            if not _is_default(value, self.np_sig.parameters[name].default):
                raise _error(f"{self.np_name}(..., {name}={_show(value)}) on graph nodes: "
                             f"{self.gc_name}{self.gc_sig} has no {name!r}; only NumPy's "
                             f"default is accepted (call {self.gc_name} directly)")
        pos, kw, gap = [], {}, False
        for p in self.gc_sig.parameters.values():
            if p.name not in values:
                if p.kind is not _VAR and p.default is p.empty:
                    raise _error(f"{self.np_name}: {self.gc_name}{self.gc_sig} needs "
                                 f"{p.name!r}; graphc has no form of {self.np_name} without "
                                 "it")
                gap = gap or p.kind in _POSITIONAL
                continue
            if p.kind is _VAR:
                pos.extend(values[p.name])
            elif p.kind in _POSITIONAL and not gap:
                pos.append(values[p.name])
            else:
                kw[p.name] = values[p.name]
        return self.fn(*pos, **kw)

    def _spread(self, values: dict, items: list, start: int) -> None:
        for p in list(self.gc_sig.parameters.values())[start:]:
            if p.kind is _VAR:
                values[p.name] = tuple(items)
                return
            if p.kind not in _POSITIONAL or not items:
                return
            values[p.name] = items.pop(0)
        if items:
            raise _error(f"{self.np_name}: {len(items)} arguments too many for "
                         f"{self.gc_name}{self.gc_sig}")


@dataclass
class Tables:
    ufuncs: dict        # np.ufunc -> (gc name, graphc function)
    functions: dict     # NumPy function -> Translation
    names: dict         # graphc name ("sum", "linalg.inv") -> function, for suggestions
    refused: dict       # NumPy function -> why its graphc namesake does not line up


_TABLES: Tables | None = None


def tables() -> Tables:
    """The NumPy -> graphc tables, built on first use from `graphc.ops`'s exports."""
    global _TABLES
    if _TABLES is None:
        _TABLES = build_tables()
    return _TABLES


def build_tables() -> Tables:
    from graphc import ops
    from graphc.ops import linalg

    names = {n: getattr(ops, n) for n in getattr(ops, "__all__", ())
             if callable(getattr(ops, n, None)) and not isinstance(getattr(ops, n), type)}
    linalg_names = {n: f for n, f in vars(linalg).items()
                    if not n.startswith("_") and inspect.isfunction(f)
                    and f.__module__ == linalg.__name__}
    t = Tables({}, {}, dict(names), {})
    t.names.update({f"linalg.{n}": f for n, f in linalg_names.items()})
    candidates = [(np_name, np_name, np) for np_name in names]
    candidates += [(np_name, gc_name, np) for np_name, gc_name in ALIASES.items()
                   if gc_name in names]
    candidates += [(n, f"linalg.{n}", np.linalg) for n in linalg_names]
    for np_name, gc_name, module in candidates:
        obj = getattr(module, np_name, None)
        fn = t.names[gc_name]
        shown = f"np.{'linalg.' if module is np.linalg else ''}{np_name}"
        if isinstance(obj, np.ufunc):
            if obj.nout == 1 and _accepts(fn, obj.nin):
                t.ufuncs.setdefault(obj, (gc_name, fn))
        elif callable(obj) and not isinstance(obj, type) and obj not in t.functions:
            tr = _translation(shown, f"gc.{gc_name}", obj, fn)
            if isinstance(tr, Translation):
                t.functions[obj] = tr
            else:
                t.refused[obj] = tr
    return t


def _accepts(fn, n: int) -> bool:
    try:
        inspect.signature(fn).bind(*range(n))
        return True
    except (TypeError, ValueError):
        return False


def _translation(np_name: str, gc_name: str, np_fn, fn) -> Translation | str:
    """How NumPy's parameters reach graphc's, or why they cannot."""
    try:
        np_sig, gc_sig = inspect.signature(np_fn), inspect.signature(fn)
    except (TypeError, ValueError):
        return f"{np_name} has no signature to line up with {gc_name}'s"
    np_params, gc_params = list(np_sig.parameters.values()), list(gc_sig.parameters.values())
    pairs, used = {}, set()
    for k, (a, b) in enumerate(zip(np_params, gc_params)):  # leading positionals, by position
        if a.kind is _VAR:  # NumPy's *operands spread over graphc's positionals (einsum)
            if b.kind in _POSITIONAL or b.kind is _VAR:
                pairs[a.name] = SPREAD + str(k)
                used.update(p.name for p in gc_params[k:] if p.kind in _POSITIONAL
                            or p.kind is _VAR)
            break
        if b.kind not in _POSITIONAL or a.kind not in _POSITIONAL:
            break
        # the same name, or two required parameters where graphc's name is not another of
        # NumPy's (x for a; a for axis1 once NumPy's a is taken): position is the link
        namesake = np_sig.parameters.get(b.name)
        if a.name != b.name and (a.default is not a.empty or b.default is not b.empty
                                 or (namesake is not None and namesake.name not in pairs)):
            break
        pairs[a.name] = b.name
        used.add(b.name)
    for b in gc_params:  # the rest, by name
        if b.name in used:
            continue
        a = np_sig.parameters.get(b.name)
        if a is not None and a.name not in pairs and (a.kind is _VAR) == (b.kind is _VAR):
            pairs[a.name] = b.name
        elif b.default is b.empty and b.kind is not _VAR:
            return (f"{gc_name}{gc_sig} needs {b.name!r}, which {np_name}{np_sig} does not "
                    "pass")
    return Translation(np_name, gc_name, fn, np_sig, gc_sig, pairs)


# -- the protocols -----------------------------------------------------------------------------
def array_ufunc(self, ufunc, method, *inputs, **kwargs):
    """NEP 13: a NumPy ufunc called with a node among its operands."""
    t = tables()
    name = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    out = kwargs.pop("out", None)
    if out is not None and any(o is not None for o in (out if isinstance(out, tuple) else
                                                        (out,))):
        raise _out_error(name)
    if method == "__call__":
        _check_defaults(name, kwargs, UFUNC_DEFAULTS)
        hit = t.ufuncs.get(ufunc)
        if hit is None:
            raise _missing(name, ufunc.__name__, t)
        return hit[1](*inputs)
    if method == "reduce":
        gc_name = REDUCTIONS.get(ufunc.__name__)
        fn = t.names.get(gc_name) if gc_name else None
        if fn is None:
            raise _missing(name, gc_name or ufunc.__name__, t)
        axis, keepdims = kwargs.pop("axis", 0), kwargs.pop("keepdims", False)
        _check_defaults(name, kwargs, {**UFUNC_DEFAULTS, "initial": np._NoValue})
        return fn(inputs[0], axis=axis, keepdims=keepdims)
    if method == "outer":
        _check_defaults(name, kwargs, UFUNC_DEFAULTS)
        hit = t.ufuncs.get(ufunc)
        if hit is None or len(inputs) != 2:
            raise _missing(name, ufunc.__name__, t)
        a, b = inputs
        b_ndim = b.ndim if isinstance(b, Node) else np.ndim(b)
        a = a if isinstance(a, Node) else np.asarray(a)
        a = t.names["reshape"](a, (*a.shape, *(1,) * b_ndim)) if isinstance(a, Node) else \
            a.reshape(*a.shape, *(1,) * b_ndim)
        return hit[1](a, b)
    raise _missing(name, {"accumulate": "cumsum"}.get(method, ufunc.__name__), t)


def array_function(self, func, types, args, kwargs):
    """NEP 18: a NumPy function called with a node among its arguments."""
    t = tables()
    special = INTROSPECTION.get(func)
    if special is not None:
        return special(*args, **kwargs)
    tr = t.functions.get(func)
    if tr is not None:
        return tr(args, kwargs)
    name = _public_name(func)
    why = t.refused.get(func)
    if why is not None:
        raise _error(f"{name} on graph nodes: {why}; call the graphc function directly")
    raise _missing(name, func.__name__, t)


def array(self, dtype=None, copy=None):
    """`np.asarray(node)`, `np.array(node)`: refused, with the reason."""
    raise GraphError(
        f"node {self.name!r} is symbolic: it has no value until the graph runs, so NumPy "
        f"cannot make it an array; evaluate it (gc.eval({self.name}, feed) or "
        f"{self.name}.eval(feed)), or keep it a node and use np.* functions on it, which "
        f"build graph nodes (at {user_source_line()})")


# np.shape, np.ndim, np.size: a node's static facts, no graph nodes
INTROSPECTION = {np.shape: lambda a: a.shape if isinstance(a, Node) else np.shape(a),
                 np.ndim: lambda a: a.ndim if isinstance(a, Node) else np.ndim(a),
                 np.size: lambda a, axis=None: (a.size if axis is None else a.shape[axis])
                 if isinstance(a, Node) else np.size(a, axis)}


def install() -> None:
    """Give `Node` NumPy's override protocols (and `__array__`, which refuses)."""
    Node.__array_ufunc__ = array_ufunc
    Node.__array_function__ = array_function
    Node.__array__ = array


# -- errors ------------------------------------------------------------------------------------
def _error(msg: str) -> GraphError:
    return GraphError(f"{msg} (at {user_source_line()})")


def _out_error(name: str) -> GraphError:
    return _error(f"{name}(..., out=...): a graph node has no buffer to write into, and an "
                  "array cannot hold a node; use the node it returns (y = np.add(a, x), not "
                  "a += x with an array a)")


def _check_defaults(name: str, kwargs: dict, defaults: dict) -> None:
    for k, v in kwargs.items():
        if k not in defaults or not _is_default(v, defaults[k]):
            raise _error(f"{name}(..., {k}={_show(v)}) on graph nodes: the keyword {k!r} is "
                         "not supported (graphc computes in its inputs' dtype, everywhere)")


def _missing(name: str, bare: str, t: Tables) -> GraphError:
    spellings = {**{n: n for n in t.names}, **{a: g for a, g in ALIASES.items() if g in t.names}}
    close = list(dict.fromkeys(spellings[c] for c in difflib.get_close_matches(
        bare, list(spellings), n=4, cutoff=0.5)))[:3]
    hint = (f"the closest graphc function{'s are' if len(close) > 1 else ' is'} "
            + ", ".join(f"gc.{c}" for c in close)) if close else \
        "see docs/ops.md for the functions graphc has"
    return _error(f"{name} has no graphc counterpart to build on graph nodes; {hint}")


def _public_name(func) -> str:
    n = getattr(func, "__name__", repr(func))
    if getattr(np, n, None) is func:
        return f"np.{n}"
    if getattr(np.linalg, n, None) is func:
        return f"np.linalg.{n}"
    return f"{getattr(func, '__module__', 'numpy')}.{n}"


def _is_default(value, default) -> bool:
    if value is default:
        return True
    if default is inspect.Parameter.empty or default is np._NoValue:
        return False
    simple = (type(None), bool, int, float, str)
    return (type(value) in simple and type(default) in simple and type(value) is type(default)
            and value == default)


def _show(v) -> str:
    if isinstance(v, Node):
        return f"node {v.name!r}"
    if isinstance(v, np.ndarray):
        return f"<{v.dtype} array of shape {v.shape}>"
    text = " ".join(repr(v).split())
    return text if len(text) <= 40 else text[:37] + "..."
