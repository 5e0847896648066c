"""The optimizing compiler's benchmarks: per-call time against hand-written NumPy, same run.

Run: python bench/compiler.py [--quick]

Workloads: the book's XOR network (loss + gradient), the figure 6.11 MLP (forward, gradient,
HVP), a tanh MLP 784-512-512-10 with biases (the same three; hand-written NumPy backprop and
Pearlmutter's R-op for the HVP), Rosenbrock at n = 10**5 and 10**6 (gradient, HVP), a
depth-200 tanh chain of width 64 (loss + gradient), the compile time of a 2,000-op
elementwise graph's gradient + HVP, and the MLP HVP graph's node count raw vs optimized.
Every ratio is time / hand-written NumPy time measured in this run (lower is better). Where
JAX, PyTensor or PyTorch are installed (the `bench` extra: pip install -e ".[bench]"), their
columns are added for the same workloads, after checking their values against graphc's. BLAS
and every framework run on one thread, and the process is pinned to one core.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                           "intra_op_parallelism_threads=1")
os.environ.setdefault("PYTENSOR_FLAGS", "openmp=False,blas__ldflags=")
os.environ["JAX_ENABLE_X64"] = "1"
if hasattr(os, "sched_setaffinity"):  # one core for every framework: XLA's CPU client does not
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # heed the thread flags above

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import rosen_der, rosen_hess_prod  # noqa: E402

import graphc as gc  # noqa: E402

HAVE = {m: importlib.util.find_spec(m) is not None for m in ("jax", "pytensor", "torch")}
if HAVE["torch"]:
    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)


REPEAT = 7


def measure(fns: dict) -> dict:
    """Best seconds per call of each callable; the callables take turns in every round, so a
    change of load on the machine hits them all alike."""
    numbers = {}
    for k, fn in fns.items():
        fn()  # warm up (and compile)
        n = 1
        while timeit.timeit(fn, number=n) < 0.01 and n < 10000:
            n *= 4
        numbers[k] = n
    times = {k: float("inf") for k in fns}
    for _ in range(REPEAT):
        for k, fn in fns.items():
            times[k] = min(times[k], timeit.timeit(fn, number=numbers[k]) / numbers[k])
    return times


def report(label, fns: dict):
    """One row: hand-written NumPy's time, then every other column as a ratio to it."""
    t = measure({k: v for k, v in fns.items() if v is not None})
    hand = t.pop("numpy")
    cells = [f"{label:<34}", f"numpy {hand * 1e3:9.3f} ms"]
    for name, sec in t.items():
        cells.append(f"{name} {sec / hand:6.2f}x")
    print("  ".join(cells))
    sys.stdout.flush()


