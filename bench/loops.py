"""Loops (issue 17) against hand-written NumPy, the unrolled graph and JAX, same run.

Run:  PYTHONPATH=. python bench/loops.py            (the full run, ~3-5 minutes)
      PYTHONPATH=. python bench/loops.py --quick    (small sizes, under 30 s)

Rows, each a ratio to hand-written NumPy measured in this run (lower is better), best of the
rounds with the callables taking turns, one BLAS thread on one core (bench/_timing.py):

(a) an Elman-style tanh chain `h_t = tanh(W h_{t-1} + x_t)` of T = 200 steps and width 64, the
    loss `sum_t |h_t|^2` and its gradient with respect to W: `gc.scan`, the same recurrence
    unrolled into a graph by a Python loop, and JAX's `lax.scan` (jit, value_and_grad). The
    NumPy baseline is forward + backprop through time as a good NumPy programmer writes it
    (the step's cotangents stacked, the weight gradient one matmul at the end).
(b) build + grad + compile (`gc.function` of the loss and the gradient, the loop bodies
    included: they compile at the first call, so the bench asks for them) for T = 10, 1,000
    and 100,000 rows of xs, static T, cold (graphc's compile cache emptied before each build).
    Target: flat in T, under 0.2 s.
(c) peak memory (tracemalloc, one call of the compiled loss + gradient after a warm call) of
    the chain of T = 10,000 steps with `checkpoint="all"` and `"sqrt"`, in carries (bytes /
    (64 * 8)) against 3 sqrt(T), and the time of "sqrt" over "all". The loss here is
    `|h_T|^2` (no per-step outputs to keep), the gradient that of W only; once with per-step
    inputs x_t (xs of T rows) and once with a bias b instead (no xs).
(d) 100 RK4 steps (dt = 0.05) of the damped oscillator x'' + 2 zeta omega x' + omega^2 x = 0
    written with `gc.fori_loop`: the final state, its Jacobian with respect to x0
    (`gc.jacobian`), the loss |s_T - target|^2 and its gradient with respect to (omega, zeta).
    Against the same steps unrolled in a graph and JAX's `lax.fori_loop` (jit; jacfwd + grad).
    The NumPy baseline propagates the four tangents (two of x0, two of the parameters) beside
    the state, by hand. Target: at most 2x JAX per call.

Every value is checked against the NumPy baseline (and JAX's) before anything is timed. A final
table repeats the figures with the issue's targets.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import tracemalloc

import _timing  # sorts before NumPy, which must load after it: one BLAS thread, one core
import numpy as np

import graphc as gc
from graphc.autodiff.loops import Scan

HAVE_JAX = _timing.HAVE_JAX
_COMPILE_CACHE = importlib.import_module("graphc.compile.function")._CACHE
if HAVE_JAX:
    import jax
    import jax.numpy as jnp
    from jax import lax

    jax.config.update("jax_enable_x64", True)

SUMMARY: list[tuple[str, str, str, str]] = []  # (row, figure, target, verdict)


def note(row: str, figure: str, target: str = "", verdict: str = "") -> None:
    SUMMARY.append((row, figure, target, verdict))


def timed_row(label: str, fns: dict, repeat: int, **kwargs) -> dict:
    """Times (seconds) of the callables; prints NumPy's time and every other as a ratio."""
    t = _timing.measure({k: v for k, v in fns.items() if v is not None}, repeat, **kwargs)
    hand = t["numpy"]
    cells = [f"{label:<40}", f"numpy {hand * 1e3:9.3f} ms"]
    cells += [f"{k} {v / hand:6.2f}x" for k, v in t.items() if k != "numpy"]
    print("  ".join(cells))
    sys.stdout.flush()
    return t


