"""build_grad (Algorithms 6.5 and 6.6): structure, values, scale."""

from __future__ import annotations

import time

import numpy as np
import pytest

import graphc as gc
from graphc.autodiff.reverse import prune


def test_pruned_graph_is_ancestors_of_z_that_descend_from_targets():
    g = gc.Graph()
    a, b, c = (g.input(n) for n in "abc")
    u = a * b          # descends from a
    v = gc.sin(c)      # does not descend from a
    z = u + v
    w = a * 2.0        # not an ancestor of z
    pruned = prune(z, [a])
    assert set(pruned) == {a, u, z}
    assert w not in set(pruned)


def test_contributions_are_summed_by_one_n_ary_node():
    g = gc.Graph()
    x = g.input("x")
    z = gc.sin(x) + gc.cos(x) + gc.exp(x) + x * 3.0
    gx = gc.grad(z, x)
    assert gx.op.name == "add_n" and len(gx.inputs) == 4
    assert not any(n.op.name == "add" for n in g.nodes if n.role == "grad")
    val = gx.eval({x: 0.7})
    assert float(val) == pytest.approx(np.cos(0.7) - np.sin(0.7) + np.exp(0.7) + 3.0, rel=1e-15)


def test_bprop_treats_repeated_inputs_as_distinct():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    gx = gc.grad((x * x).sum(), x)
    np.testing.assert_array_equal(gx.eval({x: np.array([1.0, -2.0, 3.0])}), [2.0, -4.0, 6.0])


def test_gradient_nodes_are_marked_and_named():
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    h = gc.tanh(x)
    z = h.sum()
    g.rename(z, "z")
    n_forward = len(g.nodes)
    gx = gc.grad(z, x)
    assert all(n.role == "forward" for n in g.nodes[:n_forward])
    assert all(n.role == "grad" for n in g.nodes[n_forward:])
    assert gx.name == "dz/dx"
    assert "dz/dz" in {n.name for n in g.nodes}
    nx_graph = g.to_networkx()
    assert nx_graph.nodes["dz/dx"]["role"] == "grad"


def test_every_gradient_is_built_once():
    g = gc.Graph()
    x = g.input("x")
    h = gc.sin(x)
    z = h * h + h * 2.0 + gc.exp(h)
    before = len(g.nodes)
    gc.grad(z, x)
    # three consumers of h -> one add_n for dz/dh; one bprop per edge.
    adds = [n for n in g.nodes[before:] if n.op.name == "add_n"]
    assert len(adds) == 1 and len(adds[0].inputs) == 4  # h*h counts twice
    assert len(g.nodes) - before < 20


def test_list_in_list_out_and_disconnected_targets():
    g = gc.Graph()
    x, y, w = g.input("x", shape=(2,)), g.input("y", shape=(2,)), g.input("w", shape=(3,))
    z = (x * y).sum()
    gx, gw, gy = gc.grad(z, [x, w, y])
    xv, yv = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    f = gc.function([x, y, w], [gx, gw, gy])
    got = f(xv, yv, np.ones(3))
    np.testing.assert_array_equal(got[0], yv)
    np.testing.assert_array_equal(got[1], np.zeros(3))
    np.testing.assert_array_equal(got[2], xv)
    with pytest.raises(gc.DisconnectedError, match="'w'"):
        gc.grad(z, w, disconnected="raise")


def test_stop_gradient_blocks_flow():
    g = gc.Graph()
    x = g.input("x")
    z = gc.stop_gradient(x * x) * x
    assert float(gc.grad(z, x).eval({x: 3.0})) == 9.0
    with pytest.raises(gc.DisconnectedError):
        gc.grad(gc.stop_gradient(x) * 2.0, x, disconnected="raise")


def test_broadcast_is_undone_where_contribution_meets_smaller_input():
    g = gc.Graph()
    X = g.input("X", shape=(5, 3))
    b = g.input("b", shape=(3,))
    s = g.input("s")
    z = gc.sum(gc.tanh(X + b) * s)
    gb, gs = gc.grad(z, [b, s])
    assert gb.shape == (3,) and gs.shape == ()
    Xv, bv, sv = np.random.default_rng(1).standard_normal((5, 3)), np.ones(3), 2.0
    got_b, got_s = gc.function([X, b, s], [gb, gs])(Xv, bv, sv)
    t = np.tanh(Xv + bv)
    np.testing.assert_allclose(got_b, (sv * (1 - t * t)).sum(0), rtol=1e-14)
    np.testing.assert_allclose(got_s, t.sum(), rtol=1e-14)


