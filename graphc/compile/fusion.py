"""Elementwise fusion: a maximal elementwise region over large arrays becomes one kernel.

NumPy runs `100 * (y - x**2)**2 + (1 - x)**2` as six passes over memory with a temporary
each; a fused kernel makes one pass and keeps every intermediate in a register. Kernels are
generated as explicit loops and compiled by numba (chosen over numexpr by measurement, see
docs/performance.md): numba's kernels ran 10-25x faster than NumPy on one thread where
numexpr's ran 1.2-2.5x, and numba's on-disk cache (`cache=True` on a generated module under
`$GRAPHC_CACHE_DIR`, default `~/.cache/graphc`) makes the compile a one-time cost per kernel.

A region is fused only when it pays: float dtypes, static shapes of at least
`FUSE_MIN_SIZE` entries, operands of the region's own shape or scalars, and two or more ops.
Regions are kept convex (no path leaves a region and comes back) and every dependency between
regions runs from an older region to a newer one, so the fused program has a topological
order. A `scatter_add` over step-1 windows of a region's shape ends that region: the kernel adds
each term into its zeroed output at an offset, so a gradient through `x[1:]` and `x[:-1]` is
one pass that writes only the result. Without numba (or with GRAPHC_FUSION=0) nothing is fused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass, field

from graphc.compile.schedule import Schedule
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import OPS

FUSE_MIN_SIZE = 4096

# One scalar formula per op; `{0}`, `{1}` are operand variables. NumPy semantics: NaN and Inf
# propagate as in the ufuncs (error_model="numpy": x/0 is inf, not an exception).
SCALAR = {
    "neg": "-{0}", "exp": "np.exp({0})", "log": "np.log({0})", "log1p": "np.log1p({0})",
    "expm1": "np.expm1({0})", "sqrt": "np.sqrt({0})", "square": "{0} * {0}",
    "abs": "np.abs({0})", "sign": "np.sign({0})", "sin": "np.sin({0})", "cos": "np.cos({0})",
    "tan": "np.tan({0})", "tanh": "np.tanh({0})",
    "sigmoid": "1.0 / (1.0 + np.exp(-{0}))",
    "softplus": "({0} if {0} > 0.0 else 0.0) + np.log1p(np.exp(-np.abs({0})))",
    "relu": "np.maximum({0}, 0.0)",
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}",
    "pow": "np.power({0}, {1})", "maximum": "np.maximum({0}, {1})",
    "minimum": "np.minimum({0}, {1})",
    "add_n": None,  # any number of operands: {0} + {1} + ...
}

_numba = None
_LOCK = threading.Lock()
_KERNELS: dict[str, object] = {}


def allowed() -> bool:
    """False when the user switched fusion off (GRAPHC_FUSION=0)."""
    return os.environ.get("GRAPHC_FUSION", "1") != "0"


def enabled() -> bool:
    """True when fusion can run: numba importable (imported now) and fusion allowed."""
    global _numba
    if not allowed():
        return False
    if _numba is None:
        try:
            import numba
            _numba = numba
        except ImportError:
            _numba = False
    return bool(_numba)


@dataclass
class Group:
    """A fused region: its nodes in order, the values it reads and the values it gives out."""

    nodes: list[Node]
    inputs: list[Node] = field(default_factory=list)
    outputs: list[Node] = field(default_factory=list)
    kernel: object = None
    source: str = ""


def fusible(n: Node) -> bool:
    """An op with a scalar formula on float values, big enough for a kernel to pay."""
    name = n.op.name
    if name not in SCALAR or OPS.get(name) is not type(n.op):
        return False
    if not types.is_float(n.dtype) or not types.is_static(n.shape):
        return False
    if types.concrete_size(n.shape) < FUSE_MIN_SIZE:
        return False
    return all(types.is_float(x.dtype) and (x.ndim == 0 or x.shape == n.shape)
               for x in n.inputs)


def find_groups(schedule: Schedule) -> list[Group]:
    """Maximal convex fusible regions of two or more ops, each with its compiled kernel."""
    order = [s.node for s in schedule.steps]
    if not allowed() or not any(fusible(n) for n in order) or not enabled():
        return []  # numba is imported only when a region is big enough to use it
    group_of: dict[Node, int] = {}
    members: list[list[Node]] = []
    reach: dict[Node, frozenset] = {}
    sinks: set[Node] = set()  # scatter_add nodes ending a group: no member reads them
    for n in order:
        up: set[int] = set()
        for x in n.inputs:
            up |= reach.get(x, frozenset())
            if x in group_of:
                up.add(group_of[x])
        if fusible(n):
            # a group of an operand first; else any group of the shape it may join (siblings
            # reading the same inputs then share one pass), else a new group
            near = [group_of.get(x) for x in n.inputs]
            far = range(len(members) - 1, -1, -1)
            chosen = None
            for gid in [*near, *far]:
                if (gid is None or members[gid][0].shape != n.shape
                        or any(y in sinks and group_of[y] == gid for y in n.inputs)):
                    continue
                if all(_may_join(gid, y, group_of, reach) for y in n.inputs):
                    chosen = gid
                    break
            if chosen is None:
                chosen = len(members)
                members.append([])
            members[chosen].append(n)
            group_of[n] = chosen
        elif (gid := _sink_group(n, group_of, members, reach)) is not None:
            members[gid].append(n)
            group_of[n] = gid
            sinks.add(n)
        reach[n] = frozenset(up)
    used_outside: set[Node] = set(schedule.outputs)
    for n in order:
        for x in n.inputs:
            if x in group_of and group_of.get(n) != group_of[x]:
                used_outside.add(x)
    groups = []
    for nodes in members:
        if len(nodes) < 2:
            continue
        inside = set(nodes)
        g = Group(nodes)
        g.inputs = list(dict.fromkeys(x for n in nodes for x in _operands(n, sinks)
                                      if x not in inside))
        g.outputs = [n for n in nodes if n in used_outside]
        if len(g.outputs) == len(nodes):
            # siblings only: every member is written out, so the kernel saves no temporary,
            # and each of its outputs is a fresh allocation NumPy would make anyway
            continue
        g.source = kernel_source(g)
        g.kernel = kernel(g.source)
        groups.append(g)
    return groups


def _operands(n: Node, sinks: set) -> tuple:
    """The values a member reads in the kernel (a scatter_add reads its terms, not `like`)."""
    return n.inputs[1:] if n in sinks else n.inputs


def window(index, out_shape, shape) -> tuple[int, ...] | None:
    """Per-axis offsets when `out[index]` is a step-1 window of `shape`, else None."""
    if (not isinstance(index, tuple) or len(index) > len(out_shape)
            or len(shape) != len(out_shape)):
        return None
    offsets = []
    for k, d in enumerate(out_shape):
        s = index[k] if k < len(index) else slice(None)
        if not isinstance(s, slice):
            return None
        try:
            start, stop, step = s.indices(int(d))
        except TypeError:
            return None
        if step != 1 or stop - start != shape[k]:
            return None
        offsets.append(start)
    return tuple(offsets)


def _sink_group(n: Node, group_of: dict, members: list, reach: dict) -> int | None:
    """The group a scatter_add may end: every term windowed over one group's shape, at least
    one term made in that group; the kernel then adds each term into a zeroed output."""
    from graphc.rewrite.scatter import ScatterAdd

    if type(n.op) is not ScatterAdd or n.op.n_dense or not types.is_float(n.dtype):
        return None
    if not types.is_static(n.shape):
        return None
    terms = n.inputs[1:]
    shape = terms[0].shape if terms else None
    if not terms or types.concrete_size(shape) < FUSE_MIN_SIZE:
        return None
    for t, index in zip(terms, n.op.indices):
        if t.shape != shape or t.dtype != n.dtype or window(index, n.shape, shape) is None:
            return None
    for gid in dict.fromkeys(group_of.get(t) for t in terms):
        if (gid is not None and members[gid][0].shape == shape
                and all(_may_join(gid, t, group_of, reach) for t in terms)):
            return gid
    return None


def _may_join(gid: int, y: Node, group_of: dict, reach: dict) -> bool:
    """Whether a node reading `y` may join group `gid` and keep the fused program acyclic.

    Two conditions: no path leaves the group and comes back (`gid` is not upstream of y),
    and every group upstream of y is older than `gid`; then every dependency between groups
    runs from an older to a newer group, so the groups and the other steps have an order.
    """
    own = group_of.get(y)
    if own == gid:
        return True
    upstream = reach.get(y, frozenset())
    if gid in upstream:
        return False
    return all(h < gid for h in upstream) and (own is None or own < gid)


def kernel_source(g: Group) -> str:
    """The loop nest of a group: read operands, one line per op, write the outputs.

    A scatter_add member adds each of its terms into its output at the term's offset. Over a
    vector it keeps the partial sums of the elements still open in registers (`o0_r1` is
    element i + 1's) and stores element i once it is complete: a first-order recurrence,
    which LLVM vectorizes, where `o0[i + 1] += t` through memory blocks vectorization (4x
    slower for Rosenbrock's gradient). Either way an element starts from a zero and receives
    its terms in loop order (larger offsets first), which may differ in the last bit from
    NumPy's window-by-window order.
    """
    shape = g.nodes[0].shape
    idx = ", ".join(f"i{k}" for k in range(len(shape)))
    args = [f"a{k}" for k in range(len(g.inputs))]
    var: dict[Node, str] = {}
    lines = ["import numpy as np", "import numba", "",
             "@numba.njit(cache=True, nogil=True, error_model='numpy')",
             f"def kernel({', '.join(args)}):"]
    out_var = {o: f"o{k}" for k, o in enumerate(g.outputs)}
    registers = len(shape) == 1
    span: dict[Node, int] = {}  # scatter output -> largest offset (vector case)
    for o, v in out_var.items():
        scatter = o.op.name == "scatter_add"
        make = "zeros" if scatter and not registers else "empty"
        lines.append(f"    {v} = np.{make}({tuple(o.shape)!r}, np.{o.dtype.name})")
        if scatter and registers:
            span[o] = max(window(index, o.shape, shape)[0] for index in o.op.indices)
            lines += [f"    {v}_r{d} = np.{o.dtype.name}(0.0)" for d in range(span[o] + 1)]
    pad = "    "
    for k, d in enumerate(shape):
        lines.append(f"{pad}for i{k} in range({int(d)}):")
        pad += "    "
    for k, x in enumerate(g.inputs):
        var[x] = f"a{k}" if x.ndim == 0 else f"x{k}"
        if x.ndim:
            lines.append(f"{pad}x{k} = a{k}[{idx}]")
    for k, n in enumerate(g.nodes):
        if n.op.name == "scatter_add":
            v = out_var[n]
            for t, index in zip(n.inputs[1:], n.op.indices):
                offsets = window(index, n.shape, shape)
                if n in span:
                    r = f"{v}_r{offsets[0]}"
                    lines.append(f"{pad}{r} = {r} + {var[t]}  # scatter_add")
                    continue
                at = ", ".join(f"i{a} + {int(off)}" if off else f"i{a}"
                               for a, off in enumerate(offsets))
                lines.append(f"{pad}{v}[{at}] += {var[t]}  # scatter_add")
            if n in span:  # element i is complete: store it, shift the open ones down
                lines.append(f"{pad}{v}[i0] = {v}_r0")
                lines += [f"{pad}{v}_r{d - 1} = {v}_r{d}" for d in range(1, span[n] + 1)]
                lines.append(f"{pad}{v}_r{span[n]} = np.{n.dtype.name}(0.0)")
            continue
        var[n] = f"t{k}"
        form = SCALAR[n.op.name] or " + ".join(f"{{{j}}}" for j in range(len(n.inputs)))
        lines.append(f"{pad}t{k} = " + form.format(*(var[x] for x in n.inputs))
                     + f"  # {n.op.name}")
    for o, v in out_var.items():
        if o.op.name != "scatter_add":
            lines.append(f"{pad}{v}[{idx}] = {var[o]}")
    for o, top in span.items():  # the elements past the loop: still open, or untouched
        m, v = int(shape[0]), out_var[o]
        lines += [f"    {v}[{m + d}] = {v}_r{d}" for d in range(min(top + 1, int(o.shape[0]) - m))]
        if int(o.shape[0]) > m + top + 1:
            lines.append(f"    {v}[{m + top + 1}:] = 0.0")
    lines.append("    return " + ", ".join(out_var.values()) + ",")
    return "\n".join(lines) + "\n"


def cache_dir() -> str:
    return os.environ.get("GRAPHC_CACHE_DIR",
                          os.path.join(os.path.expanduser("~"), ".cache", "graphc"))


def kernel(source: str):
    """The numba dispatcher for a kernel's source, from a module file numba can cache."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    with _LOCK:
        k = _KERNELS.get(digest)
        if k is not None:
            return k
        folder = os.path.join(cache_dir(), "kernels")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"k_{digest}.py")
        if not os.path.exists(path):
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "w") as fh:
                fh.write(source)
            os.replace(tmp, path)
        name = f"graphc_kernel_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # numba's cache finds the module again by name
        spec.loader.exec_module(module)
        _KERNELS[digest] = module.kernel
        return module.kernel


def describe(groups: list[Group]) -> str:
    """One line per group: sizes and ops (for reports and tests)."""
    return "\n".join(f"{len(g.nodes)} ops over {g.nodes[0].shape}: "
                     + " ".join(n.op.name for n in g.nodes) for g in groups)


__all__ = ["FUSE_MIN_SIZE", "Group", "allowed", "enabled", "find_groups", "fusible",
           "kernel_source"]
