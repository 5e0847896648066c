"""Convolution and pooling against hand-written NumPy: a small CNN's loss and gradient.

Run: python bench/ops_conv.py

The CNN: x (64, 1, 28, 28) -> conv 8x1x3x3 (padding 1) + b -> relu -> max_pool 2 -> conv
16x8x3x3 (padding 1) + b -> relu -> max_pool 2 -> flatten (784) -> dense 784x10 + b -> softmax
cross-entropy (mean over the batch), float64; the loss and the gradient of all six parameters.
The baseline is the usual hand-written NumPy: im2col from `sliding_window_view` and one matrix
product per layer, the forward's columns reused for the weight gradient, col2im for the input
gradient, 2x2 max pooling from the four strided quarters with masks of the maxima. Rows also
time the second conv layer alone (forward; forward + both vjps), and `scipy.signal.correlate`
per channel pair, the alternative forward that graphc's implementation was measured against.

Every ratio is time / hand-written NumPy measured in the same run (best of several, the
callables taking turns); BLAS runs on one thread and the process on one core. JAX, where
importable, gets a column. glibc's malloc is told to keep freed memory (`mallopt`): in a
sandbox where a page fault costs microseconds, returning every multi-megabyte temporary to the
system and faulting it back in made single runs vary by 2x depending on which side's
allocation pattern triggered the trimming. This favours neither side (it takes away the
advantage graphc's in-place plan has under the default allocator).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                           "intra_op_parallelism_threads=1")
os.environ["JAX_ENABLE_X64"] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _keep_freed_memory() -> None:
    """M_TRIM_THRESHOLD and M_MMAP_THRESHOLD (glibc) raised: large temporaries are reused,
    not returned to the system and faulted in again on every call."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 1 << 25)  # M_MMAP_THRESHOLD (32 MiB, glibc's largest)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


_keep_freed_memory()

import importlib.util  # noqa: E402
import sys  # noqa: E402
import timeit  # noqa: E402

import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

import graphc as gc  # noqa: E402

HAVE_JAX = importlib.util.find_spec("jax") is not None


def measure(fns: dict, repeat: int) -> dict:
    """Best seconds per call of each callable; they take turns in every round."""
    numbers = {}
    for k, fn in fns.items():
        fn()
        n = 1
        while timeit.timeit(fn, number=n) < 0.05 and n < 1000:
            n *= 2
        numbers[k] = n
    times = {k: float("inf") for k in fns}
    for _ in range(max(repeat, 1) * 3):
        for k, fn in fns.items():
            times[k] = min(times[k], timeit.timeit(fn, number=numbers[k]) / numbers[k])
    return times


def report(label: str, fns: dict, repeat: int) -> None:
    t = measure(fns, repeat)
    hand = t.pop("numpy")
    cells = [f"{label:<34}", f"numpy {hand * 1e3:8.2f} ms"]
    cells += [f"{name} {sec / hand:5.2f}x" for name, sec in t.items()]
    print("  ".join(cells))
    sys.stdout.flush()


