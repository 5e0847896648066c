"""Code generation: a schedule becomes one straight-line Python function over NumPy.

Each step is one line, `name = call(args)  # op  'node name'`, in schedule order; a value is
deleted right after its last use; an elementwise step whose operand dies there writes into
that operand's buffer (`out=`, see `schedule.plan_inplace`); a fused group (fusion.py) is one
kernel call. Variable names come from node names, reduced to `[A-Za-z0-9_]`, so no user string
ever reaches the source as code (comments show names through `ascii()`). The source is compiled
once; the function keeps no state between calls, so threads can share it.
"""

from __future__ import annotations

import itertools
import keyword
import linecache
import re
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
RESERVED = frozenset({"np", "self", "type", "slice", "Ellipsis"})  # names the code uses
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
    s = re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_")
    if not s or not s[0].isalpha():
        s = "v" + ("_" + s if s else "")
    if keyword.iskeyword(s) or s in RESERVED:
        s += "_"
    return s


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
    taken: set[str] = set()

    def var(n: Node, prefix: str = "") -> str:
        base = prefix + identifier(n.name)
        v, k = base, 1
        while v in taken:
            v, k = f"{base}_{k}", k + 1
        taken.add(v)
        names[n] = v
        return v

    env: dict[str, object] = {"np": np}
    for x in schedule.inputs:
        var(x)
    params = [names[x] for x in schedule.inputs]
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
    head = f"def {identifier(name)}({', '.join(params + ['_ops'])}):"
    lines.extend(_guard(schedule.inputs, params, env, check_finite or bool(symbolic)))
    direct = {} if check_finite else _direct_terms(schedule, member, symbolic)
    scatters = {s for s, _ in direct.values()}
    for k, unit in enumerate(order):
        if unit.group is None:
            n = unit.nodes[0]
            if isinstance(n.op, Constant):
                continue
            args = [names[x] for x in n.inputs]
            comment = f"  # {n.op.label()}  {ascii(n.name)}"
            if n in scatters:  # a scatter_add whose buffer its terms were written into
                line_nodes[len(lines) + 2] = n
                rest = [(names[t], i) for t, i in zip(n.inputs[1:], n.op.indices)
                        if direct.get(t, (None,))[0] is not n]
                lines.extend(f"    {names[n]}[{_literal(i)}] += {t}{comment}" for t, i in rest)
                if not rest:
                    lines.append(f"    pass{comment}")
                continue
            into = plan.get(n)
            into = names[into] if into is not None else None
            if n in direct:  # write straight into the window of the scatter_add's buffer
                s_node, index = direct[n]
                if s_node not in names:
                    var(s_node)
                    line_nodes[len(lines) + 2] = s_node
                    lines.append(f"    {names[s_node]} = {_scatter_buffer(s_node, direct)}"
                                 f"  # buffer of {ascii(s_node.name)}")
                into = f"{names[s_node]}[{_literal(index)}]"
            target = var(n)
            call = _call(n, args, env, schedule.slot[n] if n in symbolic else None, into)
            if n in direct and f"out={into})" not in call:
                raise RuntimeError(f"codegen: {n.name!r} must write into {into}")
            line_nodes[len(lines) + 2] = n
            lines.append(f"    {target} = {call}{comment}")
            if check_finite:
                env[f"_n{k}"] = n
                packed = "".join(a + ", " for a in args)
                lines.append(f"    _check(_n{k}, {target}, ({packed}))")
        else:
            g = unit.group
            outs = [var(n) for n in g.outputs]
            kname = f"_kernel{k}"
            env[kname] = g.kernel
            args = [f"{names[x]}[()]" if x.ndim == 0 else names[x] for x in g.inputs]
            line_nodes[len(lines) + 2] = g.outputs[0]
            lines.append(f"    {', '.join(outs)}{',' if len(outs) == 1 else ''} = "
                         f"{kname}({', '.join(args)})  # fused: "
                         + ", ".join(n.op.name for n in g.nodes))
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
        env["_check"] = _check_finite
    exec(compile(source, filename, "exec"), env)  # noqa: S102 - our own generated source
    return Program(source, env[identifier(name)], filename, line_nodes, checked)


def _guard(inputs, params: list[str], env: dict, never: bool) -> list[str]:
    """The fast path's test: called with `_ops=None`, the function runs only when every value
    is an ndarray of its input's exact static shape and dtype (what the call-time checks would
    pass unchanged) and otherwise returns None, so the caller runs the checks."""
    if never or not all(types.is_static(x.shape) for x in inputs):
        return ["    if _ops is None:", "        return None"]
    if not inputs:
        return []
    env["_ndarray"] = np.ndarray
    tests = []
    for k, (x, p) in enumerate(zip(inputs, params)):
        env[f"_dtype_{k}"] = np.dtype(x.dtype)
        tests.append(f"type({p}) is _ndarray and {p}.shape == {_literal(tuple(x.shape))} "
                     f"and {p}.dtype is _dtype_{k}")
    head = ["    if _ops is None and not (" + tests[0]]
    head += [f"            and {t}" for t in tests[1:]]
    head[-1] += "):"
    return [*head, "        return None"]


