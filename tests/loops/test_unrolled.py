"""Every loop equals its unrolled graph (the same step function applied in a Python loop): in
value, gradient, Hessian-vector products in both modes and a third derivative, for each shape
of scan (structures, xs or length, reverse, checkpoints, integer carries, captured values), and
through jacobian, hessian, vmap and the Krylov bridge to SciPy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse.linalg as sla

import graphc as gc
from tests.loops.unroll import close, unrolled_fori_loop, unrolled_scan

LOOP = {"scan": gc.scan, "fori_loop": gc.fori_loop}
UNROLLED = {"scan": unrolled_scan, "fori_loop": unrolled_fori_loop}


def derivatives_of(build, shapes: dict, vals: dict, directions: dict, loops: dict):
    """z and its derivatives, for `build(inputs, loops) -> z` built with `loops`: value,
    gradient, HVP (reverse, forward), and the gradient of each HVP's squared norm."""
    g = gc.Graph("case")
    ins = {n: g.input(n, shape=s, dtype=vals[n].dtype) for n, s in shapes.items()}
    z = build(ins, loops)
    wrt = [ins[n] for n in directions]
    vs = [g.constant(directions[n]) for n in directions]
    grads = gc.grad(z, wrt)
    hv_r = gc.hvp(z, wrt, vs, mode="reverse")
    hv_f = gc.hvp(z, wrt, vs, mode="forward")
    third_r = gc.grad(gc.add_n([gc.sum(h * h) for h in hv_r]), wrt)
    third_f = gc.grad(gc.add_n([gc.sum(h * h) for h in hv_f]), wrt)
    f = gc.function(list(ins.values()), [z, *grads, *hv_r, *hv_f, *third_r, *third_f])
    out = f(*(vals[n] for n in shapes))
    k = len(wrt)
    return {"value": out[0], "grad": out[1:1 + k], "hvp_reverse": out[1 + k:1 + 2 * k],
            "hvp_forward": out[1 + 2 * k:1 + 3 * k], "third_reverse": out[1 + 3 * k:1 + 4 * k],
            "third_forward": out[1 + 4 * k:]}


def assert_loop_equals_unrolled(build, shapes, rng, wrt=None, ints=()):
    vals = {n: (rng.integers(0, 3, size=s) if n in ints else 0.5 * rng.standard_normal(s))
            for n, s in shapes.items()}
    wrt = [n for n in shapes if n not in ints] if wrt is None else wrt
    directions = {n: rng.standard_normal(shapes[n]) for n in wrt}
    loop = derivatives_of(build, shapes, vals, directions, LOOP)
    unrolled = derivatives_of(build, shapes, vals, directions, UNROLLED)
    for key in loop:
        got, want = loop[key], unrolled[key]
        for k, (a, b) in enumerate(zip(got, want) if key != "value" else [(got, want)]):
            try:
                close(a, b)
            except AssertionError as e:
                raise AssertionError(f"{key}[{k}]: {e}") from None
    # the oracle is not degenerate: derivatives are non-zero
    assert all(np.any(v != 0.0) for v in loop["grad"])
    return loop


# -- scan shapes ---------------------------------------------------------------------------------
def test_several_carries_and_ys_in_tuples_and_lists(rng):
    shapes = {"W": (3, 3), "X": (6, 3), "w": (6,), "h0": (3,), "s0": ()}

    def build(i, loops):
        W = i["W"]

        def step(carry, x):
            h, s = carry
            x_t, w_t = x
            h_new = gc.tanh(W @ h + x_t * s)
            s_new = s + w_t * gc.sum(h_new)
            return (h_new, s_new), [h_new, s_new * w_t]

        (hT, sT), ys = loops["scan"](step, (i["h0"], i["s0"]), (i["X"], i["w"]))
        assert isinstance(ys, list) and len(ys) == 2
        return gc.sum(hT * hT) + gc.sin(sT) + gc.sum(ys[0] * ys[0]) + gc.sum(gc.sin(ys[1]))

    assert_loop_equals_unrolled(build, shapes, rng)


def test_list_carry_and_single_y(rng):
    shapes = {"a": (2,), "b": (2,), "X": (5, 2)}

    def build(i, loops):
        def step(carry, x):
            a, b = carry
            return [gc.sin(a * b + x), gc.tanh(a - x)], a * b

        carry, ys = loops["scan"](step, [i["a"], i["b"]], i["X"])
        assert isinstance(carry, list)
        return gc.sum(carry[0] * carry[1]) + gc.sum(ys * ys)

    assert_loop_equals_unrolled(build, shapes, rng)


