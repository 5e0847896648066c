"""Cases of issue 15's ops (more elementwise, products and scans, sort, rearrangements), merged
into the op table by tests/ops/cases.py: first and second order against finite differences,
jvp against vjp, save/load, to_sympy, jacobian and hessian all run over them.

Samplers keep away from kinks by more than the finite-difference reach (about 0.006): mod's
x / y from integers, clip's x from its bounds, sort's entries from each other. Products and
cumulative products are sampled with exact zeros (two in one row), where a gradient built by
dividing by x would fail, at first and second order.
"""

from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.ops.scan import PermuteAlong, Recurrence
from tests.ops.cases import Case, distinct, normal, positive


def inverse_domain(rng, shape):
    """Inside (-1, 1) and away from the ends: arcsin, arccos, arctanh."""
    return rng.uniform(-0.8, 0.8, shape)


def above_one(rng, shape):
    return rng.uniform(1.5, 3.0, shape)


def away_from_zero(rng, shape):
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 1.5, shape)


def with_zeros(rng, shape):
    """Normal entries with exact zeros: about a quarter of them, and two in the first row."""
    v = rng.standard_normal(shape)
    v[rng.uniform(size=shape) < 0.25] = 0.0
    if v.ndim >= 1 and v.shape[-1] >= 3:
        v.reshape(-1, v.shape[-1])[0, :2] = 0.0
    return v


def dividend(rng, shape):
    """On a 0.1 grid plus [0.02, 0.06): divided by +-0.5, at least 0.04 from an integer."""
    return distinct(rng, shape) + 0.02


def half(rng, shape):
    return rng.choice([-0.5, 0.5], shape)


def lower_bound(rng, shape):
    """-0.23 - 0.1 k: `distinct` entries (0.1 grid plus [0, 0.04)) stay 0.03 away."""
    return -0.23 - 0.1 * rng.integers(0, 3, shape)


def upper_bound(rng, shape):
    return 0.37 + 0.1 * rng.integers(0, 3, shape)


ROWS = np.array([[0.5, -1.0, 2.0, 0.0], [3.0, 1.0, -2.0, 0.5], [0.0, 0.25, -0.5, 1.5]])


def _unary(name, fn, sampler=normal, shapes=((3, 4), ())):
    return [Case(name, fn, [s], [sampler], id=f"{name}{s}") for s in shapes]


PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((), (3,))]


def _binary(name, fn, samplers=(normal, normal), pairs=PAIRS):
    return [Case(name, fn, list(p), list(samplers), id=f"{name}{p[0]}{p[1]}") for p in pairs]


