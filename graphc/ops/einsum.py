"""Contractions: `einsum` (NumPy's subscripts) and `tensordot`, one `einsum` op.

The op holds its subscripts as labels, never as text: each operand's term is a tuple of ints
0-51 (NumPy's letters a-z, A-Z), the output another; `gc.einsum` parses the user's string once
(implicit output, `...`, size-1 broadcasting) into explicit labels, and `tensordot` builds
the same op. einsum is linear in each operand, so its jvp is the same contraction with the
tangent in the operand's place, and its bprop is another contraction: the cotangent and the
other operands contracted to the operand's labels (an identity matrix ties a repeated label,
a label summed inside the operand alone is broadcast back).

Running it: one operand is NumPy's `einsum`; two are transposed and reshaped into one
`matmul` (BLAS), or a broadcast product when nothing is contracted; more are contracted pair
by pair along the order `np.einsum_path` picks. The plan is made once per input shapes.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
import string
from typing import ClassVar

import numpy as np

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import SYMBOLIC_DIM, Op, register
from graphc.ir.params import LABELS, MAX_LABEL, SUBSCRIPTS, param
from graphc.ops.base import atomic, graph_of, lift
from graphc.ops.shape import broadcast_to, expand_dims, transpose

LETTERS = string.ascii_lowercase + string.ascii_uppercase  # label k is LETTERS[k]
MAX_PLANS = 32  # plans kept per op (one per distinct input shapes)


def text(subscripts, output) -> str:
    """NumPy's subscript string for explicit labels: `((0, 1), (1, 2)), (0, 2)` -> ij,jk->ik."""
    return ",".join("".join(LETTERS[k] for k in s) for s in subscripts) + "->" + "".join(
        LETTERS[k] for k in output)


