"""Code generation, second half: a backend writes a plan (plan.py) as Python source.

`Backend.emit` walks the plan's units in order and writes the function every backend shares:
the parameters, a fast-path guard, one statement per step commented with its op and node name,
`del` after a value's last use, the scatter buffers and their window terms, the returned list;
then compiles it once. What the array library decides comes from the backend's own methods:
the policy the plan asks for (`fresh`, `writes_out`, `fuse`) and the text of each step
(`step`, through the op's hooks: see `graphc.ir.op.Op`, "hooks: code emission"). The NumPy
backend (numpy_backend.py) is the one registered today; another array library (Array API,
CuPy, Dask) is one more `Backend` subclass, registered under its name.

What keeps the source safe lives here, for every backend: every name the source binds comes
from one `Namer` (locals are node names reduced to `[A-Za-z0-9_]`; globals are names made
here), parameters are written only through `literal` (ints, None, slices, Ellipsis and tuples
of them, never a str), and every comment passes through `_comment`, which escapes anything but
printable ASCII, so a line break in a name or an op's label cannot end the comment.
"""

from __future__ import annotations

import functools
import itertools
import keyword
import linecache
import re
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from graphc.compile import checks
from graphc.errors import GraphError
from graphc.ir.graph import Node
from graphc.ir.op import Constant, Op, Output, has_hook, missing_hook

if TYPE_CHECKING:
    from graphc.compile.plan import Plan
    from graphc.compile.schedule import Schedule

# Names the generated code uses without binding them: never given to a value (a backend adds
# the names of its own namespace, such as `np`).
RESERVED = frozenset({"self", "type", "slice", "Ellipsis", "_ops", "__builtins__",
                      *keyword.kwlist})
MAX_NAME = 64  # longest identifier made from a node name (longer names are cut)
MAX_COMMENT = 200  # longest op label shown in a comment


def identifier(name: str, reserved=RESERVED) -> str:
    """A Python identifier made of `[A-Za-z0-9_]` from any node name.

    Examples:
        >>> identifier("layer1/h"), identifier("2x"), identifier("def")
        ('layer1_h', 'v_2x', 'def_')
    """
    s = re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_")[:MAX_NAME].rstrip("_")
    if not s or not s[0].isalpha():
        s = "v" + ("_" + s if s else "")
    if s in reserved:
        s += "_"
    return s


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PRINTABLE = re.compile(r"[ -~]*\Z")


class Namer:
    """Every name generated code binds, unique across the function's own name, its globals
    (constants, helpers such as `_ones_3_f8`), its parameters and locals, and the reserved
    names."""

    def __init__(self, reserved=RESERVED):
        self.reserved = frozenset(reserved)
        self.taken: set[str] = set(self.reserved)
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

    def local(self, name: str, prefix: str = "") -> str:
        """A fresh local for a node named `name`."""
        return self.fresh(prefix + identifier(name, self.reserved))

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

    def copy(self) -> Namer:
        other = Namer(self.reserved)
        other.taken, other.next, other.memo = set(self.taken), dict(self.next), dict(self.memo)
        return other


def _shown_lines(source: str, line_nodes: dict) -> list[str]:
    """The lines tracebacks and warnings show for the generated code (linecache's copy, never
    compiled): each step's code with the line of the user's program that built its node, so
    `RuntimeWarning: divide by zero encountered in log` points at the user's `gc.log(...)`."""
    lines = source.splitlines(True)
    for k, node in line_nodes.items():
        if 1 <= k <= len(lines) and node.source:
            shown = ascii(str(node.source))[1:-1][:MAX_COMMENT]
            lines[k - 1] = f"{lines[k - 1].rstrip()}  (built at {shown})\n"
    return lines


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


def literal(value) -> str | None:
    """Python source for an op parameter made of ints, None, slices, Ellipsis and tuples of
    them (never a str), or None when the value is anything else.

    Examples:
        >>> literal((1, slice(None, -1, None), Ellipsis)), literal(("0; import os",))
        ('(1, slice(None, -1, None), Ellipsis)', None)
    """
    if value is None or value is Ellipsis:
        return repr(value)
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    if isinstance(value, slice):
        parts = [literal(p) for p in (value.start, value.stop, value.step)]
        return None if None in parts else f"slice({', '.join(parts)})"
    if isinstance(value, tuple):
        parts = [literal(p) for p in value]
        if None in parts:
            return None
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    return None


