"""Programs built from gathers and scatters (graphc/ops/indexing.py), against NumPy oracles:
an embedding model's gradient against a hand-written `np.add.at` scatter and its HVP against
finite differences of that gradient; NumPy's advanced indexing, `np.add.at` and fancy
assignment pattern by pattern; segment_sum against a loop; and indices that are out of range
or of the wrong kind, which must fail with a clear error, never wrap."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import graphc as gc
from graphc.ops import indexing
from tests.ops.cases import CASES
from tests.ops.cases_index import CASES as INDEX_CASES  # after cases.py, which adds them

V, D, C, N = 40, 16, 5, 300  # N * D = 4,800 entries: the scatter runs the numba kernel


# -- an embedding model ---------------------------------------------------------------------
def embedding_model():
    g = gc.Graph("embedding")
    E = g.input("E", shape=(V, D))
    ids = g.input("ids", shape=(N,), dtype="int64")
    W = g.input("W", shape=(D, C))
    b = g.input("b", shape=(C,))
    labels = g.input("labels", shape=(N,), dtype="int64")
    h = gc.tanh(E[ids])
    loss = gc.softmax_cross_entropy(h @ W + b, labels).mean()
    return g, (E, ids, W, b, labels), loss


def embedding_feed(rng):
    ids = rng.integers(0, V, N)
    ids[:50] = 3  # many repeats of one row
    ids[50:60] = -1  # negative: the last row, as in NumPy
    return (0.5 * rng.standard_normal((V, D)), ids, 0.5 * rng.standard_normal((D, C)),
            0.1 * rng.standard_normal(C), rng.integers(0, C, N))


def embedding_grad_oracle(E, ids, W, b, labels):
    """The gradient wrt E by hand: softmax minus one-hot, back through the dense layer and
    tanh, then scattered into E's rows with np.add.at (repeats accumulate)."""
    h = np.tanh(E[ids])
    p = scipy.special.softmax(h @ W + b, axis=-1)
    p[np.arange(N), labels] -= 1.0
    dh = (p / N) @ W.T * (1.0 - h * h)
    gE = np.zeros_like(E)
    np.add.at(gE, ids, dh)
    return gE


@pytest.mark.parametrize("optimize", [True, False])
def test_embedding_gradient_matches_a_hand_written_scatter(rng, optimize):
    g, (E, ids, W, b, labels), loss = embedding_model()
    gE = gc.grad(loss, E)
    feed = embedding_feed(rng)
    got = gc.function([E, ids, W, b, labels], gE, optimize=optimize)(*feed)
    np.testing.assert_allclose(got, embedding_grad_oracle(*feed), rtol=1e-12, atol=1e-15)
    assert "segment_sum" in gc.function([E, ids, W, b, labels], gE).source


def test_embedding_hvp_matches_finite_differences_of_the_gradient(rng):
    g, (E, ids, W, b, labels), loss = embedding_model()
    v = g.input("v", shape=(V, D))
    feed = embedding_feed(rng)
    direction = rng.standard_normal((V, D))
    hv = gc.function([E, ids, W, b, labels, v], gc.hvp(loss, E, v))(*feed, direction)
    eps = 1e-5
    plus = embedding_grad_oracle(feed[0] + eps * direction, *feed[1:])
    minus = embedding_grad_oracle(feed[0] - eps * direction, *feed[1:])
    np.testing.assert_allclose(hv, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-9)
    # both modes build the same product
    fwd = gc.function([E, ids, W, b, labels, v], gc.hvp(loss, E, v, mode="forward"))
    np.testing.assert_allclose(fwd(*feed, direction), hv, rtol=1e-10, atol=1e-14)


def test_embedding_gradient_saves_loads_and_differentiates_again(rng, tmp_path):
    g, (E, ids, W, b, labels), loss = embedding_model()
    gE = gc.grad(loss, E)
    gc.grad((gE * gE).sum(), E)  # a second order term in the file too
    feed = embedding_feed(rng)
    g2 = gc.load(gc.save(g, tmp_path / "emb.json"))
    gE2 = g2[gE.name]
    args = [g2[n.name] for n in (E, ids, W, b, labels)]
    np.testing.assert_array_equal(gc.function(args, gE2)(*feed),
                                  gc.function([E, ids, W, b, labels], gE)(*feed))


