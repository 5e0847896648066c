"""Code generation: a schedule becomes one straight-line Python function over NumPy.

Each step is one line, `name = call(args)  # op  'node name'`, in schedule order; a value is
deleted right after its last use; an elementwise step whose operand dies there writes into
that operand's buffer (`out=`, see `schedule.plan_inplace`); a fused group (fusion.py) is one
kernel call. Every name the source binds (the function, its parameters and locals, the globals
holding constants and helpers) comes from one `Namer`, so no two collide: locals are node
names reduced to `[A-Za-z0-9_]`, globals names made here. No user text ever reaches the source
as code: parameters are written as `repr` of validated ints, slices and tuples (`_literal`),
and comments pass through `_comment`, which escapes anything but printable ASCII, so a newline
in a name or an op's label cannot end the comment. No expression nests deeper than a constant
(an `add_n` of any length is one statement per term), whatever the graph's width. The source
is compiled once; the function keeps no state between calls, so threads can share it.
"""

from __future__ import annotations

import itertools
import keyword
import linecache
import re
import weakref
from dataclasses import dataclass, field

import numpy as np

from graphc.compile.schedule import Schedule, plan_inplace
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import OPS, Constant

# Library elementwise ops that are NumPy ufunc calls, written out; `{}` are the operands.
# `{zero}` is a 0-d zero of the node's dtype: a ufunc converts a Python scalar operand on every
# call, which costs ~0.2 us on small arrays.
SPECIAL_FORMS = {"relu": ("np.maximum", "{0}, {zero}"),
                 "softplus": ("np.logaddexp", "{zero}, {0}")}
# Ops that always return a new array they own (for ndim >= 1): safe to overwrite once dead.
FRESH_OPS = frozenset({
    "add_n", "matmul", "max", "min", "softmax", "log_softmax", "logsumexp", "zeros_like",
    "ones_like", "eye_like", "scatter_index", "where", "concatenate", "stack", "cast",
    "one_hot", "diag", "softmax_cross_entropy", "scatter_add"})
# Names the generated code uses without binding them: never given to a value.
RESERVED = frozenset({"np", "self", "type", "slice", "Ellipsis", "_ops", "__builtins__",
                      *keyword.kwlist})
MAX_NAME = 64  # longest identifier made from a node name (longer names are cut)
MAX_COMMENT = 200  # longest op label shown in a comment
# On 0-d float values Python's operators run NumPy's scalar math: the same IEEE result as the
# ufunc in a tenth of the time (~50 ns against ~450 ns).
SCALAR_OPERATORS = {np.add: "{0} + {1}", np.subtract: "{0} - {1}", np.multiply: "{0} * {1}",
                    np.true_divide: "{0} / {1}", np.negative: "-{0}"}
# A sum over a leading or trailing axis of at most this many float elements is a dot product
# with a vector of ones: ~0.3 us a call against ~0.85 us for np.add.reduce's set-up.
SMALL_SUM = 1024


def ufunc_of(node: Node):
    """The NumPy ufunc a library elementwise node calls, or None."""
    cls = type(node.op)
    if OPS.get(cls.__dict__.get("name", "")) is not cls:
        return None
    if cls.__module__ != "graphc.ops.elementwise":
        return None
    fn = cls.__dict__.get("fn")
    fn = getattr(fn, "__func__", fn)
    return fn if isinstance(fn, np.ufunc) else None


def writes_out(node: Node) -> bool:
    """True when the node's step can be given an output buffer."""
    if node.op.name in SPECIAL_FORMS and OPS.get(node.op.name) is type(node.op):
        return True
    if _add_n_as_adds(node):
        return True
    return ufunc_of(node) is not None


def _add_n_as_adds(node: Node) -> bool:
    """An add_n of arrays of its own dtype: written as `np.add` calls into one buffer."""
    return (node.op.name == "add_n" and OPS.get("add_n") is type(node.op) and node.ndim > 0
            and len(node.inputs) >= 2 and all(x.dtype == node.dtype for x in node.inputs))


def is_fresh(node: Node) -> bool:
    """True when the node's op returns a new array it owns (for ndim >= 1)."""
    if node.ndim == 0:
        return False
    if writes_out(node):
        return True
    name = node.op.name
    if name == "sum":
        return bool(node.op.axis)
    if name == "scatter_add":
        from graphc.rewrite.scatter import ScatterAdd
        return type(node.op) is ScatterAdd
    return name in FRESH_OPS and OPS.get(name) is type(node.op)