# -- (a) the tanh chain --------------------------------------------------------------------------
def rnn_graph(T: int, n: int, unrolled: bool = False, checkpoint="all", per_step_loss=True,
              bias=False):
    """The chain's loss and dloss/dW as nodes; returns (inputs, [loss, dW])."""
    g = gc.Graph("chain")
    W = g.input("W", (n, n))
    X = g.input("b", (n,)) if bias else g.input("X", (T, n))
    h0 = g.input("h0", (n,))

    def step(h, x):
        h = gc.tanh(W @ h + (X if bias else x))
        return h, (h if per_step_loss else None)

    if unrolled:
        h, hs = h0, []
        for t in range(T):
            h, y = step(h, None if bias else X[t])
            hs.append(y)
        loss = gc.sum(gc.stack(hs) ** 2) if per_step_loss else gc.sum(h * h)
    else:
        hT, hs = gc.scan(step, h0, None if bias else X, length=T if bias else None,
                         checkpoint=checkpoint)
        loss = gc.sum(hs * hs) if per_step_loss else gc.sum(hT * hT)
    return [W, X, h0], [loss, gc.grad(loss, W)]


def rnn_numpy(W, X, h0, per_step_loss=True):
    """Forward, then backprop through time; the per-step cotangents stacked in D, so the weight
    gradient is one matmul (sum_t d_t h_{t-1}^T = D^T H[:-1])."""
    T, n = X.shape
    H = np.empty((T + 1, n))
    H[0] = h0
    for t in range(T):
        H[t + 1] = np.tanh(W @ H[t] + X[t])
    hs = H[1:]
    loss = np.vdot(hs, hs) if per_step_loss else np.dot(H[T], H[T])
    D = np.empty((T, n))
    d = np.zeros(n)
    for t in range(T, 0, -1):
        if per_step_loss or t == T:
            d += 2.0 * H[t]
        d *= 1.0 - H[t] * H[t]
        D[t - 1] = d
        d = W.T @ d
    return loss, D.T @ H[:-1]


def rnn_jax(per_step_loss=True):
    def loss(W, X, h0):
        def step(h, x):
            h = jnp.tanh(W @ h + x)
            return h, h
        hT, hs = lax.scan(step, h0, X)
        return jnp.sum(hs * hs) if per_step_loss else jnp.sum(hT * hT)
    return jax.jit(jax.value_and_grad(loss))


