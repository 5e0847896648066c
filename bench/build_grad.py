"""build_grad's scaling and the cost of running a gradient, as ratios measured in one run.

    python bench/build_grad.py

Chains of n = 10^3, 10^4, 10^5 nodes (y <- tanh(y) * a + b): the time `grad` takes to build
the gradient graph, and the time to evaluate the gradient, each divided by the time to evaluate
the forward chain. Build time must scale linearly (the 10^5 chain within 15x the 10^4 chain).
Then the figure 6.11 MLP (batch 256, 784-512-10, relu, cross-entropy, weight decay): evaluating
loss + gradient over evaluating the loss (target <= 3x).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import graphc as gc  # noqa: E402


def best_of(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def chain(n: int):
    g = gc.Graph(f"chain{n}")
    x = g.input("x", shape=(8,))
    y = x
    for _ in range(n // 3):
        y = gc.tanh(y) * 0.9 + 0.01
    return g, x, y.sum()


def bench_chains():
    print("chain length | nodes | grad build (s) | build/forward | grad eval/forward")
    builds = {}
    xv = np.linspace(-1, 1, 8)
    for n in (1_000, 10_000, 100_000):
        g, x, z = chain(n)
        fwd = gc.function([x], z, optimize=False)
        t_fwd = best_of(lambda: fwd(xv), 3)
        t0 = time.perf_counter()
        gx = gc.grad(z, x)
        t_build = time.perf_counter() - t0
        builds[n] = t_build
        both = gc.function([x], [z, gx], optimize=False)
        t_grad = best_of(lambda: both(xv), 3)
        print(f"{n:>12,} | {len(g.nodes):>7,} | {t_build:>14.3f} | {t_build / t_fwd:>13.1f} | "
              f"{t_grad / t_fwd:>17.2f}")
    ratio = builds[100_000] / builds[10_000]
    print(f"build time 10^5 chain / 10^4 chain: {ratio:.1f}x (linear: 10x; target <= 15x)")
    return ratio


def bench_mlp():
    rng = np.random.default_rng(0)
    batch, d, hidden, classes = 256, 784, 512, 10
    g = gc.Graph("mlp")
    X = g.input("X", shape=("batch", d))
    y = g.input("y", shape=("batch",), dtype="int64")
    W1 = g.input("W1", shape=(d, hidden))
    W2 = g.input("W2", shape=(hidden, classes))
    H = gc.relu(X @ W1)
    J = gc.softmax_cross_entropy(H @ W2, y).mean() + 1e-4 * (
        gc.sum(gc.square(W1)) + gc.sum(gc.square(W2)))
    dW1, dW2 = gc.grad(J, [W1, W2])
    vals = (rng.standard_normal((batch, d)), rng.integers(0, classes, batch),
            0.05 * rng.standard_normal((d, hidden)), 0.05 * rng.standard_normal((hidden, classes)))
    fwd = gc.function([X, y, W1, W2], J)
    both = gc.function([X, y, W1, W2], [J, dW1, dW2])
    t_fwd = best_of(lambda: fwd(*vals), 10)
    t_grad = best_of(lambda: both(*vals), 10)
    print(f"figure 6.11 MLP, batch {batch}, {d}-{hidden}-{classes}: forward {t_fwd * 1e3:.2f} ms, "
          f"loss+gradient {t_grad * 1e3:.2f} ms, ratio {t_grad / t_fwd:.2f}x (target <= 3x)")
    return t_grad / t_fwd


if __name__ == "__main__":
    bench_chains()
    bench_mlp()
