"""Gathers and scatters against hand-written NumPy, same run: the embedding lookup `E[ids]` and
its gradient, a scatter-add of the rows of the cotangent into E's shape.

Run: python bench/ops_index.py

The NumPy column is the fastest exact NumPy method measured here: `np.take` for the gather and
`np.bincount` over flat positions for the scatter-add (`np.add.at`, two to four times slower,
is shown as a ratio too). graphc runs the same work as `take` and `segment_sum` (a numba loop
above 256 entries, graphc/ops/indexing.py). Every ratio is time / NumPy's time in this run
(lower is better), best of `repeat` rounds, the callables taking turns. BLAS runs on one
thread and the process is pinned to one core; JAX's column is added where JAX is installed.
"""

import _timing  # sorts before NumPy, which must load after it: one BLAS thread, one core
import numpy as np

import graphc as gc

HAVE_JAX = _timing.HAVE_JAX






def scatter_rows_numpy(n: int, ids: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The fastest exact NumPy scatter-add of rows measured: bincount over flat positions."""
    d = g.shape[1]
    flat = (ids[:, None] * d + np.arange(d)).reshape(-1)
    return np.bincount(flat, g.reshape(-1), minlength=n * d).reshape(n, d)


def scatter_rows_add_at(n: int, ids: np.ndarray, g: np.ndarray) -> np.ndarray:
    out = np.zeros((n, g.shape[1]), g.dtype)
    np.add.at(out, ids, g)
    return out


def embedding(n: int, d: int, k: int, repeat: int) -> None:
    """E[ids] and the gradient of sum(E[ids] * G) wrt E (a scatter-add of G's rows)."""
    rng = np.random.default_rng(0)
    Ev, iv, Gv = rng.standard_normal((n, d)), rng.integers(0, n, k), rng.standard_normal((k, d))
    g = gc.Graph("embedding")
    E = g.input("E", shape=(n, d))
    ids = g.input("ids", shape=(k,), dtype="int64")
    G = g.input("G", shape=(k, d))
    rows = E[ids]
    gE = gc.grad((rows * G).sum(), E)
    both = gc.function([E, ids, G], [rows, gE])
    grad_only = gc.function([E, ids, G], gE)
    got_rows, got_gE = both(Ev, iv, Gv)
    want = scatter_rows_add_at(n, iv, Gv)
    assert np.array_equal(got_rows, Ev[iv]) and np.allclose(got_gE, want, rtol=1e-13)
    assert np.array_equal(scatter_rows_numpy(n, iv, Gv), want)  # bincount is exact here

    jax_both = jax_grad = None
    if HAVE_JAX:
        import jax
        import jax.numpy as jnp

        def loss(E, ids, G):
            return jnp.sum(E[ids] * G)

        jb = jax.jit(lambda E, ids, G: (E[ids], jax.grad(loss)(E, ids, G)))
        jg = jax.jit(jax.grad(loss))
        Ej, ij, Gj = jnp.asarray(Ev), jnp.asarray(iv), jnp.asarray(Gv)
        assert np.allclose(np.asarray(jg(Ej, ij, Gj)), want, rtol=1e-12)

        def jax_both():
            for a in jb(Ej, ij, Gj):
                a.block_until_ready()

        def jax_grad():
            jg(Ej, ij, Gj).block_until_ready()

    shape = f"{n:,} x {d} table, {k:,} ids"
    _timing.report(f"embedding gather + grad ({shape})", {
        "numpy": lambda: (np.take(Ev, iv, axis=0), scatter_rows_numpy(n, iv, Gv)),
        "graphc": lambda: both(Ev, iv, Gv),
        "numpy-add.at": lambda: (np.take(Ev, iv, axis=0), scatter_rows_add_at(n, iv, Gv)),
        "jax": jax_both,
    }, repeat)
    _timing.report(f"embedding grad only ({shape})", {
        "numpy": lambda: scatter_rows_numpy(n, iv, Gv),
        "graphc": lambda: grad_only(Ev, iv, Gv),
        "numpy-add.at": lambda: scatter_rows_add_at(n, iv, Gv),
        "jax": jax_grad,
    }, repeat)


def run(repeat: int) -> None:
    embedding(50_000, 128, 8_192, repeat)
    embedding(1_000, 16, 100, repeat)
    embedding(100_000, 8, 200_000, repeat)


if __name__ == "__main__":
    run(3)