def tanh_chain(T: int, n: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    W = rng.standard_normal((n, n)) / np.sqrt(n)
    X = rng.standard_normal((T, n))
    h0 = rng.standard_normal(n)
    want = rnn_numpy(W, X, h0)
    fns = {"numpy": lambda: rnn_numpy(W, X, h0)}
    for name, unrolled in (("scan", False), ("unrolled", True)):
        ins, outs = rnn_graph(T, n, unrolled=unrolled)
        f = gc.function(ins, outs)
        for a, b in zip(f(W, X, h0), want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)
        fns[name] = (lambda f: lambda: f(W, X, h0))(f)
    if HAVE_JAX:
        jf = rnn_jax()
        Wj, Xj, hj = jnp.asarray(W), jnp.asarray(X), jnp.asarray(h0)
        v, gW = jf(Wj, Xj, hj)
        np.testing.assert_allclose(float(v), want[0], rtol=1e-10)
        np.testing.assert_allclose(np.asarray(gW), want[1], rtol=1e-9, atol=1e-12)
        fns["jax"] = lambda: jax.block_until_ready(jf(Wj, Xj, hj))
    t = timed_row(f"(a) tanh chain T={T} width {n}, loss+dW", fns, repeat)
    r = t["scan"] / t["numpy"]
    target = "<= JAX lax.scan" + (f" ({t['jax'] / t['numpy']:.2f}x)" if "jax" in t else "")
    met = ("met" if r <= t["jax"] / t["numpy"] else
           f"missed: {t['scan'] / t['jax']:.1f}x JAX") if "jax" in t else "(no JAX)"
    note(f"(a) tanh chain T={T}, loss + dW: scan / numpy", f"{r:.2f}x", target, met)
    note("(a) same: unrolled graph / numpy", f"{t['unrolled'] / t['numpy']:.2f}x")
    note("(a) same: numpy per call", f"{t['numpy'] * 1e3:.2f} ms")


# -- (b) build + grad + compile against T ----------------------------------------------------------
def compile_bodies(f) -> None:
    """Compile every loop body now (they compile lazily, at the first call), nested ones too."""
    todo = [f.graph]
    while todo:
        graph = todo.pop()
        for nd in graph.nodes:
            if isinstance(nd.op, Scan):
                nd.op.body.function()
                todo.append(nd.op.body.graph)


def build_time(T: int, n: int, checkpoint: str, unrolled: bool = False) -> tuple[float, float]:
    """(build + grad, compile) seconds, cold: the compiled-program cache emptied first."""
    _COMPILE_CACHE.clear()
    t0 = time.perf_counter()
    ins, outs = rnn_graph(T, n, unrolled=unrolled, checkpoint=checkpoint, per_step_loss=False)
    t1 = time.perf_counter()
    f = gc.function(ins, outs)
    compile_bodies(f)
    return t1 - t0, time.perf_counter() - t1


def compile_flat(sizes, n: int, repeat: int, unrolled_sizes=()) -> None:
    build_time(10, n, "all")  # the first build in the process pays imports (numba, ...)
    totals = {}
    for cp in ("all", "sqrt"):
        for T in sizes:
            best = min((build_time(T, n, cp) for _ in range(repeat)), key=sum)
            totals[cp, T] = sum(best)
            print(f"(b) build+grad+compile T={T:<7,} checkpoint={cp!r:<6}  build+grad "
                  f"{best[0]:.3f} s  compile {best[1]:.3f} s  total {sum(best):.3f} s")
    for T in unrolled_sizes:
        a, b = build_time(T, n, "all", unrolled=True)
        print(f"(b) the same unrolled, T={T:<7,}          build+grad {a:.3f} s  compile "
              f"{b:.3f} s  total {a + b:.3f} s")
        note(f"(b) unrolled graph, T={T:,}: build + grad + compile", f"{a + b:.2f} s")
    sys.stdout.flush()
    for cp in ("all", "sqrt"):
        ts = [totals[cp, T] for T in sizes]
        worst, lo = max(ts), min(ts)
        ok = worst < 0.2 and worst / lo < 2
        note(f"(b) build + grad + compile, checkpoint={cp!r}, T = "
             + " / ".join(f"{T:,}" for T in sizes),
             " / ".join(f"{x:.3f}" for x in ts) + " s", "flat, < 0.2 s",
             "met" if ok else f"missed (max {worst:.3f} s, max/min {worst / lo:.1f})")


# -- (c) checkpointing: peak memory and time ------------------------------------------------------
def peak_carries(f, args, n: int) -> float:
    f(*args)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    f(*args)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / (n * 8)


def checkpointing(T: int, n: int, repeat: int) -> None:
    rng = np.random.default_rng(1)
    W = rng.standard_normal((n, n)) / np.sqrt(n)
    h0 = rng.standard_normal(n)
    bound = 3 * np.sqrt(T)
    for bias in (False, True):
        x = rng.standard_normal(n) if bias else rng.standard_normal((T, n))
        fs, carries = {}, {}
        want = None
        for cp in ("all", "sqrt"):
            ins, outs = rnn_graph(T, n, checkpoint=cp, per_step_loss=False, bias=bias)
            f = fs[cp] = gc.function(ins, outs)
            got = f(W, x, h0)
            if want is None:
                want = got if bias else rnn_numpy(W, x, h0, per_step_loss=False)
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=cp)
            carries[cp] = peak_carries(f, (W, x, h0), n)
        what = "bias b, no xs" if bias else "xs of T rows"
        # what does not grow with T (the 64 x 64 gradient buffers, one step's temporaries):
        # the peak of the same loop of 4 steps
        ins, outs = rnn_graph(4, n, per_step_loss=False, bias=bias)
        fixed = peak_carries(gc.function(ins, outs), (W, x if bias else x[:4], h0), n)
        t = _timing.measure({cp: (lambda f: lambda: f(W, x, h0))(f) for cp, f in fs.items()},
                            repeat, min_time=0.0)
        ratio = t["sqrt"] / t["all"]
        print(f"(c) T={T:,} width {n} ({what}): peak carries all {carries['all']:,.0f}, sqrt "
              f"{carries['sqrt']:,.0f} (3 sqrt(T) = {bound:.0f}; a 4-step loop's peak "
              f"{fixed:,.0f}); time all "
              f"{t['all'] * 1e3:.1f} ms, sqrt {t['sqrt'] * 1e3:.1f} ms, sqrt/all {ratio:.2f}x")
        sys.stdout.flush()
        c = carries["sqrt"] - fixed
        note(f"(c) T={T:,} ({what}): peak, checkpoint='all'",
             f"{carries['all']:,.0f} carries ({carries['all'] - fixed:,.0f} above 4 steps)")
        note(f"(c) T={T:,} ({what}): peak, checkpoint='sqrt'",
             f"{carries['sqrt']:,.0f} carries ({c:,.0f} above 4 steps)",
             f"<= 3 sqrt(T) = {bound:.0f}",
             "met" if c <= bound else f"missed ({c / bound:.1f}x the bound)")
        note(f"(c) T={T:,} ({what}): time sqrt / all", f"{ratio:.2f}x", "<= 1.5x",
             "met" if ratio <= 1.5 else "missed")