def test_no_xs_with_length(rng):
    shapes = {"W": (3, 3), "b": (3,), "h0": (3,)}

    def build(i, loops):
        def step(h, _):
            h_new = gc.tanh(i["W"] @ h + i["b"])
            return h_new, gc.sum(h_new * h)

        hT, ys = loops["scan"](step, i["h0"], length=7)
        return gc.sum(hT) + gc.sum(ys * ys)

    assert_loop_equals_unrolled(build, shapes, rng)


def test_y_none_gives_no_ys(rng):
    shapes = {"c0": (2,), "X": (4, 2)}

    def build(i, loops):
        cT, ys = loops["scan"](lambda c, x: (gc.sin(c) * x + c, None), i["c0"], i["X"])
        assert ys is None
        return gc.sum(cT * cT)

    assert_loop_equals_unrolled(build, shapes, rng)


def test_reverse_scan(rng):
    shapes = {"W": (2, 2), "X": (6, 2), "h0": (2,)}

    def build(i, loops):
        def step(h, x):
            h_new = gc.tanh(i["W"] @ h + x)
            return h_new, h_new[0] * x[1]

        hT, ys = loops["scan"](step, i["h0"], i["X"], reverse=True)
        weights = np.arange(1.0, 7.0)     # ys stay in xs' order: the weights tell rows apart
        return gc.sum(hT * hT) + gc.sum(ys * weights)

    assert_loop_equals_unrolled(build, shapes, rng)


@pytest.mark.parametrize("checkpoint", ["all", "sqrt", "none", 3])
@pytest.mark.parametrize("reverse", [False, True])
def test_checkpoints_with_t_not_divisible_by_the_segment(rng, checkpoint, reverse):
    T = 10    # sqrt: segments of 4 (10 = 2 * 4 + 2); 3: 10 = 3 * 3 + 1
    shapes = {"W": (3, 3), "U": (3, 2), "X": (T, 2), "h0": (3,)}

    def build(i, loops):
        def step(h, x):
            h_new = gc.tanh(i["W"] @ h + i["U"] @ x)
            return h_new, gc.sum(h_new * h_new)

        hT, ys = loops["scan"](step, i["h0"], i["X"], checkpoint=checkpoint, reverse=reverse)
        return gc.sum(hT) + gc.sum(ys * np.linspace(0.5, 1.5, T))

    assert_loop_equals_unrolled(build, shapes, rng)


def test_integer_counter_carry_beside_float_carries(rng):
    shapes = {"W": (2, 2), "X": (5, 2), "h0": (2,), "k0": ()}

    def build(i, loops):
        def step(carry, x):
            k, h = carry
            scale = 1.0 + 0.1 * gc.cast(k, "float64")
            h_new = gc.tanh(i["W"] @ h * scale + x)
            return (k + 1, h_new), h_new * scale

        (kT, hT), ys = loops["scan"](step, (i["k0"], i["h0"]), i["X"])
        assert kT.dtype == np.int64
        return gc.sum(hT * hT) + gc.sum(gc.sin(ys)) + gc.cast(kT, "float64")

    out = assert_loop_equals_unrolled(build, shapes, rng, ints=("k0",))
    assert np.isfinite(out["value"])


def test_captured_outer_values_including_one_used_only_in_ys(rng):
    shapes = {"W": (3, 3), "V": (2, 3), "b": (3,), "X": (6, 3), "h0": (3,)}

    def build(i, loops):
        W, V, b = i["W"], i["V"], i["b"]
        shifted = gc.exp(0.1 * b)          # an outer node computed before the loop, captured

        def step(h, x):
            h_new = gc.tanh(W @ h + x * shifted)
            return h_new, V @ h_new        # V only reaches the per-step outputs

        hT, ys = loops["scan"](step, i["h0"], i["X"])
        return gc.sum(gc.square(ys)) + 0.5 * gc.sum(hT)

    assert_loop_equals_unrolled(build, shapes, rng)


def test_body_returning_a_carry_unchanged(rng):
    shapes = {"W": (2, 2), "c": (2,), "h0": (2,), "X": (5, 2)}

    def build(i, loops):
        def step(carry, x):
            h, c = carry
            return (gc.tanh(i["W"] @ h + c * x), c), h[0] * c[1]

        (hT, cT), ys = loops["scan"](step, (i["h0"], i["c"]), i["X"])
        return gc.sum(hT * hT) + gc.sum(cT * cT * cT) + gc.sum(ys)

    assert_loop_equals_unrolled(build, shapes, rng)


