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
Every kernel line is one op on named scalars, written from the op's own `scalar` form (its
declaration makes the op fusible; NumPy semantics: NaN and Inf propagate as in the ufuncs,
`error_model="numpy"` makes x/0 inf, not an exception), and a kernel holds at most
`MAX_GROUP_OPS` ops and a bounded number of inputs and outputs, so a region of any width
compiles, in bounded time.

Trust boundary of the kernel cache: graphc runs only source it generated itself. The kernels
folder (`$GRAPHC_CACHE_DIR/kernels`) must be a directory owned by the current user and not
writable by group or others; graphc creates it 0700, and a folder failing the check is not used
(a private temporary folder serves the process instead, with a warning). A module file is never
trusted: graphc executes the source text it generated (the file name is that text's hash) and
rewrites the file atomically when its content differs. numba's own cache files beside it
(`__pycache__/*.nbi`, `*.nbc`) are pickles that numba loads unchecked: they are as trusted as
the folder, hence the ownership and mode checks. Kernels are held weakly: a kernel, its module
and its `sys.modules` entry go when the last compiled function using it goes.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import threading
import types as pytypes
import warnings
import weakref
from dataclasses import dataclass, field

from graphc.compile.emit import declared
from graphc.compile.schedule import Schedule
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ops.scatter import ScatterAdd

FUSE_MIN_SIZE = 4096
# Every kernel line is one op on named scalars, and an add_n adds at most ADD_CHAIN terms a
# line, so no expression nests deeper than a constant whatever the region's width (Python's
# parser and compiler recurse on nesting and on long operator chains).
ADD_CHAIN = 32
# What a kernel may hold. numba's compile time grows with a kernel's ops (4 s for 1,000, 17 s
# for 3,700), its arguments (1,000 scalars add 15 s) and above all its outputs (300 add 30 s).
# A region is cut after MAX_GROUP_OPS ops; a cut region whose pieces would read or write more
# values than the limits below stays on NumPy, which runs any width at once.
MAX_GROUP_OPS = 4096
MAX_KERNEL_INPUTS = 512
MAX_KERNEL_OUTPUTS = 32

_numba = None
_LOCK = threading.Lock()
_LOCK_FOLDER = threading.Lock()
# digest -> numba dispatcher, held weakly: the compiled functions (their groups) own kernels
_KERNELS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_FALLBACK: list[str] = []  # this process's private temporary kernel folder, once made
_REFUSED: set[str] = set()  # cache folders already warned about


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
    kernels: dict = field(default_factory=dict)  # made on demand, by `kernel_for`

    @functools.cached_property
    def source(self) -> str:
        """The source of the kernel that makes every output a new array."""
        return kernel_source(self)

    @property
    def buffered(self) -> list[Node]:
        """The outputs the kernel can write into the buffer of an input (all but a
        scatter_add's, which adds its terms at offsets)."""
        return [o for o in self.outputs if type(o.op) is not ScatterAdd]

    def kernel_for(self, into: dict) -> object:
        """The kernel that writes each output `o` in `into` into the buffer of the input
        `into[o]` (one that dies in the kernel: `plan_inplace` decides) and returns that
        array; every other output is a new array."""
        at = {id(x): k for k, x in enumerate(self.inputs)}
        key = tuple(at[id(into[o])] if o in into else None for o in self.outputs)
        if key not in self.kernels:
            self.kernels[key] = kernel(kernel_source(self, key) if any(
                k is not None for k in key) else self.source)
        return self.kernels[key]


def fusible(n: Node) -> bool:
    """An op that declares a scalar form (`Op.scalar`) and no SIMD ufunc that beats it
    (`Op.simd_ufunc`: tanh, exp, log run on NumPy between kernels), on float values, big
    enough for a kernel to pay."""
    if declared(n.op, "scalar") is None or declared(n.op, "simd_ufunc"):
        return False
    if not types.is_float(n.dtype) or not types.is_static(n.shape):
        return False
    if types.concrete_size(n.shape) < FUSE_MIN_SIZE:
        return False
    return all(types.is_float(x.dtype) and (x.ndim == 0 or x.shape == n.shape)
               for x in n.inputs)


def find_groups(schedule: Schedule) -> list[Group]:
    """Maximal convex fusible regions of two or more ops (each group's kernel is made when
    the program is written: `Group.kernel_for`)."""
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
                        or len(members[gid]) >= MAX_GROUP_OPS
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
        if len(g.inputs) > MAX_KERNEL_INPUTS or len(g.outputs) > MAX_KERNEL_OUTPUTS:
            continue  # too costly to compile; leaving a group out keeps the others ordered
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
                and len(members[gid]) < MAX_GROUP_OPS
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


def kernel_source(g: Group, into: tuple = ()) -> str:
    """The loop nest of a group: read operands, one line per op, write the outputs.

    `into[k]`, where given, is the input whose array output k is written into and returned
    as (its buffer dies in the kernel): each iteration reads all its operands' entries before
    it writes any output's, and writing through the input's own name lets LLVM see that the
    load and the store are one address (through another name it must assume they may
    overlap, and a kernel ran 2x slower).

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
    lines = ["import math", "import numpy as np", "import numba", "",  # math: erf, erfc
             "@numba.njit(cache=True, nogil=True, error_model='numpy')",
             f"def kernel({', '.join(args)}):"]
    into = tuple(into) + (None,) * (len(g.outputs) - len(into))
    out_var = {o: f"o{k}" if j is None else f"a{j}"
               for (k, o), j in zip(enumerate(g.outputs), into)}
    registers = len(shape) == 1
    span: dict[Node, int] = {}  # scatter output -> largest offset (vector case)
    for (o, v), j in zip(out_var.items(), into):
        scatter = type(o.op) is ScatterAdd
        make = "zeros" if scatter and not registers else "empty"
        if j is None:
            lines.append(f"    {v} = np.{make}({tuple(int(d) for d in o.shape)!r}, "
                         f"np.{o.dtype.name})")
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
        if type(n.op) is ScatterAdd:
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
        operands = [var[x] for x in n.inputs]
        form, label = declared(n.op, "scalar"), ascii(n.op.name)[1:-1]  # one printable line
        if type(n.op).arity is None:  # add_n: ((a + b) + c) + ..., a bounded chain a line
            chunks = [operands[j:j + ADD_CHAIN] for j in range(0, len(operands), ADD_CHAIN)]
            lines.append(f"{pad}t{k} = " + _fold(form, chunks[0]) + f"  # {label}")
            lines += [f"{pad}t{k} = " + _fold(form, [f"t{k}", *c]) for c in chunks[1:]]
            continue
        lines.append(f"{pad}t{k} = " + form.format(*operands) + f"  # {label}")
    for o, v in out_var.items():
        if type(o.op) is not ScatterAdd:
            lines.append(f"{pad}{v}[{idx}] = {var[o]}")
    for o, top in span.items():  # the elements past the loop: still open, or untouched
        m, v = int(shape[0]), out_var[o]
        lines += [f"    {v}[{m + d}] = {v}_r{d}" for d in range(min(top + 1, int(o.shape[0]) - m))]
        if int(o.shape[0]) > m + top + 1:
            lines.append(f"    {v}[{m + top + 1}:] = 0.0")
    lines.append("    return " + ", ".join(out_var.values()) + ",")
    return "\n".join(lines) + "\n"


def _fold(form: str, operands: list[str]) -> str:
    """A variadic op's binary scalar form applied left to right: `a + b + c` for add_n."""
    out = operands[0]
    for x in operands[1:]:
        out = form.format(out, x)
    return out


def cache_dir() -> str:
    """The cache root ($GRAPHC_CACHE_DIR, default ~/.cache/graphc); kernels live in `kernels/`."""
    return os.environ.get("GRAPHC_CACHE_DIR",
                          os.path.join(os.path.expanduser("~"), ".cache", "graphc"))


def kernel_folder() -> str:
    """The folder kernel modules are written to: `cache_dir()/kernels` when it is private (made
    0700 if missing), else a private temporary folder for this process, with a warning."""
    wanted = os.path.join(cache_dir(), "kernels")
    problem = _make_private(wanted)
    if problem is None:
        return wanted
    with _LOCK_FOLDER:
        if not _FALLBACK:
            _FALLBACK.append(tempfile.mkdtemp(prefix="graphc-kernels-"))  # 0700, ours
            atexit.register(shutil.rmtree, _FALLBACK[0], True)
        if wanted not in _REFUSED:
            _REFUSED.add(wanted)
            warnings.warn(f"graphc: not using the kernel cache folder {wanted!r}: {problem}; "
                          f"fused kernels compile into {_FALLBACK[0]!r} for this process "
                          "instead (`chmod 700` a folder you own, or set GRAPHC_CACHE_DIR)",
                          RuntimeWarning, stacklevel=2)
    return _FALLBACK[0]


def _make_private(folder: str) -> str | None:
    """Create `folder` 0700 if missing; None when it is private, else what is wrong with it."""
    try:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(folder)
        parent = os.stat(os.path.dirname(folder))
    except OSError as e:
        return f"it cannot be created ({e.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory (or is a symbolic link)"
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    if uid is not None and st.st_uid != uid:
        return f"it is owned by uid {st.st_uid}, not by the current user ({uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"group or others may write to it (mode {stat.S_IMODE(st.st_mode):o})"
    if parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not parent.st_mode & stat.S_ISVTX:
        return "others may rename it: its parent is group or world writable and not sticky"
    return None


def kernel(source: str):
    """The numba dispatcher for a kernel's source, from a module file numba can cache.

    The module runs `source` itself, never what the file holds; the file (named by the
    source's hash) is rewritten when it differs, so numba's cache, keyed by the file's stamp,
    only ever describes this source. The dispatcher is held weakly; when it goes, its module
    leaves `sys.modules` (numba needs the entry only to load a cached overload).
    """
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    with _LOCK:
        k = _KERNELS.get(digest)
        if k is not None:
            return k
        folder = kernel_folder()
        path = os.path.join(folder, f"k_{digest}.py")
        if _read(path) != source:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".k_{digest}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(source)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        name = f"graphc_kernel_{digest}"
        module = pytypes.ModuleType(name)
        module.__file__ = path
        sys.modules[name] = module  # numba's cache imports the module by name to load
        try:
            exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - our own source
        except BaseException:
            sys.modules.pop(name, None)
            raise
        k = module.__dict__.pop("kernel")  # the module must not keep its kernel alive
        weakref.finalize(k, _forget, name, module)
        _KERNELS[digest] = k
        return k


def _read(path: str) -> str | None:
    """A regular file's text (a link, a folder or a pipe reads as None)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "r", encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return None


def _forget(name: str, module) -> None:
    if sys.modules.get(name) is module:
        del sys.modules[name]


__all__ = ["ADD_CHAIN", "FUSE_MIN_SIZE", "Group", "MAX_GROUP_OPS", "MAX_KERNEL_INPUTS",
           "MAX_KERNEL_OUTPUTS", "allowed", "enabled", "find_groups", "fusible", "kernel",
           "kernel_folder", "kernel_source"]