def identifier(name: str) -> str:
    """A Python identifier made of `[A-Za-z0-9_]` from any node name."""
    s = re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_")[:MAX_NAME].rstrip("_")
    if not s or not s[0].isalpha():
        s = "v" + ("_" + s if s else "")
    if s in RESERVED:
        s += "_"
    return s


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PRINTABLE = re.compile(r"[ -~]*\Z")


class Namer:
    """Every name generated code binds, unique across the function's own name, its globals
    (constants, helpers such as `_ones_3_f8`), its parameters and locals, and `RESERVED`."""

    def __init__(self):
        self.taken: set[str] = set(RESERVED)
        self.next: dict[str, int] = {}
        self.memo: dict[object, str] = {}

    def fresh(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`, ...: the first one not taken."""
        if not _IDENTIFIER.match(base):
            raise ValueError(f"codegen: {base!r} is not a name codegen makes")
        v, k = base, self.next.get(base, 1)
        while v in self.taken:
            v, k = f"{base}_{k}", k + 1
        self.next[base] = k
        self.taken.add(v)
        return v

    def bind(self, env: dict, base: str, value, key=None) -> str:
        """A new global of the generated code holding `value`; the same `key` gives the same
        global."""
        if key is not None and key in self.memo:
            return self.memo[key]
        name = self.fresh(base)
        env[name] = value
        if key is not None:
            self.memo[key] = name
        return name


def _comment(*texts: str) -> str:
    """`  # text  text`, each text shown as printable ASCII: `ascii()` escapes, so a line
    break (or NUL, or any non-ASCII character) in a label or a name cannot end the comment."""
    shown = []
    for t in texts:
        t = ascii(str(t))[1:-1]
        if len(t) > MAX_COMMENT:
            t = t[:MAX_COMMENT] + "..."
        shown.append(t)
    out = "  # " + "  ".join(shown)
    if not _PRINTABLE.match(out):  # ascii() guarantees it; a comment is never trusted
        raise RuntimeError("codegen: a comment is not printable ASCII")
    return out


@dataclass
class Program:
    """Generated source, the compiled function, and which line runs which node."""

    source: str
    fn: object
    filename: str
    line_nodes: dict[int, Node] = field(default_factory=dict)
    checked: bool = True  # outputs need the call-time freshness check (`_returns`)

    def node_at(self, tb) -> Node | None:
        """The node whose line raised, from a traceback."""
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        return self.line_nodes.get(line)


_counter = itertools.count()


def generate(schedule: Schedule, name: str = "f", inplace: bool = True,
             check_finite: bool = False, groups=(), symbolic=frozenset()) -> Program:
    """Emit and compile the schedule; `groups` are fused kernels, `symbolic` the nodes whose
    op is resolved per call (passed in `_ops`, keyed by the node's slot)."""
    fed = set(schedule.inputs)
    names: dict[Node, str] = {}
    namer = Namer()

    def var(n: Node, prefix: str = "") -> str:
        names[n] = namer.fresh(prefix + identifier(n.name))
        return names[n]

    env: dict[str, object] = {"np": np}
    for x in schedule.inputs:
        var(x)
    params = [names[x] for x in schedule.inputs]
    fn_name = namer.fresh(identifier(name))
    for s in schedule.steps:
        if isinstance(s.node.op, Constant):
            env[var(s.node, "c_")] = s.node.op.value
    member = {}
    for g in groups:
        for n in g.nodes:
            member[n] = g
    order = _units(schedule, member)
    # lifetimes in the order the code runs: a fused group runs where its unit is, which can
    # be later than some of its members' places in the schedule
    plan = (plan_inplace(schedule, is_fresh, writes_out, [n for u in order for n in u.nodes])
            if inplace and not check_finite else {})
    last: dict[Node, int] = {}
    for k, unit in enumerate(order):
        for n in unit.inputs:
            last[n] = k
    keep = set(schedule.outputs) | fed
    lines: list[str] = []
    line_nodes: dict[int, Node] = {}

    def emit(line: str, node: Node | None = None) -> None:
        if node is not None:
            line_nodes[len(lines) + 2] = node  # line 1 is the `def`
        lines.append(line)

    head = f"def {fn_name}({', '.join(params + ['_ops'])}):"
    lines.extend(_guard(schedule.inputs, params, env, namer, check_finite or bool(symbolic)))
    direct = {} if check_finite else _direct_terms(schedule, member, symbolic)
    scatters = {s for s, _ in direct.values()}
    check = namer.bind(env, "_check", None) if check_finite else None
    for k, unit in enumerate(order):
        if unit.group is None:
            n = unit.nodes[0]
            if isinstance(n.op, Constant):
                continue
            args = [names[x] for x in n.inputs]
            comment = _comment(n.op.label(), ascii(n.name))
            if n in scatters:  # a scatter_add whose buffer its terms were written into
                rest = [(names[t], i) for t, i in zip(n.inputs[1:], n.op.indices)
                        if direct.get(t, (None,))[0] is not n]
                for t, i in rest:
                    emit(f"    {names[n]}[{_literal(i)}] += {t}{comment}", n)
                if not rest:
                    emit(f"    pass{comment}", n)
                continue
            into = plan.get(n)
            into = names[into] if into is not None else None
            if n in direct:  # write straight into the window of the scatter_add's buffer
                s_node, index = direct[n]
                if s_node not in names:
                    var(s_node)
                    buffer = _scatter_buffer(s_node, direct, env, namer)
                    emit(f"    {names[s_node]} = {buffer}"
                         f"{_comment('buffer of ' + ascii(s_node.name))}", s_node)
                into = f"{names[s_node]}[{_literal(index)}]"
            target = var(n)
            if _add_n_as_adds(n) and n not in symbolic:
                # ((a + b) + c) + ...: the order add_n's forward adds in, one statement per
                # term into one buffer (`into` when planned and not read after the first add)
                if into is not None and into in args[2:]:
                    into = None
                out = f", out={into}" if into is not None else ""
                emit(f"    {target} = np.add({args[0]}, {args[1]}{out}){comment}", n)
                for a in args[2:]:
                    emit(f"    np.add({target}, {a}, out={target})", n)
            else:
                call = _call(n, args, env, namer, schedule.slot[n] if n in symbolic else None,
                             into)
                if n in direct and f"out={into})" not in call:
                    raise RuntimeError(f"codegen: {n.name!r} must write into {into}")
                emit(f"    {target} = {call}{comment}", n)
            if check_finite:
                node_ref = namer.bind(env, f"_n{k}", n)
                packed = "".join(a + ", " for a in args)
                emit(f"    {check}({node_ref}, {target}, ({packed}))", n)
        else:
            g = unit.group
            outs = [var(n) for n in g.outputs]
            kname = namer.bind(env, f"_kernel{k}", g.kernel)
            args = [f"{names[x]}[()]" if x.ndim == 0 else names[x] for x in g.inputs]
            emit(f"    {', '.join(outs)}{',' if len(outs) == 1 else ''} = "
                 f"{kname}({', '.join(args)})"
                 + _comment("fused: " + ", ".join(n.op.name for n in g.nodes)), g.outputs[0])
        dead = sorted({names[x] for x in unit.inputs
                       if last.get(x) == k and x not in keep
                       and not isinstance(x.op, Constant)})
        if dead:
            lines.append(f"    del {', '.join(dead)}")
    rets, checked = _returns(schedule, names, member, symbolic)
    lines.append(f"    return [{', '.join(rets)}]")
    source = "\n".join([head, *lines]) + "\n"
    filename = f"<graphc-generated-{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    if check_finite:
        from graphc.compile.function import _check_finite
        env[check] = _check_finite
    exec(compile(source, filename, "exec"), env)  # noqa: S102 - our own generated source
    # tracebacks show the source while the function lives; the entry goes with it
    weakref.finalize(env[fn_name], linecache.cache.pop, filename, None)
    return Program(source, env[fn_name], filename, line_nodes, checked)


def _guard(inputs, params: list[str], env: dict, namer: Namer, never: bool) -> list[str]:
    """The fast path's test: called with `_ops=None`, the function runs only when every value
    is an ndarray of its input's exact static shape and dtype (what the call-time checks would
    pass unchanged) and otherwise returns None, so the caller runs the checks."""
    if never or not all(types.is_static(x.shape) for x in inputs):
        return ["    if _ops is None:", "        return None"]
    if not inputs:
        return []
    ndarray = namer.bind(env, "_ndarray", np.ndarray)
    tests = []
    for k, (x, p) in enumerate(zip(inputs, params)):
        dtype = namer.bind(env, f"_dtype_{k}", np.dtype(x.dtype))
        shape = _literal(tuple(x.shape))
        if shape is None:
            raise RuntimeError(f"codegen: input {x.name!r} has no literal shape")
        tests.append(f"type({p}) is {ndarray} and {p}.shape == {shape} "
                     f"and {p}.dtype is {dtype}")
    head = ["    if _ops is None and not (" + tests[0]]
    head += [f"            and {t}" for t in tests[1:]]
    head[-1] += "):"
    return [*head, "        return None"]


def _scatter_buffer(s: Node, direct: dict, env: dict, namer: Namer) -> str:
    """zeros of the scatter_add's type, or empty when its direct terms tile it exactly."""
    terms = s.inputs[1:]
    tiled = all(direct.get(t, (None,))[0] is s for t in terms) and sum(
        int(np.prod(t.shape)) for t in terms) == int(np.prod(s.shape))
    shape = _literal(tuple(s.shape))  # static: `_direct_terms` checked
    return f"np.{'empty' if tiled else 'zeros'}({shape}, {_dtype(s.dtype, env, namer)})"


def _dtype(dtype: np.dtype, env: dict, namer: Namer) -> str:
    """`np.float64` for a dtype NumPy names so, else a global holding the dtype."""
    name = dtype.name
    if re.fullmatch(r"[a-z][a-z0-9]*", name) and np.dtype(getattr(np, name, object)) == dtype:
        return f"np.{name}"
    return namer.bind(env, "_dtype", dtype, key=("dtype", dtype))


def _box(index, shape) -> tuple | None:
    """The (start, stop) per axis that a basic index (ints, step-1 slices) selects, or None."""
    if not isinstance(index, tuple) or len(index) > len(shape):
        return None
    box = []
    for k, d in enumerate(shape):
        i = index[k] if k < len(index) else slice(None)
        if isinstance(i, (int, np.integer)) and not isinstance(i, bool):
            i = int(i) + (int(d) if i < 0 else 0)
            if not 0 <= i < d:
                return None
            box.append((i, i + 1))
        elif isinstance(i, slice):
            start, stop, step = i.indices(int(d))
            if step != 1 or stop <= start:
                return None
            box.append((start, stop))
        else:
            return None
    return tuple(box)


def _direct_terms(schedule: Schedule, member: dict, symbolic) -> dict[Node, tuple]:
    """Terms of a scatter_add that its step would only add into zeros: term -> (scatter_add,
    the term's index).

    A term qualifies when it is a ufunc step's new array of exactly its window's shape and
    dtype, read by nothing but the scatter_add (once), not an output; and the scatter_add's
    windows are disjoint boxes. The term's step then writes into its window of the buffer
    (`out=buf[k]`), so the gradient of a stacked weight is written in place, as a hand-written
    loop would, instead of kept as k arrays and copied in at the end.
    """
    from graphc.rewrite.scatter import ScatterAdd

    uses: dict[Node, int] = {}
    for st in schedule.steps:
        for x in st.node.inputs:
            uses[x] = uses.get(x, 0) + 1
    outputs = set(schedule.outputs)
    fed = set(schedule.inputs)
    direct: dict[Node, tuple] = {}
    for st in schedule.steps:
        s = st.node
        if (type(s.op) is not ScatterAdd or s.op.n_dense or s in member or s in symbolic
                or not types.is_static(s.shape) or len(s.op.indices) > 4096):
            continue
        boxes = [_box(i, s.shape) for i in s.op.indices]
        if any(b is None or _literal(i) is None for b, i in zip(boxes, s.op.indices)):
            continue
        if not _disjoint(boxes):
            continue
        for t, index in zip(s.inputs[1:], s.op.indices):
            if (t not in fed and t not in outputs and t not in member and t not in symbolic
                    and uses.get(t) == 1 and t.ndim > 0 and writes_out(t)
                    and not (_add_n_as_adds(t) and len(t.inputs) > 2)  # `out=` always taken
                    and not isinstance(t.op, Constant) and t.dtype == s.dtype
                    and tuple(t.shape) == _window_shape(s.shape, index)):
                direct[t] = (s, index)
    return direct


def _window_shape(shape, index) -> tuple:
    """The shape `index` selects from an array of `shape`, found on a view of one element
    (allocating nothing, whatever the shape)."""
    return np.broadcast_to(np.empty((), bool), tuple(shape))[index].shape


def _disjoint(boxes: list) -> bool:
    """True when no two boxes overlap (sorted sweep on the first axis, then pairwise)."""
    order = sorted(range(len(boxes)), key=lambda k: boxes[k][0])
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1:]:
            if boxes[b][0][0] >= boxes[a][0][1]:
                break
            if all(lo1 < hi2 and lo2 < hi1
                   for (lo1, hi1), (lo2, hi2) in zip(boxes[a], boxes[b])):
                return False
    return True


def _returns(schedule: Schedule, names: dict, member: dict, symbolic) -> tuple[list, bool]:
    """The returned expressions, and whether the caller must still make outputs fresh.

    An output is fresh by construction (a new array that aliases nothing the caller holds)
    when a ufunc, a fused kernel, a matmul, an axis sum or a scatter_add made it and it is
    listed once: `plan_inplace` never writes into an output's buffer. A 0-d output is copied
    with `np.array` (NumPy gives scalars there). Any other output is checked at call time.
    """
    fed = set(schedule.inputs)
    rets, seen, checked = [], set(), False
    for o in schedule.outputs:
        v = names[o]
        made = (o not in fed and o not in symbolic and not isinstance(o.op, Constant)
                and (o in member or writes_out(o) or o.op.name in ("matmul", "scatter_add")
                     or (o.op.name == "sum" and bool(o.op.axis))) and is_fresh(o))
        if o.ndim == 0:
            rets.append(f"np.array({v})")
        elif made and o not in seen:
            rets.append(v)
        else:
            rets.append(v)
            checked = True
        seen.add(o)
    return rets, checked


def _call(n: Node, args: list[str], env: dict, namer: Namer, slot,
          into: str | None) -> str:
    """The expression computing `n` from the variables `args` (into `into` when given)."""
    out = f", out={into}" if into is not None else ""
    if slot is not None:
        return f"_ops[{int(slot)}]({', '.join(args)})"
    scalar = _scalar_operator(n, args, env, namer)
    if scalar is not None and into is None:
        return scalar
    special = SPECIAL_FORMS.get(n.op.name)
    if special is not None and OPS.get(n.op.name) is type(n.op):
        fn, form = special
        zero = namer.bind(env, "_zero_" + identifier(n.dtype.str), np.zeros((), n.dtype),
                          key=("zero", n.dtype))
        return f"{fn}({form.format(*args, zero=zero)}{out})"
    inline = _inline(n, args, env, namer)
    if inline is not None:
        return inline
    uf = ufunc_of(n)
    if uf is not None:
        if getattr(np, uf.__name__, None) is uf and _IDENTIFIER.match(uf.__name__):
            fn = f"np.{uf.__name__}"
        else:
            fn = namer.bind(env, "_" + identifier(uf.__name__), uf, key=("ufunc", uf))
        return f"{fn}({', '.join(args)}{out})"
    fn = namer.bind(env, f"_{identifier(n.op.name)}_{n.index}", n.op.forward)
    return f"{fn}({', '.join(args)})"


def _scalar_operator(n: Node, args: list[str], env: dict, namer: Namer) -> str | None:
    """`a * b` for a 0-d float add/sub/mul/div/neg (constants passed as NumPy scalars)."""
    form = SCALAR_OPERATORS.get(ufunc_of(n))
    if form is None or any(x.ndim != 0 or x.dtype.kind != "f" for x in (n, *n.inputs)):
        return None
    operands = []
    for x, a in zip(n.inputs, args):
        if isinstance(x.op, Constant):
            a = namer.bind(env, f"_s_{a}", x.op.value[()], key=("scalar", x))
        operands.append(a)
    return form.format(*operands)


def _small_sum(n: Node, args: list[str], env: dict, namer: Namer) -> str | None:
    """A sum over the one axis of a vector, or the first or last axis of a small matrix, as a
    dot product with ones (same dtype, float only)."""
    x = n.inputs[0]
    axis = tuple(n.op.params()["axis"])
    if (n.op.params()["keepdims"] or x.dtype not in (np.float32, np.float64)
            or n.dtype != x.dtype or x.ndim not in (1, 2) or len(axis) != 1
            or not all(isinstance(d, int) for d in x.shape) or np.prod(x.shape) > SMALL_SUM
            or _literal(axis) is None):
        return None
    a = int(axis[0]) % x.ndim
    size = int(x.shape[a])
    vec = np.ones(size, x.dtype)
    vec.flags.writeable = False
    ones = namer.bind(env, f"_ones_{size}_{identifier(x.dtype.str)}", vec,
                      key=("ones", size, x.dtype))
    if a == x.ndim - 1:
        return f"{args[0]}.dot({ones})"
    return f"{ones}.dot({args[0]})"


def _literal(value) -> str | None:
    """Python source for an op parameter made of ints, None, slices, Ellipsis and tuples of
    them (never a str), or None when the value is anything else."""
    if value is None or value is Ellipsis:
        return repr(value)
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    if isinstance(value, slice):
        parts = [_literal(p) for p in (value.start, value.stop, value.step)]
        return None if None in parts else f"slice({', '.join(parts)})"
    if isinstance(value, tuple):
        parts = [_literal(p) for p in value]
        if None in parts:
            return None
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    return None


def _inline(n: Node, args: list[str], env: dict, namer: Namer) -> str | None:
    """NumPy written out for the shape ops, sum and matmul of the library: the same call the
    op's forward makes, without the method call around it."""
    name = n.op.name
    if OPS.get(name) is not type(n.op) or n.op.free_symbols():
        return None
    p = n.op.params()
    if name == "matmul":
        if all(x.ndim in (1, 2) for x in n.inputs):  # same product; ~0.5 us less per call
            return f"{args[0]}.dot({args[1]})"
        return f"np.matmul({args[0]}, {args[1]})"
    if name == "sum" and p["axis"]:
        axis = _literal(tuple(p["axis"]))
        if axis is None or not isinstance(p["keepdims"], bool):
            return None
        small = _small_sum(n, args, env, namer)
        if small is not None:
            return small
        if not p["keepdims"]:  # positional arguments: ~0.1 us less per call
            return f"np.add.reduce({args[0]}, {axis})"
        return f"np.add.reduce({args[0]}, axis={axis}, keepdims=True)"
    if name in ("reshape", "expand_dims", "squeeze") and (
            shape := _literal(tuple(n.shape))) is not None:
        return f"{args[0]}.reshape({shape})"
    if name == "transpose" and (axes := _literal(tuple(p["axes"]))) is not None:
        return f"{args[0]}.transpose({axes})"
    if name == "getitem" and (index := _literal(tuple(p["index"]))) is not None:
        return f"{args[0]}[{index}]"
    if name == "broadcast_to" and (shape := _literal(tuple(n.shape))) is not None:
        return f"np.broadcast_to({args[0]}, {shape})"
    if name == "cast":
        return f"{args[0]}.astype({_dtype(n.dtype, env, namer)})"
    return None


@dataclass
class _Unit:
    nodes: list
    inputs: list
    group: object = None


def _units(schedule: Schedule, member: dict) -> list[_Unit]:
    """Steps and fused groups in an order that respects every dependency (Kahn's algorithm,
    earliest original position first)."""
    import heapq

    steps = [s.node for s in schedule.steps]
    units: list[_Unit] = []
    unit_of: dict[Node, int] = {}
    seen_groups: dict[int, int] = {}
    for n in steps:
        g = member.get(n)
        if g is None:
            unit_of[n] = len(units)
            units.append(_Unit([n], list(dict.fromkeys(n.inputs))))
        elif id(g) not in seen_groups:
            seen_groups[id(g)] = len(units)
            for m in g.nodes:
                unit_of[m] = len(units)
            units.append(_Unit(list(g.nodes), list(g.inputs), g))
    if not member:
        return units
    deps = [set() for _ in units]
    users: list[list[int]] = [[] for _ in units]
    for k, u in enumerate(units):
        for x in u.inputs:
            j = unit_of.get(x)
            if j is not None and j != k and j not in deps[k]:
                deps[k].add(j)
                users[j].append(k)
    count = [len(d) for d in deps]
    heap = [k for k, c in enumerate(count) if c == 0]
    heapq.heapify(heap)
    out = []
    while heap:
        k = heapq.heappop(heap)
        out.append(units[k])
        for j in users[k]:
            count[j] -= 1
            if count[j] == 0:
                heapq.heappush(heap, j)
    if len(out) != len(units):
        raise RuntimeError("fused groups form a cycle; fusion must keep groups convex")
    return out