def test_fori_loop_with_the_index_in_the_body(rng):
    shapes = {"theta": (2,), "x0": (2,)}

    def build(i, loops):
        th = i["theta"]

        def body(k, x):
            kf = gc.cast(k, "float64")
            return x + 0.1 * gc.sin(th * x + 0.3 * kf)

        return gc.sum(loops["fori_loop"](2, 9, body, i["x0"]) ** 2)

    assert_loop_equals_unrolled(build, shapes, rng)


# -- jacobian, hessian, vmap through a scan ------------------------------------------------------
def _rnn(W, h0, X, scan):
    def step(h, x):
        h_new = gc.tanh(W @ h + x)
        return h_new, gc.sum(h_new * h_new)

    return scan(step, h0, X)


def _jac_hess_vmap(scan, vals):
    g = gc.Graph("jhv")
    W = g.input("W", shape=(3, 3))
    h0 = g.input("h0", shape=(3,))
    X = g.input("X", shape=(5, 3))
    H0 = g.input("H0", shape=(4, 3))
    hT, ys = _rnn(W, h0, X, scan)
    z = gc.sum(ys) + gc.sum(hT)
    J_ys_W = gc.jacobian(ys, W)
    J_hT_h0 = gc.jacobian(hT, h0)
    H_h0 = gc.hessian(z, h0)
    H_W = gc.hessian(z, W)
    batched = gc.vmap(lambda h: _rnn(W, h, X, scan)[1], in_axes=0)(H0)
    batched_grad = gc.vmap(lambda h: gc.grad(gc.sum(_rnn(W, h, X, scan)[0]), W))(H0)
    outs = [J_ys_W, J_hT_h0, H_h0, H_W, batched, batched_grad]
    return gc.function([W, h0, X, H0], outs)(*vals), outs


def test_jacobian_hessian_and_vmap_through_a_scan(rng):
    vals = [0.5 * rng.standard_normal((3, 3)), rng.standard_normal(3),
            rng.standard_normal((5, 3)), rng.standard_normal((4, 3))]
    got, nodes = _jac_hess_vmap(gc.scan, vals)
    want, _ = _jac_hess_vmap(unrolled_scan, vals)
    assert [n.shape for n in nodes] == [(5, 3, 3), (3, 3), (3, 3), (3, 3, 3, 3), (4, 5),
                                        (4, 3, 3)]
    for a, b in zip(got, want):
        close(a, b)
    H = got[3].reshape(9, 9)
    close(H, H.T)


# -- hessian_operator and objective through a scan, inside SciPy ---------------------------------
def _fit_problem(scan):
    """A recurrence fitted to data: h_{t+1} = tanh(a h_t + b x_t + c), loss sum (h_t - y_t)^2
    plus a small ridge; three parameters, smooth, with a well-defined local minimum."""
    g = gc.Graph("fit")
    theta = g.input("theta", shape=(3,))
    X = g.input("X", shape=(12,))
    Y = g.input("Y", shape=(12,))

    def step(h, xy):
        x, y = xy
        h_new = gc.tanh(theta[0] * h + theta[1] * x + theta[2])
        return h_new, gc.square(h_new - y)

    _, r = scan(step, 0.0 * theta[0], (X, Y))
    return theta, X, Y, gc.sum(r) + 1e-2 * gc.sum(theta * theta)


def _fit_data():
    rng = np.random.default_rng(7)
    X = rng.standard_normal(12)
    true = np.array([0.5, 0.8, -0.2])
    h, Y = 0.0, []
    for x in X:
        h = np.tanh(true[0] * h + true[1] * x + true[2])
        Y.append(h)
    return X, np.array(Y) + 0.01 * rng.standard_normal(12)


