"""Forward, gradient and Hessian-vector product timings against hand-written NumPy.

Run: python bench/hvp.py [--quick]

1. The figure 6.11 MLP (784-512-512-10, tanh, batch 256, softmax cross-entropy plus weight
   decay, all weights and biases as parameters), float64. Baseline: hand-written NumPy forward,
   backprop and Pearlmutter's R-op for the HVP.
2. Rosenbrock at n = 10**6. Baseline: hand-written NumPy value, gradient and the tridiagonal
   Hessian's product.
3. Node counts of the k-th derivative (k = 1, 2, 3, by repeated grad) of the diamond ladder
   x -> h_1 -> ... -> h_d, h_{i+1} = sin(h_i) * cos(h_i): each rung a diamond.

Every time is the best of several runs; every ratio is against a baseline measured in this run.
The HVP rows time a full evaluation (forward + gradient + product) unless marked "per product",
which is a `gc.hessian_operator` matvec: the gradient side computed once per point.
"""

from __future__ import annotations

import argparse
import sys
import timeit

import numpy as np

import graphc as gc
from graphc.autodiff.second_order import _hvp_forward, _hvp_reverse, cost
from graphc.ir import walk


def best_of(fns: dict, repeat: int) -> dict:
    """Best time of each callable over `repeat` rounds, the callables interleaved in each round
    so that a load change on the machine hits them all alike."""
    for fn in fns.values():
        fn()  # warm up
    times = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            times[k] = min(times[k], timeit.timeit(fn, number=1))
    return times


def row(label: str, t: float, base: float | None = None, note: str = "") -> None:
    ratio = f"{t / base:6.2f}x" if base else "       "
    print(f"  {label:<40} {t * 1e3:9.2f} ms  {ratio}  {note}")