# -- XOR (book 6.1): f = relu(X W + c) w + b, loss = mean squared error --------------------
def xor(repeat):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    y = np.array([0, 1, 1, 0], float)
    W, c = np.ones((2, 2)), np.array([0.0, -1.0])
    w, b = np.array([1.0, -2.0]), np.array(0.1)
    g = gc.Graph("xor")
    Xn, yn = g.input("X", (4, 2)), g.input("y", (4,))
    Wn, cn, wn, bn = g.input("W", (2, 2)), g.input("c", (2,)), g.input("w", (2,)), g.input("b")
    loss = gc.mean(gc.square(yn - (gc.relu(Xn @ Wn + cn) @ wn + bn)))
    f = gc.function([Xn, yn, Wn, cn, wn, bn], [loss, *gc.grad(loss, [Wn, cn, wn, bn])])

    def hand():
        a = X @ W + c
        h = np.maximum(a, 0)
        r = h @ w + b - y
        d = 2 * r / 4
        dh = np.outer(d, w) * (a > 0)
        return np.mean(r * r), X.T @ dh, dh.sum(0), h.T @ d, d.sum()

    fns = {"numpy": hand, "graphc": lambda: f(X, y, W, c, w, b)}
    for a, b_ in zip(f(X, y, W, c, w, b), hand()):
        np.testing.assert_allclose(a, b_, rtol=1e-12)
    if HAVE["pytensor"]:
        import pytensor
        import pytensor.tensor as pt
        sX, sy, sW, sc, sw = pt.dmatrix(), pt.dvector(), pt.dmatrix(), pt.dvector(), pt.dvector()
        sb = pt.dscalar()
        pl = pt.mean(pt.sqr(sy - (pt.maximum(sX @ sW + sc, 0) @ sw + sb)))
        pf = pytensor.function([sX, sy, sW, sc, sw, sb], [pl, *pytensor.grad(pl, [sW, sc, sw, sb])])
        fns["pytensor"] = lambda: pf(X, y, W, c, w, b)
    if HAVE["jax"]:
        import jax
        import jax.numpy as jnp
        jl = jax.jit(jax.value_and_grad(lambda W, c, w, b, X, y: jnp.mean(
            (y - (jnp.maximum(X @ W + c, 0) @ w + b)) ** 2), argnums=(0, 1, 2, 3)))
        fns["jax"] = lambda: jax.block_until_ready(jl(W, c, w, b, X, y))
    if HAVE["torch"]:
        tX, ty = torch.from_numpy(X), torch.from_numpy(y)
        tp = [torch.from_numpy(a).requires_grad_() for a in (W, c, w, b)]

        def torch_xor():
            tW, tc, tw, tb = tp
            loss = torch.mean(torch.square(ty - (torch.relu(tX @ tW + tc) @ tw + tb)))
            return loss.detach(), torch.autograd.grad(loss, tp)
        fns["torch"] = torch_xor
    report("XOR loss+gradient", fns)


# -- figure 6.11 MLP: H = relu(X W1), U = H W2, J = mean CE + lam (|W1|^2 + |W2|^2) ------------
def mlp(repeat, n=512, d=784, h=256, k=10, lam=1e-3):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    labels = rng.integers(0, k, n)
    Y = np.eye(k)[labels]
    W1, W2 = rng.standard_normal((d, h)) * 0.05, rng.standard_normal((h, k)) * 0.05
    V1, V2 = rng.standard_normal((d, h)), rng.standard_normal((h, k))
    g = gc.Graph("mlp")
    Xn, yn = g.input("X", (n, d)), g.input("y", (n,), "int64")
    W1n, W2n = g.input("W1", (d, h)), g.input("W2", (h, k))
    V1n, V2n = g.input("V1", (d, h)), g.input("V2", (h, k))
    U = gc.relu(Xn @ W1n) @ W2n
    J = gc.softmax_cross_entropy(U, yn).mean() + lam * (gc.sum(gc.square(W1n))
                                                        + gc.sum(gc.square(W2n)))
    grads = gc.grad(J, [W1n, W2n])
    hv = gc.hvp(J, [W1n, W2n], [V1n, V2n])
    ins = [Xn, yn, W1n, W2n, V1n, V2n]
    vals = (X, labels, W1, W2, V1, V2)

    def forward():
        A = X @ W1
        H = np.maximum(A, 0)
        U = H @ W2
        m = U.max(1, keepdims=True)
        lse = np.log(np.exp(U - m).sum(1, keepdims=True)) + m
        J = (lse[:, 0] - U[np.arange(n), labels]).mean() + lam * ((W1 ** 2).sum()
                                                                  + (W2 ** 2).sum())
        return A, H, U, lse, J

    def gradient():
        A, H, U, lse, J = forward()
        dU = (np.exp(U - lse) - Y) / n
        dA = (dU @ W2.T) * (A > 0)
        return J, X.T @ dA + 2 * lam * W1, H.T @ dU + 2 * lam * W2

    def hvp():
        A, H, U, lse, J = forward()
        P = np.exp(U - lse)
        dU = (P - Y) / n
        mask = A > 0
        RH = (X @ V1) * mask
        RU = RH @ W2 + H @ V2
        RdU = P * (RU - (P * RU).sum(1, keepdims=True)) / n
        RdA = (RdU @ W2.T + dU @ V2.T) * mask
        return X.T @ RdA + 2 * lam * V1, RH.T @ dU + H.T @ RdU + 2 * lam * V2

    peers = mlp_peers(X, labels, W1, W2, V1, V2, lam)
    mlp_rows("MLP", ins, vals, (("forward", lambda: forward()[-1], [J]),
                                ("gradient", gradient, [J, *grads]),
                                ("HVP", hvp, hv)), peers)
    raw_n = len(gc.function(ins, hv, optimize=False).graph.nodes)
    opt_n = len(gc.function(ins, hv).graph.nodes)
    print(f"{'MLP HVP graph nodes':<34}  raw {raw_n}  optimized {opt_n}  "
          f"({opt_n / raw_n:.2f}x)")