@register
@dataclasses.dataclass(frozen=True)
class Einsum(Op):
    """A sum of products over labelled axes (NumPy's einsum with explicit output labels).

    d out = sum_i einsum(..., d operand_i, ...): linear in each operand."""

    name: ClassVar[str] = "einsum"
    arity: ClassVar[int | None] = None
    fresh: ClassVar[bool] = True
    subscripts: tuple = param(SUBSCRIPTS)  # one term per operand: a label per axis
    output: tuple = param(LABELS)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.subscripts:
            raise GraphError("einsum: parameter subscripts: expected at least one operand's "
                             "labels, got none")
        seen = {k for s in self.subscripts for k in s}
        if len(set(self.output)) != len(self.output) or not set(self.output) <= seen:
            raise GraphError(f"einsum: parameter output: expected distinct labels of the "
                             f"operands, got {self.output} for {self.subscripts}")

    def label(self) -> str:
        return f"einsum({text(self.subscripts, self.output)})"

    def infer(self, *xs):
        if len(xs) != len(self.subscripts):
            raise ShapeError(f"einsum: {len(self.subscripts)} subscript terms for "
                             f"{len(xs)} operands")
        sizes = _label_sizes(self.subscripts, xs)
        dtype = np.result_type(*(x.dtype for x in xs))
        return tuple(sizes[k] for k in self.output), dtype

    def forward(self, *arrays):
        shapes = tuple(a.shape for a in arrays)
        plans = self.__dict__.get("_plans")
        if plans is None:
            plans = {}
            object.__setattr__(self, "_plans", plans)  # a cache, not a parameter
        run = plans.get(shapes)
        if run is None:
            run = _plan(self.subscripts, self.output, shapes)
            if len(plans) >= MAX_PLANS:
                plans.clear()
            plans[shapes] = run
        return run(*arrays)

    def emit_numpy(self, node, args, ctx):
        """Static shapes: the plan is made now, at compile time, and called directly."""
        shapes = tuple(tuple(x.shape) for x in node.inputs)
        if not all(types.is_static(s) for s in shapes):
            return None  # made on the first call, per shapes, by forward
        plan = ctx.bind("_einsum_plan", _plan(self.subscripts, self.output, shapes))
        return f"{plan}({', '.join(args)})"

    def sympy(self, node, *args):
        return np.asarray(np.einsum(text(self.subscripts, self.output), *args), dtype=object)

    def bprop(self, inputs, out, g, i):
        if not types.is_float(inputs[i].dtype):
            return None
        x = inputs[i]
        others = [(s, y) for j, (s, y) in enumerate(zip(self.subscripts, inputs)) if j != i]
        terms = [self.output] + [s for s, _ in others]
        operands = [g] + [y for _, y in others]
        spare = iter(k for k in range(MAX_LABEL) if k not in
                     {k for s in self.subscripts for k in s})
        target, first = [], {}
        for pos, k in enumerate(self.subscripts[i]):  # a repeated label: an identity ties it
            if k not in first:
                first[k] = pos
                target.append(k)
                continue
            fresh = next(spare)
            target.append(fresh)
            terms.append((k, fresh))
            operands.append(_identity(x, first[k], pos))
        present = {k for s in terms for k in s}
        kept = tuple(k for k in target if k in present)
        h = contract(operands, terms, kept)
        missing = tuple(p for p, k in enumerate(target) if k not in present)
        if missing:  # summed inside this operand alone: the cotangent is the same along it
            h = broadcast_to(expand_dims(h, missing), x.shape)
        return h

    def jvp(self, inputs, out, t, i):
        operands = list(inputs)
        operands[i] = t
        return contract(operands, self.subscripts, self.output)

    def batch(self, node, ins, m):
        used = {k for s in self.subscripts for k in s}
        free = [k for k in range(MAX_LABEL) if k not in used]
        if not free:
            return NotImplemented
        b = free[0]
        terms = tuple((b, *s) if batched else s for s, (_, batched) in zip(self.subscripts, ins))
        return node.graph.apply(Einsum(terms, (b, *self.output)), [x for x, _ in ins])

    def cost(self, node) -> float:
        sizes = {k: _count(d) for s, x in zip(self.subscripts, node.inputs)
                 for k, d in zip(s, x.shape)}
        if len(self.subscripts) == 1:
            return float(np.prod([sizes[k] for k in sizes]) + _count_all(node.shape))
        return sum(2.0 * float(np.prod([sizes[k] for k in set(a) | set(b or ())]))
                   for _, _, a, b, _ in _steps(self.subscripts, self.output, sizes))


def _count(d) -> float:
    return float(d) if isinstance(d, int) else float(SYMBOLIC_DIM)


def _count_all(shape) -> float:
    return float(np.prod([_count(d) for d in shape]))


def _label_sizes(subscripts, xs) -> dict:
    """Each label's size, checked equal wherever it appears (the builder has already turned
    NumPy's size-1 broadcasting into labels of their own)."""
    sizes: dict = {}
    where: dict = {}
    for j, (s, x) in enumerate(zip(subscripts, xs)):
        if len(s) != x.ndim:
            raise ShapeError(f"einsum: operand {j} has {x.ndim} axes "
                             f"{types.fmt_shape(x.shape)} but its term "
                             f"'{''.join(LETTERS[k] for k in s)}' names {len(s)}")
        for k, d in zip(s, x.shape):
            if k in sizes and not types.dim_eq(sizes[k], d):
                raise ShapeError(f"einsum: label '{LETTERS[k]}' has size {sizes[k]} in "
                                 f"operand {where[k]} but {d} in operand {j} (shapes "
                                 + ", ".join(types.fmt_shape(y.shape) for y in xs) + ")")
            sizes.setdefault(k, d)
            where.setdefault(k, j)
    return sizes


def _identity(x: Node, p: int, q: int) -> Node:
    """The identity matrix of the size of axes p and q of x (equal: one repeated label)."""
    from graphc.ops.factor import mask  # lazy: factor builds on einsum

    if (p, q) != (x.ndim - 2, x.ndim - 1):
        rest = [a for a in range(x.ndim) if a not in (p, q)]
        x = transpose(x, (*rest, p, q))
    return mask(x, diagonal=True)