def test_vjp_generalises_grad_to_non_scalar_outputs():
    g = gc.Graph()
    W = g.input("W", shape=(3, 4))
    x = g.input("x", shape=(4,))
    y = gc.tanh(W @ x)
    u = np.array([1.0, -2.0, 0.5])
    Wv, xv = np.arange(12.0).reshape(3, 4) / 10, np.array([0.1, -0.2, 0.3, 0.4])
    gx = gc.vjp(y, x, u).eval({W: Wv, x: xv})
    t = np.tanh(Wv @ xv)
    np.testing.assert_allclose(gx, Wv.T @ (u * (1 - t * t)), rtol=1e-14)


def test_higher_orders_by_repeated_grad_match_closed_form():
    g = gc.Graph()
    x = g.input("x")
    d = gc.sin(x) * gc.exp(x)
    derivs = []
    for _ in range(4):
        d = gc.grad(d, x)
        derivs.append(d)
    xv = 0.3
    # d^n/dx^n e^x sin x = 2^(n/2) e^x sin(x + n pi/4)
    for n, node in enumerate(derivs, start=1):
        want = 2 ** (n / 2) * np.exp(xv) * np.sin(xv + n * np.pi / 4)
        assert float(node.eval({x: xv})) == pytest.approx(want, rel=1e-13)


def diamond_ladder(depth: int):
    """x_{k+1} = sin(x_k) + cos(x_k): 2^depth paths from x_0 to x_depth."""
    g = gc.Graph("ladder")
    x0 = g.input("x0")
    x = x0
    for _ in range(depth):
        x = gc.sin(x) + gc.cos(x)
    return g, x0, x


def test_diamond_ladder_gradient_is_exact_and_its_graph_grows_linearly():
    sizes = {}
    for depth in (10, 20, 40):
        g, x0, z = diamond_ladder(depth)
        before = len(g.nodes)
        gx = gc.grad(z, x0)
        sizes[depth] = len(g.nodes) - before
        xs = [0.4]
        for _ in range(depth):
            xs.append(np.sin(xs[-1]) + np.cos(xs[-1]))
        want = np.prod([np.cos(v) - np.sin(v) for v in xs[:-1]])
        assert float(gx.eval({x0: 0.4})) == pytest.approx(want, rel=1e-12)
    assert sizes[40] - sizes[20] == 2 * (sizes[20] - sizes[10])  # exactly c * depth + k


def test_chain_of_100k_nodes_differentiates_without_recursion():
    g = gc.Graph("chain")
    x = g.input("x")
    y = x
    n = 100_000
    for _ in range(n):
        y = y * 0.99999 + 1e-5
    assert len(g.nodes) > 2 * n
    start = time.perf_counter()
    gx = gc.grad(y, x)
    assert time.perf_counter() - start < 60
    assert float(gx.eval({x: 1.0})) == pytest.approx(0.99999 ** n, rel=1e-9)


def test_failed_grad_leaves_the_graph_as_it_was():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    z = gc.tanh(x)
    k = g.input("k", dtype="int64")
    s = z.sum()
    n = len(g.nodes)
    with pytest.raises(gc.ShapeError, match=r"scalar.*\(3,\)"):
        gc.grad(z, x)
    with pytest.raises(gc.GraphError, match="float"):
        gc.grad(s, [x, k])
    with pytest.raises(gc.GraphError, match="graph"):
        gc.grad(s, gc.Graph("other").input("x"))
    assert len(g.nodes) == n


def test_check_grad_handles_symbolic_shapes():
    g = gc.Graph()
    X = g.input("X", shape=("batch", "n"))
    W = g.input("W", shape=("n", 2))
    z = gc.tanh(X @ W)
    rng = np.random.default_rng(0)
    at = {X: rng.standard_normal((4, 3)), W: rng.standard_normal((3, 2))}
    n = len(g.nodes)
    assert gc.check_grad(z, [X, W], at=at, order=2) < 1e-6
    assert len(g.nodes) == n  # the check's own nodes are removed again


# -- issue 12, finding 24: `where` chooses the value, not the derivative's NaN -------------
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning",
                            "ignore:divide by zero:RuntimeWarning")