def mlp_peers(X, labels, W1, W2, V1, V2, lam) -> dict:
    """{framework: {"forward", "gradient", "HVP": callable}} for the figure 6.11 MLP; each
    gradient callable returns (J, dW1, dW2) and each HVP callable (HW1, HW2)."""
    n = X.shape[0]
    peers = {}
    if HAVE["jax"]:
        import jax
        import jax.numpy as jnp

        def jloss(W1, W2):
            U = jnp.maximum(X @ W1, 0) @ W2
            ce = -jnp.take_along_axis(jax.nn.log_softmax(U, axis=1), labels[:, None], 1)
            return ce.mean() + lam * (jnp.sum(W1 ** 2) + jnp.sum(W2 ** 2))
        jf = jax.jit(jloss)
        jg = jax.jit(jax.value_and_grad(jloss, argnums=(0, 1)))
        jh = jax.jit(lambda W1, W2, V1, V2: jax.jvp(jax.grad(jloss, argnums=(0, 1)),
                                                    (W1, W2), (V1, V2))[1])
        peers["jax"] = {
            "forward": lambda: jax.block_until_ready(jf(W1, W2)),
            "gradient": lambda: (lambda r: (r[0], *r[1]))(jax.block_until_ready(jg(W1, W2))),
            "HVP": lambda: jax.block_until_ready(jh(W1, W2, V1, V2))}
    if HAVE["pytensor"]:
        import pytensor
        import pytensor.tensor as pt
        from pytensor.tensor.special import log_softmax
        sX, sy, sW1, sW2 = pt.dmatrix(), pt.lvector(), pt.dmatrix(), pt.dmatrix()
        sV1, sV2 = pt.dmatrix(), pt.dmatrix()
        U = pt.maximum(sX @ sW1, 0) @ sW2
        J = (-log_softmax(U, axis=1)[pt.arange(n), sy].mean()
             + lam * (pt.sum(sW1 ** 2) + pt.sum(sW2 ** 2)))
        g1, g2 = pytensor.grad(J, [sW1, sW2])
        h1, h2 = pytensor.grad(pt.sum(g1 * sV1) + pt.sum(g2 * sV2), [sW1, sW2])
        pf = pytensor.function([sX, sy, sW1, sW2], J)
        pg = pytensor.function([sX, sy, sW1, sW2], [J, g1, g2])
        ph = pytensor.function([sX, sy, sW1, sW2, sV1, sV2], [h1, h2])
        peers["pytensor"] = {"forward": lambda: pf(X, labels, W1, W2),
                             "gradient": lambda: pg(X, labels, W1, W2),
                             "HVP": lambda: ph(X, labels, W1, W2, V1, V2)}
    if HAVE["torch"]:
        import torch.nn.functional as F
        tX, ty = torch.from_numpy(X), torch.from_numpy(labels)
        tW1, tW2 = (torch.from_numpy(a).requires_grad_() for a in (W1, W2))
        tV1, tV2 = torch.from_numpy(V1), torch.from_numpy(V2)

        def tloss():
            U = torch.relu(tX @ tW1) @ tW2
            return F.cross_entropy(U, ty) + lam * (torch.sum(tW1 ** 2) + torch.sum(tW2 ** 2))

        def tforward():
            with torch.no_grad():
                return tloss()

        def tgrad():
            J = tloss()
            return (J.detach(), *torch.autograd.grad(J, (tW1, tW2)))

        def thvp():  # reverse-over-reverse: the gradient's graph, then its VJP with V
            g = torch.autograd.grad(tloss(), (tW1, tW2), create_graph=True)
            return torch.autograd.grad(g, (tW1, tW2), grad_outputs=(tV1, tV2))
        peers["torch"] = {"forward": tforward, "gradient": tgrad, "HVP": thvp}
    return peers