def test_segment_sum_matches_a_numpy_loop(rng):
    g = gc.Graph()
    data = g.input("data", shape=(500, 12))
    seg = g.input("seg", shape=(500,), dtype="int32")
    out = gc.segment_sum(data, seg, 30)
    d, s = rng.standard_normal((500, 12)), rng.integers(-30, 30, 500).astype(np.int32)
    want = np.zeros((30, 12))
    for row, k in zip(d, s):
        want[k] += row  # negative ids count from the end, as NumPy indices do
    np.testing.assert_allclose(gc.function([data, seg], out)(d, s), want, rtol=1e-13)
    gd = gc.grad((out * out).sum(), data)  # the adjoint reads rows back: take
    np.testing.assert_allclose(gc.function([data, seg], gd)(d, s), 2 * want[s], rtol=1e-13)


def test_hessian_of_a_gather_is_the_scatter_of_its_curvature(rng):
    """f = sum(sin(x[idx])): H is diagonal with -sum over the k with idx[k] = j of sin(x_j)."""
    g = gc.Graph()
    x = g.input("x", shape=(6,))
    idx = np.array([1, 4, 1, 1, -1])
    H = gc.hessian(gc.sin(x[idx]).sum(), x)
    xv = rng.standard_normal(6)
    counts = np.bincount(idx % 6, minlength=6)
    np.testing.assert_allclose(H.eval({x: xv}), np.diag(-counts * np.sin(xv)), atol=1e-14)
    J = gc.jacobian(gc.take_along_axis(x.reshape(2, 3), np.array([[2, 2], [0, 1]]), 1), x)
    want = np.zeros((2, 2, 6))
    want[0, 0, 2] = want[0, 1, 2] = want[1, 0, 3] = want[1, 1, 4] = 1.0
    np.testing.assert_array_equal(J.eval({x: xv}), want)