_COMPUTES = ("forward", "fn")  # what an op's emission hooks describe: its forward (or `fn`)


def declares(op: Op, hook: str) -> bool:
    """Whether `op` declares the emission hook `hook` (graphc.ir.op.Op, "hooks: code
    emission") for the computation it runs: the class that sets the hook is the class that
    defines `forward` (or an elementwise op's `fn`) or one below it. A subclass that overrides
    `forward` is written through its own `forward` until it declares the hook again."""
    return _declares(type(op), hook)


@functools.lru_cache(maxsize=4096)  # an op class is declared once: answered once per class
def _declares(cls: type, hook: str) -> bool:
    mro = cls.__mro__
    owner = next((c for c in mro if hook in c.__dict__), Op)
    if owner is Op:
        return False
    computes = next((c for c in mro if any(a in c.__dict__ for a in _COMPUTES)), Op)
    return issubclass(owner, computes)


def declared(op: Op, hook: str):
    """The value of the emission hook `hook` that `op` declares, else `Op`'s default."""
    return getattr(op, hook) if declares(op, hook) else getattr(Op, hook)


@dataclass
class Program:
    """Generated source, the compiled function, and which line runs which node."""

    source: str
    fn: object
    filename: str
    line_nodes: dict[int, Node] = field(default_factory=dict)
    checked: bool = True  # outputs need the call-time freshness check (plan.py)

    def node_at(self, tb) -> Node | None:
        """The node whose line raised, from a traceback."""
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        return self.line_nodes.get(line)


class Context:
    """What an op's emission hook may use: the program's globals, written only through
    `bind`, and `literal` for its parameters."""

    def __init__(self, env: dict, namer: Namer):
        self.env = env
        self.namer = namer

    @staticmethod
    def literal(value) -> str | None:
        """An op parameter as checked Python source (`literal`), or None."""
        return literal(value)

    def bind(self, base: str, value, key=None) -> str:
        """A global of the generated code holding `value` (`base` made unique); the same `key`
        gives the same global."""
        return self.namer.bind(self.env, base, value, key)

    def identifier(self, text: str) -> str:
        """`[A-Za-z0-9_]` made from any text, for the base of a global's name."""
        return identifier(text)


_counter = itertools.count()