# -- tanh MLP 784-512-512-10 with biases: the book's deeper net, softmax CE + weight decay ----
def mlp_tanh(repeat, n=256, sizes=(784, 512, 512, 10), lam=1e-4):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((n, sizes[0]))
    labels = rng.integers(0, sizes[-1], n)
    rows = np.arange(n)
    shapes = [s for m, k in zip(sizes[:-1], sizes[1:]) for s in ((m, k), (k,))]
    P = [rng.standard_normal(s) / np.sqrt(s[0]) if len(s) == 2 else 0.1 * rng.standard_normal(s)
         for s in shapes]
    V = [rng.standard_normal(s) for s in shapes]
    g = gc.Graph("mlp_tanh")
    Xn, yn = g.input("X", X.shape), g.input("y", (n,), "int64")
    Pn = [g.input(name, s) for name, s in zip(("W1", "b1", "W2", "b2", "W3", "b3"), shapes)]
    Vn = [g.input("V" + p.name[1:] if p.name[0] == "W" else "c" + p.name[1:], p.shape)
          for p in Pn]
    h = Xn
    for k in range(0, len(Pn), 2):
        h = h @ Pn[k] + Pn[k + 1]
        if k < len(Pn) - 2:
            h = gc.tanh(h)
    J = (gc.softmax_cross_entropy(h, yn).mean()
         + lam * gc.add_n([gc.sum(gc.square(W)) for W in Pn[0::2]]))
    grads = gc.grad(J, Pn)
    hv = gc.hvp(J, Pn, Vn)
    W1, b1, W2, b2, W3, b3 = P
    V1, c1, V2, c2, V3, c3 = V

    # hand-written NumPy: backprop and Pearlmutter's R-op, in place where a buffer dies
    def forward():
        h1 = X @ W1
        h1 += b1
        np.tanh(h1, out=h1)
        h2 = h1 @ W2
        h2 += b2
        np.tanh(h2, out=h2)
        a3 = h2 @ W3
        a3 += b3
        m = a3.max(1, keepdims=True)
        e = np.exp(a3 - m)
        s = e.sum(1, keepdims=True)
        ce = (np.log(s[:, 0]) + m[:, 0] - a3[rows, labels]).mean()
        J = ce + lam * (np.vdot(W1, W1) + np.vdot(W2, W2) + np.vdot(W3, W3))
        return h1, h2, e / s, J

    def gradient():
        h1, h2, g3, J = forward()  # g3 = softmax, then dJ/da3
        g3[rows, labels] -= 1.0
        g3 /= n
        g2 = g3 @ W3.T
        g2 *= 1.0 - h2 * h2
        g1 = g2 @ W2.T
        g1 *= 1.0 - h1 * h1
        dW1 = X.T @ g1
        dW1 += 2 * lam * W1
        dW2 = h1.T @ g2
        dW2 += 2 * lam * W2
        dW3 = h2.T @ g3
        dW3 += 2 * lam * W3
        return J, dW1, g1.sum(0), dW2, g2.sum(0), dW3, g3.sum(0)

    def hvp():
        h1, h2, p, J = forward()
        d1, d2 = 1.0 - h1 * h1, 1.0 - h2 * h2
        Rh1 = X @ V1
        Rh1 += c1
        Rh1 *= d1
        Rh2 = Rh1 @ W2
        Rh2 += h1 @ V2
        Rh2 += c2
        Rh2 *= d2
        Ra3 = Rh2 @ W3 + h2 @ V3 + c3
        Rg3 = p * (Ra3 - (p * Ra3).sum(1, keepdims=True)) / n
        g3 = p
        g3[rows, labels] -= 1.0
        g3 /= n
        gh2 = g3 @ W3.T
        Rg2 = Rg3 @ W3.T + g3 @ V3.T
        Rg2 *= d2
        Rg2 -= 2.0 * gh2 * h2 * Rh2
        g2 = gh2 * d2
        gh1 = g2 @ W2.T
        Rg1 = Rg2 @ W2.T
        Rg1 += g2 @ V2.T
        Rg1 *= d1
        Rg1 -= 2.0 * gh1 * h1 * Rh1
        HW1 = X.T @ Rg1
        HW1 += 2 * lam * V1
        HW2 = Rh1.T @ g2
        HW2 += h1.T @ Rg2
        HW2 += 2 * lam * V2
        HW3 = Rh2.T @ g3 + h2.T @ Rg3 + 2 * lam * V3
        return HW1, Rg1.sum(0), HW2, Rg2.sum(0), HW3, Rg3.sum(0)

    ins, vals = [Xn, yn, *Pn, *Vn], (X, labels, *P, *V)
    peers = mlp_tanh_peers(X, labels, P, V, lam)
    mlp_rows("tanh MLP", ins, vals, (("forward", lambda: forward()[-1], [J]),
                                     ("gradient", gradient, [J, *grads]),
                                     ("HVP", hvp, hv)), peers)