# -- hand-written NumPy ----------------------------------------------------------------------
def im2col(x, k, pad):
    """(N, C, H, W) -> columns (N, C*k*k, H'*W') for a stride-1 k x k kernel."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c = x.shape[:2]
    v = sliding_window_view(xp, (k, k), axis=(2, 3))  # (N, C, H', W', k, k)
    oh, ow = v.shape[2:4]
    return v.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * k * k, oh * ow), (oh, ow)


def col2im(cols, shape, k, pad):
    n, c, h, w = shape
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    cols = cols.reshape(n, c, k, k, oh, ow)
    xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    for i in range(k):
        for j in range(k):
            xp[:, :, i:i + oh, j:j + ow] += cols[:, :, i, j]
    return xp[:, :, pad:pad + h, pad:pad + w]


def conv_forward(x, w, b, pad):
    cols, (oh, ow) = im2col(x, w.shape[2], pad)
    y = np.matmul(w.reshape(w.shape[0], -1), cols) + b[:, None]
    return y.reshape(x.shape[0], w.shape[0], oh, ow), cols


def conv_backward(gy, x_shape, w, cols, pad, need_x=True):
    n, o = gy.shape[:2]
    gm = gy.reshape(n, o, -1)
    gw = np.matmul(gm, cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)  # (tensordot
    #                                   copies both operands first: 2-20x slower here)
    gb = gm.sum(axis=(0, 2))
    gx = col2im(np.matmul(w.reshape(o, -1).T, gm), x_shape, w.shape[2], pad) if need_x else None
    return gx, gw, gb


def pool_forward(h):
    """2x2 max pooling from the four strided quarters; the masks of the maxima."""
    quarters = [h[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)]
    y = np.maximum(np.maximum(quarters[0], quarters[1]), np.maximum(quarters[2], quarters[3]))
    return y, [q == y for q in quarters]


def pool_backward(gy, masks):
    n, c, h2, w2 = gy.shape
    gx = np.empty((n, c, 2 * h2, 2 * w2))
    for (i, j), m in zip([(0, 0), (0, 1), (1, 0), (1, 1)], masks):
        np.multiply(m, gy, out=gx[:, :, i::2, j::2])
    return gx


def numpy_cnn(x, labels, w1, b1, w2, b2, w3, b3):
    n = x.shape[0]
    a1, cols1 = conv_forward(x, w1, b1, 1)
    h1 = np.maximum(a1, 0)
    p1, m1 = pool_forward(h1)
    a2, cols2 = conv_forward(p1, w2, b2, 1)
    h2 = np.maximum(a2, 0)
    p2, m2 = pool_forward(h2)
    f = p2.reshape(n, -1)
    logits = f @ w3 + b3
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(s[:, 0]) - z[np.arange(n), labels])
    d = e / s
    d[np.arange(n), labels] -= 1
    d /= n
    gw3, gb3 = f.T @ d, d.sum(axis=0)
    dp2 = (d @ w3.T).reshape(p2.shape)
    da2 = pool_backward(dp2, m2) * (a2 > 0)
    dp1, gw2, gb2 = conv_backward(da2, p1.shape, w2, cols2, 1)
    da1 = pool_backward(dp1, m1) * (a1 > 0)
    _, gw1, gb1 = conv_backward(da1, x.shape, w1, cols1, 1, need_x=False)
    return loss, gw1, gb1, gw2, gb2, gw3, gb3


# -- graphc ----------------------------------------------------------------------------------
SHAPES = {"w1": (8, 1, 3, 3), "b1": (8,), "w2": (16, 8, 3, 3), "b2": (16,), "w3": (784, 10),
          "b3": (10,)}


def graphc_cnn(batch):
    g = gc.Graph("cnn")
    x = g.input("x", shape=(batch, 1, 28, 28))
    labels = g.input("labels", shape=(batch,), dtype="int64")
    p = {k: g.input(k, shape=s) for k, s in SHAPES.items()}
    h = gc.relu(gc.conv(x, p["w1"], padding=1) + gc.reshape(p["b1"], (8, 1, 1)))
    h = gc.max_pool(h, 2)
    h = gc.relu(gc.conv(h, p["w2"], padding=1) + gc.reshape(p["b2"], (16, 1, 1)))
    h = gc.max_pool(h, 2)
    logits = gc.reshape(h, (batch, 784)) @ p["w3"] + p["b3"]
    loss = gc.mean(gc.softmax_cross_entropy(logits, labels))
    return gc.function([x, labels, *p.values()], [loss, *gc.grad(loss, list(p.values()))])


def jax_cnn():
    import jax
    import jax.numpy as jnp

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)))

    def pool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2),
                                     "VALID")

    def loss(w1, b1, w2, b2, w3, b3, x, labels):
        h = pool(jax.nn.relu(conv(x, w1) + b1[:, None, None]))
        h = pool(jax.nn.relu(conv(h, w2) + b2[:, None, None]))
        logits = h.reshape(x.shape[0], -1) @ w3 + b3
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    f = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(6))))
    return lambda x, lab, *p: jax.block_until_ready(f(*p, x, lab))


def scipy_conv(x, w):
    """The forward by scipy.signal.correlate, one call per (sample, output, input) channel."""
    n, c = x.shape[:2]
    y = np.zeros((n, w.shape[0], x.shape[2], x.shape[3]))
    for i in range(n):
        for o in range(w.shape[0]):
            for ci in range(c):
                y[i, o] += scipy.signal.correlate(x[i, ci], w[o, ci], mode="same")
    return y


def run(repeat: int) -> None:
    rng = np.random.default_rng(0)
    batch = 64
    x = rng.standard_normal((batch, 1, 28, 28))
    labels = rng.integers(0, 10, batch)
    params = [rng.standard_normal(s) * (0.3 if k.startswith("w") else 0.1)
              for k, s in SHAPES.items()]
    f = graphc_cnn(batch)
    got, want = f(x, labels, *params), numpy_cnn(x, labels, *params)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    fns = {"numpy": lambda: numpy_cnn(x, labels, *params),
           "graphc": lambda: f(x, labels, *params)}
    if HAVE_JAX:
        fj = jax_cnn()
        fns["jax"] = lambda: fj(x, labels, *params)
    report("CNN 64x1x28x28 loss+gradient", fns, repeat)

    # the second conv layer alone: (64, 8, 14, 14) by (16, 8, 3, 3), padding 1
    h = rng.standard_normal((batch, 8, 14, 14))
    w2 = params[2]
    gy = rng.standard_normal((batch, 16, 14, 14))
    g = gc.Graph("layer")
    hn, wn, gn = g.input("h", h.shape), g.input("w", w2.shape), g.input("gy", gy.shape)
    y = gc.conv(hn, wn, padding=1)
    fwd = gc.function([hn, wn], y)
    both = gc.function([hn, wn, gn], [y, *gc.vjp(y, [hn, wn], gn)])
    zero = np.zeros(16)
    np.testing.assert_allclose(fwd(h, w2), conv_forward(h, w2, zero, 1)[0], rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(scipy_conv(h[:2], w2), fwd(h, w2)[:2], rtol=1e-10, atol=1e-12)

    def hand_both():
        y_, cols = conv_forward(h, w2, zero, 1)
        return y_, conv_backward(gy, h.shape, w2, cols, 1)

    report("conv 64x8x14x14 * 16x8x3x3 forward",
           {"numpy": lambda: conv_forward(h, w2, zero, 1), "graphc": lambda: fwd(h, w2),
            "scipy.signal": lambda: scipy_conv(h, w2)}, repeat)
    report("conv layer forward + both vjps",
           {"numpy": hand_both, "graphc": lambda: both(h, w2, gy)}, repeat)
    print("ratios: time / hand-written NumPy in this run (lower is better); one thread")


if __name__ == "__main__":
    run(3)