def test_where_needs_a_safe_inner_value_for_a_finite_gradient():
    """The gradient of where(c, a, b) is where(c, g, 0) for a: at x = 0 the unchosen branch
    sqrt(x) still has the derivative 1 / (2 sqrt(0)) = inf, and inf * 0 is NaN (as in JAX).
    The double-where idiom of docs/ops.md feeds sqrt a safe value where it is not chosen."""
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    naive = gc.where(x > 0, gc.sqrt(x), 0 * x)
    safe = gc.where(x > 0, gc.sqrt(gc.where(x > 0, x, 1.0)), 0.0)
    xv = np.array([0.0, 0.25, 1.0, -2.0])
    g_naive, g_safe = gc.eval([gc.grad(naive.sum(), x), gc.grad(safe.sum(), x)], {x: xv})
    assert np.isnan(g_naive[0])
    np.testing.assert_allclose(safe.eval({x: xv}), [0.0, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(g_safe, [0.0, 1.0, 0.5, 0.0])  # 1 / (2 sqrt(x)) where x > 0
    h = 1e-6
    inner = xv[1:3]
    np.testing.assert_allclose(g_safe[1:3], (np.sqrt(inner + h) - np.sqrt(inner - h)) / (2 * h),
                               rtol=1e-6)
    assert np.isfinite(gc.grad(gc.grad(safe.sum(), x).sum(), x).eval({x: xv})).all()


# -- issue 12, finding 16: softmax_cross_entropy's declared dtype is the computed one ------
@pytest.mark.parametrize("logits_dtype", ["float32", "float64"])
@pytest.mark.parametrize("labels_kind", ["float32", "float64", "int64", "int32"])
def test_softmax_cross_entropy_declares_the_dtype_it_computes(logits_dtype, labels_kind):
    rng = np.random.default_rng(3)
    g = gc.Graph()
    logits = g.input("logits", shape=(4, 3), dtype=logits_dtype)
    ids = np.array([0, 2, 1, 2])
    if labels_kind.startswith("int"):
        labels = g.input("labels", shape=(4,), dtype=labels_kind)
        lv = ids.astype(labels_kind)
        want_dtype = np.dtype(logits_dtype)
    else:
        labels = g.input("labels", shape=(4, 3), dtype=labels_kind)
        lv = np.eye(3, dtype=labels_kind)[ids]
        want_dtype = np.result_type(logits_dtype, labels_kind)  # NumPy promotion
    loss = gc.softmax_cross_entropy(logits, labels)
    gl = gc.grad(loss.sum(), logits)
    xv = rng.standard_normal((4, 3)).astype(logits_dtype)
    feed = {logits: xv, labels: lv}
    assert loss.dtype == want_dtype
    for optimize in (True, False):
        value, grad_value = gc.function([logits, labels], [loss, gl], optimize=optimize)(xv, lv)
        assert value.dtype == loss.dtype
        assert grad_value.dtype == gl.dtype == np.dtype(logits_dtype)
    x64 = xv.astype(np.float64)
    log_p = x64 - np.log(np.exp(x64).sum(-1, keepdims=True))
    tol = 1e-6 if want_dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gc.eval(loss, feed), -log_p[np.arange(4), ids], rtol=tol)
    gtol = 1e-6 if logits_dtype == "float32" else 1e-12  # the gradient has the logits' dtype
    np.testing.assert_allclose(gc.eval(gl, feed), np.exp(log_p) - np.eye(3)[ids],
                               rtol=gtol, atol=gtol)


def test_integer_label_cross_entropy_over_a_symbolic_class_axis(tmp_path):
    """one_hot's depth is then a symbolic size: a parameter kind that allows it, and a file
    that keeps it (found by the backprop notebook after parameter kinds were declared)."""
    g = gc.Graph()
    L = g.input("L", shape=("m", "k"))
    y = g.input("y", shape=("m",), dtype="int64")
    gL = gc.grad(gc.softmax_cross_entropy(L, y).mean(), L)
    Lv = np.random.default_rng(0).standard_normal((4, 3))
    yv = np.array([0, 2, 1, 1])
    p = np.exp(Lv - Lv.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = (p - np.eye(3)[yv]) / 4
    np.testing.assert_allclose(gc.function([L, y], gL)(Lv, yv), want, rtol=1e-13)
    g2 = gc.load(gc.save(g, tmp_path / "g.json"))
    np.testing.assert_allclose(gc.function([g2["L"], g2["y"]], g2[gL.name])(Lv, yv), want,
                               rtol=1e-13)


def test_gradient_nodes_carry_the_users_line_that_asked_for_them():
    # found once per call (Graph.built_at), never a frame of graphc or of contextlib
    import inspect

    g = gc.Graph()
    x = g.input("x", shape=(3,))
    z = gc.sum(gc.tanh(x) * x)
    mark = len(g.nodes)
    line = inspect.currentframe().f_lineno + 1
    gx, hv = gc.grad(z, x), gc.hvp(z, x, g.input("v", shape=(3,)))
    new = [n for n in g.nodes[mark:] if n.op.name != "input"]
    assert {id(gx), id(hv)} <= {id(n) for n in new}  # by identity: `==` on nodes builds one
    assert {n.source for n in new} == {f"{__file__}:{line}"}
