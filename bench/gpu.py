"""graphc's cupy backend on a GPU (issue 19): an MLP 784-512-512-10 (tanh, softmax
cross-entropy), batch 4,096, float32: the gradient of the loss in all weights, and a
Hessian-vector product (forward-over-reverse), against PyTorch CUDA and JAX GPU where they
are installed. Each row prints milliseconds per call (best of --repeat rounds, each call
synchronised with the device) and the ratio to graphc's; the results are checked against
each other first.

    python bench/gpu.py                    # needs a CUDA GPU and `pip install "graphc[gpu]"`

Without a GPU (or without CuPy) it says what is missing and exits with status 2; it never
falls back to the CPU, so a number it prints was measured on the GPU.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

SIZES = (784, 512, 512, 10)
BATCH = 4096


def need_gpu():
    """CuPy and a CUDA device, or a clear message and exit status 2."""
    try:
        import cupy
    except ImportError as e:
        sys.exit(_missing(f"CuPy is not installed ({e}); pip install \"graphc[gpu]\""))
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - CUDA's own errors: no driver, no device
        sys.exit(_missing(f"CuPy finds no CUDA device ({type(e).__name__}: {e})"))
    if count < 1:
        sys.exit(_missing("CuPy finds no CUDA device"))
    return cupy


def _missing(why: str) -> int:
    print(f"bench/gpu.py measures on a GPU and found none: {why}", file=sys.stderr)
    return 2


def build(dtype="float32"):
    import graphc as gc

    g = gc.Graph("mlp")
    X = g.input("X", shape=(BATCH, SIZES[0]), dtype=dtype)
    y = g.input("y", shape=(BATCH,), dtype="int64")
    Ws = [g.input(f"W{k}", shape=(a, b), dtype=dtype) for k, (a, b) in
          enumerate(zip(SIZES[:-1], SIZES[1:]))]
    h = X
    for W in Ws[:-1]:
        h = gc.tanh(h @ W)
    loss = gc.softmax_cross_entropy(h @ Ws[-1], y).mean()
    vs = [g.input(f"v{k}", shape=W.shape, dtype=dtype) for k, W in enumerate(Ws)]
    grads = gc.grad(loss, Ws)
    hv = gc.hvp(loss, Ws, vs, mode="forward")
    return [X, y, *Ws], vs, loss, grads, hv


def values(rng):
    X = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    Ws = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
          for a, b in zip(SIZES[:-1], SIZES[1:])]
    vs = [rng.standard_normal(W.shape).astype(np.float32) for W in Ws]
    return X, y, Ws, vs


def timed(fn, sync, repeat):
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def torch_runs(X, y, Ws, vs):
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        print("PyTorch is installed without CUDA: no torch column")
        return None
    dev = "cuda"
    Xt, yt = torch.as_tensor(X, device=dev), torch.as_tensor(y, device=dev)
    Wt = [torch.as_tensor(W, device=dev).requires_grad_() for W in Ws]
    Vt = [torch.as_tensor(v, device=dev) for v in vs]

    def loss_fn(*W):
        h = Xt
        for w in W[:-1]:
            h = torch.tanh(h @ w)
        return torch.nn.functional.cross_entropy(h @ W[-1], yt)

    def grad():
        return torch.autograd.grad(loss_fn(*Wt), Wt)

    def hvp():
        return torch.func.jvp(lambda *W: torch.func.grad(loss_fn, argnums=tuple(
            range(len(W))))(*W), tuple(Wt), tuple(Vt))[1]

    return grad, hvp, torch.cuda.synchronize, lambda t: [a.detach().cpu().numpy() for a in t]


def jax_runs(X, y, Ws, vs):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if not any(d.platform == "gpu" for d in jax.devices()):
        print("JAX is installed without a GPU backend: no jax column")
        return None
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    Wj, Vj = [jnp.asarray(W) for W in Ws], [jnp.asarray(v) for v in vs]

    def loss_fn(W):
        h = Xj
        for w in W[:-1]:
            h = jnp.tanh(h @ w)
        logits = h @ W[-1]
        return jnp.mean(jax.nn.logsumexp(logits, axis=-1)
                        - jnp.take_along_axis(logits, yj[:, None], axis=-1)[:, 0])

    grad = jax.jit(jax.grad(loss_fn))
    hvp = jax.jit(lambda W, V: jax.jvp(jax.grad(loss_fn), (W,), (V,))[1])
    out = {}

    def sync():
        jax.block_until_ready(out.get("last"))

    def run_grad():
        out["last"] = grad(Wj)
        return out["last"]

    def run_hvp():
        out["last"] = hvp(Wj, Vj)
        return out["last"]

    return run_grad, run_hvp, sync, lambda t: [np.asarray(a) for a in t]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    cupy = need_gpu()
    import graphc as gc

    rng = np.random.default_rng(0)
    X, y, Ws, vs = values(rng)
    ins, v_nodes, loss, grads, hv = build()
    f_grad = gc.function(ins, grads, backend="cupy")
    f_hvp = gc.function([*ins, *v_nodes], hv, backend="cupy")
    dev = [cupy.asarray(a) for a in (X, y, *Ws)]
    dv = [cupy.asarray(v) for v in vs]
    sync = cupy.cuda.Device().synchronize
    ours = {"grad": (lambda: f_grad(*dev)), "hvp": (lambda: f_hvp(*dev, *dv))}
    want = {k: [cupy.asnumpy(a) for a in fn()] for k, fn in ours.items()}
    cpu = gc.function(ins, grads)(X, y, *Ws)
    for a, b in zip(want["grad"], cpu):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5)
    times = {k: timed(fn, sync, args.repeat) for k, fn in ours.items()}
    peers = {}
    for name, make in (("torch", torch_runs), ("jax", jax_runs)):
        runs = make(X, y, Ws, vs)
        if runs is None:
            continue
        g, h, psync, back = runs
        for k, fn in (("grad", g), ("hvp", h)):
            for a, b in zip(back(fn()), want[k]):
                np.testing.assert_allclose(a, b, rtol=5e-3, atol=5e-5)
        peers[name] = {k: timed(fn, psync, args.repeat) for k, fn in (("grad", g),
                                                                          ("hvp", h))}
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float32, "
          f"{cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}; best of {args.repeat}")
    for k in ("grad", "hvp"):
        cells = [f"{k:<5} graphc/cupy {times[k] * 1e3:8.3f} ms"]
        cells += [f"{name} {t[k] * 1e3:8.3f} ms ({t[k] / times[k]:.2f}x graphc)"
                  for name, t in peers.items()]
        print("  ".join(cells))


if __name__ == "__main__":
    main()
