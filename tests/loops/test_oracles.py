"""Loops against independent oracles: backprop through time written by hand in NumPy, the exact
discrete sensitivity of an RK4 integrator, Newton's iteration for sqrt(a) against calculus, the
branch a `cond` takes, and nested scans against central differences and their unrolled graph."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from tests.loops.unroll import close, unrolled_scan

# -- Elman RNN, 50 steps, against backprop through time in NumPy ---------------------------------
T_RNN, D_IN, D_H, D_OUT = 50, 3, 5, 2


def _rnn_values(rng):
    return {
        "W": 0.6 * rng.standard_normal((D_H, D_H)) / np.sqrt(D_H),
        "U": rng.standard_normal((D_H, D_IN)) / np.sqrt(D_IN),
        "b": 0.1 * rng.standard_normal(D_H),
        "V": rng.standard_normal((D_OUT, D_H)),
        "h0": 0.5 * rng.standard_normal(D_H),
        "X": rng.standard_normal((T_RNN, D_IN)),
        "Y": rng.standard_normal((T_RNN, D_OUT)),
    }


def _numpy_bptt(W, U, b, V, h0, X, Y):
    """loss = sum_t 0.5 ||V h_t - y_t||^2 and its gradients, by backprop through time."""
    hs = [h0]
    for t in range(len(X)):
        hs.append(np.tanh(W @ hs[-1] + U @ X[t] + b))
    es = [V @ hs[t + 1] - Y[t] for t in range(len(X))]
    loss = 0.5 * sum(float(e @ e) for e in es)
    dW, dU, db, dV = (np.zeros_like(a) for a in (W, U, b, V))
    dh_next = np.zeros_like(h0)
    for t in reversed(range(len(X))):
        h, h_prev = hs[t + 1], hs[t]
        dV += np.outer(es[t], h)
        dh = V.T @ es[t] + dh_next
        da = dh * (1.0 - h * h)
        dW += np.outer(da, h_prev)
        dU += np.outer(da, X[t])
        db += da
        dh_next = W.T @ da
    return loss, {"W": dW, "U": dU, "b": db, "V": dV, "h0": dh_next}


def _rnn_graph(checkpoint="all"):
    g = gc.Graph("elman")
    W = g.input("W", shape=(D_H, D_H))
    U = g.input("U", shape=(D_H, D_IN))
    b = g.input("b", shape=(D_H,))
    V = g.input("V", shape=(D_OUT, D_H))
    h0 = g.input("h0", shape=(D_H,))
    X = g.input("X", shape=(T_RNN, D_IN))
    Y = g.input("Y", shape=(T_RNN, D_OUT))

    def step(h, xy):
        x, y = xy
        h_new = gc.tanh(W @ h + U @ x + b)
        e = V @ h_new - y
        return h_new, 0.5 * gc.sum(e * e)

    _, losses = gc.scan(step, h0, (X, Y), checkpoint=checkpoint)
    return [W, U, b, V, h0, X, Y], gc.sum(losses)


@pytest.mark.parametrize("checkpoint", ["all", "sqrt", "none"])
def test_elman_rnn_gradients_match_numpy_bptt(rng, checkpoint):
    vals = _rnn_values(rng)
    ins, loss = _rnn_graph(checkpoint)
    params = ins[:5]
    grads = gc.grad(loss, params)
    f = gc.function(ins, [loss, *grads])
    got = f(*(vals[x.name] for x in ins))
    want_loss, want = _numpy_bptt(*(vals[x.name] for x in ins))
    close(got[0], want_loss)
    for p, gv in zip(params, got[1:]):
        close(gv, want[p.name])


def test_elman_rnn_jvp_and_hvp_match_numpy_bptt(rng):
    """Forward mode against <BPTT gradient, v>; both HVP modes against central differences of
    the hand-written BPTT gradient (an O(eps^2) oracle)."""
    vals = _rnn_values(rng)
    ins, loss = _rnn_graph()
    params = ins[:5]
    g = loss.graph
    vs = {p.name: rng.standard_normal(vals[p.name].shape) for p in params}
    v_nodes = [g.constant(vs[p.name]) for p in params]
    jv = gc.jvp(loss, params, v_nodes)
    hv_rev = gc.hvp(loss, params, v_nodes, mode="reverse")
    hv_fwd = gc.hvp(loss, params, v_nodes, mode="forward")
    f = gc.function(ins, [jv, *hv_rev, *hv_fwd])
    got = f(*(vals[x.name] for x in ins))
    names = [p.name for p in params]
    _, grad = _numpy_bptt(*(vals[x.name] for x in ins))
    close(got[0], sum(float(np.sum(grad[n] * vs[n])) for n in names))
    eps = 1e-5

    def grad_at(sign):
        moved = dict(vals)
        for n in names:
            moved[n] = vals[n] + sign * eps * vs[n]
        return _numpy_bptt(*(moved[x.name] for x in ins))[1]

    plus, minus = grad_at(1.0), grad_at(-1.0)
    for k, n in enumerate(names):
        want = (plus[n] - minus[n]) / (2 * eps)
        close(got[1 + k], want, rtol=1e-7)
        close(got[1 + len(names) + k], want, rtol=1e-7)
        close(got[1 + k], got[1 + len(names) + k])


# -- RK4 on a damped oscillator, 200 steps, against the exact discrete sensitivity ---------------
N_RK, H_RK = 200, 0.05


def _A(omega, zeta):
    return np.array([[0.0, 1.0], [-omega ** 2, -2.0 * zeta * omega]])


def _rk4_matrix_and_derivs(omega, zeta, h):
    """M = sum_j (hA)^j / j! (j <= 4), and dM/domega, dM/dzeta by the product rule on A^j."""
    A = _A(omega, zeta)
    dA = {"omega": np.array([[0.0, 0.0], [-2.0 * omega, -2.0 * zeta]]),
          "zeta": np.array([[0.0, 0.0], [0.0, -2.0 * omega]])}
    P = [np.linalg.matrix_power(A, j) for j in range(5)]
    M = sum(h ** j / np.prod(np.arange(1, j + 1)) * P[j] for j in range(5))
    dM = {}
    for key, D in dA.items():
        dM[key] = sum(h ** j / np.prod(np.arange(1, j + 1))
                      * sum(P[i] @ D @ P[j - 1 - i] for i in range(j)) for j in range(1, 5))
    return M, dM


def _rk4_graph():
    g = gc.Graph("rk4")
    theta = g.input("theta", shape=(2,))
    x0 = g.input("x0", shape=(2,))
    omega, zeta = theta[0], theta[1]
    zero = 0.0 * omega
    A = gc.stack([gc.stack([zero, zero + 1.0]),
                  gc.stack([-omega * omega, -2.0 * zeta * omega])])

    def rk4_step(i, x):
        k1 = A @ x
        k2 = A @ (x + 0.5 * H_RK * k1)
        k3 = A @ (x + 0.5 * H_RK * k2)
        k4 = A @ (x + H_RK * k3)
        return x + (H_RK / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    xN = gc.fori_loop(0, N_RK, rk4_step, x0)
    return theta, x0, xN


def test_rk4_final_state_gradient_matches_discrete_sensitivity():
    omega, zeta = 1.3, 0.15
    x0v = np.array([1.0, -0.4])
    c = np.array([0.7, -1.1])
    theta, x0, xN = _rk4_graph()
    loss = gc.sum(xN * xN.graph.constant(c)) + 0.5 * gc.sum(xN * xN)
    g_theta, g_x0 = gc.grad(loss, [theta, x0])
    J_x0 = gc.jacobian(xN, x0)
    J_theta = gc.jacobian(xN, theta)
    f = gc.function([theta, x0], [xN, g_theta, g_x0, J_x0, J_theta])
    got = f(np.array([omega, zeta]), x0v)

    M, dM = _rk4_matrix_and_derivs(omega, zeta, H_RK)
    MN = np.linalg.matrix_power(M, N_RK)
    xN_want = MN @ x0v
    pw = [np.linalg.matrix_power(M, k) for k in range(N_RK)]
    dxN = {key: sum(pw[k] @ D @ pw[N_RK - 1 - k] for k in range(N_RK)) @ x0v
           for key, D in dM.items()}
    dL_dxN = c + xN_want
    close(got[0], xN_want)
    close(got[1], [dL_dxN @ dxN["omega"], dL_dxN @ dxN["zeta"]])
    close(got[2], MN.T @ dL_dxN)
    close(got[3], MN)
    close(got[4], np.stack([dxN["omega"], dxN["zeta"]], axis=1))
    # the oscillator really is damped and really moved: the oracle is not trivially zero
    assert np.linalg.norm(xN_want) < 0.5 * np.linalg.norm(x0v)
    assert np.min(np.abs(got[1])) > 1e-3


def test_rk4_forward_mode_matches_discrete_sensitivity():
    omega, zeta = 0.9, 0.3
    x0v = np.array([0.2, 1.0])
    theta, x0, xN = _rk4_graph()
    v = np.array([0.4, -1.5])
    t = gc.jvp(xN, theta, theta.graph.constant(v))
    got = gc.function([theta, x0], t)(np.array([omega, zeta]), x0v)
    M, dM = _rk4_matrix_and_derivs(omega, zeta, H_RK)
    pw = [np.linalg.matrix_power(M, k) for k in range(N_RK)]
    D = v[0] * dM["omega"] + v[1] * dM["zeta"]
    close(got, sum(pw[k] @ D @ pw[N_RK - 1 - k] for k in range(N_RK)) @ x0v)


# -- Newton's iteration for sqrt(a) in a while loop ---------------------------------------------
def _newton_sqrt(max_steps):
    g = gc.Graph("newton")
    a = g.input("a")

    def not_converged(x):
        return gc.abs(x * x - a) > 1e-13 * a

    def newton(x):
        return 0.5 * (x + a / x)

    return a, gc.while_loop(not_converged, newton, 1.0 + 0.0 * a, max_steps=max_steps)


@pytest.mark.parametrize("a_val", [0.3, 2.0, 17.0])
def test_newton_sqrt_value_and_derivatives(a_val):
    a, r = _newton_sqrt(max_steps=60)
    d1 = gc.grad(r, a)
    d2 = gc.grad(d1, a)
    f = gc.function([a], [r, d1, d2])
    got = f(a_val)
    close(got[0], np.sqrt(a_val), rtol=1e-13)  # |x^2 - a| <= 1e-13 a
    close(got[1], 1.0 / (2.0 * np.sqrt(a_val)), rtol=1e-10)
    close(got[2], -1.0 / (4.0 * a_val ** 1.5), rtol=1e-9)


def test_newton_sqrt_forward_mode_needs_no_max_steps():
    a, r = _newton_sqrt(max_steps=None)
    t1 = gc.jvp(r, a, a.graph.constant(1.0))
    t2 = gc.jvp(t1, a, a.graph.constant(1.0))
    f = gc.function([a], [r, t1, t2])
    for a_val in (0.5, 9.0):
        got = f(a_val)
        close(got[0], np.sqrt(a_val), rtol=1e-13)  # |x^2 - a| <= 1e-13 a
        close(got[1], 1.0 / (2.0 * np.sqrt(a_val)), rtol=1e-10)
        close(got[2], -1.0 / (4.0 * a_val ** 1.5), rtol=1e-9)


def test_newton_sqrt_of_a_vector_jacobian_and_hessian_are_diagonal():
    g = gc.Graph("newton_vec")
    a = g.input("a", shape=(3,))
    r = gc.while_loop(lambda x: gc.max(gc.abs(x * x - a) - 1e-13 * a) > 0.0,
                      lambda x: 0.5 * (x + a / x), 1.0 + 0.0 * a, max_steps=60)
    J = gc.jacobian(r, a)
    H = gc.hessian(gc.sum(r), a)
    hv = gc.hvp(gc.sum(r), a, g.constant(np.ones(3)), mode="forward")
    av = np.array([2.0, 0.7, 30.0])
    got = gc.function([a], [r, J, H, hv])(av)
    close(got[0], np.sqrt(av), rtol=1e-13)
    close(got[1], np.diag(0.5 / np.sqrt(av)))
    close(got[2], np.diag(-0.25 * av ** -1.5), rtol=1e-9)
    close(got[3], -0.25 * av ** -1.5, rtol=1e-9)


def test_vmap_of_a_while_loop_runs_each_row_its_own_count():
    g = gc.Graph("newton_rows")
    A = g.input("A", shape=(4,))

    def newton_sqrt(a):
        return gc.while_loop(lambda x: gc.abs(x * x - a) > 1e-13 * a,
                             lambda x: 0.5 * (x + a / x), 1.0 + 0.0 * a, max_steps=60)

    r = gc.vmap(newton_sqrt)(A)
    d = gc.grad(gc.sum(r), A)
    av = np.array([0.3, 2.0, 1e4, 17.0])      # 5 to 12 steps: different counts per row
    got = gc.function([A], [r, d])(av)
    close(got[0], np.sqrt(av), rtol=1e-13)
    close(got[1], 0.5 / np.sqrt(av), rtol=1e-10)


def test_fori_loop_with_node_bounds_runs_the_count_given_at_run_time():
    g = gc.Graph("power")
    x = g.input("x")
    n = g.input("n", dtype="int64")
    p = gc.fori_loop(0, n, lambda i, c: c * x, 1.0 + 0.0 * x)   # x ** n
    t = gc.jvp(p, x, g.constant(1.0))
    f = gc.function([x, n], [p, t])
    for n_val in (0, 1, 5, 12):
        got = f(1.3, n_val)
        close(got[0], 1.3 ** n_val, rtol=1e-14)
        close(got[1], n_val * 1.3 ** (n_val - 1) if n_val else 0.0, rtol=1e-13)


# -- cond: both branches, the gradient only through the chosen one ------------------------------
def _cond_graph():
    g = gc.Graph("branches")
    x = g.input("x", shape=(3,))
    A = g.input("A", shape=(2, 3))
    B = g.input("B", shape=(2, 3))
    y = gc.cond(gc.sum(x) > 0.0,
                lambda v: gc.tanh(A @ v),
                lambda v: (B * B) @ v,
                x)
    return x, A, B, gc.sum(y * y)


def test_cond_takes_each_branch_and_differentiates_only_through_it(rng):
    x, A, B, z = _cond_graph()
    gx, gA, gB = gc.grad(z, [x, A, B])
    f = gc.function([x, A, B], [z, gx, gA, gB])
    Av, Bv = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    xp = np.array([0.5, -0.2, 1.0])         # sum > 0: true branch
    xn = -xp                                # sum < 0: false branch

    z_t, gx_t, gA_t, gB_t = f(xp, Av, Bv)
    t = np.tanh(Av @ xp)
    close(z_t, t @ t)
    close(gA_t, np.outer(2 * t * (1 - t * t), xp))
    close(gx_t, Av.T @ (2 * t * (1 - t * t)))
    assert np.all(gB_t == 0.0)

    z_f, gx_f, gA_f, gB_f = f(xn, Av, Bv)
    y = (Bv * Bv) @ xn
    close(z_f, y @ y)
    close(gx_f, (Bv * Bv).T @ (2 * y))
    close(gB_f, 2 * Bv * np.outer(2 * y, xn))
    assert np.all(gA_f == 0.0)


def test_cond_second_order_and_forward_mode_follow_the_branch(rng):
    x, A, B, z = _cond_graph()
    Av, Bv = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    v = rng.standard_normal(3)
    H = gc.hessian(z, x)
    hv_f = gc.hvp(z, x, x.graph.constant(v), mode="forward")
    hv_r = gc.hvp(z, x, x.graph.constant(v), mode="reverse")
    f = gc.function([x, A, B], [H, hv_f, hv_r])
    xn = np.array([-0.5, 0.2, -1.0])
    Hn, hfn, hrn = f(xn, Av, Bv)
    C = Bv * Bv
    close(Hn, 2 * C.T @ C)                   # the false branch is quadratic in x
    close(hfn, 2 * C.T @ C @ v)
    close(hrn, 2 * C.T @ C @ v)
    xp = -xn
    Hp, hfp, hrp = f(xp, Av, Bv)
    t = np.tanh(Av @ xp)
    s = 1 - t * t                            # d tanh; d/du (t^2) = 2 t s; second: 2 s^2 - 4 t^2 s
    want = Av.T @ np.diag(2 * s * s - 4 * t * t * s) @ Av
    close(Hp, want)
    close(hfp, want @ v)
    close(hrp, want @ v)


def test_vmap_of_cond_with_a_batched_predicate(rng):
    g = gc.Graph("rows")
    X = g.input("X", shape=(4,))
    w = g.input("w", shape=(2,))

    def branch(x):
        return gc.cond(x > 0.0, lambda v: v * v * w, lambda v: gc.sin(v) + w, x)

    Y = gc.vmap(branch)(X)
    z = gc.sum(Y * Y)
    gX, gw = gc.grad(z, [X, w])
    Xv, wv = np.array([1.0, -2.0, 0.5, -0.1]), rng.standard_normal(2)
    got = gc.function([X, w], [Y, gX, gw])(Xv, wv)
    want_Y, want_gX, want_gw = [], [], np.zeros(2)
    for x in Xv:
        y, dy_dx, dy_dw = ((x * x * wv, 2 * x * wv, x * x) if x > 0
                           else (np.sin(x) + wv, np.cos(x) * np.ones(2), 1.0))
        want_Y.append(y)
        want_gX.append(np.sum(2 * y * dy_dx))
        want_gw += 2 * y * dy_dw
    close(got[0], np.array(want_Y))
    close(got[1], np.array(want_gX))
    close(got[2], want_gw)


def test_cond_runs_only_the_chosen_branch():
    """The untaken branch holds a while loop that would exceed its max_steps: it must not run."""
    g = gc.Graph("lazy")
    x = g.input("x")

    def explode(v):
        return gc.while_loop(lambda c: c < 1e6, lambda c: c + 1.0, v, max_steps=3)

    y = gc.cond(x > 0.0, lambda v: 2.0 * v, explode, x)
    f = gc.function([x], y)
    close(f(4.0), 8.0)
    with pytest.raises(gc.InputError):
        f(-1.0)


# -- nested scans, differentiated twice ---------------------------------------------------------
def _nested(W, X, c0, scan):
    """Outer steps over X's rows; each runs an inner recurrence over that row's entries."""
    def inner(c, x):
        c_new = gc.tanh(W @ c + x * c[::-1])
        return c_new, gc.sum(c_new * c_new)

    def outer(c, row):
        c_end, ys = scan(inner, c, row)
        return c_end + 0.1 * c, gc.sum(ys)

    c_end, zs = scan(outer, c0, X)
    return gc.sum(c_end * c_end) + gc.sum(gc.sin(zs))


def _nested_graph(scan):
    g = gc.Graph("nested")
    W = g.input("W", shape=(3, 3))
    X = g.input("X", shape=(4, 5))
    c0 = g.input("c0", shape=(3,))
    return [W, X, c0], _nested(W, X, c0, scan)


def _nested_values(rng):
    return [0.5 * rng.standard_normal((3, 3)), rng.standard_normal((4, 5)),
            rng.standard_normal(3)]


def test_nested_scans_second_derivatives_match_finite_differences(rng):
    ins, z = _nested_graph(gc.scan)
    vals = _nested_values(rng)
    g = z.graph
    v = [rng.standard_normal(x.shape) for x in ins]
    norm = np.sqrt(sum(float(np.sum(d * d)) for d in v))
    v = [d / norm for d in v]                 # a unit direction: the step is eps
    gs = gc.grad(z, ins)
    hv_r = gc.hvp(z, ins, [g.constant(a) for a in v], mode="reverse")
    hv_f = gc.hvp(z, ins, [g.constant(a) for a in v], mode="forward")
    f_grad = gc.function(ins, gs)
    got = gc.function(ins, [*hv_r, *hv_f])(*vals)
    eps = 1e-4
    plus = f_grad(*[a + eps * d for a, d in zip(vals, v)])
    minus = f_grad(*[a - eps * d for a, d in zip(vals, v)])
    for k in range(len(ins)):
        want = (plus[k] - minus[k]) / (2 * eps)
        close(got[k], want, rtol=1e-6)
        close(got[len(ins) + k], want, rtol=1e-6)
    # and the gradient itself against differences of the value, along v
    f_z = gc.function(ins, z)
    fd = (f_z(*[a + eps * d for a, d in zip(vals, v)])
          - f_z(*[a - eps * d for a, d in zip(vals, v)])) / (2 * eps)
    g_val = f_grad(*vals)
    close(sum(float(np.sum(a * d)) for a, d in zip(g_val, v)), fd, rtol=1e-6)


def test_nested_scans_match_their_unrolled_graph_to_second_order(rng):
    vals = _nested_values(rng)
    v = [rng.standard_normal(a.shape) for a in vals]
    results = []
    for scan in (gc.scan, unrolled_scan):
        ins, z = _nested_graph(scan)
        g = z.graph
        gs = gc.grad(z, ins)
        H = gc.hessian(z, ins[0])
        hv_f = gc.hvp(z, ins, [g.constant(a) for a in v], mode="forward")
        hv_r = gc.hvp(z, ins, [g.constant(a) for a in v], mode="reverse")
        results.append(gc.function(ins, [z, *gs, H, *hv_f, *hv_r])(*vals))
    for a, b in zip(*results):
        close(a, b)