def mlp_rows(prefix, ins, vals, rows, peers):
    """One row per (what, hand-written NumPy, graphc outputs): graphc's values checked
    against optimize=False, the hand-written NumPy and each framework's, then timed."""
    for what, hand, outs in rows:
        f = gc.function(ins, outs)
        raw = gc.function(ins, outs, optimize=False)
        got = f(*vals)
        got = [got] if what == "forward" else got
        for want in (raw(*vals), hand()):
            want = [want] if what == "forward" else want
            assert len(want) == len(got), what
            for a, b in zip(got, want):
                np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-10,
                                           err_msg=f"{prefix} {what}")
        for name, fn in peers.items():
            r = fn[what]()
            for a, b in zip(got, [r] if what == "forward" else r):
                np.testing.assert_allclose(np.asarray(b), a, rtol=1e-7, atol=1e-9,
                                           err_msg=f"{name} {prefix} {what}")
        report(f"{prefix} {what}", {"numpy": hand, "graphc": lambda f=f: f(*vals),
                                     "optimize=False": lambda raw=raw: raw(*vals),
                                     **{name: fn[what] for name, fn in peers.items()}})


def mlp_tanh_peers(X, labels, P, V, lam) -> dict:
    """{framework: {"forward", "gradient", "HVP": callable}} for the tanh MLP; a gradient
    callable returns (J, dW1, db1, dW2, db2, dW3, db3), an HVP callable the six products."""
    n = X.shape[0]
    peers = {}

    if HAVE["jax"]:
        import jax
        import jax.numpy as jnp

        def jloss(*P):
            U = X
            for k in range(0, len(P), 2):
                U = U @ P[k] + P[k + 1]
                if k < len(P) - 2:
                    U = jnp.tanh(U)
            ce = -jnp.take_along_axis(jax.nn.log_softmax(U, axis=1), labels[:, None], 1)
            return ce.mean() + lam * sum(jnp.sum(W ** 2) for W in P[0::2])
        args = tuple(range(len(P)))
        jf = jax.jit(jloss)
        jg = jax.jit(jax.value_and_grad(jloss, argnums=args))
        jh = jax.jit(lambda P, V: jax.jvp(jax.grad(lambda *Q: jloss(*Q), argnums=args),
                                          tuple(P), tuple(V))[1])
        peers["jax"] = {
            "forward": lambda: jax.block_until_ready(jf(*P)),
            "gradient": lambda: (lambda r: (r[0], *r[1]))(jax.block_until_ready(jg(*P))),
            "HVP": lambda: jax.block_until_ready(jh(P, V))}
    if HAVE["pytensor"]:
        import pytensor
        import pytensor.tensor as pt
        from pytensor.tensor.special import log_softmax
        sX, sy = pt.dmatrix(), pt.lvector()
        sP = [pt.dmatrix() if p.ndim == 2 else pt.dvector() for p in P]
        sV = [pt.dmatrix() if p.ndim == 2 else pt.dvector() for p in P]
        h = sX
        for k in range(0, len(sP), 2):
            h = h @ sP[k] + sP[k + 1]
            if k < len(sP) - 2:
                h = pt.tanh(h)
        J = (-log_softmax(h, axis=1)[pt.arange(n), sy].mean()
             + lam * sum(pt.sum(W ** 2) for W in sP[0::2]))
        gs = pytensor.grad(J, sP)
        hs = pytensor.grad(sum(pt.sum(a * v) for a, v in zip(gs, sV)), sP)
        pf = pytensor.function([sX, sy, *sP], J)
        pg = pytensor.function([sX, sy, *sP], [J, *gs])
        ph = pytensor.function([sX, sy, *sP, *sV], hs)
        peers["pytensor"] = {"forward": lambda: pf(X, labels, *P),
                             "gradient": lambda: pg(X, labels, *P),
                             "HVP": lambda: ph(X, labels, *P, *V)}
    if HAVE["torch"]:
        import torch.nn.functional as F
        tX, ty = torch.from_numpy(X), torch.from_numpy(labels)
        tP = [torch.from_numpy(a).requires_grad_() for a in P]
        tV = [torch.from_numpy(a) for a in V]

        def tloss():
            h = tX
            for k in range(0, len(tP), 2):
                h = h @ tP[k] + tP[k + 1]
                if k < len(tP) - 2:
                    h = torch.tanh(h)
            return F.cross_entropy(h, ty) + lam * sum(torch.sum(W ** 2) for W in tP[0::2])

        def tforward():
            with torch.no_grad():
                return tloss()

        def tgrad():
            J = tloss()
            return (J.detach(), *torch.autograd.grad(J, tP))

        def thvp():  # reverse-over-reverse: the gradient's graph, then its VJP with V
            g = torch.autograd.grad(tloss(), tP, create_graph=True)
            return torch.autograd.grad(g, tP, grad_outputs=tV)
        peers["torch"] = {"forward": tforward, "gradient": tgrad, "HVP": thvp}
    return peers


