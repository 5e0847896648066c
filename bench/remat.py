"""Peak memory and time of a deep tanh chain's gradient, with and without `gc.remat` per block.

    python bench/remat.py [blocks] [layers] [width] [batch]

Each block is `layers` layers `h = tanh(W @ h)` on a (width, batch) activation; the gradient is
taken with respect to x and W. Peak memory is tracemalloc's (NumPy's allocations), measured on
a second call, after compiling.
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import numpy as np

import graphc as gc


def build(blocks: int, layers: int, width: int, batch: int, use_remat: bool):
    g = gc.Graph("chain")
    x = g.input("x", shape=(width, batch))
    W = g.input("W", shape=(width, width))

    def block(h):
        for _ in range(layers):
            h = gc.tanh(W @ h)
        return h

    h = x
    for _ in range(blocks):
        h = gc.remat(block, h) if use_remat else block(h)
    z = (h * h).sum()
    return gc.function([x, W], gc.grad(z, [x, W])), x.shape, W.shape


def main(blocks=64, layers=4, width=256, batch=256) -> None:
    rng = np.random.default_rng(0)
    vx = rng.standard_normal((width, batch))
    vW = rng.standard_normal((width, width)) / np.sqrt(width)
    act = width * batch * 8 / 2**20
    print(f"{blocks} blocks x {layers} layers, width {width}, batch {batch}: one activation "
          f"{act:.2f} MiB, {blocks * layers} layers")
    results = {}
    for use in (False, True):
        f, _, _ = build(blocks, layers, width, batch, use)
        f(vx, vW)
        tracemalloc.start()
        results[use] = f(vx, vW)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            f(vx, vW)
            times.append(time.perf_counter() - t)
        print(f"  remat={use!s:5}  peak {peak / 2**20:8.1f} MiB  ({peak / 2**20 / act:5.0f} "
              f"activations)  time {min(times) * 1e3:8.1f} ms (best of 5)")
    err = max(float(np.max(np.abs(a - b) / (1 + np.abs(b))))
              for a, b in zip(results[True], results[False]))
    print(f"  largest relative difference of the gradients: {err:.1e}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
