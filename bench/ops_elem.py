"""Issue 15's ops in programs, per call, against hand-written NumPy measured in the same run.

    python bench/ops_elem.py

Rows: the Lennard-Jones energy and forces of 64 and 512 particles (pairwise differences by
broadcasting, a triu mask, where to keep the diagonal out; forces = -grad) against the
hand-derived force law in NumPy; the LJ Hessian-vector product (64 particles) against the
hand-derived pair Hessian; a fused elementwise chain of the new ops (erf, arcsinh, hypot, clip,
logaddexp) on 10**6 entries; the gradient of prod along rows with zeros and of a sort, against
NumPy written by hand. Ratios are graphc's time / NumPy's (lower is better), best of `repeat`
rounds in which the callables take turns. BLAS runs on one thread; JAX (jit) is added where it
is installed.
"""

import functools
import itertools

import _timing  # sorts before NumPy, which must load after it: one BLAS thread, one core
import numpy as np
import scipy.special

import graphc as gc

HAVE_JAX = _timing.HAVE_JAX
report = functools.partial(_timing.report, width=36)
EPS, SIGMA = 0.8, 1.1






# -- Lennard-Jones ------------------------------------------------------------------------------
def lattice(n: int, rng) -> np.ndarray:
    side = int(np.ceil(n ** (1 / 3)))
    sites = np.array(list(itertools.product(range(side), repeat=3)), float)[:n]
    return 1.2 * SIGMA * sites + rng.uniform(-0.05, 0.05, (n, 3))


def lj_graph(n: int):
    g = gc.Graph(f"lj{n}")
    X = g.input("X", shape=(n, 3))
    d = X[:, None, :] - X[None, :, :]
    r2 = gc.sum(d * d, axis=-1)
    upper = gc.triu(g.ones((n, n)), k=1) > 0.5
    s6 = (SIGMA**2 / gc.where(upper, r2, 1.0)) ** 3.0
    E = gc.sum(gc.where(upper, 4.0 * EPS * (s6 * s6 - s6), 0.0))
    return X, E


def lj_numpy(x: np.ndarray):
    """Energy and forces, written by hand: all pairs, the diagonal masked."""
    d = x[:, None, :] - x[None, :, :]
    r2 = (d * d).sum(-1)
    np.fill_diagonal(r2, 1.0)
    s6 = (SIGMA**2 / r2) ** 3
    np.fill_diagonal(s6, 0.0)
    energy = 2.0 * EPS * np.sum(s6 * s6 - s6)
    coef = 24.0 * EPS * (2.0 * s6 * s6 - s6) / r2
    return energy, (coef[:, :, None] * d).sum(1)


def lj_numpy_hvp(x: np.ndarray, v: np.ndarray):
    """The pair Hessian times v, written by hand."""
    d = x[:, None, :] - x[None, :, :]
    r2 = (d * d).sum(-1)
    np.fill_diagonal(r2, 1.0)
    s6 = (SIGMA**2 / r2) ** 3
    np.fill_diagonal(s6, 0.0)
    dphi_r = -24.0 * EPS * (2.0 * s6 * s6 - s6) / r2
    d2phi = 4.0 * EPS * (156.0 * s6 * s6 - 42.0 * s6) / r2
    w = v[:, None, :] - v[None, :, :]
    dw = (d * w).sum(-1)
    return (((d2phi - dphi_r) / r2 * dw)[:, :, None] * d + dphi_r[:, :, None] * w).sum(1)