# -- Rosenbrock ------------------------------------------------------------------------------
def rosenbrock(repeat, n):
    rng = np.random.default_rng(1)
    x, p = rng.uniform(-1, 1, n), rng.standard_normal(n)
    g = gc.Graph("rosen")
    xn, pn = g.input("x", (n,)), g.input("p", (n,))
    z = gc.sum(100.0 * (xn[1:] - xn[:-1] ** 2.0) ** 2.0 + (1.0 - xn[:-1]) ** 2.0)
    gx = gc.grad(z, xn)
    hv = gc.hvp(z, xn, pn)
    fg, fh = gc.function([xn], gx), gc.function([xn, pn], hv)
    np.testing.assert_allclose(fg(x), rosen_der(x), rtol=1e-10)
    np.testing.assert_allclose(fh(x, p), rosen_hess_prod(x, p), rtol=1e-10, atol=1e-9)
    rg, rh = gc.function([xn], gx, optimize=False), gc.function([xn, pn], hv, optimize=False)
    rows = {"gradient": {"numpy": lambda: rosen_der(x), "graphc": lambda: fg(x),
                         "optimize=False": lambda: rg(x)},
            "HVP": {"numpy": lambda: rosen_hess_prod(x, p), "graphc": lambda: fh(x, p),
                    "optimize=False": lambda: rh(x, p)}}
    if HAVE["jax"]:
        import jax
        import jax.numpy as jnp

        def jr(x):
            return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
        jgrad = jax.jit(jax.grad(jr))
        jhvp = jax.jit(lambda x, p: jax.jvp(jax.grad(jr), (x,), (p,))[1])
        rows["gradient"]["jax"] = lambda: jax.block_until_ready(jgrad(x))
        rows["HVP"]["jax"] = lambda: jax.block_until_ready(jhvp(x, p))
    if HAVE["pytensor"]:
        import pytensor
        import pytensor.tensor as pt
        sx, sp = pt.dvector(), pt.dvector()
        sz = pt.sum(100.0 * (sx[1:] - sx[:-1] ** 2) ** 2 + (1 - sx[:-1]) ** 2)
        sg = pytensor.grad(sz, sx)
        pg = pytensor.function([sx], sg)
        ph = pytensor.function([sx, sp], pytensor.grad(pt.sum(sg * sp), sx))
        rows["gradient"]["pytensor"] = lambda: pg(x)
        rows["HVP"]["pytensor"] = lambda: ph(x, p)
    if HAVE["torch"]:
        tx, tp = torch.from_numpy(x).requires_grad_(), torch.from_numpy(p)

        def tr():
            return torch.sum(100.0 * (tx[1:] - tx[:-1] ** 2) ** 2 + (1 - tx[:-1]) ** 2)

        def thvp():
            (g,) = torch.autograd.grad(tr(), tx, create_graph=True)
            return torch.autograd.grad(g, tx, grad_outputs=tp)[0]
        rows["gradient"]["torch"] = lambda: torch.autograd.grad(tr(), tx)[0]
        rows["HVP"]["torch"] = thvp
    for name in ("jax", "pytensor", "torch"):  # each framework's values against SciPy's
        if name in rows["gradient"]:
            np.testing.assert_allclose(np.asarray(rows["gradient"][name]()), rosen_der(x),
                                       rtol=1e-9, err_msg=name)
            np.testing.assert_allclose(np.asarray(rows["HVP"][name]()), rosen_hess_prod(x, p),
                                       rtol=1e-9, atol=1e-8, err_msg=name)
    for what, fns in rows.items():
        report(f"Rosenbrock n={n:.0e} {what}", fns)