# -- (d) RK4 of a damped oscillator ------------------------------------------------------------
DT = 0.05


def rk4(rhs, s, dt=DT):
    k1 = rhs(s)
    k2 = rhs(s + 0.5 * dt * k1)
    k3 = rhs(s + 0.5 * dt * k2)
    k4 = rhs(s + dt * k3)
    return s + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def ode_graph(steps: int, unrolled: bool):
    g = gc.Graph("oscillator")
    x0, p, target = g.input("x0", (2,)), g.input("p", (2,)), g.input("target", (2,))
    omega, zeta = p[0], p[1]

    def rhs(s):
        return gc.stack([s[1], -2.0 * zeta * omega * s[1] - omega * omega * s[0]])

    if unrolled:
        s = x0
        for _ in range(steps):
            s = rk4(rhs, s)
    else:
        s = gc.fori_loop(0, steps, lambda i, s: rk4(rhs, s), x0)
    loss = gc.sum((s - target) ** 2)
    return gc.function([x0, p, target], [s, gc.jacobian(s, x0), loss, gc.grad(loss, p)])


def ode_numpy(x0, p, target, steps: int):
    """The state and its four tangents (d/dx0 twice, d/domega, d/dzeta) by hand: the right-hand
    side is linear, f(s) = A s, so a tangent column u moves by A u + (dA/dp) s."""
    omega, zeta = p
    A = np.array([[0.0, 1.0], [-omega * omega, -2.0 * zeta * omega]])
    dA = (np.array([[0.0, 0.0], [-2.0 * omega, -2.0 * zeta]]),
          np.array([[0.0, 0.0], [0.0, -2.0 * omega]]))
    S = np.zeros((2, 5))  # column 0 the state, 1-2 d/dx0, 3-4 d/dp
    S[:, 0], S[:, 1:3] = x0, np.eye(2)

    def rhs(S):
        K = A @ S
        K[:, 3] += dA[0] @ S[:, 0]
        K[:, 4] += dA[1] @ S[:, 0]
        return K

    for _ in range(steps):
        S = rk4(rhs, S)
    r = S[:, 0] - target
    return S[:, 0], S[:, 1:3], r @ r, 2.0 * r @ S[:, 3:5]