CASES: list[Case] = [
    # -- elementwise -------------------------------------------------------------------------
    *_unary("arcsin", gc.arcsin, inverse_domain),
    *_unary("arccos", gc.arccos, inverse_domain),
    *_unary("arctan", gc.arctan),
    *_unary("sinh", gc.sinh),
    *_unary("cosh", gc.cosh),
    *_unary("arcsinh", gc.arcsinh),
    *_unary("arccosh", gc.arccosh, above_one),
    *_unary("arctanh", gc.arctanh, inverse_domain),
    *_unary("erf", gc.erf),
    *_unary("erfc", gc.erfc),
    *_unary("log2", gc.log2, positive),
    *_unary("log10", gc.log10, positive),
    *_unary("exp2", gc.exp2),
    *_unary("reciprocal", gc.reciprocal, away_from_zero),
    *_binary("arctan2", gc.arctan2, (away_from_zero, away_from_zero)),
    *_binary("hypot", gc.hypot, (away_from_zero, away_from_zero)),
    *_binary("logaddexp", gc.logaddexp),
    Case("logaddexp", lambda x: gc.logaddexp(x, 30.0 * x), [(5,)], id="logaddexp_far_apart"),
    *_binary("mod", gc.mod, (dividend, half)),
    Case("mod", lambda x: gc.mod(x, 0.5) * x, [(3, 4)], [dividend], id="mod_const_divisor"),
    Case("clip", lambda x: gc.clip(x, -0.23, 0.37), [(3, 4)], [distinct], id="clip_numbers"),
    Case("clip", gc.clip, [(3, 4), (4,), ()], [distinct, lower_bound, upper_bound],
         id="clip_nodes_broadcast"),
    Case("clip", lambda x, hi: gc.clip(x * x, None, hi), [(3, 4), (3, 1)],
         [distinct, upper_bound], id="clip_upper_only"),
    Case("clip", lambda x, lo: gc.clip(x, lo, lo - 0.5), [(3, 4), (4,)],
         [distinct, lower_bound], id="clip_crossed_bounds"),
    # -- products and scans ------------------------------------------------------------------
    Case("prod", lambda x: gc.prod(x), [(3, 4)], [with_zeros], id="prod_all_zeros"),
    Case("prod", lambda x: gc.prod(x, axis=1), [(3, 4)], [with_zeros], id="prod_ax1_zeros"),
    Case("prod", lambda x: gc.prod(x, axis=0, keepdims=True), [(3, 4)], [normal],
         id="prod_ax0_keep"),
    Case("prod", lambda x: gc.prod(x, axis=(0, 2)), [(2, 3, 3)], [with_zeros],
         id="prod_two_axes_zeros"),
    Case("prod", lambda x: gc.prod(x * x + 1.0, axis=-1) * gc.prod(x), [(4,)], [normal],
         id="prod_twice"),
    Case("cumsum", lambda x: gc.cumsum(x, axis=1), [(3, 4)], id="cumsum_ax1"),
    Case("cumsum", lambda x: gc.cumsum(x) * gc.cumsum(x), [(2, 3)], id="cumsum_flat_squared"),
    Case("cumprod", lambda x: gc.cumprod(x, axis=1), [(3, 4)], [with_zeros],
         id="cumprod_ax1_zeros"),
    Case("cumprod", lambda x: gc.cumprod(x, axis=0) * x, [(4, 3)], [normal], id="cumprod_ax0"),
    Case("cumprod", lambda x: gc.cumprod(x), [(5,)], [with_zeros], id="cumprod_flat_zeros"),
    Case("recurrence", lambda a, b: gc.apply(Recurrence(1, False), a, b), [(3, 4), (3, 4)],
         [with_zeros, normal], id="recurrence_forward"),
    Case("recurrence", lambda a, b: gc.apply(Recurrence(0, True), a, b * b), [(4, 2), (4, 2)],
         [normal, normal], id="recurrence_reverse"),
    Case("sort", lambda x: gc.sort(x), [(3, 4)], [distinct], id="sort_last"),
    Case("sort", lambda x: gc.sort(x, axis=0) * gc.arange(3.0, like=x)[:, None], [(3, 4)],
         [distinct], id="sort_ax0_weighted"),
    Case("sort", lambda x: gc.sort(x * x, axis=None), [(2, 3)], [distinct], id="sort_flat"),
    Case("permute_along",
         lambda x: gc.apply(PermuteAlong(1, True), x * x, gc.argsort(x.graph.constant(ROWS))),
         [(3, 4)], id="permute_along_inverse"),
    Case("permute_along",
         lambda x: gc.apply(PermuteAlong(0, False), gc.sin(x), gc.argsort(-x.graph.constant(
             ROWS[:, :2]), axis=0)), [(3, 2)], id="permute_along_forward"),
    Case("sum", lambda x: gc.var(x, axis=1, ddof=1), [(3, 4)], id="var_ax1_ddof1"),
    Case("sum", lambda x: gc.var(x, keepdims=True), [(3, 4)], id="var_all_keep"),
    Case("sum", lambda x: gc.std(x, axis=0), [(3, 4)], id="std_ax0"),
    Case("sum", lambda x: gc.std(x * x, ddof=1), [(5,)], id="std_all_ddof1"),
    # -- rearrangements ----------------------------------------------------------------------
    Case("pad", lambda x: gc.pad(x, ((1, 0), (2, 1)), 2.5) * gc.pad(x, ((0, 1), (1, 2))),
         [(3, 4)], id="pad_pairs"),
    Case("pad", lambda x: gc.pad(x, 2), [(3,)], id="pad_int"),
    Case("tile", lambda x: gc.tile(x, (2, 1, 3)), [(3, 4)], id="tile_more_reps"),
    Case("tile", lambda x: gc.tile(x, 2) * gc.tile(x, 2), [(2, 3)], id="tile_fewer_reps"),
    Case("repeat", lambda x: gc.repeat(x, 3, axis=1), [(3, 4)], id="repeat_ax1"),
    Case("repeat", lambda x: gc.repeat(x, 2) * gc.repeat(x, 2), [(2, 3)], id="repeat_flat"),
    Case("flip", lambda x: gc.flip(x, 1) * x, [(3, 4)], id="flip_ax1"),
    Case("flip", lambda x: gc.flip(x), [(2, 3, 2)], id="flip_all"),
    Case("roll", lambda x: gc.roll(x, (1, -2), (0, 1)) * x, [(3, 4)], id="roll_two_axes"),
    Case("roll", lambda x: gc.roll(x, 5), [(2, 3)], id="roll_flat"),
    Case("triu", lambda x: gc.triu(x, 1) * x, [(3, 4)], id="triu_k1"),
    Case("triu", lambda x: gc.triu(x), [(2, 3, 3)], id="triu_stack"),
    Case("tril", lambda x: gc.tril(x, -1) + gc.tril(x * x), [(4, 3)], id="tril"),
    Case("transpose", lambda x: gc.moveaxis(x, 0, -1), [(2, 3, 4)], id="moveaxis"),
    Case("broadcast_to", lambda x, y: gc.meshgrid(x, y)[0] * gc.meshgrid(x, y)[1],
         [(3,), (2,)], id="meshgrid_xy"),
    Case("broadcast_to", lambda x, y: gc.meshgrid(x, y, indexing="ij")[1], [(3,), (2,)],
         id="meshgrid_ij"),
]

# the ops of issue 15 that let no gradient through (by design: integers, booleans,
# rounding, constants made from a shape); tested in tests/ops/test_elem_programs.py
NON_DIFFERENTIABLE = {
    "floor", "ceil", "round", "argmax", "argmin", "argsort", "any", "all",
    "zeros", "ones", "full", "eye", "arange", "linspace",
}
