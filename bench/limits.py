"""Limits: graphs of 10^5 and 10^6 nodes, and peak memory of gradients against the forward.

    python bench/limits.py            # 10^5 and 10^6 nodes (the 10^6 run takes a few minutes)
    python bench/limits.py --quick    # 10^5 only

For each size: build, grad, compile, run, with the time of each (no recursion anywhere).
Peak memory (tracemalloc, which sees NumPy's buffers) of running the depth-200 tanh chain of
width 64 and the figure 6.11 MLP: forward alone and forward + gradient, as a ratio. Since
intermediates are freed after their last use, the gradient's peak is the forward's live set
(the activations back-propagation needs) plus a few cotangents, not the whole graph's values.
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
    print(f"{len(g.nodes):>10,} nodes: build {t_build:6.2f} s, grad {t_grad:6.2f} s, "
          f"compile {t_compile:6.2f} s, run {t_run:6.2f} s")


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
    for n in (10**5,) if args.quick else (10**5, 10**6):
        big_graph(n)
    memory_chain()
    memory_mlp()