def contract(operands, subscripts, output) -> Node:
    """An einsum node over explicit labels, for the rules of the library: a single operand
    whose output is its own labels in some order is returned as itself or a transpose."""
    subscripts = tuple(tuple(s) for s in subscripts)
    output = tuple(output)
    if len(operands) == 1:
        (s,), x = subscripts, operands[0]
        if len(set(s)) == len(s) and set(s) == set(output):
            perm = tuple(s.index(k) for k in output)
            return x if perm == tuple(range(len(s))) else transpose(x, perm)
    g = graph_of(*operands)
    return g.apply(Einsum(subscripts, output), [lift(x, g) for x in operands])


def diagonal(x: Node) -> Node:
    """The main diagonals of a stack of square matrices (..., n, n) -> (..., n)."""
    batch = tuple(range(x.ndim - 2))
    i = x.ndim - 2
    return contract([x], [(*batch, i, i)], (*batch, i))


def trace(x: Node) -> Node:
    """The traces of a stack of square matrices (..., n, n) -> (...)."""
    batch = tuple(range(x.ndim - 2))
    i = x.ndim - 2
    return contract([x], [(*batch, i, i)], batch)


# -- running: a plan per input shapes -------------------------------------------------------
def _plan(subscripts, output, shapes):
    """A function of the operands computing the contraction, for these shapes."""
    if len(subscripts) == 1:
        spec = text(subscripts, output)

        def one(x):
            out = np.asarray(np.einsum(spec, x))
            return out.copy() if np.may_share_memory(out, x) else out

        return one
    sizes = {k: d for s, shape in zip(subscripts, shapes) for k, d in zip(s, shape)}
    if len(subscripts) == 2:
        return _oriented(subscripts[0], subscripts[1], output, sizes)
    runs = [(i, j, None if j is None else _oriented(a, b, kept, sizes)) for i, j, a, b, kept
            in _steps(subscripts, output, sizes)]

    def many(*arrays):
        values = list(arrays)
        for i, j, run in runs:  # as np.einsum_path: the pair leaves, its result goes last
            if j is None:
                values.append(values.pop(i))
                continue
            a, b = values[i], values[j]
            del values[j], values[i]
            values.append(run(a, b))
        return values[0]

    return many


def _steps(subscripts, output, sizes) -> list[tuple]:
    """The pairwise contractions in the greedy order of np.einsum_path, each as (i, j,
    labels of operand i, labels of operand j, labels kept), i < j: operands i and j leave the
    list and their result is appended (the path's convention)."""
    dummies = [np.broadcast_to(np.zeros(()), tuple(int(sizes[k]) for k in s))
               for s in subscripts]  # shapes only: nothing is allocated
    path = np.einsum_path(text(subscripts, output), *dummies, optimize="greedy")[0][1:]
    terms = [tuple(s) for s in subscripts]
    steps = []

    def contract_pair(i, j):
        a, b = terms[i], terms[j]
        rest = [t for n, t in enumerate(terms) if n not in (i, j)]
        if rest:
            needed = set(output) | {k for t in rest for k in t}
            kept = tuple(dict.fromkeys(k for k in a + b if k in needed))
        else:
            kept = tuple(output)
        steps.append((i, j, a, b, kept))
        del terms[j], terms[i]
        terms.append(kept)

    ids = list(range(len(terms)))  # a name for each operand, its result a new one
    fresh = itertools.count(len(terms))
    for group in path:  # a group of three or more operands goes pair by pair
        names = [ids[p] for p in group]
        if len(names) == 1:  # one operand alone: it moves to the end, as the path says
            i = ids.index(names[0])
            steps.append((i, None, terms[i], None, terms[i]))
            terms.append(terms.pop(i))
            ids.append(ids.pop(i))
        while len(names) > 1:
            i, j = sorted(ids.index(q) for q in names[:2])
            contract_pair(i, j)
            del ids[j], ids[i]
            ids.append(next(fresh))
            names = [*names[2:], ids[-1]]
    return steps