# -- 1. the MLP ----------------------------------------------------------------------------
def mlp_numpy(params, X, Y, lam):
    W1, b1, W2, b2, W3, b3 = params
    B = X.shape[0]

    def forward():
        h1 = np.tanh(X @ W1 + b1)
        h2 = np.tanh(h1 @ W2 + b2)
        a3 = h2 @ W3 + b3
        m = a3.max(axis=1, keepdims=True)
        lse = np.log(np.exp(a3 - m).sum(axis=1, keepdims=True)) + m
        ce = (lse[:, 0] - (a3 * Y).sum(axis=1)).mean()
        return ce + lam * ((W1 * W1).sum() + (W2 * W2).sum() + (W3 * W3).sum()), (h1, h2, a3, lse)

    def gradient():
        loss, (h1, h2, a3, lse) = forward()
        g3 = (np.exp(a3 - lse) - Y) / B
        gh2 = g3 @ W3.T
        g2 = gh2 * (1 - h2 * h2)
        gh1 = g2 @ W2.T
        g1 = gh1 * (1 - h1 * h1)
        return [X.T @ g1 + 2 * lam * W1, g1.sum(0), h1.T @ g2 + 2 * lam * W2, g2.sum(0),
                h2.T @ g3 + 2 * lam * W3, g3.sum(0)]

    def hvp(V):
        V1, c1, V2, c2, V3, c3 = V
        h1 = np.tanh(X @ W1 + b1)
        Rh1 = (1 - h1 * h1) * (X @ V1 + c1)
        h2 = np.tanh(h1 @ W2 + b2)
        Rh2 = (1 - h2 * h2) * (Rh1 @ W2 + h1 @ V2 + c2)
        a3 = h2 @ W3 + b3
        Ra3 = Rh2 @ W3 + h2 @ V3 + c3
        p = np.exp(a3 - a3.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g3 = (p - Y) / B
        Rg3 = p * (Ra3 - (p * Ra3).sum(axis=1, keepdims=True)) / B
        gh2 = g3 @ W3.T
        Rgh2 = Rg3 @ W3.T + g3 @ V3.T
        d2 = 1 - h2 * h2
        Rg2 = Rgh2 * d2 - 2 * gh2 * h2 * Rh2
        g2 = gh2 * d2
        gh1 = g2 @ W2.T
        Rgh1 = Rg2 @ W2.T + g2 @ V2.T
        d1 = 1 - h1 * h1
        Rg1 = Rgh1 * d1 - 2 * gh1 * h1 * Rh1
        return [X.T @ Rg1 + 2 * lam * V1, Rg1.sum(0), Rh1.T @ g2 + h1.T @ Rg2 + 2 * lam * V2,
                Rg2.sum(0), Rh2.T @ g3 + h2.T @ Rg3 + 2 * lam * V3, Rg3.sum(0)]

    return (lambda: forward()[0]), gradient, hvp


def bench_mlp(repeat: int) -> dict:
    rng = np.random.default_rng(0)
    sizes, B, lam = [784, 512, 512, 10], 256, 1e-4
    g = gc.Graph("mlp")
    X = g.input("X", shape=(B, 784))
    y = g.input("y", shape=(B,), dtype="int64")
    params, values = [], []
    h = X
    for k, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        W = g.input(f"W{k}", shape=(m, n))
        b = g.input(f"b{k}", shape=(n,))
        params += [W, b]
        values += [rng.standard_normal((m, n)) / np.sqrt(m), 0.1 * rng.standard_normal(n)]
        h = h @ W + b
        if k < len(sizes) - 1:
            h = gc.tanh(h)
    ce = gc.softmax_cross_entropy(h, y).mean()
    loss = ce + lam * gc.add_n([gc.sum(W * W) for W in params[0::2]])
    X_val = rng.standard_normal((B, 784))
    y_val = rng.integers(0, 10, B)
    Y_val = np.eye(10)[y_val]
    V_val = [rng.standard_normal(v.shape) for v in values]
    vs = [g.input(f"v_{p.name}", shape=p.shape) for p in params]
    feed = [X_val, y_val, *values]
    inputs = [X, y, *params]

    np_fwd, np_grad, np_hvp = mlp_numpy(values, X_val, Y_val, lam)
    grads = gc.grad(loss, params)
    hv = {m: gc.hvp(loss, params, vs, mode=m) for m in ("forward", "reverse", "auto")}
    f_fwd = gc.function(inputs, loss)
    f_grad = gc.function(inputs, grads)
    f_hvp = {m: gc.function(inputs + vs, out) for m, out in hv.items()}

    # Correctness against the hand-written versions before timing anything.
    assert abs(float(f_fwd(*feed)) - np_fwd()) < 1e-9
    for a, b in zip(f_grad(*feed), np_grad()):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    ref = np_hvp(V_val)
    for m, f in f_hvp.items():
        for a, b in zip(f(*feed, *V_val), ref):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9, err_msg=m)

    op = gc.hessian_operator(loss, params, at=dict(zip(inputs, feed)))
    flat_v = np.concatenate([v.ravel() for v in V_val])
    np.testing.assert_allclose(op @ flat_v, np.concatenate([r.ravel() for r in ref]),
                               rtol=1e-7, atol=1e-9)

    fns = {"np_fwd": np_fwd, "np_grad": np_grad, "np_hvp": lambda: np_hvp(V_val),
           "fwd": lambda: f_fwd(*feed), "grad": lambda: f_grad(*feed),
           "op": lambda: op.matvec(flat_v)}
    fns.update({m: (lambda f=f: f(*feed, *V_val)) for m, f in f_hvp.items()})
    t = best_of(fns, repeat)
    t["np_op"] = t["np_hvp"]  # the R-op has no separable point part worth caching by hand
    with g.scratch():
        gs = gc.grad(loss, params)
        costs = {"forward": cost(_hvp_forward(loss, params, vs, gs)),
                 "reverse": cost(_hvp_reverse(loss, params, vs, gs))}
    from graphc.autodiff.second_order import choose_mode
    t["picked"] = choose_mode(loss, params, vs)
    t["costs"] = costs
    return t


# -- 2. Rosenbrock -------------------------------------------------------------------------
def rosen_numpy(x):
    a, b = x[:-1], x[1:]

    def fun():
        return float((100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2).sum())

    def grad():
        d = b - a * a
        out = np.zeros_like(x)
        out[:-1] = -400.0 * a * d - 2.0 * (1.0 - a)
        out[1:] += 200.0 * d
        return out

    def hvp(v):
        out = np.zeros_like(x)
        out[:-1] = (1200.0 * a * a - 400.0 * b + 2.0) * v[:-1] - 400.0 * a * v[1:]
        out[1:] += 200.0 * v[1:] - 400.0 * a * v[:-1]
        return out

    return fun, grad, hvp


def rosenbrock(x):
    """The n-dimensional Rosenbrock function as a graph (also used by the tests)."""
    a, b = x[:-1], x[1:]
    return (100.0 * (b - a ** 2) ** 2 + (1.0 - a) ** 2).sum()