def test_hessian_operator_through_a_scan_in_cg():
    Xv, Yv = _fit_data()
    t0 = np.array([0.45, 0.75, -0.15])          # near the fit: the Hessian is positive there
    rhs = np.array([1.0, -2.0, 0.5])
    solutions, dense = [], []
    for scan in (gc.scan, unrolled_scan):
        theta, X, Y, loss = _fit_problem(scan)
        H = gc.hessian_operator(loss, theta, at={theta: t0, X: Xv, Y: Yv})
        dense.append(H @ np.eye(3))
        sol, info = sla.cg(H, rhs, rtol=1e-13, atol=0.0, maxiter=50)
        assert info == 0
        solutions.append(sol)
    # the dense oracle: the unrolled graph's Hessian, one batched graph without any loop
    theta, X, Y, loss = _fit_problem(unrolled_scan)
    Hd = gc.function([theta, X, Y], gc.hessian(loss, theta))(t0, Xv, Yv)
    close(dense[0], Hd)
    close(dense[1], Hd)
    assert np.all(np.linalg.eigvalsh(Hd) > 0)   # cg is valid here
    close(solutions[0], np.linalg.solve(Hd, rhs), rtol=1e-9)
    close(solutions[0], solutions[1], rtol=1e-9)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_hessian_of_a_scan_whose_body_indexes_a_captured_value(mode):
    Xv, Yv = _fit_data()
    t0 = np.array([0.1, 0.3, 0.0])
    theta, X, Y, loss = _fit_problem(gc.scan)
    H = gc.function([theta, X, Y], gc.hessian(loss, theta, mode=mode))(t0, Xv, Yv)
    theta, X, Y, loss = _fit_problem(unrolled_scan)
    close(H, gc.function([theta, X, Y], gc.hessian(loss, theta))(t0, Xv, Yv))


def test_objective_through_a_scan_with_trust_krylov():
    Xv, Yv = _fit_data()
    results = []
    for scan in (gc.scan, unrolled_scan):
        theta, X, Y, loss = _fit_problem(scan)
        obj = gc.objective(loss, theta, at={theta: np.array([0.1, 0.3, 0.0]), X: Xv, Y: Yv})
        res = scipy.optimize.minimize(obj.fun, obj.x0, jac=obj.jac, hessp=obj.hessp,
                                      method="trust-krylov", options={"gtol": 1e-12})
        assert res.success, res.message
        results.append((res, obj))
    (res_loop, obj_loop), (res_unr, obj_unr) = results
    close(res_loop.x, res_unr.x, rtol=1e-8)
    assert np.linalg.norm(obj_unr.jac(res_loop.x)) < 1e-10
    close(obj_loop.fun(res_loop.x), obj_unr.fun(res_loop.x))
    close(obj_loop.hessp(res_loop.x, np.ones(3)), obj_unr.hessp(res_loop.x, np.ones(3)))
    # the fit recovered the generating parameters roughly (the problem is not degenerate)
    assert np.allclose(res_loop.x, [0.5, 0.8, -0.2], atol=0.15)


# -- the body is built once: graph and code do not grow with the trip count ----------------------
@pytest.mark.parametrize("checkpoint", ["all", "none"])
def test_graph_and_generated_code_do_not_grow_with_the_trip_count(checkpoint):
    sizes = []
    for T in (10, 10_000):
        g = gc.Graph("size")
        W = g.input("W", shape=(3, 3))
        X = g.input("X", shape=(T, 3))
        h0 = g.input("h0", shape=(3,))
        hT, ys = gc.scan(lambda h, x: (gc.tanh(W @ h + x), gc.sum(h)), h0, X,
                         checkpoint=checkpoint)
        z = gc.sum(hT) + gc.sum(ys * ys)
        gW = gc.grad(z, W)
        hv = gc.hvp(z, W, g.constant(np.ones((3, 3))), mode="forward")
        f = gc.function([W, X, h0], [z, gW, hv])
        sizes.append((len(g.nodes), len(f.graph.nodes), f.source.count("\n")))
    assert sizes[0] == sizes[1]


# -- a value captured from two levels out and used twice ----------------------------------------
# a value captured from two levels out and used twice: once an operand at each level
# (regression: the middle graph keyed it by its own stand-in and made a second input)


def test_nested_scan_whose_inner_body_uses_an_outer_value_twice(rng):
    shapes = {"y": (2,), "c0": (2,)}

    def build(i, loops):
        y = i["y"]

        def inner(c, _):
            return gc.tanh(c * y + y), None

        def outer(c, _):
            return loops["scan"](inner, c, length=2)[0], None

        return gc.sum(loops["scan"](outer, i["c0"], length=3)[0] ** 2)

    assert_loop_equals_unrolled(build, shapes, rng)


@pytest.mark.parametrize("checkpoint", ["sqrt", 3])
def test_checkpointed_scan_whose_body_uses_a_captured_value_twice(rng, checkpoint):
    shapes = {"y": (2,), "c0": (2,)}

    def build(i, loops):
        y = i["y"]
        cT, _ = loops["scan"](lambda c, _: (gc.tanh(c * y + y), None), i["c0"], length=10,
                              checkpoint=checkpoint)
        return gc.sum(cT * cT)

    assert_loop_equals_unrolled(build, shapes, rng)