# -- depth-200 tanh chain of width 64 --------------------------------------------------------
def tanh_chain(repeat, depth=200, width=64):
    rng = np.random.default_rng(2)
    W = rng.standard_normal((depth, width, width)) / np.sqrt(width)
    x0 = rng.standard_normal(width)
    g = gc.Graph("chain")
    Wn, xn = g.input("W", (depth, width, width)), g.input("x", (width,))
    h = xn
    for k in range(depth):
        h = gc.tanh(Wn[k] @ h)
    z = gc.sum(h)
    f = gc.function([Wn, xn], [z, *gc.grad(z, [Wn, xn])])

    def hand():
        hs = [x0]
        for k in range(depth):
            hs.append(np.tanh(W[k] @ hs[-1]))
        gW = np.empty_like(W)
        d = np.ones(width)
        for k in reversed(range(depth)):
            d = d * (1 - hs[k + 1] ** 2)
            gW[k] = np.outer(d, hs[k])
            d = W[k].T @ d
        return hs[-1].sum(), gW, d

    got, want = f(W, x0), hand()
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    fns = {"numpy": hand, "graphc": lambda: f(W, x0)}
    if HAVE["jax"]:
        import jax
        import jax.numpy as jnp

        def jchain(W, x):
            for k in range(depth):
                x = jnp.tanh(W[k] @ x)
            return jnp.sum(x)
        jg = jax.jit(jax.value_and_grad(jchain, argnums=(0, 1)))
        fns["jax"] = lambda: jax.block_until_ready(jg(W, x0))
    # PyTensor is left out here: its default mode ran out of 12 GB compiling this chain's
    # gradient (issue 4), which no benchmark run should risk
    if HAVE["torch"]:
        tW, tx = torch.from_numpy(W).requires_grad_(), torch.from_numpy(x0).requires_grad_()

        def tchain():
            h = tx
            for k in range(depth):
                h = torch.tanh(tW[k] @ h)
            z = torch.sum(h)
            return (z.detach(), *torch.autograd.grad(z, (tW, tx)))
        fns["torch"] = tchain
    for name in ("jax", "torch"):
        if name in fns:
            r = fns[name]()
            r = (r[0], *r[1]) if name == "jax" else r
            for a, b in zip(got, r):
                np.testing.assert_allclose(np.asarray(b), a, rtol=1e-9, atol=1e-12,
                                           err_msg=name)
    report(f"tanh chain {depth}x{width} loss+gradient", fns)