def bench_rosen(n: int, repeat: int) -> dict:
    rng = np.random.default_rng(1)
    g = gc.Graph("rosenbrock")
    x = g.input("x", shape=(n,))
    v = g.input("v", shape=(n,))
    f = rosenbrock(x)
    x_val = rng.uniform(-1.5, 1.5, n)
    v_val = rng.standard_normal(n)
    np_fun, np_grad, np_hvp = rosen_numpy(x_val)
    f_fwd = gc.function([x], f)
    f_grad = gc.function([x], gc.grad(f, x))
    f_hvp = {m: gc.function([x, v], gc.hvp(f, x, v, mode=m))
             for m in ("forward", "reverse", "auto")}
    assert abs(float(f_fwd(x_val)) - np_fun()) <= 1e-9 * abs(np_fun())
    np.testing.assert_allclose(f_grad(x_val), np_grad(), rtol=1e-10, atol=1e-8)
    for m, fh in f_hvp.items():
        np.testing.assert_allclose(fh(x_val, v_val), np_hvp(v_val), rtol=1e-10, atol=1e-8,
                                   err_msg=m)
    op = gc.hessian_operator(f, x, at={x: x_val})
    np.testing.assert_allclose(op @ v_val, np_hvp(v_val), rtol=1e-10, atol=1e-8)
    fns = {"np_fwd": np_fun, "np_grad": np_grad, "np_hvp": lambda: np_hvp(v_val),
           "fwd": lambda: f_fwd(x_val), "grad": lambda: f_grad(x_val),
           "op": lambda: op.matvec(v_val)}
    fns.update({m: (lambda fh=fh: fh(x_val, v_val)) for m, fh in f_hvp.items()})
    t = best_of(fns, repeat)
    t["np_op"] = t["np_hvp"]
    with g.scratch():
        gs = gc.grad(f, [x])
        t["costs"] = {"forward": cost(_hvp_forward(f, [x], [v], gs)),
                      "reverse": cost(_hvp_reverse(f, [x], [v], gs))}
    from graphc.autodiff.second_order import choose_mode
    t["picked"] = choose_mode(f, [x], [v])
    return t


def report(title: str, t: dict) -> None:
    print(f"\n{title}")
    print(f"  {'':<40} {'graphc':>12}  {'/ numpy':>7}")
    row("forward", t["fwd"], t["np_fwd"])
    row("gradient", t["grad"], t["np_grad"], f"gradient/forward = {t['grad'] / t['fwd']:.2f}x "
        f"(numpy {t['np_grad'] / t['np_fwd']:.2f}x; target <= 3)")
    for m in ("reverse", "forward", "auto"):
        note = ""
        if m == "auto":
            note = (f"picked {t['picked']!r}; hvp/gradient = {t['auto'] / t['grad']:.2f}x "
                    "(target <= 2.5)")
        row(f"hvp mode={m!r}", t[m], t["np_hvp"], note)
    row("hvp per product (hessian_operator)", t["op"], t["np_op"],
        f"/gradient = {t['op'] / t['grad']:.2f}x")
    faster = "forward" if t["forward"] <= t["reverse"] else "reverse"
    c = t["costs"]
    print(f"  cost model: forward {c['forward']:.3g} flops, reverse {c['reverse']:.3g} flops; "
          f"auto picked {t['picked']!r}, measured faster {faster!r} "
          f"({'agrees' if faster == t['picked'] else 'DISAGREES'})")
    print(f"  graphc hvp (auto) / hand-written numpy hvp = {t['auto'] / t['np_hvp']:.2f}x "
          "(target <= 1.3)")


# -- 3. the diamond ladder -----------------------------------------------------------------
def diamond_counts(depth: int, order: int) -> int:
    g = gc.Graph("ladder")
    x = g.input("x")
    h = x
    for _ in range(depth):
        h = gc.sin(h) * gc.cos(h)
    d = h
    for _ in range(order):
        d = gc.grad(d, x)
    return len(walk.ancestors([d]))


def report_ladder(depths) -> None:
    print("\nDiamond ladder h_{i+1} = sin(h_i) * cos(h_i): nodes of the k-th derivative "
          "(ancestors of d^k h / dx^k)")
    print("  depth " + "".join(f"{'k=' + str(k):>10}{'/depth':>8}" for k in (1, 2, 3)))
    for d in depths:
        cells = "".join(f"{(c := diamond_counts(d, k)):>10}{c / d:>8.1f}" for k in (1, 2, 3))
        print(f"  {d:>5} {cells}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, Rosenbrock n = 10**5")
    args = ap.parse_args(argv)
    repeat = 5 if args.quick else 20
    n = 10 ** 5 if args.quick else 10 ** 6
    print(f"graphc {gc.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    report("MLP 784-512-512-10, tanh, batch 256, float64 (figure 6.11 loss)", bench_mlp(repeat))
    report(f"Rosenbrock, n = {n}, float64", bench_rosen(n, repeat))
    report_ladder([8, 16, 32, 64, 128])


if __name__ == "__main__":
    main()
