"""Per-example gradients of the MLP 784-256-10 (tanh, softmax cross-entropy): `gc.vmap` of
`gc.grad` against a loop of per-example gradient calls, against `gc.jacobian` of the loss
vector, and against JAX's `vmap(grad)` where JAX is installed (the `bench` extra).

    python bench/transforms.py [--quick]

Every column is a ratio to hand-written NumPy per-example gradients measured in the same run
(lower is better; "numpy" gives its time). All values are checked against NumPy's first. BLAS
and XLA run on one thread, the process on one core. The jacobian column builds B rows of the
batch's whole gradient, so its cost grows with B^2: it is measured up to batch 128.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                           "intra_op_parallelism_threads=1")
os.environ["JAX_ENABLE_X64"] = "1"
if hasattr(os, "sched_setaffinity"):  # one core for every framework
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import importlib.util  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402

import numpy as np  # noqa: E402

import graphc as gc  # noqa: E402

HAVE_JAX = importlib.util.find_spec("jax") is not None
SIZES = (784, 256, 10)
JACOBIAN_UP_TO = 128


def measure(fns: dict, repeat: int) -> dict:
    """Best seconds per call of each callable, taking turns in every round."""
    numbers = {}
    for k, fn in fns.items():
        fn()
        n = 1
        while timeit.timeit(fn, number=n) < 0.05 and n < 1000:
            n *= 2
        numbers[k] = n
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            best[k] = min(best[k], timeit.timeit(fn, number=numbers[k]) / numbers[k])
    return best


def values(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    d, h, k = SIZES
    X = rng.standard_normal((batch, d))
    y = rng.integers(0, k, batch)
    W1, b1 = rng.standard_normal((d, h)) / np.sqrt(d), rng.standard_normal(h) * 0.1
    W2, b2 = rng.standard_normal((h, k)) / np.sqrt(h), rng.standard_normal(k) * 0.1
    return X, y, [W1, b1, W2, b2]


def numpy_per_example(X, y, W1, b1, W2, b2):
    """Per-example gradients by hand: the forward pass for the batch, outer products per row."""
    H = np.tanh(X @ W1 + b1)
    Z = H @ W2 + b2
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    P[np.arange(len(y)), y] -= 1.0  # dL/dZ per example
    dA = (P @ W2.T) * (1.0 - H * H)
    return (X[:, :, None] * dA[:, None, :], dA, H[:, :, None] * P[:, None, :], P)


def loss(x, label, W1, b1, W2, b2):
    return gc.softmax_cross_entropy(gc.tanh(x @ W1 + b1) @ W2 + b2, label)


def graphc_functions(batch: int):
    """(vmap of grad, one example's grad, jacobian of the loss vector) compiled; build times."""
    d, h, k = SIZES
    g = gc.Graph("per_example")
    X, y = g.input("X", (batch, d)), g.input("y", (batch,), "int64")
    ps = [g.input("W1", (d, h)), g.input("b1", (h,)), g.input("W2", (h, k)),
          g.input("b2", (k,))]
    t0 = time.perf_counter()
    per = gc.vmap(lambda xb, yb: gc.grad(loss(xb, yb, *ps), ps), in_axes=(0, 0))(X, y)
    f_vmap = gc.function([X, y, *ps], per)
    t_vmap = time.perf_counter() - t0

    one = gc.Graph("one_example")
    x1, y1 = one.input("x", (d,)), one.input("y", (), "int64")
    qs = [one.input(p.name, p.shape) for p in ps]
    f_one = gc.function([x1, y1, *qs], gc.grad(loss(x1, y1, *qs), qs))

    f_jac, t_jac = None, None
    if batch <= JACOBIAN_UP_TO:
        t0 = time.perf_counter()
        losses = loss(X, y, *ps)  # the loss vector, one entry per example
        f_jac = gc.function([X, y, *ps], gc.jacobian(losses, ps, mode="reverse"))
        t_jac = time.perf_counter() - t0
    return f_vmap, f_one, f_jac, t_vmap, t_jac


def jax_per_example():
    import jax
    import jax.numpy as jnp

    def jloss(ps, x, label):
        W1, b1, W2, b2 = ps
        z = jnp.tanh(x @ W1 + b1) @ W2 + b2
        return -jax.nn.log_softmax(z)[label]

    return jax.jit(jax.vmap(jax.grad(jloss), in_axes=(None, 0, 0)))


def row(batch: int, repeat: int) -> None:
    X, y, ps = values(batch)
    want = numpy_per_example(X, y, *ps)
    f_vmap, f_one, f_jac, t_vmap, t_jac = graphc_functions(batch)
    for a, b in zip(f_vmap(X, y, *ps), want):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    loop = [f_one(X[i], y[i], *ps) for i in range(batch)]
    for j, b in enumerate(want):
        np.testing.assert_allclose(np.stack([r[j] for r in loop]), b, rtol=1e-9, atol=1e-12)
    fns = {"numpy": lambda: numpy_per_example(X, y, *ps),
           "vmap(grad)": lambda: f_vmap(X, y, *ps),
           "loop of grad": lambda: [f_one(X[i], y[i], *ps) for i in range(batch)]}
    if f_jac is not None:
        for a, b in zip(f_jac(X, y, *ps), want):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        fns["jacobian"] = lambda: f_jac(X, y, *ps)
    if HAVE_JAX:
        import jax

        jf = jax_per_example()
        for a, b in zip(jf(ps, X, y), want):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=1e-12)
        fns["jax"] = lambda: jax.block_until_ready(jf(ps, X, y))
    t = measure(fns, repeat)
    hand = t.pop("numpy")
    cells = [f"per-example grads B={batch:<4}", f"numpy {hand * 1e3:8.2f} ms"]
    cells += [f"{name} {sec / hand:6.2f}x" for name, sec in t.items()]
    cells.append(f"(build+compile: vmap {t_vmap:.2f} s"
                 + (f", jacobian {t_jac:.2f} s)" if t_jac is not None else ")"))
    print("  ".join(cells))
    sys.stdout.flush()


def run(repeat: int = 3, batches=(32, 128, 512)) -> None:
    print(f"MLP {'-'.join(map(str, SIZES))}, float64, one thread; ratios to hand-written NumPy"
          + ("" if HAVE_JAX else " (JAX not installed: no jax column)"))
    for batch in batches:
        row(batch, repeat)


if __name__ == "__main__":
    if "--quick" in sys.argv:
        run(1, (32, 128))
    else:
        run(3)