class Backend:
    """One array library's code generation: the policy the plan asks for and the text of each
    step; `emit` writes the function every backend shares around them.

    A subclass sets `name` and `namespace` (the module globals its source uses) and defines
    the methods below that raise `NotImplementedError`; the defaults are a backend that writes
    nothing in place and fuses nothing.
    """

    name: ClassVar[str] = ""
    namespace: ClassVar[dict] = {}

    # -- policy: asked while planning ------------------------------------------------------
    def fresh(self, node: Node) -> bool:
        """True when the node's step makes a new array that it owns (for ndim >= 1)."""
        return False

    def writes_out(self, node: Node) -> bool:
        """True when the node's step can be given an output buffer."""
        return False

    def fuse(self, schedule: Schedule) -> list:
        """Fused groups (fusion.Group: nodes, inputs, outputs, kernel) for the schedule."""
        return []

    # -- emission ---------------------------------------------------------------------------
    def context(self, env: dict, namer: Namer) -> Context:
        return Context(env, namer)

    def constant(self, value: np.ndarray):
        """The object a constant's global holds."""
        return value

    def guard(self, plan: Plan, ctx: Context) -> list[str]:
        """The first lines of the body: with `_ops=None`, return None unless the arguments
        need no call-time checks."""
        return ["    if _ops is None:", "        return None"]

    def step(self, node: Node, args: list[str], out: str | None, target: str,
             ctx: Context) -> list[str]:
        """The expression computing `node` from the variables `args` (into the buffer `out`
        when given, which a window term must take), then any statements run after its
        assignment to `target`."""
        raise NotImplementedError(f"backend {self.name!r} defines no `step`")

    def forward_call(self, node: Node, args: list[str], ctx: Context) -> str:
        """`node` computed by calling its op's own `forward`, bound as a global."""
        if not has_hook(node.op, "forward"):
            raise missing_hook(node.op, "forward", f"the {self.name} backend runs an op "
                               "without an emission hook through it")
        fn = ctx.bind(f"_{identifier(node.op.name)}_{node.index}", node.op.forward)
        return f"{fn}({', '.join(args)})"

    def buffer(self, node: Node, tiled: bool, ctx: Context) -> str:
        """A new buffer of the node's static shape and dtype: zeros, or uninitialised where
        `tiled` (its window terms cover it exactly)."""
        raise NotImplementedError(f"backend {self.name!r} defines no `buffer`")

    def add_into(self, buffer: str, index: str, term: str) -> str:
        """The statement adding `term` into the window `index` of `buffer`."""
        return f"{buffer}[{index}] += {term}"

    def kernel_call(self, group, kernel: str, args: list[str], outs: list[str]) -> str:
        """The statement running a fused group's kernel."""
        raise NotImplementedError(f"backend {self.name!r} defines no `kernel_call`")

    def result(self, node: Node, var: str) -> str:
        """The returned expression for an output held in `var`."""
        return var

    def symbolic_call(self, node: Node, slot: int, args: list[str], ctx: Context) -> str:
        """The expression computing a node whose op is resolved per call: `_ops[slot]` holds
        what `resolved` made of the resolved op."""
        return f"_ops[{slot}]({', '.join(args)})"

    def resolved(self, op: Op):
        """What `_ops` holds for an op resolved for one call's sizes: its forward."""
        return op.forward

    # -- calling: a backend over other arrays than NumPy's takes the calls ---------------------
    call = None  # call(fn, inputs, resolve, args, kwargs, single) -> results, or None: NumPy's

    # -- the function every backend shares --------------------------------------------------
    def emit(self, plan: Plan) -> Program:
        """Write the plan's function, compile it, and map its lines to nodes."""
        namer = plan.namer.copy()
        env: dict[str, object] = dict(self.namespace)
        ctx = self.context(env, namer)
        names = plan.names
        for n in plan.constants:
            env[names[n]] = self.constant(n.op.value)
        lines: list[str] = []
        line_nodes: dict[int, Node] = {}

        def put(line: str, node: Node | None = None) -> None:
            if node is not None:
                line_nodes[len(lines) + 2] = node  # line 1 is the `def`
            lines.append(line)

        head = f"def {plan.fn_name}({', '.join([*plan.params, '_ops'])}):"
        lines.extend(self.guard(plan, ctx))
        check = namer.bind(env, "_check", None) if plan.check_finite else None
        buffered: set[Node] = set()
        for k, unit in enumerate(plan.units):
            if unit.group is not None:
                g = unit.group
                into = {o: plan.inplace[o] for o in g.outputs if o in plan.inplace}
                kname = namer.bind(env, f"_kernel{k}", g.kernel_for(into))
                args = [names[x] for x in g.inputs]
                put("    " + self.kernel_call(g, kname, args, [names[o] for o in g.outputs])
                    + _comment("fused: " + ", ".join(n.op.name for n in g.nodes)
                               + "".join(f"; {names[o]} into {names[x]}" for o, x in into.items())),
                    g.outputs[0])
            elif not isinstance(unit.nodes[0].op, Constant):
                self._step(plan, k, unit.nodes[0], ctx, put, buffered, check)
            dead = sorted({names[x] for x in unit.inputs
                           if plan.last.get(x) == k and x not in plan.keep
                           and not isinstance(x.op, Constant) and x not in plan.unpack}
                          - {names.get(n) for n in unit.nodes})  # a result took its name
            if dead:
                lines.append(f"    del {', '.join(dead)}")
        rets = [self.result(o, names[o]) for o in plan.schedule.outputs]
        lines.append(f"    return [{', '.join(rets)}]")
        source = "\n".join([head, *lines]) + "\n"
        filename = f"<graphc-generated-{next(_counter)}>"
        linecache.cache[filename] = (len(source), None, _shown_lines(source, line_nodes),
                                     filename)
        if check is not None:
            env[check] = checks.check_finite
        exec(compile(source, filename, "exec"), env)  # noqa: S102 - our own generated source
        fn = env[plan.fn_name]
        # tracebacks show the source while the function lives; the entry goes with it
        weakref.finalize(fn, linecache.cache.pop, filename, None)
        return Program(source, fn, filename, line_nodes, plan.checked)

    def _step(self, plan: Plan, k: int, n: Node, ctx: Context, put, buffered: set,
              check: str | None) -> None:
        """One step: a scatter's remaining terms, or `target = expression` (into a dying
        operand's buffer, or into a scatter buffer's window, as planned)."""
        names = plan.names
        args = [names[x] for x in n.inputs]
        comment = _comment(n.op.label(), ascii(n.name))
        if n in plan.scatters:  # a scatter_add whose buffer its terms were written into
            rest = [(names[t], i) for t, i in zip(n.inputs[1:], n.op.indices)
                    if plan.direct.get(t, (None,))[0] is not n]
            for t, i in rest:
                put("    " + self.add_into(names[n], literal(i), t) + comment, n)
            if not rest:
                put(f"    pass{comment}", n)
            return
        into = plan.inplace.get(n)
        into = names[into] if into is not None else None
        if n in plan.direct:  # write straight into the window of the scatter_add's buffer
            s, index = plan.direct[n]
            if s not in buffered:
                buffered.add(s)
                put(f"    {names[s]} = {self.buffer(s, plan.tiled(s), ctx)}"
                    f"{_comment('buffer of ' + ascii(s.name))}", s)
            into = f"{names[s]}[{literal(index)}]"
        target = plan.unpack.get(n, names[n])  # `a, b = ...` for a multi-output node
        if isinstance(n.op, Output) and n.inputs[0] in plan.unpack:
            # a view: bound when its apply node ran (a second view of one output copies it)
            bound = plan.unpack[n.inputs[0]].split(", ")[n.op.index].rstrip(",")
            if bound != target:
                put(f"    {target} = {bound}{comment}", n)
            if check is not None:
                put(f"    {check}({ctx.bind(f'_n{k}', n)}, {target}, ())", n)
            return
        if n in plan.symbolic:  # the op resolved for this call's sizes, passed in `_ops`
            code = [self.symbolic_call(n, int(plan.schedule.slot[n]), args, ctx)]
        else:
            code = self.step(n, args, into, target, ctx)
            if n in plan.direct and not self.took(code[0], into):
                raise RuntimeError(f"codegen: {n.name!r} must write into {into}")
        put(f"    {target} = {code[0]}{comment}", n)
        for line in code[1:]:
            put(f"    {line}", n)
        if check is not None and n not in plan.unpack:
            node_ref = ctx.bind(f"_n{k}", n)
            packed = "".join(a + ", " for a in args)
            put(f"    {check}({node_ref}, {target}, ({packed}))", n)

    def took(self, expression: str, out: str) -> bool:
        """Whether `expression` writes into the buffer `out` it was given."""
        raise NotImplementedError(f"backend {self.name!r} defines no `took`")


BACKENDS: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Make a backend class available to `generate` under its `name`."""
    if not cls.name or not _IDENTIFIER.match(cls.name):
        raise ValueError(f"a backend's name must be an identifier, got {cls.name!r}")
    BACKENDS[cls.name] = cls
    return cls


def get_backend(backend: str | Backend) -> Backend:
    """The backend registered under a name (a Backend passes through)."""
    if isinstance(backend, Backend):
        return backend
    cls = BACKENDS.get(backend) if isinstance(backend, str) else None
    if cls is None:
        raise GraphError(f"unknown code-generation backend {backend!r}; registered: "
                         + ", ".join(sorted(BACKENDS)))
    return cls()