@pytest.mark.parametrize("case", INDEX_CASES, ids=[c.id for c in INDEX_CASES])
def test_optimized_code_computes_what_the_graph_as_built_does(case, rng):
    """Each index case, its gradient and a second-order term, optimize=True against False."""
    assert case in CASES  # the case table runs them in test_grad.py and test_json.py too
    g = gc.Graph()
    xs = [g.input(f"x{k}", shape=s) for k, s in enumerate(case.shapes)]
    out = case.build(*xs)
    z = (out * g.constant(rng.standard_normal(out.shape))).sum()
    grads = gc.grad(z, xs)
    second = gc.grad((grads[0] * grads[0]).sum(), xs)
    outputs = [out, *grads, *second]
    at = [case.sample(rng, k) for k in range(len(xs))]
    fast = gc.function(xs, outputs)(*at)
    plain = gc.function(xs, outputs, optimize=False)(*at)
    for a, b in zip(fast, plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# -- NumPy's semantics, pattern by pattern --------------------------------------------------
I2 = np.array([[0, 2], [2, -1]])
PATTERNS = [
    ((4, 3), lambda i: i[np.array([3, 0, 3, -2])]),
    ((4, 3), lambda i: i[I2]),
    ((4, 3), lambda i: i[:, [2, 2, 0]]),
    ((4, 3), lambda i: i[1:, None, [2, -1]]),
    ((4, 3), lambda i: i[[0, 3, 3], [2, 2, -1]]),
    ((4, 3), lambda i: i[I2, 1]),
    ((4, 3), lambda i: i[[[0], [3]], [1, 2, 1]]),
    ((2, 3, 4), lambda i: i[[0, 1, 1], :, [3, 3, 0]]),
    ((2, 3, 4), lambda i: i[1, :, [0, 0, 3]]),
    ((2, 3, 4), lambda i: i[:, 1, [0, 0, 3]]),
    ((2, 3, 4), lambda i: i[..., [1, 1]]),
    ((2, 3, 4), lambda i: i[[1, 0], ..., [1, 1]]),
    ((2, 3, 4), lambda i: i[:, [0, 2], ..., [1, 1]]),
    ((2, 3, 4), lambda i: i[[1, 0], None, [2, 2]]),
    ((2, 3, 4), lambda i: i[None, [1, 0], [2, 2], 1:3]),
    ((2, 3, 4), lambda i: i[np.array(1), :, [2, 0]]),
    ((2, 3, 4), lambda i: i[np.array([[True, False, True], [False, False, True]])]),
    ((2, 3, 4), lambda i: i[[]]),
]


class Indexer:
    """Records the index a pattern applies, to replay it on a node and on an array."""

    def __getitem__(self, index):
        return index


@pytest.mark.parametrize("k", range(len(PATTERNS)))
def test_advanced_indexing_matches_numpy(k, rng):
    shape, pattern = PATTERNS[k]
    index = pattern(Indexer())
    g = gc.Graph()
    x = g.input("x", shape=shape)
    xv = rng.standard_normal(shape)
    y = x[index]
    want = xv[index]
    assert y.shape == want.shape
    np.testing.assert_array_equal(y.eval({x: xv}), want)
    # its adjoint: np.add.at of the cotangent, repeats accumulating
    u = rng.standard_normal(want.shape)
    gx = gc.function([x], gc.vjp(y, x, g.constant(u)))(xv)
    oracle = np.zeros(shape)
    np.add.at(oracle, index, u)
    np.testing.assert_allclose(gx, oracle, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("k", range(len(PATTERNS)))
def test_at_add_and_at_set_match_numpy(k, rng):
    shape, pattern = PATTERNS[k]
    index = pattern(Indexer())
    g = gc.Graph()
    x = g.input("x", shape=shape)
    xv = rng.standard_normal(shape)
    window = xv[index].shape
    vv = rng.standard_normal(window)
    v = g.input("v", shape=window)
    added, written = gc.function([x, v], [x.at[index].add(v), x.at[index].set(v)])(xv, vv)
    want_add = xv.copy()
    np.add.at(want_add, index, vv)
    want_set = xv.copy()
    want_set[index] = vv  # NumPy: the last of repeated writes wins
    np.testing.assert_allclose(added, want_add, rtol=1e-14)
    np.testing.assert_array_equal(written, want_set)
    # set's adjoint wrt v: the cotangent where v's write lands, 0 for a write overwritten
    u = rng.standard_normal(shape)
    gv = gc.function([x, v], gc.vjp(x.at[index].set(v), v, g.constant(u)))(xv, vv)
    marker = np.full(shape, -1)
    marker[index] = np.arange(vv.size).reshape(window)
    lands = marker[index] == np.arange(vv.size).reshape(window)
    np.testing.assert_array_equal(gv, np.where(lands, u[index], 0.0))


def test_repeated_writes_last_one_wins_and_its_gradient_goes_to_it():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    v = g.input("v", shape=(4,))
    y = x.at[np.array([1, 2, 1, 1])].set(v)
    out = gc.function([x, v], [y, *gc.grad((y * np.arange(1.0, 4.0)).sum(), [x, v])])
    val, gx, gv = out(np.zeros(3), np.array([10.0, 20.0, 30.0, 40.0]))
    np.testing.assert_array_equal(val, [0.0, 40.0, 20.0])
    np.testing.assert_array_equal(gx, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(gv, [0.0, 3.0, 0.0, 2.0])


def test_take_and_take_along_axis_match_numpy(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3, 4, 2))
    idx = rng.integers(-4, 4, (3, 5, 2))
    xv = rng.standard_normal((3, 4, 2))
    for axis in (0, 1, 2, -1, None):
        i = idx[0, :, 0] % 2 if axis is not None and axis % 3 == 2 else idx[0, :, 0] % 3
        np.testing.assert_array_equal(gc.take(x, i, axis).eval({x: xv}), np.take(xv, i, axis))
    np.testing.assert_array_equal(gc.take_along_axis(x, idx, 1).eval({x: xv}),
                                  np.take_along_axis(xv, idx, 1))
    flat = rng.integers(-24, 24, 7)
    np.testing.assert_array_equal(gc.take_along_axis(x, flat, None).eval({x: xv}),
                                  np.take_along_axis(xv, flat, None))


def test_index_nodes_computed_in_the_graph(rng):
    g = gc.Graph()
    x = g.input("x", shape=(5, 2))
    k = g.input("k", shape=(3,), dtype="int32")
    y = x[k + 1] * x[k, 1][:, None]
    xv, kv = rng.standard_normal((5, 2)), np.array([0, 3, 0], np.int32)
    np.testing.assert_allclose(y.eval({x: xv, k: kv}), xv[kv + 1] * xv[kv, 1][:, None])
    gx = gc.grad(y.sum(), x).eval({x: xv, k: kv})
    want = np.zeros((5, 2))
    np.add.at(want, kv + 1, np.broadcast_to(xv[kv, 1][:, None], (3, 2)))
    np.add.at(want, (kv, 1), xv[kv + 1].sum(axis=1))
    np.testing.assert_allclose(gx, want, rtol=1e-14)


def test_symbolic_sizes(rng):
    g = gc.Graph()
    E = g.input("E", shape=("vocab", 3))
    ids = g.input("ids", shape=("n",), dtype="int64")
    gE = gc.grad(gc.sin(E[ids]).sum(), E)
    f = gc.function([E, ids], gE)
    for vocab, n in ((4, 6), (9, 2)):
        Ev, iv = rng.standard_normal((vocab, 3)), rng.integers(-vocab, vocab, n)
        want = np.zeros((vocab, 3))
        np.add.at(want, iv, np.cos(Ev[iv]))
        np.testing.assert_allclose(f(Ev, iv), want, rtol=1e-14)
    with pytest.raises(gc.InputError, match="out of bounds"):
        f(rng.standard_normal((4, 3)), np.array([0, 4]))


# -- the scatter kernel and its fallbacks ---------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int32"])
@pytest.mark.parametrize("fusion", ["1", "0"])
def test_scatter_kernel_and_fallbacks_match_np_add_at(rng, monkeypatch, dtype, fusion):
    monkeypatch.setenv("GRAPHC_FUSION", fusion)
    tol = 1e-6 if dtype == "float32" else 1e-15
    for pre in (2, 1):  # one leading slice: the bincount fallback for a large float64 scatter
        out = (rng.standard_normal((pre, 300, 20)) * 10).astype(dtype)
        ids = rng.integers(-300, 300, 250)
        v = (rng.standard_normal((pre, 250, 20)) * 10).astype(dtype)
        assert v.size >= indexing.KERNEL_MIN
        want = out.copy()
        np.add.at(want, (slice(None), ids), v)
        got = out.copy()
        indexing.scatter_add_rows(got, ids, v)
        # bincount sums each row's terms, then adds them to the base: the same to rounding
        np.testing.assert_allclose(got, want, rtol=tol if fusion == "1" else 1e-12)


def test_float32_embedding_stays_float32(rng):
    g = gc.Graph()
    E = g.input("E", shape=(50, 100), dtype="float32")
    ids = g.input("ids", shape=(64,), dtype="int64")
    gE = gc.grad((E[ids] * E[ids]).sum(), E)
    Ev, iv = rng.standard_normal((50, 100)).astype(np.float32), rng.integers(0, 50, 64)
    got = gc.function([E, ids], gE)(Ev, iv)
    want = np.zeros_like(Ev)
    np.add.at(want, iv, 2 * Ev[iv])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


# -- bad indices ----------------------------------------------------------------------------
def lookup():
    g = gc.Graph()
    E = g.input("E", shape=(V, D))
    ids = g.input("ids", shape=(4,), dtype="int64")
    y = E[ids]
    return E, ids, y, gc.grad((y * y).sum(), E)


@pytest.mark.parametrize("bad", [V, -V - 1, 2**62, -(2**63), np.iinfo(np.int64).max])
def test_out_of_range_ids_raise_input_error_naming_the_input(rng, bad):
    E, ids, y, gE = lookup()
    Ev = rng.standard_normal((V, D))
    iv = np.array([0, 1, bad, 2])
    for outputs in (y, gE, [y, gE]):  # the gather, the scatter alone, both
        for optimize in (True, False):
            f = gc.function([E, ids], outputs, optimize=optimize)
            with pytest.raises(gc.InputError, match=rf"'ids'.*index {bad} at position 2 is "
                                                    rf"out of bounds for axis 0 of size {V}"):
                f(Ev, iv)
    with pytest.raises(gc.InputError, match="'ids'"):
        y.eval({E: Ev, ids: iv})


def test_in_range_edges_are_accepted(rng):
    E, ids, y, gE = lookup()
    Ev = rng.standard_normal((V, D))
    iv = np.array([V - 1, -V, -1, 0])
    np.testing.assert_array_equal(gc.function([E, ids], y)(Ev, iv), Ev[iv])


def test_unsigned_and_huge_unsigned_indices(rng):
    g = gc.Graph()
    x = g.input("x", shape=(5,))
    u = g.input("u", shape=(2,), dtype="uint64")
    f = gc.function([x, u], [x[u], gc.grad(x[u].sum(), x)])
    xv = rng.standard_normal(5)
    got, grad = f(xv, np.array([4, 4], np.uint64))
    np.testing.assert_array_equal(got, xv[[4, 4]])
    np.testing.assert_array_equal(grad, [0, 0, 0, 0, 2.0])
    with pytest.raises(gc.InputError, match="'u'.*18446744073709551615"):
        f(xv, np.array([0, np.iinfo(np.uint64).max], np.uint64))


def test_each_op_names_the_bad_index_operand(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3, 4))
    rows = g.input("rows", shape=(2,), dtype="int64")
    cols = g.input("cols", shape=(2,), dtype="int64")
    seg = g.input("seg", shape=(3,), dtype="int64")
    pick = g.input("pick", shape=(1, 2), dtype="int64")
    xv = rng.standard_normal((3, 4))
    ok = np.array([0, 1])
    builds = {
        "pairs": (lambda: x[rows, cols], {rows: ok, cols: np.array([0, 4])}, "'cols'.*axis 1"),
        "pairs_rows": (lambda: x[rows, cols], {rows: np.array([-4, 0]), cols: ok},
                       "'rows'.*axis 0"),
        "at_add": (lambda: x.at[rows].add(1.0), {rows: np.array([3, 0])}, "'rows'"),
        "at_set": (lambda: x.at[:, cols].set(1.0), {cols: np.array([9, 0])}, "'cols'"),
        "along": (lambda: gc.take_along_axis(x, pick, 1), {pick: np.array([[0, 4]])},
                  "'pick'.*position \\(0, 1\\)"),
        "segment_sum": (lambda: gc.segment_sum(x, seg, 2), {seg: np.array([0, 2, 1])},
                        "'seg'.*num_segments of size 2"),
    }
    for make, feed, match in builds.values():
        y = make()
        with pytest.raises(gc.InputError, match=match):
            gc.function([x, *feed], y)(xv, *feed.values())
        if y.dtype.kind == "f":
            z = (y * y).sum()
            with pytest.raises(gc.InputError, match=match):
                gc.function([x, *feed], gc.grad(z, x))(xv, *feed.values())


def test_an_index_out_of_its_axis_never_lands_in_another_row():
    """Several advanced entries fold into one flat position (1 * 4 + 5 = 9 is inside the
    (3, 4) array); each is still checked against its own axis."""
    g = gc.Graph()
    x = g.input("x", shape=(3, 4))
    k = g.input("k", shape=(2,), dtype="int64")
    for y in (x.at[1, k].add(1.0), x.at[k, k].add(1.0), x[1, k], x.at[1, k].set(1.0)):
        with pytest.raises(gc.InputError, match="'k'.*index 5 at position 1 is out of bounds"):
            y.eval({x: np.zeros((3, 4)), k: np.array([0, 5])})
    s = g.input("s", shape=("n", 4))  # an int beside the array, checked only at run time
    for z in (s.at[-4, k].add(1.0), s.at[3, k].add(1.0)):
        with pytest.raises(gc.InputError, match="out of bounds"):
            z.eval({s: np.zeros((3, 4)), k: np.array([0, 1])})


def test_a_computed_index_is_named_by_its_node(rng):
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    k = g.input("k", shape=(2,), dtype="int64")
    shifted = k + 3
    with pytest.raises(gc.InputError, match=rf"'{shifted.name}' \(add\).*index 4"):
        x[shifted].eval({x: np.zeros(4), k: np.array([0, 1])})


def test_bad_constant_indices_are_shape_errors_at_build_time():
    g = gc.Graph()
    x = g.input("x", shape=(3, 4))
    positive = x > 0
    n = len(g.nodes)
    cases = [
        (lambda: x[np.array([0, 3])], "getitem.*index 3 .*axis 0 of size 3"),
        (lambda: x[:, [-5]], "index -5 .*axis 1 of size 4"),
        (lambda: x[[0, 1], [0, 2**62]], "index 4611686018427387904"),
        (lambda: gc.take(x, np.array([12])), "take.*index 12"),
        (lambda: gc.take_along_axis(x, np.array([[4]]), 1), "take_along_axis.*index 4"),
        (lambda: gc.segment_sum(x, np.array([0, 1, 5]), 5), "segment_sum.*index 5"),
        (lambda: x.at[[7]].add(1.0), "at_add.*index 7"),
        (lambda: x.at[[0], [-9]].set(1.0), "at_set.*index -9"),
        (lambda: x[np.array([0.0, 1.0])], "getitem.*must be integers.*float64"),
        (lambda: gc.take(x, [0.5]), "take.*must be integers"),
        (lambda: gc.segment_sum(x, np.array([0.0, 1, 1]), 2), "segment ids must be integers"),
        (lambda: x[positive], "boolean.*not supported"),
        (lambda: x[[0, 1], [0, 1, 2]], "do not broadcast"),
        (lambda: x[[0], [0], [0]], "too many indices"),
        (lambda: x[x], "must be integers, got float64 node 'x'"),
        (lambda: x.at[[0, 1]].add(np.ones(3)), "at_add.*do not broadcast to the indexed shape"),
        (lambda: gc.take_along_axis(x, np.array([0, 1]), 1), "rank of x"),
        (lambda: gc.segment_sum(x, np.array([0, 1]), 2), "one id per slice"),
        (lambda: gc.take(x, [0], axis=2), "axis 2 is out of range"),
        (lambda: x[[0], "a"], "cannot index with str"),
    ]
    for make, match in cases:
        with pytest.raises(gc.ShapeError, match=match):
            make()
        assert len(g.nodes) == n  # nothing half-built stays behind


def test_a_float_fed_as_indices_is_an_input_error(rng):
    E, ids, y, gE = lookup()
    with pytest.raises(gc.InputError, match="ids"):
        gc.function([E, ids], y)(rng.standard_normal((V, D)), np.array([0.0, 1.0, 2.0, 3.0]))


def test_a_constant_boolean_mask_is_its_nonzero_positions(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3, 4))
    mask = rng.random((3, 4)) > 0.5
    xv = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(x[mask].eval({x: xv}), xv[mask])
    np.testing.assert_array_equal(gc.grad(x[mask].sum(), x).eval({x: xv}), mask * 1.0)


