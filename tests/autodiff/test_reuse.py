"""Asking twice for a derivative reuses what the first call built (issue 12, finding 15).

The graph is append-only, so `grad`, `vjp`, `jvp`, `hvp`, `jacobian`, `hessian` and the Krylov
adapters remember their nodes per graph; an entry never outlives the nodes it names (a failed
transaction or a scratch block removes them). Values are checked against finite differences
and hand-derived formulas.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


def loss_graph():
    """z = sum(exp(x) * x) + sum(x**2 * w): gradient (1 + x) e^x + 2 x w in x."""
    g = gc.Graph("reuse")
    x = g.input("x", shape=(3,))
    w = g.input("w", shape=(3,))
    z = (gc.exp(x) * x).sum() + (x * x * w).sum()
    return g, x, w, z


def f_numpy(xv, wv):
    return float(np.sum(np.exp(xv) * xv) + np.sum(xv * xv * wv))


def fd_grad(xv, wv, h=1e-6):
    out = np.zeros_like(xv)
    for k in range(xv.size):
        e = np.zeros_like(xv)
        e[k] = h
        out[k] = (f_numpy(xv + e, wv) - f_numpy(xv - e, wv)) / (2 * h)
    return out


def hess_by_hand(xv, wv):
    return np.diag((2 + xv) * np.exp(xv) + 2 * wv)


def same(a, b) -> bool:
    """Identity, item by item for lists (a node's `==` builds a node)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(p, q) for p, q in zip(a, b))
    return a is b


def in_graph(g, n) -> bool:
    return any(m is n for m in g.nodes)


XV = np.array([0.3, -0.7, 1.1])
WV = np.array([0.5, 2.0, -1.0])


def test_two_hundred_identical_grads_add_nodes_once():
    g, x, w, z = loss_graph()
    first = gc.grad(z, x)
    size = len(g.nodes)
    results = [gc.grad(z, x) for _ in range(200)]
    assert len(g.nodes) == size
    assert all(r is first for r in results)
    np.testing.assert_allclose(first.eval({x: XV, w: WV}), fd_grad(XV, WV), rtol=1e-7)
    # a list in gives a fresh list out, of the same nodes, each call
    gl = gc.grad(z, [x, w])
    size = len(g.nodes)
    again = gc.grad(z, [x, w])
    assert len(g.nodes) == size and same(again, gl) and again is not gl
    again.append(None)  # mutating a returned list does not corrupt the memo
    assert len(gc.grad(z, [x, w])) == 2
    np.testing.assert_allclose(gc.eval(gl[1], {x: XV, w: WV}), XV ** 2)


def test_second_order_grads_are_reused_too():
    g, x, w, z = loss_graph()
    gx = gc.grad(z, x)
    s = gx.sum()
    h1 = gc.grad(s, x)
    size = len(g.nodes)
    for _ in range(50):
        assert gc.grad(z, x) is gx and gc.grad(s, x) is h1
    assert len(g.nodes) == size
    np.testing.assert_allclose(h1.eval({x: XV, w: WV}), hess_by_hand(XV, WV).sum(0))


def test_options_are_part_of_the_key():
    g, x, w, z = loss_graph()
    y = g.input("y", shape=(3,))
    zero = gc.grad(z, y)
    assert gc.grad(z, y) is zero
    np.testing.assert_array_equal(zero.eval({x: XV, w: WV, y: XV}), np.zeros(3))
    with pytest.raises(gc.DisconnectedError):
        gc.grad(z, y, disconnected="raise")
    v = g.constant(np.array([1.0, 0.0, 2.0]))
    fwd = gc.hvp(z, x, v, mode="forward")
    rev = gc.hvp(z, x, v, mode="reverse")
    assert fwd is not rev
    assert gc.hvp(z, x, v, mode="forward") is fwd and gc.hvp(z, x, v, mode="reverse") is rev
    want = hess_by_hand(XV, WV) @ np.array([1.0, 0.0, 2.0])
    np.testing.assert_allclose(gc.eval([fwd, rev], {x: XV, w: WV}), [want, want])


def test_vjp_jvp_hvp_jacobian_hessian_with_node_arguments_are_reused():
    g, x, w, z = loss_graph()
    y = gc.exp(x) * w
    u = g.input("u", shape=(3,))
    v = g.input("v", shape=(3,))
    calls = [lambda: gc.vjp(y, x, u), lambda: gc.jvp(y, x, v), lambda: gc.hvp(z, x, v),
             lambda: gc.jacobian(y, x), lambda: gc.hessian(z, x),
             lambda: gc.hvp(z, [x, w], [v, u])]
    firsts = [c() for c in calls]
    size = len(g.nodes)
    for c, first in zip(calls, firsts):
        for _ in range(10):
            again = c()
            assert same(again, first)
    assert len(g.nodes) == size
    uv, vv = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.1, -1.0])
    feed = {x: XV, w: WV, u: uv, v: vv}
    J = np.diag(np.exp(XV) * WV)
    H = hess_by_hand(XV, WV)
    np.testing.assert_allclose(firsts[0].eval(feed), J.T @ uv)
    np.testing.assert_allclose(firsts[1].eval(feed), J @ vv)
    np.testing.assert_allclose(firsts[2].eval(feed), H @ vv)
    np.testing.assert_allclose(firsts[3].eval(feed), J)
    np.testing.assert_allclose(firsts[4].eval(feed), H)
    # the mixed blocks: d2z/dxdw = diag(2x), d2z/dw2 = 0
    hx, hw = gc.eval(firsts[5], feed)
    np.testing.assert_allclose(hx, H @ vv + 2 * XV * uv)
    np.testing.assert_allclose(hw, 2 * XV * vv)


