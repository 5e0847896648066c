"""One case per op: how to build it, input shapes (with broadcasting), a sampler for its domain,
and the derivative order to check. Samplers keep away from kinks and ties by more than the
finite-difference step, so second derivatives are checked for every op, kinks included."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import graphc as gc
from graphc.ops.scatter import ScatterAdd


def normal(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng, shape):
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 1.5, shape)


def small(rng, shape):
    return rng.uniform(-0.9, 0.9, shape)


def distinct(rng, shape):
    """Entries at least 0.05 apart, so max/min and ties are stable under the FD step."""
    n = int(np.prod(shape))
    return (rng.permutation(n) - n // 2 + rng.uniform(0, 0.4, n)).reshape(shape) * 0.1


def distinct_shifted(rng, shape):
    """Like `distinct`, offset by half a grid step: never within 0.01 of a `distinct` entry."""
    return distinct(rng, shape) + 0.05  # entries on a 0.1 grid plus [0, 0.04): 0.01 apart


def well_conditioned(rng, shape):
    """Square matrices near the identity (|det| away from 0), so inv and slogdet are smooth."""
    return np.eye(shape[-1]) * rng.choice([-1.0, 1.0], shape[:-2] + (1, 1)) + 0.3 * \
        rng.standard_normal(shape)


def both(outputs, combine):
    """A multi-output op's results combined into one node (a case's output)."""
    return combine(*outputs)


@dataclass
class Case:
    op: str                       # the registered op name this case exercises
    build: Callable               # nodes -> node
    shapes: list                  # one shape per input
    samplers: list = field(default_factory=list)  # per input (default: normal)
    order: int = 2
    id: str = ""
    dtype: str = "float64"
    tol: float = 1e-6

    def sample(self, rng, k):
        s = self.samplers[k] if k < len(self.samplers) else normal
        return np.asarray(s(rng, self.shapes[k]), dtype=self.dtype)


def _unary(name, fn, sampler=normal, shapes=((3, 4), ())):
    return [Case(name, fn, [s], [sampler], id=f"{name}{s}") for s in shapes]


BROADCAST_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1), (1, 3)), ((), (3,))]


def _binary(name, fn, samplers=(normal, normal), pairs=BROADCAST_PAIRS):
    return [Case(name, fn, list(p), list(samplers), id=f"{name}{p[0]}{p[1]}") for p in pairs]


CASES: list[Case] = [
    *_unary("neg", lambda x: -x),
    *_unary("exp", gc.exp),
    *_unary("log", gc.log, positive),
    *_unary("log1p", gc.log1p, positive),
    *_unary("expm1", gc.expm1),
    *_unary("sqrt", gc.sqrt, positive),
    *_unary("square", gc.square),
    *_unary("abs", gc.abs, away_from_zero),
    *_unary("sin", gc.sin),
    *_unary("cos", gc.cos),
    *_unary("tan", gc.tan, small),
    *_unary("tanh", gc.tanh),
    *_unary("sigmoid", gc.sigmoid),
    *_unary("softplus", gc.softplus),
    *_unary("relu", gc.relu, away_from_zero),
    *_binary("add", lambda x, y: x + y),
    *_binary("sub", lambda x, y: x - y),
    *_binary("mul", lambda x, y: x * y),
    *_binary("div", lambda x, y: x / y, (normal, away_from_zero)),
    *_binary("pow", lambda x, y: x ** y, (positive, normal)),
    *_binary("maximum", gc.maximum, (distinct, distinct_shifted),
             [((3, 4), (3, 4)), ((3, 4), (4,))]),
    *_binary("minimum", gc.minimum, (distinct, distinct_shifted),
             [((3, 4), (3, 4)), ((2, 1), (1, 3))]),
    Case("pow", lambda x: x ** 3.0, [(5,)], id="pow_const_exponent"),
    Case("pow", lambda y: 2.0 ** y, [(5,)], id="rpow"),
    Case("remat", lambda x, w: gc.remat(lambda a: gc.tanh(a * w) * 2.0 + w, x), [(3, 4), (4,)],
         id="remat-captures-w"),
    Case("where", lambda x, y: gc.where(x > 0.0, x * y, y), [(3, 4), (4,)],
         [away_from_zero, normal]),
    Case("add_n", lambda x, y, z: gc.add_n([x, y, z * x]), [(2, 3)] * 3),
    Case("cast", lambda x: gc.cast(x, "float64") * gc.sin(x), [(4,)], dtype="float32", tol=3e-2,
         id="cast_from_float32"),
    Case("sum", lambda x: x.sum(), [(3, 4)]),
    Case("sum", lambda x: gc.sum(x, axis=0), [(3, 4)], id="sum_axis0"),
    Case("sum", lambda x: gc.sum(x, axis=(0, 2), keepdims=True), [(2, 3, 4)], id="sum_keep"),
    Case("sum", lambda x: x.mean(axis=1), [(3, 4)], id="mean_axis1"),
    Case("max", lambda x: x.max(), [(3, 4)], [distinct]),
    Case("max", lambda x: gc.max(x, axis=1, keepdims=True), [(3, 4)], [distinct], id="max_ax1"),
    Case("min", lambda x: gc.min(x, axis=0), [(3, 4)], [distinct]),
    Case("matmul", lambda a, b: a @ b, [(3, 4), (4, 2)], id="mm_2d"),
    Case("matmul", lambda a, b: a @ b, [(4,), (4, 2)], id="mm_vec_mat"),
    Case("matmul", lambda a, b: a @ b, [(3, 4), (4,)], id="mm_mat_vec"),
    Case("matmul", lambda a, b: a @ b, [(4,), (4,)], id="mm_vec_vec"),
    Case("matmul", lambda a, b: a @ b, [(2, 3, 4), (4, 5)], id="mm_batched"),
    Case("matmul", lambda a, b: a @ b, [(2, 1, 3, 4), (5, 4, 2)], id="mm_batch_broadcast"),
    Case("matmul", lambda a, b: a @ b, [(4,), (2, 4, 3)], id="mm_vec_batched"),
    Case("matmul", lambda a, b: gc.dot(a, b), [(3, 4), (4,)], id="dot"),
    Case("matmul", lambda a, b: gc.outer(a, b), [(3,), (4,)], id="outer"),
    Case("trace", gc.trace, [(3, 3)]),
    Case("trace", gc.trace, [(3, 5)], id="trace_rect"),
    Case("diag", gc.diag, [(4,)], id="diag_vec"),
    Case("diag", gc.diag, [(4, 4)], id="diag_square"),
    Case("diag", gc.diag, [(3, 5)], id="diag_wide"),
    Case("diag", gc.diag, [(5, 3)], id="diag_tall"),
    Case("trace", lambda x: gc.trace(x) * gc.trace(x), [(3, 3)], id="trace_squared"),
    Case("transpose", lambda x: x.T, [(3, 4)]),
    Case("transpose", lambda x: gc.transpose(x, (1, 2, 0)), [(2, 3, 4)], id="transpose_3d"),
    Case("reshape", lambda x: x.reshape(4, -1), [(2, 3, 2)]),
    Case("broadcast_to", lambda x: gc.broadcast_to(x, (2, 3, 4)), [(3, 1)]),
    Case("expand_dims", lambda x: gc.expand_dims(x, (0, -1)), [(3,)]),
    Case("squeeze", lambda x: gc.squeeze(x), [(3, 1, 2, 1)]),
    Case("concatenate", lambda x, y: gc.concatenate([x, y, x], axis=1), [(2, 3), (2, 1)]),
    Case("stack", lambda x, y: gc.stack([x, y], axis=-1), [(2, 3), (2, 3)]),
    Case("getitem", lambda x: x[1], [(3, 4)], id="getitem_int"),
    Case("getitem", lambda x: x[:, 1:3], [(3, 4)], id="getitem_slice"),
    Case("getitem", lambda x: x[::-2, None, ..., -1], [(5, 2, 3)], id="getitem_mixed"),
    Case("scatter_index", lambda x: (x[1:3] * x[0:2]), [(4, 3)], id="getitem_twice"),
    # scatter_add has no public function: the compiler builds it (graphc/rewrite/scatter.py);
    # inputs are like (shape only), dense terms, then one term per window (overlapping here)
    Case("scatter_add", lambda d, w, v: gc.apply(
        ScatterAdd(1, ((slice(1, 3),), (slice(None), 1))), d, d, w, v) * d,
         [(4, 3), (2, 3), (4,)], id="scatter_add_dense_and_windows"),
    Case("scatter_add", lambda x, w: gc.apply(
        ScatterAdd(0, ((slice(0, 2),), (slice(1, 3),))), x, w, w * w),
         [(3, 2), (2, 2)], id="scatter_add_windows_only"),
    Case("logsumexp", lambda x: gc.logsumexp(x), [(3, 4)]),
    Case("logsumexp", lambda x: gc.logsumexp(x, axis=0, keepdims=True), [(3, 4)], id="lse0k"),
    Case("softmax", lambda x: gc.softmax(x), [(3, 4)]),
    Case("softmax", lambda x: gc.softmax(x, axis=0), [(3, 4)], id="softmax_ax0"),
    Case("log_softmax", lambda x: gc.log_softmax(x), [(3, 4)]),
    Case("softmax_cross_entropy",
         lambda x: gc.softmax_cross_entropy(x, np.array([0, 3, 1])), [(3, 4)], id="sce_ids"),
    Case("softmax_cross_entropy", lambda x, p: gc.softmax_cross_entropy(x, gc.softmax(p)),
         [(3, 4), (3, 4)], id="sce_soft_labels"),
    # ops with several results: a case picks one output, or combines them into one node
    Case("split", lambda x: gc.split(x, [1, 3])[1], [(4, 3)], id="split_middle_only"),
    Case("split", lambda x: both(gc.split(x, 2, axis=1), lambda a, b: a * gc.sin(b)),
         [(3, 4)], id="split_both"),
    Case("split", lambda x: gc.split(x, [-1], axis=-1)[0].sum(axis=0), [(2, 3, 3)],
         id="split_negative"),
    Case("output", lambda x: gc.split(x, 3)[2] * gc.split(x, 3)[0], [(6,)], id="output_views"),
    Case("slogdet", lambda a: gc.linalg.slogdet(a)[1], [(3, 3)], [well_conditioned],
         id="slogdet_logabsdet"),
    Case("slogdet", lambda a: both(gc.linalg.slogdet(a), lambda s, ld: s * ld), [(3, 3)],
         [well_conditioned], id="slogdet_both"),
    Case("slogdet", lambda a: gc.linalg.slogdet(a)[1], [(2, 3, 3)], [well_conditioned],
         id="slogdet_batched"),
    Case("inv", lambda a: gc.linalg.inv(a), [(3, 3)], [well_conditioned]),
    Case("inv", lambda a: gc.linalg.inv(a), [(2, 2, 2)], [well_conditioned], id="inv_batched"),
]

# Ops with no gradient of their own, or exercised only through other cases.
NON_DIFFERENTIABLE = {
    "input", "constant", "sign", "less", "less_equal", "greater", "greater_equal", "equal",
    "not_equal", "stop_gradient", "zeros_like", "ones_like", "one_hot", "count", "eye_like",
}
EXERCISED_ELSEWHERE = {"count": "mean over a symbolic axis (tests/ops/test_symbolic.py)"}

from tests.ops.cases_conv import CASES as _conv_CASES  # noqa: E402, I001
CASES += _conv_CASES
from tests.ops.cases_index import CASES as _index_CASES  # noqa: E402
from tests.ops.cases_index import NON_DIFFERENTIABLE as _index_NON_DIFFERENTIABLE  # noqa: E402

CASES += _index_CASES
NON_DIFFERENTIABLE |= _index_NON_DIFFERENTIABLE
from tests.ops.cases_vmap import CASES as _vmap_CASES  # noqa: E402

CASES += _vmap_CASES
from tests.ops.cases_elem import CASES as _elem_CASES  # noqa: E402, I001
CASES += _elem_CASES
from tests.ops.cases_elem import NON_DIFFERENTIABLE as _elem_NON_DIFFERENTIABLE  # noqa: E402, I001
NON_DIFFERENTIABLE |= _elem_NON_DIFFERENTIABLE
from tests.ops.cases_linalg import CASES as _linalg_CASES  # noqa: E402
from tests.ops.cases_linalg import NON_DIFFERENTIABLE as _linalg_NON_DIFFERENTIABLE  # noqa: E402

CASES += _linalg_CASES
NON_DIFFERENTIABLE |= _linalg_NON_DIFFERENTIABLE