def lennard_jones(n: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    x = lattice(n, rng)
    X, E = lj_graph(n)
    f = gc.function([X], [E, -gc.grad(E, X)])
    (e, F), (e0, F0) = f(x), lj_numpy(x)
    assert abs(e - e0) <= 1e-11 * abs(e0) and np.abs(F - F0).max() <= 1e-10 * np.abs(F0).max()
    fns = {"numpy": lambda: lj_numpy(x), "graphc": lambda: f(x)}
    if HAVE_JAX:
        import jax
        import jax.numpy as jnp

        def energy(p):
            dd = p[:, None, :] - p[None, :, :]
            rr = jnp.where(jnp.eye(n, dtype=bool), 1.0, (dd * dd).sum(-1))
            s = (SIGMA**2 / rr) ** 3
            return 2.0 * EPS * jnp.sum(jnp.where(jnp.eye(n, dtype=bool), 0.0, s * s - s))
        jf = jax.jit(jax.value_and_grad(energy))
        fns["jax"] = lambda: jax.block_until_ready(jf(x))
    report(f"LJ energy+forces n={n}", fns, repeat)


def lennard_jones_hvp(n: int, repeat: int) -> None:
    rng = np.random.default_rng(1)
    x, v = lattice(n, rng), rng.standard_normal((n, 3))
    X, E = lj_graph(n)
    V = X.graph.input("V", shape=(n, 3))
    f = gc.function([X, V], gc.hvp(E, X, V))
    want = lj_numpy_hvp(x, v)
    assert np.abs(f(x, v) - want).max() <= 1e-10 * np.abs(want).max()
    report(f"LJ Hessian-vector product n={n}", {"numpy": lambda: lj_numpy_hvp(x, v),
                                                "graphc": lambda: f(x, v)}, repeat)


# -- elementwise chain, products, sort -----------------------------------------------------
def elementwise_chain(repeat: int, n: int = 10**6) -> None:
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    g = gc.Graph("chain")
    X, Y = g.input("x", shape=(n,)), g.input("y", shape=(n,))
    z = gc.erf(X) * gc.arcsinh(Y) + gc.hypot(X, Y) - gc.clip(X, -0.5, 0.5) + gc.logaddexp(X, Y)
    f = gc.function([X, Y], z)

    def hand():
        return (scipy.special.erf(x) * np.arcsinh(y) + np.hypot(x, y) - np.clip(x, -0.5, 0.5)
                + np.logaddexp(x, y))
    np.testing.assert_allclose(f(x, y), hand(), rtol=1e-12, atol=1e-12)
    report("erf*arcsinh+hypot-clip+logaddexp 1e6", {"numpy": hand, "graphc": lambda: f(x, y)},
           repeat)


def prod_gradient(repeat: int, rows: int = 1000, cols: int = 64) -> None:
    """d prod(x, axis=1) / dx with zeros: graphc's exclusive products against NumPy's."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((rows, cols))
    x[rng.uniform(size=x.shape) < 0.02] = 0.0
    g = gc.Graph("prod")
    X = g.input("x", shape=(rows, cols))
    f = gc.function([X], gc.grad(gc.prod(X, axis=1).sum(), X))

    def hand():  # the product of the others: exclusive cumulative products from both sides
        left = np.ones_like(x)
        left[:, 1:] = np.cumprod(x[:, :-1], axis=1)
        right = np.ones_like(x)
        right[:, :-1] = np.cumprod(x[:, :0:-1], axis=1)[:, ::-1]
        return left * right
    np.testing.assert_allclose(f(x), hand(), rtol=1e-12, atol=1e-300)
    report(f"grad prod(axis=1) {rows}x{cols}, zeros", {"numpy": hand, "graphc": lambda: f(x)},
           repeat)


def sort_gradient(repeat: int, rows: int = 1000, cols: int = 256) -> None:
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((rows, cols)), rng.standard_normal(cols)
    g = gc.Graph("sort")
    X = g.input("x", shape=(rows, cols))
    f = gc.function([X], gc.grad(gc.sum(gc.sort(X) * w), X))

    def hand():
        out = np.empty_like(x)
        np.put_along_axis(out, np.argsort(x, axis=1, kind="stable"),
                          np.broadcast_to(w, x.shape), axis=1)
        return out
    np.testing.assert_array_equal(f(x), hand())
    report(f"grad sum(sort(x) w) {rows}x{cols}", {"numpy": hand, "graphc": lambda: f(x)},
           repeat)


def run(repeat: int) -> None:
    """Print one row per workload: NumPy's time and graphc's (and JAX's) ratio to it."""
    lennard_jones(64, repeat)
    lennard_jones(512, repeat)
    lennard_jones_hvp(64, repeat)
    lennard_jones_hvp(512, repeat)
    elementwise_chain(repeat)
    prod_gradient(repeat)
    sort_gradient(repeat)


if __name__ == "__main__":
    run(3)
