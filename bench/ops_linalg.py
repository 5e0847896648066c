"""Contractions and linear algebra against hand-written NumPy/SciPy, same run, one thread.

Run: python bench/ops_linalg.py

Workloads:
- Gaussian-process negative log marginal likelihood + its gradient in the three
  hyperparameters (RBF kernel, n = 1,000): graphc differentiates cholesky, cho_solve and the
  log-determinant; the hand-written code is the textbook closed form (scikit-learn's):
  K^-1 by cho_solve against the identity, then 0.5 tr((K^-1 - alpha alpha^T) dK/dtheta).
  A second row compares with a tighter hand-written code that inverts K by LAPACK's potri.
- Scaled dot-product attention (batch 8, 4 heads, length 256, width 64) written with einsum:
  loss + gradients in q, k, v against hand-written matmul backpropagation.

Every ratio is time / hand-written NumPy time in this run (lower is better); best of several
rounds, the candidates taking turns. JAX is added where it is installed.
"""

import functools

import _timing  # sorts before NumPy, which must load after it: one BLAS thread, one core
import numpy as np
import scipy.linalg
from scipy.linalg import lapack

import graphc as gc

HAVE_JAX = _timing.HAVE_JAX
report = functools.partial(_timing.report, width=38, min_time=0.05, max_number=1000)






# -- Gaussian process ----------------------------------------------------------------------------
def gp(repeat: int, n: int = 1000, d: int = 3) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (n, d))
    y = np.sin(x).sum(1) + 0.1 * rng.standard_normal(n)
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # data: fixed while theta moves
    theta = np.array([1.2, 0.9, 0.1])
    eye = np.eye(n)

    g = gc.Graph("gp")
    th = g.input("theta", shape=(3,))
    dn = g.input("sqdist", shape=(n, n))
    yn = g.input("y", shape=(n,))
    ell, sf2, sn2 = th[0], th[1], th[2]
    k = sf2 * gc.exp(dn * (-0.5 / (ell * ell))) + sn2 * g.constant(eye)
    low = gc.linalg.cholesky(k)
    nll = (0.5 * gc.sum(yn * gc.linalg.cho_solve(low, yn))
           + gc.sum(gc.log(gc.einsum("ii->i", low))) + 0.5 * n * np.log(2 * np.pi))
    f = gc.function([th, dn, yn], [nll, gc.grad(nll, th)])

    def parts(t):
        ell, sf2, sn2 = t
        kern = sf2 * np.exp(sq * (-0.5 / ell**2))
        km = kern + sn2 * eye
        lo = scipy.linalg.cholesky(km, lower=True, check_finite=False)
        alpha = scipy.linalg.cho_solve((lo, True), y, check_finite=False)
        value = 0.5 * y @ alpha + np.log(np.diag(lo)).sum() + 0.5 * n * np.log(2 * np.pi)
        return kern, lo, alpha, value

    def finish(kern, w, value, t):
        ell, sf2, _ = t
        return value, np.array([0.5 * np.sum(w * kern * sq) / ell**3,
                                0.5 * np.sum(w * kern) / sf2, 0.5 * np.trace(w)])

    def hand():  # the closed form as scikit-learn writes it
        kern, lo, alpha, value = parts(theta)
        w = scipy.linalg.cho_solve((lo, True), eye, check_finite=False) - np.outer(alpha, alpha)
        return finish(kern, w, value, theta)

    def hand_potri():  # K^-1 from the factor by LAPACK's potri (n^3 / 3 flops fewer)
        kern, lo, alpha, value = parts(theta)
        kinv, _ = lapack.dpotri(lo, lower=1)
        kinv = np.tril(kinv) + np.tril(kinv, -1).T
        return finish(kern, kinv - np.outer(alpha, alpha), value, theta)

    got, want = f(theta, sq, y), hand()
    assert abs(float(got[0]) - want[0]) < 1e-9 * abs(want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-8)
    np.testing.assert_allclose(hand_potri()[1], want[1], rtol=1e-8)
    fns = {"numpy": hand, "graphc": lambda: f(theta, sq, y)}
    if HAVE_JAX:
        import jax
        import jax.numpy as jnp
        import jax.scipy.linalg as jsl

        def jnll(t, sq, y):
            km = t[1] * jnp.exp(sq * (-0.5 / t[0] ** 2)) + t[2] * jnp.eye(n)
            lo = jnp.linalg.cholesky(km)
            return (0.5 * y @ jsl.cho_solve((lo, True), y) + jnp.log(jnp.diag(lo)).sum()
                    + 0.5 * n * np.log(2 * np.pi))
        jf = jax.jit(jax.value_and_grad(jnll))
        fns["jax"] = lambda: jax.block_until_ready(jf(theta, sq, y))
    report(f"GP nll + gradient (n = {n})", fns, repeat)
    report(f"  against potri's inverse (n = {n})", {"numpy": hand_potri,
                                                    "graphc": lambda: f(theta, sq, y)}, repeat)


# -- attention -----------------------------------------------------------------------------------
def attention(repeat: int, batch: int = 8, heads: int = 4, length: int = 256,
              width: int = 64) -> None:
    rng = np.random.default_rng(1)
    shape = (batch, heads, length, width)
    q, k, v, w = (rng.standard_normal(shape) for _ in range(4))
    scale = 1.0 / np.sqrt(width)

    g = gc.Graph("attention")
    qn, kn, vn, wn = (g.input(name, shape=shape) for name in "qkvw")
    scores = gc.einsum("bhqd,bhkd->bhqk", qn, kn) * scale
    out = gc.einsum("bhqk,bhkd->bhqd", gc.softmax(scores, axis=-1), vn)
    loss = gc.sum(out * wn)
    f = gc.function([qn, kn, vn, wn], [loss, *gc.grad(loss, [qn, kn, vn])])

    def hand():
        s = q @ k.swapaxes(-1, -2) * scale
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        o = p @ v
        d_p = w @ v.swapaxes(-1, -2)
        d_v = p.swapaxes(-1, -2) @ w
        d_s = p * (d_p - (d_p * p).sum(-1, keepdims=True)) * scale
        return (o * w).sum(), d_s @ k, d_s.swapaxes(-1, -2) @ q, d_v

    for a, b in zip(f(q, k, v, w), hand()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    fns = {"numpy": hand, "graphc": lambda: f(q, k, v, w)}
    if HAVE_JAX:
        import jax
        import jax.numpy as jnp

        def jloss(q, k, v, w):
            s = jnp.einsum("bhqd,bhkd->bhqk", q, k) * scale
            return jnp.sum(jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(s, -1), v) * w)
        jf = jax.jit(jax.value_and_grad(jloss, argnums=(0, 1, 2)))
        fns["jax"] = lambda: jax.block_until_ready(jf(q, k, v, w))
    report(f"attention gradient ({batch}x{heads}x{length}x{width})", fns, repeat)


def run(repeat: int) -> None:
    gp(repeat)
    attention(repeat)
    print("ratios: time / hand-written NumPy in this run (lower is better); one thread, "
          f"best of {repeat} rounds")


if __name__ == "__main__":
    run(3)