def test_twenty_hessian_operators_add_inputs_once():
    g, x, w, z = loss_graph()
    H0 = gc.hessian_operator(z, x, at={x: XV, w: WV})
    n_inputs, n_nodes = len(g.inputs), len(g.nodes)
    points = [XV + 0.1 * k for k in range(20)]
    for xv in points:
        H = gc.hessian_operator(z, x, at={x: xv, w: WV})
        assert len(g.inputs) == n_inputs and len(g.nodes) == n_nodes
        e = np.eye(3)
        dense = np.column_stack([H @ e[k] for k in range(3)])
        np.testing.assert_allclose(dense, hess_by_hand(xv, WV), rtol=1e-12)
    # objective shares what hessian_operator built; its gradient against finite differences
    obj = gc.objective(z, x, at={x: XV, w: WV})
    assert len(g.inputs) == n_inputs and len(g.nodes) == n_nodes
    np.testing.assert_allclose(obj.jac(XV), fd_grad(XV, WV), rtol=1e-7)
    p = np.array([0.5, -1.0, 2.0])
    h = 1e-5
    fd_hessp = (fd_grad(XV + h * p, WV, 1e-4) - fd_grad(XV - h * p, WV, 1e-4)) / (2 * h)
    np.testing.assert_allclose(obj.hessp(XV, p), fd_hessp, rtol=1e-4)
    np.testing.assert_allclose(H0 @ p, hess_by_hand(XV, WV) @ p)


def test_objectives_on_the_same_loss_reuse_their_nodes():
    g, x, w, z = loss_graph()
    gc.objective(z, [x, w], at={x: XV, w: WV})
    n_inputs, n_nodes = len(g.inputs), len(g.nodes)
    for _ in range(20):
        obj = gc.objective(z, [x, w], at={x: XV, w: WV})
    assert (len(g.inputs), len(g.nodes)) == (n_inputs, n_nodes)
    np.testing.assert_allclose(obj.fun(obj.x0), f_numpy(XV, WV))


def test_an_entry_does_not_outlive_a_scratch_block():
    g, x, w, z = loss_graph()
    with g.scratch():
        inside = gc.grad(z, x)
    assert not in_graph(g, inside)  # removed with the scratch block
    g.input("filler", shape=(3,))  # new nodes take the removed ones' indices
    gc.exp(x)
    after = gc.grad(z, x)
    assert after is not inside
    assert g.nodes[after.index] is after
    np.testing.assert_allclose(after.eval({x: XV, w: WV}), fd_grad(XV, WV), rtol=1e-7)


def test_an_entry_does_not_outlive_a_failed_transaction():
    g, x, w, z = loss_graph()
    with pytest.raises(RuntimeError):
        with g.transaction():
            built = gc.grad(z, x)
            gc.hessian_operator(z, x, at={x: XV, w: WV})
            raise RuntimeError("roll back")
    assert not in_graph(g, built)
    n_inputs = len(g.inputs)
    again = gc.grad(z, x)
    assert g.nodes[again.index] is again
    np.testing.assert_allclose(again.eval({x: XV, w: WV}), fd_grad(XV, WV), rtol=1e-7)
    H = gc.hessian_operator(z, x, at={x: XV, w: WV})
    assert len(g.inputs) > n_inputs  # built again: the rolled-back inputs were gone
    np.testing.assert_allclose(H @ np.ones(3), hess_by_hand(XV, WV) @ np.ones(3))


def test_entries_survive_a_check_grad_and_a_mode_choice():
    g, x, w, z = loss_graph()
    gx = gc.grad(z, x)
    gc.check_grad(z, x, at={x: XV, w: WV})   # builds and removes probes in a scratch block
    gc.hvp(z, x, g.constant(np.ones(3)))      # chooses its mode in a scratch block
    size = len(g.nodes)
    assert gc.grad(z, x) is gx and len(g.nodes) == size


def test_graphs_sharing_indices_do_not_share_entries():
    g1, x1, w1, z1 = loss_graph()
    g2 = gc.Graph("other")
    x2 = g2.input("x", shape=(3,))
    w2 = g2.input("w", shape=(3,))
    z2 = (gc.sin(x2) * w2).sum() + (x2 * x2 * w2).sum()   # same indices as z1, other formula
    assert (x1.index, z1.index) == (x2.index, z2.index)
    gc.grad(z1, x1)
    g2x = gc.grad(z2, x2)
    assert g2x.graph is g2
    np.testing.assert_allclose(g2x.eval({x2: XV, w2: WV}), np.cos(XV) * WV + 2 * XV * WV)
