"""Limits: graphs of 10^3 to 10^6 nodes, the widest sum of issue 14, and peak memory.

    python bench/limits.py            # chains of 10^3 ... 10^6 nodes (the 10^6 run takes minutes)
    python bench/limits.py --quick    # up to 10^5, and the wide sum optimized only

1. Chains y <- sin(y)/2 + y/2 of 10^3, 10^4, 10^5 (and 10^6) forward nodes: build, grad,
   compile and run, with the compile time per node of the whole graph (forward + gradient)
   and its spread over the sizes (issue 14's target: flat within 2x; 10^6 nodes in 40 s).
   Nothing recurses: the recursion limit is lowered to Python's default first.
2. The wide sum z = sum_i sin(a_i x) exp(b_i x) at m = 16,667 terms (10^5 forward nodes),
   gradient and HVP compiled with and without rewrites, checked against the closed form.
3. Peak memory (tracemalloc, which sees NumPy's buffers) of running the depth-200 tanh chain
   of width 64 and the figure 6.11 MLP: forward alone and forward + gradient, as a ratio.
   Since intermediates are freed after their last use, the gradient's peak is the forward's
   live set (the activations back-propagation needs) plus a few cotangents.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import graphc as gc  # noqa: E402


def big_graph(n_nodes: int):
    sys.setrecursionlimit(1000)  # prove nothing recurses: the default limit, lowered
    t0 = time.perf_counter()
    g = gc.Graph(f"n{n_nodes}")
    x = g.input("x", shape=(4,))
    y = x
    while len(g.nodes) < n_nodes:
        y = gc.sin(y) * 0.5 + y * 0.5
    z = y.sum()
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    gx = gc.grad(z, x)
    t_grad = time.perf_counter() - t0
    t0 = time.perf_counter()
    f = gc.function([x], [z, gx])
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    zv, gv = f(np.linspace(-1, 1, 4))
    t_run = time.perf_counter() - t0
    assert np.isfinite(gv).all()
    per_node = t_compile / len(g.nodes)
    print(f"{len(g.nodes):>10,} nodes: build {t_build:6.2f} s, grad {t_grad:6.2f} s, "
          f"compile {t_compile:6.2f} s ({per_node * 1e6:5.1f} us/node), run {t_run:6.2f} s")
    return per_node, t_compile


def wide_sum(m: int, optimize: bool, n: int = 16):
    """Issue 14's wide sum: gradient + HVP of sum_i sin(a_i x) exp(b_i x), against its closed
    form to 1e-12 (relative to the largest entry)."""
    rng = np.random.default_rng(14)
    a, b = rng.uniform(-1, 1, m), rng.uniform(-0.3, 0.3, m)
    t0 = time.perf_counter()
    g = gc.Graph("wide_sum")
    x, v = g.input("x", (n,)), g.input("v", (n,))
    total = None
    for ai, bi in zip(a, b):
        t = gc.sin(float(ai) * x) * gc.exp(float(bi) * x)
        total = t if total is None else total + t
    z = gc.sum(total)
    forward = len(g.nodes)
    outs = [gc.grad(z, x), gc.hvp(z, x, v)]
    t1 = time.perf_counter()
    f = gc.function([x, v], outs, optimize=optimize)
    t2 = time.perf_counter()
    xv, vv = rng.uniform(-2, 2, n), rng.standard_normal(n)
    grad, hvp = f(xv, vv)
    A, B = a[:, None], b[:, None]
    s_, c_, e_ = np.sin(A * xv), np.cos(A * xv), np.exp(B * xv)
    want_grad = ((A * c_ + B * s_) * e_).sum(axis=0)
    want_hvp = ((-A * A * s_ + 2 * A * B * c_ + B * B * s_) * e_).sum(axis=0) * vv
    err = max(abs(grad - want_grad).max() / abs(want_grad).max(),
              abs(hvp - want_hvp).max() / abs(want_hvp).max())
    assert err < 1e-12, err
    print(f"wide sum m={m:,} ({forward:,} forward nodes, {len(g.nodes):,} in all), "
          f"optimize={optimize}: build + grad + HVP {t1 - t0:6.2f} s, compile {t2 - t1:6.2f} s; "
          f"gradient and HVP within {err:.1e} of the closed form")


def peak_bytes(fn, *args) -> int:
    fn(*args)  # warm up caches outside the measurement
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def memory_chain():
    g = gc.Graph("tanh_chain")
    x = g.input("x", shape=(256, 64))
    W = g.input("W", shape=(64, 64))
    h = x
    for _ in range(200):
        h = gc.tanh(h @ W)
    z = gc.sum(h * h)
    gW = gc.grad(z, W)
    rng = np.random.default_rng(0)
    vals = (rng.standard_normal((256, 64)), rng.standard_normal((64, 64)) / 8)
    fwd = peak_bytes(gc.function([x, W], z), *vals)
    both = peak_bytes(gc.function([x, W], [z, gW]), *vals)
    act = 256 * 64 * 8
    print(f"depth-200 tanh chain (batch 256, width 64; one activation = {act / 2**20:.3f} MiB): "
          f"forward peak {fwd / 2**20:.2f} MiB, forward+gradient peak {both / 2**20:.2f} MiB "
          f"({both / fwd:.1f}x; {both / act:.0f} activations)")


def memory_mlp():
    g = gc.Graph("mlp")
    X = g.input("X", shape=(256, 784))
    y = g.input("y", shape=(256,), dtype="int64")
    W1 = g.input("W1", shape=(784, 512))
    W2 = g.input("W2", shape=(512, 10))
    J = gc.softmax_cross_entropy(gc.relu(X @ W1) @ W2, y).mean()
    grads = gc.grad(J, [W1, W2])
    rng = np.random.default_rng(0)
    vals = (rng.standard_normal((256, 784)), rng.integers(0, 10, 256),
            rng.standard_normal((784, 512)) * 0.05, rng.standard_normal((512, 10)) * 0.05)
    fwd = peak_bytes(gc.function([X, y, W1, W2], J), *vals)
    both = peak_bytes(gc.function([X, y, W1, W2], [J, *grads]), *vals)
    print(f"figure 6.11 MLP (batch 256, 784-512-10): forward peak {fwd / 2**20:.2f} MiB, "
          f"forward+gradient peak {both / 2**20:.2f} MiB ({both / fwd:.1f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10^5 nodes only")
    args = parser.parse_args()
    sizes = (10**3, 10**4, 10**5) if args.quick else (10**3, 10**4, 10**5, 10**6)
    warm = gc.Graph("warm-up")  # imports and first-use costs are not a graph's compile time
    w = warm.input("w", shape=(4,))
    gc.function([w], gc.grad(gc.sum(gc.sin(w) * 0.5 + w * 0.5), w))
    runs = [big_graph(n) for n in sizes]
    per_node = [p for p, _ in runs]
    print(f"compile time per node, largest / smallest over {sizes[0]:,}..{sizes[-1]:,}: "
          f"{max(per_node) / min(per_node):.2f}x (target: within 2x)")
    if sizes[-1] >= 10**6:
        print(f"compile of the 10^6-node chain: {runs[-1][1]:.1f} s (target: 40 s)")
    for optimize in (True,) if args.quick else (True, False):
        wide_sum(16_667, optimize)
    memory_chain()
    memory_mlp()