def ode_jax(steps: int):
    def final(x0, p):
        omega, zeta = p[0], p[1]

        def rhs(s):
            return jnp.stack([s[1], -2.0 * zeta * omega * s[1] - omega * omega * s[0]])
        return lax.fori_loop(0, steps, lambda i, s: rk4(rhs, s), x0)

    def everything(x0, p, target):
        s = final(x0, p)
        loss = lambda q: jnp.sum((final(x0, q) - target) ** 2)  # noqa: E731
        return s, jax.jacfwd(final)(x0, p), loss(p), jax.grad(loss)(p)
    return jax.jit(everything)


def oscillator(steps: int, repeat: int) -> None:
    x0, p, target = np.array([1.0, 0.0]), np.array([2.0, 0.1]), np.array([0.3, -0.2])
    want = ode_numpy(x0, p, target, steps)
    # the exact Jacobian of `steps` RK4 steps of s' = A s: M^steps, M = sum_k (dt A)^k / k!
    A = np.array([[0.0, 1.0], [-p[0] ** 2, -2.0 * p[1] * p[0]]])
    M = sum(np.linalg.matrix_power(DT * A, k) / f for k, f in enumerate((1, 1, 2, 6, 24)))
    np.testing.assert_allclose(want[1], np.linalg.matrix_power(M, steps), rtol=1e-12,
                               atol=1e-14)
    fns = {"numpy": lambda: ode_numpy(x0, p, target, steps)}
    built = {}
    for name, unrolled in (("fori_loop", False), ("unrolled", True)):
        t0 = time.perf_counter()
        f = ode_graph(steps, unrolled)
        f(x0, p, target)
        built[name] = time.perf_counter() - t0
        for a, b in zip(f(x0, p, target), want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=name)
        fns[name] = (lambda f: lambda: f(x0, p, target))(f)
    if HAVE_JAX:
        jf = ode_jax(steps)
        xj, pj, tj = jnp.asarray(x0), jnp.asarray(p), jnp.asarray(target)
        for a, b in zip(jf(xj, pj, tj), want):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-10, atol=1e-13,
                                       err_msg="jax")
        fns["jax"] = lambda: jax.block_until_ready(jf(xj, pj, tj))
    t = timed_row(f"(d) RK4 x{steps}, state+Jacobian+loss+grad", fns, repeat)
    print(f"(d) build + compile + first call: fori_loop {built['fori_loop']:.2f} s, unrolled "
          f"{built['unrolled']:.2f} s")
    r = t["fori_loop"] / t["numpy"]
    if "jax" in t:
        vs = t["fori_loop"] / t["jax"]
        note(f"(d) RK4 x{steps}: fori_loop / JAX lax.fori_loop", f"{vs:.1f}x", "<= 2x",
             "met" if vs <= 2 else "missed")
    note("(d) same: fori_loop / numpy", f"{r:.2f}x")
    note("(d) same: unrolled graph / numpy", f"{t['unrolled'] / t['numpy']:.2f}x")
    if "jax" in t:
        note("(d) same: JAX / numpy", f"{t['jax'] / t['numpy']:.2f}x")
    note("(d) same: numpy per call", f"{t['numpy'] * 1e3:.2f} ms")
    note("(d) build + compile + first call: fori_loop / unrolled",
         f"{built['fori_loop']:.2f} / {built['unrolled']:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, under 30 s")
    args = ap.parse_args()
    if args.quick:
        repeat, T_chain, T_mem, steps, unrolled_sizes = 3, 50, 2_500, 20, ()
    else:
        repeat, T_chain, T_mem, steps, unrolled_sizes = 7, 200, 10_000, 100, (10, 1_000)
    print(f"JAX {jax.__version__}" if HAVE_JAX else "JAX not installed: no JAX columns")
    tanh_chain(T_chain, 64, repeat)
    compile_flat((10, 1_000, 100_000), 64, 3, unrolled_sizes)
    checkpointing(T_mem, 64, 3 if args.quick else 5)
    oscillator(steps, repeat)
    print()
    print("| row | figure | target | verdict |")
    print("|---|---:|---|---|")
    for row in SUMMARY:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