def _oriented(a, b, out, sizes):
    """`_pair` with the operands in the order that leaves the larger one as it lies in
    memory: the matmul reads one operand transposed (or copies it), best the smaller one.
    For dV = P^T dO in attention, (dO^T P)^T is a fifth faster than P^T dO."""
    if _layout_cost(b, a, out, sizes) < _layout_cost(a, b, out, sizes):
        run = _pair(b, a, out, sizes)
        return lambda x, y: run(y, x)
    return _pair(a, b, out, sizes)


def _layout_cost(a, b, out, sizes) -> float:
    """Entries the matmul of `_pair(a, b)` reads out of their memory order: an operand
    transposed in its last two groups counts once, one that must be copied twice."""
    a_keep = tuple(dict.fromkeys(k for k in a if k in b or k in out))
    b_keep = tuple(dict.fromkeys(k for k in b if k in a or k in out))
    batch = tuple(k for k in out if k in a_keep and k in b_keep)
    summed = tuple(k for k in a_keep if k in b_keep and k not in out)
    free_a = tuple(k for k in a_keep if k not in b_keep)
    free_b = tuple(k for k in b_keep if k not in a_keep)

    def cost(labels, natural, swapped):
        size = float(np.prod([float(sizes[k]) for k in labels]))
        return 0.0 if labels == natural else size if labels == swapped else 2.0 * size

    return (cost(a_keep, batch + free_a + summed, batch + summed + free_a)
            + cost(b_keep, batch + summed + free_b, batch + free_b + summed))


def _pair(a, b, out, sizes):
    """Two operands with labels a and b contracted to `out`: each operand first reduced on
    its own (a repeated label, a label nothing else has), then one matmul of the operands
    transposed to (batch, free, contracted) and (batch, contracted, free)."""
    a_keep = tuple(dict.fromkeys(k for k in a if k in b or k in out))
    b_keep = tuple(dict.fromkeys(k for k in b if k in a or k in out))
    pre_a = None if a_keep == a else text((a,), a_keep)
    pre_b = None if b_keep == b else text((b,), b_keep)
    batch = tuple(k for k in out if k in a_keep and k in b_keep)
    summed = tuple(k for k in a_keep if k in b_keep and k not in out)
    free_a = tuple(k for k in a_keep if k not in b_keep)
    free_b = tuple(k for k in b_keep if k not in a_keep)
    order = batch + free_a + free_b  # the product's axes, before the final transpose
    final = tuple(order.index(k) for k in out)
    final = None if final == tuple(range(len(final))) else final
    perm_a = tuple(a_keep.index(k) for k in batch + free_a + summed)
    perm_b = tuple(b_keep.index(k) for k in batch + summed + free_b)
    dims = [int(sizes[k]) for k in order]

    def size(labels):
        return int(np.prod([int(sizes[k]) for k in labels], dtype=np.int64))

    nb, m, n, k = size(batch), size(free_a), size(free_b), size(summed)
    if not summed:  # a broadcast product: (batch, free_a, 1...) * (batch, 1..., free_b)
        shape_a = [int(sizes[q]) for q in batch + free_a] + [1] * len(free_b)
        shape_b = [int(sizes[q]) for q in batch] + [1] * len(free_a) + [
            int(sizes[q]) for q in free_b]

        def product(x, y):
            if pre_a is not None:
                x = np.einsum(pre_a, x)
            if pre_b is not None:
                y = np.einsum(pre_b, y)
            z = np.asarray(np.multiply(x.transpose(perm_a).reshape(shape_a),
                                       y.transpose(perm_b).reshape(shape_b)))
            return z if final is None else z.transpose(final)

        return product

    def matmul(x, y):
        if pre_a is not None:
            x = np.einsum(pre_a, x)
        if pre_b is not None:
            y = np.einsum(pre_b, y)
        x = x.transpose(perm_a)
        y = y.transpose(perm_b)
        if nb == 1:
            z = np.dot(x.reshape(m, k), y.reshape(k, n))
        else:
            z = np.matmul(x.reshape(nb, m, k), y.reshape(nb, k, n))
        z = z.reshape(dims)
        return z if final is None else z.transpose(final)

    return matmul


