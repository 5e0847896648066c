"""Cases of the indexing ops (graphc/ops/indexing.py): each index array is a constant fixed in
the case's build, with repeated and negative entries, so the scatter-adds accumulate and the
second order runs through the gather/scatter pair (a nonlinearity around the linear op)."""

from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.ops.indexing import AddAlongAxis
from tests.ops.cases import Case

ROWS = np.array([2, 0, 2, -1])  # repeated and negative


CASES: list[Case] = [
    Case("take", lambda x: gc.sin(gc.take(x, ROWS, axis=0)), [(3, 4)], id="take_rows"),
    Case("take", lambda x: gc.sin(gc.take(x, np.array([[1, 1], [0, -1]]), axis=1)), [(3, 4)],
         id="take_axis1_2d_idx"),
    Case("take", lambda x: gc.sin(gc.take(x, np.array([5, 0, 5, 11]))), [(3, 4)],
         id="take_flat"),
    Case("take", lambda x: gc.sin(gc.take(x, np.array(2), axis=1)) * x[:, 0], [(3, 4)],
         id="take_scalar_index"),
    Case("take", lambda x: gc.sin(x[np.array([1, 1, 0])]), [(3, 4)], id="getitem_array"),
    Case("take", lambda x: gc.sin(x[1:, None, [3, 0, 3]]), [(3, 4)], id="getitem_slice_array"),
    Case("take", lambda x: gc.tanh(x[..., [1, -1, 1]]) * x[0, :, :1], [(2, 3, 2)],
         id="getitem_ellipsis_array"),
    Case("segment_sum", lambda x: gc.sin(gc.segment_sum(x, np.array([0, 2, 0, 2, -1]), 4)),
         [(5, 3)], id="segment_sum_rows"),
    Case("segment_sum", lambda x: gc.exp(gc.segment_sum(x * x, np.array([1, 1, 0]), 2)),
         [(3,)], id="segment_sum_vector"),
    Case("take_along_axis", lambda x: gc.sin(gc.take_along_axis(
        x, np.array([[2, 2, 0], [1, 0, -1]]), axis=1)), [(2, 3)], id="take_along_axis"),
    Case("take_along_axis", lambda x: gc.sin(gc.take_along_axis(
        x, np.array([[3, 3], [0, 1], [2, 3]]), axis=1)), [(1, 4)],
         id="take_along_axis_broadcast_x"),
    Case("take_along_axis", lambda x: gc.sin(gc.take_along_axis(x, np.array([4, 4, 0]), None)),
         [(2, 3)], id="take_along_axis_flat"),
    Case("add_along_axis", lambda x, v: gc.sin(gc.apply(
        AddAlongAxis(1), x, np.array([[0, 2, 0, 1], [1, 1, 1, -1]]), v * v)),
         [(2, 3), (2, 4)], id="add_along_axis"),
    Case("gather", lambda x: gc.sin(x[[0, 2, 2], [1, 1, -1]]), [(3, 4)], id="gather_pairs"),
    Case("gather", lambda x: gc.sin(x[[0, 1, 0], :, [2, 2, -3]]), [(2, 3, 4)],
         id="gather_apart"),
    Case("gather", lambda x: gc.sin(x[1, :, [0, 0, 3]]), [(2, 3, 4)], id="gather_int_apart"),
    Case("gather", lambda x: gc.sin(x[:, [[0], [1]], [1, 1, 0]]), [(2, 2, 3)],
         id="gather_broadcast_indices"),
    Case("at_add", lambda x, v: gc.sin(x.at[[0, 2, 0]].add(v * v)), [(4, 3), (3, 3)],
         id="at_add_rows"),
    Case("at_add", lambda x, v: gc.sin(x.at[:, [1, 1]].add(v)), [(4, 3), (2,)],
         id="at_add_broadcast_values"),
    Case("at_add", lambda x, v: gc.sin(x.at[[0, 0, 1], [2, 2, -1]].add(gc.exp(v))),
         [(2, 3), (3,)], id="at_add_pairs"),
    Case("at_add", lambda x, v: gc.sin(x.at[1:3].add(v)), [(4, 2), (2, 2)], id="at_add_basic"),
    Case("at_add", lambda x, v: gc.sin(x.at[[0, 1], :, [1, 1]].add(v)), [(2, 2, 3), (2, 2)],
         id="at_add_apart"),
    Case("at_set", lambda x, v: gc.sin(x.at[[1, 3, 1]].set(v * x[0])), [(4, 2), (3, 2)],
         id="at_set_repeated_rows"),
    Case("at_set", lambda x, v: gc.sin(x.at[[0, 0], [1, 1]].set(v)), [(2, 3), ()],
         id="at_set_scalar_value"),
    Case("at_set", lambda x, v: gc.sin(x.at[1:3].set(v) * x), [(4, 2), (2,)],
         id="at_set_basic"),
    Case("at_set", lambda x, v: gc.sin(x.at[[2, 0, 2], :, [1, 0, 1]].set(gc.tanh(v))),
         [(3, 2, 2), (3, 2)], id="at_set_apart"),
]

# last_write is a mask of where at_set's writes land: it reads the indices only
NON_DIFFERENTIABLE = {"last_write"}