def _scatter_buffer(s: Node, direct: dict) -> str:
    """zeros of the scatter_add's type, or empty when its direct terms tile it exactly."""
    terms = s.inputs[1:]
    tiled = all(direct.get(t, (None,))[0] is s for t in terms) and sum(
        int(np.prod(t.shape)) for t in terms) == int(np.prod(s.shape))
    return f"np.{'empty' if tiled else 'zeros'}({_literal(tuple(s.shape))}, np.{s.dtype.name})"


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
                    and tuple(t.shape) == np.empty(tuple(s.shape), bool)[index].shape):
                direct[t] = (s, index)
    return direct


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


def _call(n: Node, args: list[str], env: dict, slot, into: str | None) -> str:
    out = f", out={into}" if into is not None else ""
    if slot is not None:
        return f"_ops[{int(slot)}]({', '.join(args)})"
    scalar = _scalar_operator(n, args, env)
    if scalar is not None and into is None:
        return scalar
    special = SPECIAL_FORMS.get(n.op.name)
    if special is not None and OPS.get(n.op.name) is type(n.op):
        fn, form = special
        zero = "_zero_" + identifier(n.dtype.str)
        env[zero] = np.zeros((), n.dtype)
        return f"{fn}({form.format(*args, zero=zero)}{out})"
    if _add_n_as_adds(n) and (len(args) == 2 or (into == args[0] and into not in args[2:])):
        # ((a + b) + c) + ...: the order add_n's forward adds in, in `into` when planned (a
        # buffer read again after the first add must not be it)
        call = f"np.add({args[0]}, {args[1]}{out})"
        for a in args[2:]:
            call = f"np.add({call}, {a}{out})"
        return call
    inline = _inline(n, args, env)
    if inline is not None:
        return inline
    uf = ufunc_of(n)
    if uf is not None:
        if getattr(np, uf.__name__, None) is uf:
            fn = f"np.{uf.__name__}"
        else:
            fn = "_" + identifier(uf.__name__)
            env[fn] = uf
        return f"{fn}({', '.join(args)}{out})"
    fn = f"_{identifier(n.op.name)}_{n.index}"
    env[fn] = n.op.forward
    return f"{fn}({', '.join(args)})"


def _scalar_operator(n: Node, args: list[str], env: dict) -> str | None:
    """`a * b` for a 0-d float add/sub/mul/div/neg (constants passed as NumPy scalars)."""
    form = SCALAR_OPERATORS.get(ufunc_of(n))
    if form is None or any(x.ndim != 0 or x.dtype.kind != "f" for x in (n, *n.inputs)):
        return None
    operands = []
    for x, a in zip(n.inputs, args):
        if isinstance(x.op, Constant):
            a = f"_s_{a}"
            env[a] = x.op.value[()]
        operands.append(a)
    return form.format(*operands)


def _small_sum(n: Node, args: list[str], env: dict) -> str | None:
    """A sum over the one axis of a vector, or the first or last axis of a small matrix, as a
    dot product with ones (same dtype, float only)."""
    x = n.inputs[0]
    axis = tuple(n.op.params()["axis"])
    if (n.op.params()["keepdims"] or x.dtype not in (np.float32, np.float64)
            or n.dtype != x.dtype or x.ndim not in (1, 2) or len(axis) != 1
            or not all(isinstance(d, int) for d in x.shape) or np.prod(x.shape) > SMALL_SUM):
        return None
    a = axis[0] % x.ndim
    size = x.shape[a]
    ones = f"_ones_{size}_{identifier(x.dtype.str)}"
    vec = np.ones(size, x.dtype)
    vec.flags.writeable = False
    env[ones] = vec
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


def _inline(n: Node, args: list[str], env: dict) -> str | None:
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
        small = _small_sum(n, args, env)
        if small is not None:
            return small
        axis = _literal(tuple(p["axis"]))
        if not p["keepdims"]:  # positional arguments: ~0.1 us less per call
            return f"np.add.reduce({args[0]}, {axis})"
        return f"np.add.reduce({args[0]}, axis={axis}, keepdims=True)"
    if name in ("reshape", "expand_dims", "squeeze") and all(isinstance(d, int) for d in n.shape):
        return f"{args[0]}.reshape({_literal(tuple(n.shape))})"
    if name == "transpose" and (axes := _literal(tuple(p["axes"]))) is not None:
        return f"{args[0]}.transpose({axes})"
    if name == "getitem" and (index := _literal(tuple(p["index"]))) is not None:
        return f"{args[0]}[{index}]"
    if name == "broadcast_to" and all(isinstance(d, int) for d in n.shape):
        return f"np.broadcast_to({args[0]}, {_literal(tuple(n.shape))})"
    if name == "cast" and n.dtype.name.isidentifier() and hasattr(np, n.dtype.name):
        return f"{args[0]}.astype(np.{n.dtype.name})"
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