# -- the public functions -------------------------------------------------------------------
def _parse(subscripts: str, operands) -> tuple[tuple, tuple]:
    """NumPy's subscript string -> explicit labels per operand and for the output."""
    if not isinstance(subscripts, str):
        raise GraphError(f"einsum: subscripts must be a str such as 'ij,jk->ik', got "
                         f"{type(subscripts).__name__}")
    spec = subscripts.replace(" ", "")
    if spec.count("->") > 1:
        raise GraphError(f"einsum: subscripts {subscripts!r} have more than one '->'")
    inputs, arrow, out = spec.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands):
        raise ShapeError(f"einsum: subscripts {subscripts!r} have {len(terms)} terms for "
                         f"{len(operands)} operands")
    for t in [*terms, out]:
        bad = set(t.replace("...", "")) - set(LETTERS)
        if bad or t.count("...") > 1:
            raise GraphError(f"einsum: invalid subscripts {subscripts!r}: a term is letters "
                             "a-z, A-Z with at most one '...'")
    used = {c for t in [*terms, out] for c in t if c in LETTERS}
    spare = [k for k in range(MAX_LABEL) if LETTERS[k] not in used]
    n_ell = []
    for j, (t, x) in enumerate(zip(terms, operands)):
        named = len(t.replace("...", ""))
        extra = x.ndim - named
        if extra < 0 or (extra > 0 and "..." not in t):
            raise ShapeError(f"einsum: operand {j} has {x.ndim} axes "
                             f"{types.fmt_shape(x.shape)} but its term {t!r} names {named}")
        n_ell.append(extra if "..." in t else 0)
    width = max(n_ell, default=0)
    if width > len(spare):
        raise ShapeError(f"einsum: '...' stands for {width} axes, more than the "
                         f"{len(spare)} unused labels")
    ellipsis = spare[:width]

    def labels(t, n):
        head, dots, tail = t.partition("...")
        mid = tuple(ellipsis[width - n:]) if dots else ()
        return tuple(LETTERS.index(c) for c in head) + mid + tuple(
            LETTERS.index(c) for c in tail)

    terms_l = [labels(t, n) for t, n in zip(terms, n_ell)]
    if arrow:
        if width and "..." not in out:
            raise ShapeError(f"einsum: subscripts {subscripts!r}: the operands have axes "
                             "under '...' but the output has no '...' to hold them")
        output = labels(out, width) if "..." in out else tuple(LETTERS.index(c) for c in out)
        if len(set(output)) != len(output):
            raise GraphError(f"einsum: subscripts {subscripts!r}: an output label repeats")
        missing = [LETTERS[k] for k in output if not any(k in s for s in terms_l)]
        if missing:
            raise GraphError(f"einsum: subscripts {subscripts!r}: output label "
                             f"'{missing[0]}' is not in any operand")
    else:  # NumPy's implicit output: '...' first, then the labels seen once, sorted
        counts = {}
        for t in terms:
            for c in t.replace("...", ""):
                counts[c] = counts.get(c, 0) + 1
        output = tuple(ellipsis) + tuple(LETTERS.index(c) for c in sorted(counts)
                                         if counts[c] == 1)
    return tuple(terms_l), output