# -- inspection -----------------------------------------------------------------------------
def test_labels_debugprint_dot_and_sympy(rng):
    import sympy

    g = gc.Graph()
    x = g.input("x", shape=(3, 4))
    y = x[[0, 2, 2], :1]
    z = gc.take(x, [1, 1], axis=1)
    s = x.at[[1, 1], [0, 3]].set(0.0)
    assert y.op.label() == "take(axis=0)"
    assert x[[0, 2], [1, 1]].op.label() == "gather(index=[idx0, idx1])"
    assert s.op.label() == "at_set(index=[idx0, idx1])"
    assert "at_set(index=[idx0, idx1])" in gc.debugprint(s)
    assert "gather" in gc.to_dot(gc.grad(gc.sin(x[[0, 2], [1, 1]]).sum(), x))
    X = np.array(gc.to_sympy(x).tolist(), dtype=object)  # the symbols x[i, j]
    assert np.array(gc.to_sympy(z)).tolist() == X[:, [1, 1]].tolist()
    gx = gc.grad((y * y).sum(), x)
    want = np.zeros((3, 4), dtype=object)
    np.add.at(want, ([0, 2, 2], slice(0, 1)), 2 * X[[0, 2, 2], :1])
    got = np.array(gc.to_sympy(gx), dtype=object)
    assert all(sympy.simplify(a - b) == 0 for a, b in zip(got.ravel(), want.ravel()))
    k = g.input("k", shape=(2,), dtype="int64")
    with pytest.raises(gc.GraphError, match="constant indices"):
        gc.to_sympy(x[k])
    w = g.input("w", shape=(2,))
    gw = gc.grad((x.at[[1, 1], [3, 3]].set(w) * (1.0 + x)).sum(), w)  # through last_write
    W = gc.to_sympy(x)
    assert list(gc.to_sympy(gw)) == [0, 1 + W[1, 3]]  # the first write is overwritten


def test_jvp_matches_vjp_through_the_updates(rng):
    """The dot-product test <u, J t> = <J^T u, t> on a program using every op of the family."""
    g = gc.Graph()
    x = g.input("x", shape=(4, 3))
    v = g.input("v", shape=(2, 3))
    y = x.at[[1, 1]].set(gc.sin(v)).at[[0, 3, 0]].add(x[[2, 2, 1]] * x[[0, 0, 0], [1, 2, 2]]
                                                        [:, None])
    y = gc.take_along_axis(y, np.array([[0, 0, 2]]), 1) + gc.segment_sum(y, [1, 0, 1, 1], 2)[:1]
    xv, vv = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    tx, tv = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    u = rng.standard_normal(y.shape)
    jt = gc.jvp(y, [x, v], [g.constant(tx), g.constant(tv)])
    jtu = gc.vjp(y, [x, v], g.constant(u))
    jt_val, ax, av = gc.function([x, v], [jt, *jtu])(xv, vv)
    assert np.sum(u * jt_val) == pytest.approx(np.sum(ax * tx) + np.sum(av * tv), rel=1e-12)
    gc.check_grad(y.sum() ** 2, [x, v], at={x: xv, v: vv}, order=2)
