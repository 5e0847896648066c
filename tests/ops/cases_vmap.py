"""Cases of the vmap branch's ops for the op table (tests/ops/cases.py appends them).

`row_loop` (graphc/autodiff/row_loop.py) is the vectorizer's general rule at run time: an op
without a batching rule applied to each row of its batched operands. Here it loops over
built-in ops, so its derivative rules (loops over the body's vjp and jvp), its JSON form, its
sympy form and its batching (a loop of loops) are checked like every op's. `custom_vjp` and
`custom_jvp` hold Python functions, which a file cannot hold and which have no forward rule
(custom_vjp), so they are checked in tests/autodiff/test_custom_rules.py instead.
"""

from __future__ import annotations

import graphc as gc
from graphc.autodiff.row_loop import RowLoop
from graphc.ir.body import Body
from tests.ops.cases import Case, normal, positive


def loop(fn, batched):
    """A case build: `fn` applied row by row (operand k batched where `batched[k]`)."""

    def build(*xs):
        h = gc.Graph("row")
        params = [h.input(f"p{k}", x.shape[1:] if b else x.shape, x.dtype)
                  for k, (x, b) in enumerate(zip(xs, batched))]
        return gc.apply(RowLoop(Body(h, [fn(*params)]), tuple(batched)), *xs)

    return build


CASES: list[Case] = [
    Case("row_loop", loop(lambda A, b: A @ b, (False, True)), [(3, 4), (2, 4)],
         id="row_loop_matmul_shared_matrix"),
    Case("row_loop", loop(lambda x, w: gc.tanh(x * w).sum() * gc.log(w).sum(), (True, True)),
         [(3, 4), (3, 4)], [normal, positive], id="row_loop_both_batched"),
    Case("row_loop", lambda x, w: loop(lambda a, b: gc.exp(a) * b, (True, False))(x, w) * x,
         [(2, 3), (3,)], id="row_loop_times_input"),
]