# -- compile time of a 2,000-op elementwise graph's gradient + HVP -----------------------------
def compile_time(n_ops=2000, width=16, seed=3):
    rng = np.random.default_rng(seed)
    unary = [gc.sin, gc.cos, gc.tanh, gc.sigmoid, gc.softplus, lambda a: a * a]
    t0 = time.perf_counter()
    g = gc.Graph("wide")
    x, v = g.input("x", (width,)), g.input("v", (width,))
    nodes = [x, gc.sin(x)]
    while len(g.nodes) < n_ops:
        a = nodes[rng.integers(len(nodes))]
        if rng.random() < 0.5:
            nodes.append(unary[rng.integers(len(unary))](a))
        else:
            b = nodes[rng.integers(len(nodes))]
            nodes.append(a * b if rng.random() < 0.5 else a + 0.5 * b)
    z = gc.sum(nodes[-1]) + gc.sum(gc.add_n(nodes[-50:]))
    ops_forward = len(g.nodes)
    gx = gc.grad(z, x)
    hv = gc.hvp(z, x, v)
    built = time.perf_counter()
    f = gc.function([x, v], [z, gx, hv])
    done = time.perf_counter()
    f(rng.standard_normal(width), rng.standard_normal(width))
    print(f"{'2,000-op graph grad+HVP compile':<34}  {ops_forward} forward ops, "
          f"{len(g.nodes)} nodes in all, optimized to {len(f.graph.nodes)}: "
          f"build {built - t0:.2f} s + compile {done - built:.2f} s = {done - t0:.2f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats, skip n=10**6")
    args = ap.parse_args()
    global REPEAT
    REPEAT = repeat = 3 if args.quick else 7
    print("ratios: time / hand-written NumPy in this run (lower is better); one thread;",
          "frameworks:", ", ".join(k for k, v in HAVE.items() if v) or "none")
    g = gc.Graph("warm-up")  # imports and first-use costs are not the graph's compile time
    x = g.input("x", (2,))
    gc.function([x], gc.grad(gc.sum(gc.sin(x)), x))
    for seed in (3, 4, 5):  # three different graphs: no cache hits
        compile_time(seed=seed)
    xor(repeat)
    mlp(repeat)
    mlp_tanh(repeat)
    for n in ((10**5,) if args.quick else (10**5, 10**6)):
        rosenbrock(repeat, n)
    tanh_chain(repeat)


if __name__ == "__main__":
    main()
