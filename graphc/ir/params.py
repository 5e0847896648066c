"""Declared kinds of op parameters, checked whenever an op is made.

An op's parameters reach it from two places: the library's builders (`gc.sum(x, axis=1)`) and
`gc.load`, which reads them from a file that anybody may have written. Both go through the
op's constructor, so checking there makes the two accept exactly the same set: a parameter
the builders would never make (a negative axis where the builders normalise, a `True` in an
index, a float or a string in a shape) is refused before any shape rule, label, rewrite or
code generator sees it.

A field declares its kind with `param`:

    @dataclass(frozen=True)
    class Sum(Op):
        axis: tuple = param(AXES, ())
        keepdims: bool = param(FLAG, False)

Each kind's `check` returns nothing and raises `GraphError` naming the op, the parameter, what
it expects and what came. Kinds accept only plain Python values (`int`, `bool`, finite
`float`, `tuple`, `slice`, `None`, `Ellipsis`, `numpy.dtype`, `sympy.Expr` for symbolic
sizes): never text, so no parameter can carry code into a label, a comment or generated
source.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import sympy

from graphc.errors import GraphError

MAX_RANK = 64  # the most axes an array may have (NumPy's own limit)
MAX_INT = 1 << 62  # the largest size, index or count a parameter may hold
MAX_EXPR_NODES = 200  # the most sympy nodes in one symbolic size
MAX_LABEL = 52  # einsum labels: NumPy's subscript letters a-z, A-Z
MAX_OPERANDS = 64  # the most operands of one einsum (NumPy's own limit)


class Kind:
    """A kind of parameter value; `name` says what it is in error messages."""

    name = "value"

    def check(self, v, where: str) -> None:
        raise NotImplementedError

    def fail(self, v, where: str, why: str = ""):
        raise GraphError(f"{where}: expected {self.name}{why}, got {_show(v)}")


def param(kind: Kind, default=dataclasses.MISSING):
    """A dataclass field of the given kind (checked by `Op.__post_init__`)."""
    return dataclasses.field(default=default, metadata={"kind": kind})


def kinds_of(cls) -> tuple[tuple[str, Kind], ...]:
    """The (field, kind) pairs an op class declares, computed once per class."""
    cached = cls.__dict__.get("_param_kinds")
    if cached is None:
        cached = tuple((f.name, f.metadata["kind"]) for f in dataclasses.fields(cls)
                       if "kind" in f.metadata) if dataclasses.is_dataclass(cls) else ()
        cls._param_kinds = cached
    return cached


def check_params(op) -> None:
    """Check every declared parameter of `op`; raises GraphError at the first bad one."""
    for field, kind in kinds_of(type(op)):
        kind.check(getattr(op, field), f"{op.name}: parameter {field}")


# -- the kinds ----------------------------------------------------------------------------------
def is_int(v) -> bool:
    return type(v) is int


class _Flag(Kind):
    name = "a bool (True or False)"

    def check(self, v, where):
        if type(v) is not bool:
            self.fail(v, where)


class _Count(Kind):
    name = f"an int from 0 to {MAX_INT}"

    def check(self, v, where):
        if not is_int(v) or not 0 <= v <= MAX_INT:
            self.fail(v, where)


class _Size(Kind):
    """One size: an int from 0 to MAX_INT, or a symbolic size (one_hot's depth may be the
    class axis of logits shaped `("batch", "n_classes")`)."""

    name = "a size (an int >= 0 or a symbolic size)"

    def check(self, v, where):
        check_size(v, where)


class _Positive(Kind):
    """A count of at least one: a stride, a dilation, a window or kernel size, groups."""

    name = f"an int from 1 to {MAX_INT}"

    def check(self, v, where):
        if not is_int(v) or not 1 <= v <= MAX_INT:
            self.fail(v, where)


class _Axis(Kind):
    name = f"an int axis from {-MAX_RANK} to {MAX_RANK - 1}"

    def check(self, v, where):
        if not is_int(v) or not -MAX_RANK <= v < MAX_RANK:
            self.fail(v, where)


class _Axes(Kind):
    """Axes as the builders normalise them: distinct, ascending, non-negative."""

    name = f"a tuple of distinct ascending axes from 0 to {MAX_RANK - 1}"

    def check(self, v, where):
        if type(v) is not tuple or len(v) > MAX_RANK:
            self.fail(v, where)
        for k, a in enumerate(v):
            if not is_int(a) or not 0 <= a < MAX_RANK or (k and a <= v[k - 1]):
                self.fail(v, where)


class _Permutation(Kind):
    name = "a tuple holding each axis 0..n-1 once"

    def check(self, v, where):
        if (type(v) is not tuple or len(v) > MAX_RANK or not all(is_int(a) for a in v)
                or sorted(v) != list(range(len(v)))):
            self.fail(v, where)


class _DType(Kind):
    name = "a numpy dtype of kind bool, int, uint or float, in native byte order"

    def check(self, v, where):
        if (not isinstance(v, np.dtype) or v.kind not in "biuf" or v.names is not None
                or v.subdtype is not None or not v.isnative):
            self.fail(v, where)


class _Shape(Kind):
    """Sizes: ints >= 0, or integer sympy expressions of bounded size (symbolic sizes)."""

    name = "a tuple of sizes (ints >= 0 or symbolic sizes)"

    def check(self, v, where):
        if type(v) is not tuple or len(v) > MAX_RANK:
            self.fail(v, where)
        for k, d in enumerate(v):
            check_size(d, f"{where}[{k}]")


class _Index(Kind):
    """Basic indexing: ints, slices of ints or symbolic sizes, None, at most one Ellipsis."""

    name = "a tuple of ints, slices, None and at most one Ellipsis"

    def check(self, v, where):
        if type(v) is not tuple or len(v) > MAX_RANK:
            self.fail(v, where)
        if sum(1 for e in v if e is Ellipsis) > 1:
            self.fail(v, where, " (one Ellipsis at most)")
        for k, e in enumerate(v):
            if e is None or e is Ellipsis:
                continue
            if is_int(e):
                if not -MAX_INT <= e <= MAX_INT:
                    self.fail(v, where)
                continue
            if type(e) is not slice:
                self.fail(v, where, f" (entry {k} is {type(e).__name__})")
            for part in (e.start, e.stop, e.step):
                if part is None or (is_int(part) and -MAX_INT <= part <= MAX_INT):
                    continue
                if isinstance(part, sympy.Expr):
                    check_expr(part, f"{where}[{k}]")
                    continue
                self.fail(v, where, f" (slice {k} holds {_show(part)})")
            if e.step == 0:
                self.fail(v, where, f" (slice {k} has step 0)")


class _Label(Kind):
    """An einsum label: the letters a-z, A-Z numbered 0-51 (NumPy's subscript letters)."""

    name = f"an einsum label (an int from 0 to {MAX_LABEL - 1})"

    def check(self, v, where):
        if not is_int(v) or not 0 <= v < MAX_LABEL:
            self.fail(v, where)


class _TupleOf(Kind):
    """A tuple whose every entry is of one kind (scatter_add's windows)."""

    def __init__(self, kind: Kind, most: int = 1 << 20):
        self.kind, self.most = kind, most
        self.name = f"a tuple of at most {most} entries, each {kind.name}"

    def check(self, v, where):
        if type(v) is not tuple or len(v) > self.most:
            self.fail(v, where)
        for k, e in enumerate(v):
            self.kind.check(e, f"{where}[{k}]")


class Callables:
    """Python functions an op holds in memory: the rules of `gc.custom_vjp` and
    `gc.custom_jvp`. Compared and hashed by the functions' identity (so two applications of one
    custom function merge), shown by `label`. A file holds no code: `gc.save` writes null in
    their place, and an op loaded without its functions raises, naming the node, when a rule
    is needed."""

    __slots__ = ("fns", "label")

    def __init__(self, fns, label: str):
        fns = tuple(fns)
        if not fns or not all(callable(f) for f in fns):
            raise GraphError(f"Callables: expected a non-empty tuple of callables, got {fns!r}")
        self.fns, self.label = fns, str(label)

    def __eq__(self, other) -> bool:
        return isinstance(other, Callables) and self.fns == other.fns

    def __hash__(self) -> int:
        return hash(self.fns)

    def __repr__(self) -> str:
        return self.label


class _Callables(Kind):
    name = "Python functions held in memory (Callables), or None"

    def check(self, v, where):
        if v is not None and not isinstance(v, Callables):
            self.fail(v, where)
class _Int(Kind):
    """An int of either sign (an offset, a shift, a diagonal)."""

    name = f"an int from {-MAX_INT} to {MAX_INT}"

    def check(self, v, where):
        if not is_int(v) or not -MAX_INT <= v <= MAX_INT:
            self.fail(v, where)


class _Number(Kind):
    """A finite Python number (a fill value, a bound), or with `sizes` also a symbolic size
    (arange's stop): never a NumPy scalar or text, so a file holds what a builder made."""

    def __init__(self, sizes: bool = False):
        self.sizes = sizes
        self.name = "a finite bool, int or float" + (" or a symbolic size" if sizes else "")

    def check(self, v, where):
        if self.sizes and isinstance(v, sympy.Expr):
            check_size(v, where)
            return
        if type(v) not in (bool, int, float) or (type(v) is int and not -MAX_INT <= v <= MAX_INT):
            self.fail(v, where)
        if type(v) is float and not math.isfinite(v):
            self.fail(v, where)


class _Pair(Kind):
    """Two counts (pad's widths before and after an axis)."""

    name = "a pair of ints from 0 to " + str(MAX_INT)

    def check(self, v, where):
        if type(v) is not tuple or len(v) != 2:
            self.fail(v, where)
        for e in v:
            COUNT.check(e, where)


FLAG = _Flag()
COUNT = _Count()
POSITIVE = _Positive()
SIZE = _Size()
AXIS = _Axis()
AXES = _Axes()
PERMUTATION = _Permutation()
DTYPE = _DType()
SHAPE = _Shape()
INDEX = _Index()
INDICES = _TupleOf(INDEX)
COUNTS = _TupleOf(COUNT)
POSITIVES = _TupleOf(POSITIVE, MAX_RANK)  # per spatial axis: strides, dilations, windows
PADS = _TupleOf(_TupleOf(COUNT, 2), MAX_RANK)  # per spatial axis: (before, after)
FLAGS = _TupleOf(FLAG)
CALLABLES = _Callables()  # never saved: a loaded op gets None
INT = _Int()
INTS = _TupleOf(INT, MAX_RANK)
NUMBER = _Number()
NUMBER_OR_SIZE = _Number(sizes=True)
PAIRS = _TupleOf(_Pair(), MAX_RANK)
LABELS = _TupleOf(_Label(), MAX_RANK)  # one einsum term: a label per axis
SUBSCRIPTS = _TupleOf(LABELS, MAX_OPERANDS)  # einsum's input terms, one per operand


def check_size(d, where: str) -> None:
    """One size of a shape: an int in [0, MAX_INT] or a symbolic size."""
    if is_int(d):
        if not 0 <= d <= MAX_INT:
            raise GraphError(f"{where}: expected a size from 0 to {MAX_INT}, got {d}")
        return
    if not isinstance(d, sympy.Expr) or d.is_number:
        raise GraphError(f"{where}: expected a size (an int >= 0 or a symbolic size), got "
                         f"{_show(d)}")
    check_expr(d, where)


def check_expr(e: sympy.Expr, where: str) -> None:
    """A symbolic size: integer-valued, of bounded size, over graphc's size symbols only."""
    count = 0
    for sub in sympy.preorder_traversal(e):
        count += 1
        if count > MAX_EXPR_NODES:
            raise GraphError(f"{where}: the symbolic size has more than {MAX_EXPR_NODES} "
                             "terms")
        if isinstance(sub, sympy.Symbol) and not (sub.is_integer and sub.is_positive):
            raise GraphError(f"{where}: {sub} is not a size symbol (an integer, positive "
                             "sympy Symbol such as gc.Graph.input makes from a str)")
        if isinstance(sub, (sympy.Float, sympy.core.numbers.NaN, sympy.core.numbers.Infinity,
                            sympy.core.numbers.NegativeInfinity,
                            sympy.core.numbers.ComplexInfinity)):
            raise GraphError(f"{where}: a size cannot contain {sub}")


def _show(v) -> str:
    text = repr(v)
    return f"{type(v).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"
