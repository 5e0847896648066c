"""Loops run as one numba kernel give what the same loops give run step by step from Python.

`graphc/compile/loop_kernel.py` writes a long scan's body inside the loop as numba code. Each
test builds a loop, compiles its value and derivatives, and runs them twice: with kernels for
every loop (JIT_STEPS = 1) and with none (JIT_STEPS past any trip count), the oracle being the
Python loop over the compiled body, which the rest of the suite checks against unrolled graphs.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.compile import loop_kernel


def run_both(monkeypatch, inputs, outputs, values):
    """The outputs' values with kernels and without, and the kernels that ran."""
    ran = []
    real = loop_kernel.LoopKernel.__call__

    def spy(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        if out is not None:
            ran.append(self.source)
        return out

    monkeypatch.setattr(loop_kernel.LoopKernel, "__call__", spy)
    monkeypatch.setattr(loop_kernel, "JIT_STEPS", 1)
    fast = gc.function(inputs, outputs)(*values)
    monkeypatch.setattr(loop_kernel, "JIT_STEPS", 10**12)
    slow = gc.function(inputs, outputs, optimize=False)(*values)
    return fast, slow, ran


def assert_same(fast, slow, tol=1e-12):
    for a, b in zip(fast, slow):
        assert np.asarray(a).shape == np.asarray(b).shape
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_an_rnn_gradient_and_hvp_agree_with_the_python_loop(monkeypatch):
    rng = np.random.default_rng(0)
    T, n = 7, 5
    g = gc.Graph()
    W = g.input("W", shape=(n, n))
    b = g.input("b", shape=(n,))
    xs = g.input("xs", shape=(T, n))

    def step(h, x):
        hn = gc.tanh(W @ h + x + b)
        return hn, gc.sigmoid(hn).sum()

    hT, ys = gc.scan(step, xs[0] * 0.0, xs)
    loss = (hT * hT).sum() + (ys * ys).sum()
    gW, gb = gc.grad(loss, [W, b])
    v = g.constant(rng.normal(size=n))
    hv_f = gc.hvp(loss, b, v, mode="forward")
    hv_r = gc.hvp(loss, b, v, mode="reverse")
    vals = [rng.normal(size=(n, n)) * 0.4, rng.normal(size=n), rng.normal(size=(T, n))]
    fast, slow, ran = run_both(monkeypatch, [W, b, xs], [loss, gW, gb, hv_f, hv_r], vals)
    assert_same(fast, slow)
    assert len(ran) >= 3  # the forward, the backward and the tangent loops


def test_rk4_jacobian_and_parameter_gradient_agree(monkeypatch):
    g = gc.Graph()
    th = g.input("th", shape=(2,))
    x0 = g.input("x0", shape=(2,))
    h = 0.05

    def f(x):
        w, z = th[0], th[1]
        return gc.stack([x[1], -w * w * x[0] - 2.0 * z * w * x[1]])

    def rk4(i, x):
        k1 = f(x)
        k2 = f(x + h / 2 * k1)
        k3 = f(x + h / 2 * k2)
        k4 = f(x + h * k3)
        return x + h / 6 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    xT = gc.fori_loop(0, 30, rk4, x0)
    J = gc.jacobian(xT, x0)
    gth = gc.grad((xT * xT).sum(), th)
    fast, slow, ran = run_both(monkeypatch, [th, x0], [xT, J, gth],
                               [np.array([2.0, 0.1]), np.array([1.0, 0.0])])
    assert_same(fast, slow)
    assert ran
    # the final state of a linear ODE's RK4 is M^N x0, so its Jacobian is M^N
    A = np.array([[0.0, 1.0], [-4.0, -0.4]])
    hA = h * A
    M = np.eye(2) + hA + hA @ hA / 2 + hA @ hA @ hA / 6 + hA @ hA @ hA @ hA / 24
    np.testing.assert_allclose(fast[1], np.linalg.matrix_power(M, 30), rtol=1e-12, atol=1e-14)


def test_shape_ops_reductions_indexing_and_integer_carries(monkeypatch):
    rng = np.random.default_rng(1)
    g = gc.Graph()
    P = g.input("P", shape=(3, 4))
    xs = g.input("xs", shape=(6, 4))

    def step(carry, x):
        acc, count, M = carry
        z = gc.concatenate([x[:2], x[2:]], axis=0)
        r = gc.reshape(M.T, (4, 3)) @ gc.tanh(P @ z)
        m = gc.where(r > 0.0, r, 0.1 * r)
        new_M = M + gc.expand_dims(m[:3], 1) * P + gc.sum(x) * 0.01
        s = gc.sum(new_M, axis=0) + gc.stack([acc, acc, acc, acc])
        return (acc + s.sum() * 0.1, count + 1, new_M * 0.5), gc.cast(count, np.float64) * s

    (acc, count, M), ys = gc.scan(step, (g.constant(0.0), g.constant(np.int64(0)),
                                         P * 0.0), xs)
    loss = acc + (ys * ys).sum() + (M * M).sum()
    gP, gx = gc.grad(loss, [P, xs])
    vals = [rng.normal(size=(3, 4)) * 0.5, rng.normal(size=(6, 4))]
    fast, slow, ran = run_both(monkeypatch, [P, xs], [loss, count, gP, gx, ys], vals)
    assert_same(fast, slow)
    assert int(fast[1]) == 6 and ran


def test_a_body_the_kernel_cannot_write_runs_from_python(monkeypatch):
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    hT, _ = gc.scan(lambda h, t: (gc.softmax(h + t), None), x, g.constant(np.eye(4)))
    gx = gc.grad((hT * g.arange(4.0)).sum(), x)
    fast, slow, ran = run_both(monkeypatch, [x], [hT, gx], [np.array([0.1, 0.2, -0.3, 1.0])])
    assert_same(fast, slow)


def test_results_never_alias_the_callers_arrays(monkeypatch):
    monkeypatch.setattr(loop_kernel, "JIT_STEPS", 1)
    g = gc.Graph()
    a = g.input("a", shape=(3,))
    out, _ = gc.scan(lambda c, t: (a, None), a * 1.0, length=5)   # the carry becomes `a`
    f = gc.function([a], [out, a * 2.0])
    av = np.array([1.0, 2.0, 3.0])
    r, _ = f(av)
    r[:] = -1.0
    assert av.tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(f(av)[0], av)


def test_hostile_names_never_reach_a_kernels_source(monkeypatch):
    g = gc.Graph()
    x = g.input("x\n__import__('os').system('echo pwned')", shape=(3,))
    with g.scope("evil'\"; import os"):
        hT, _ = gc.scan(lambda h, t: (gc.tanh(h) * 2.0 + t, None), x, g.constant(np.ones((4, 3))))
    fast, slow, ran = run_both(monkeypatch, [x], [hT], [np.zeros(3)])
    assert_same(fast, slow)
    assert ran and all("import" not in src and "pwned" not in src for src in ran)


@pytest.mark.parametrize("reverse", [False, True])
def test_reverse_scans_and_counted_loops(monkeypatch, reverse):
    g = gc.Graph()
    a = g.input("a")
    xs = g.input("xs", shape=(9,))
    c, ys = gc.scan(lambda c, x: (c * 0.9 + a * x, c * x), a * 0.0, xs, reverse=reverse)
    root = gc.while_loop(lambda r: gc.abs(r * r - a) > 1e-13, lambda r: 0.5 * (r + a / r), a,
                         max_steps=200)
    outs = [c, ys, root, *gc.grad(c + ys.sum() + root, [a, xs])]
    fast, slow, _ = run_both(monkeypatch, [a, xs], outs, [np.float64(3.0), np.linspace(-1, 1, 9)])
    assert_same(fast, slow)
    assert abs(float(fast[2]) - np.sqrt(3.0)) < 1e-15


def test_nested_scans_and_checkpoint_segments_run_inside_one_kernel(monkeypatch):
    g = gc.Graph()
    s = g.input("s")
    m = g.input("m", shape=(3, 4))
    W = g.input("W", shape=(2, 2))
    xs = g.input("xs", shape=(10, 2))

    def outer(c, row):
        cin, ys = gc.scan(lambda d, z: (gc.sin(d * z + c), d * z), c, row)
        return cin, ys.sum()

    cT, sums = gc.scan(outer, s, m)
    d2 = gc.grad(gc.grad(cT + sums.sum(), s), s)
    hT, yy = gc.scan(lambda h, x: (gc.tanh(W @ h + x), h.sum()), xs[0] * 0.0, xs,
                     checkpoint="sqrt")
    loss = (hT ** 2).sum() + (yy ** 2).sum()
    made = []
    real = loop_kernel._build

    def spy(*args):
        k = real(*args)
        made.append(len(k.inner))
        return k

    monkeypatch.setattr(loop_kernel, "_build", spy)
    rng = np.random.default_rng(2)
    vals = [np.float64(0.3), rng.normal(size=(3, 4)) * 0.5, rng.normal(size=(2, 2)),
            rng.normal(size=(10, 2))]
    fast, slow, ran = run_both(monkeypatch, [s, m, W, xs],
                               [cT, d2, loss, *gc.grad(loss, [W, xs])], vals)
    assert_same(fast, slow)
    assert max(made) >= 2  # a backward segment calls the recomputed and the backward scan