def _broadcast_labels(terms, output, operands):
    """NumPy broadcasts an axis of length 1 against the same label's other length: such an
    axis gets a label of its own, summed over (one term, so its value is unchanged)."""
    lengths: dict = {}
    for s, x in zip(terms, operands):
        for k, d in zip(s, x.shape):
            if not (isinstance(d, int) and d == 1):
                lengths.setdefault(k, d)
    used = {k for s in terms for k in s}
    spare = iter(k for k in range(MAX_LABEL) if k not in used)
    new_terms = []
    for s, x in zip(terms, operands):
        t = list(s)
        for p, (k, d) in enumerate(zip(s, x.shape)):
            if isinstance(d, int) and d == 1 and k in lengths and s.count(k) == 1:
                fresh = next(spare, None)
                if fresh is None:
                    raise ShapeError("einsum: too many labels to broadcast a length-1 axis")
                t[p] = fresh
        new_terms.append(tuple(t))
    return tuple(new_terms), output


@atomic
def einsum(subscripts, *operands):
    """NumPy's einsum: `gc.einsum("ij,jk->ik", a, b)`; implicit output, `...` and
    broadcasting as in NumPy. Its gradient and tangent are einsums too.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a", shape=(2, 3))
        >>> gc.einsum("ij,ij->i", a, a).eval({a: np.arange(6.0).reshape(2, 3)})
        array([ 5., 50.])
    """
    if not operands:
        raise GraphError("einsum: at least one operand is needed")
    g = graph_of(*operands, caller="einsum")
    operands = [lift(x, g) for x in operands]
    terms, output = _parse(subscripts, operands)
    terms, output = _broadcast_labels(terms, output, operands)
    return g.apply(Einsum(terms, output), operands)


@atomic
def tensordot(a, b, axes=2):
    """NumPy's tensordot: sum the products over `axes` (an int N: the last N axes of `a`
    with the first N of `b`; or a pair of axis lists). An einsum node.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> a = g.input("a", shape=(2, 3))
        >>> gc.tensordot(a, a, axes=([0, 1], [0, 1])).eval({a: np.ones((2, 3))})
        array(6.)
    """
    g = graph_of(a, b, caller="tensordot")
    a, b = lift(a, g), lift(b, g)
    try:
        n = operator.index(axes)
        if n < 0 or n > min(a.ndim, b.ndim):
            raise ShapeError(f"tensordot: axes={n} for operands of {a.ndim} and {b.ndim} axes")
        axes_a, axes_b = list(range(a.ndim - n, a.ndim)), list(range(n))
    except TypeError:
        try:
            axes_a, axes_b = axes
        except (TypeError, ValueError):
            raise GraphError(f"tensordot: axes must be an int or a pair of axis lists, got "
                             f"{axes!r}") from None
        axes_a = [axes_a] if isinstance(axes_a, (int, np.integer)) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, (int, np.integer)) else list(axes_b)
    if len(axes_a) != len(axes_b):
        raise ShapeError(f"tensordot: {len(axes_a)} axes of a but {len(axes_b)} of b")
    try:
        axes_a = [types.normalize_axis(int(k), a.ndim) for k in axes_a]
        axes_b = [types.normalize_axis(int(k), b.ndim) for k in axes_b]
    except ValueError as e:
        raise ShapeError(f"tensordot: {e}") from None
    if len(set(axes_a)) != len(axes_a) or len(set(axes_b)) != len(axes_b):
        raise ShapeError("tensordot: an axis is repeated")
    if a.ndim + b.ndim - len(axes_a) > MAX_LABEL:
        raise ShapeError(f"tensordot: more than {MAX_LABEL} axes")
    for p, q in zip(axes_a, axes_b):
        if not types.dim_eq(a.shape[p], b.shape[q]):
            raise ShapeError(f"tensordot: axis {p} of a has length {a.shape[p]} but axis {q} "
                             f"of b has {b.shape[q]}")
    la = tuple(range(a.ndim))
    spare = iter(range(a.ndim, MAX_LABEL))
    lb = tuple(la[axes_a[axes_b.index(q)]] if q in axes_b else next(spare)
               for q in range(b.ndim))
    output = tuple(k for p, k in enumerate(la) if p not in axes_a) + tuple(
        k for q, k in enumerate(lb) if q not in axes_b)
    return g.apply(Einsum((la, lb), output), [a, b])
