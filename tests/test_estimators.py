"""krylov.trace, diagonal, spectral_density, top_eigenvalues, inverse (issue 18).

Oracles: exact traces, diagonals and eigenvalues of dense matrices (and of a Hessian built
densely by gc.hessian), and the known variance of Hutchinson's estimator with Rademacher
probes, Var[z^T A z] = 2 (|A|_F^2 - sum_i a_ii^2), against which the estimators' errors are
checked statistically: fixed seeds, bounds generous enough for the spread of 30 draws but far
from what a wrong estimator gives.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

import graphc as gc
from graphc import krylov


def decaying(n=200, power=2.0, seed=1):
    """U diag(k^-power) U^T: a spectrum that decays like a network Hessian's."""
    U = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))[0]
    return (U * np.arange(1, n + 1) ** -power) @ U.T


def hutchinson_std(A, m):
    return np.sqrt(2 * (np.sum(A * A) - np.sum(np.diag(A) ** 2)) / m)


def rms_error(A, m, method, seeds=20):
    exact = np.trace(A)
    errors = [krylov.trace(A, samples=m, method=method, seed=s) - exact for s in range(seeds)]
    return float(np.sqrt(np.mean(np.square(errors))))


def test_hutchinson_error_follows_its_variance_and_hutch_plus_plus_converges_faster():
    A = decaying(n=100)
    ms = (15, 60, 240)
    hutch = [rms_error(A, m, "hutchinson") for m in ms]
    plus = [rms_error(A, m, "hutch++") for m in ms]
    for m, err in zip(ms, hutch):  # the textbook variance, within the spread of 20 draws
        assert 0.6 < err / hutchinson_std(A, m) < 1.5, (m, err, hutchinson_std(A, m))
    # 1/sqrt(m): 16 times the products, a quarter of the error
    assert 0.13 < hutch[-1] / hutch[0] < 0.45, hutch
    # Hutch++: at least 1/m (0.0625 here; the decaying spectrum gives more), and far below
    # Hutchinson at every budget
    assert plus[-1] / plus[0] < 0.1, plus
    for p, h in zip(plus, hutch):
        assert p < h / 3, (plus, hutch)


def test_trace_is_exact_where_the_estimators_must_be():
    A = decaying(n=40)
    assert krylov.trace(A, samples=120, seed=3) == pytest.approx(np.trace(A), rel=1e-12)
    D = np.diag(np.arange(1.0, 41.0))  # z_i^2 = 1: Hutchinson is exact on a diagonal
    assert krylov.trace(D, samples=1, method="hutchinson", seed=0) == pytest.approx(820.0)
    sparse = scipy.sparse.diags(np.arange(1.0, 41.0)).tocsr()
    assert krylov.trace(sparse, samples=2, method="hutchinson") == pytest.approx(820.0)


def test_diagonal_error_follows_its_variance():
    """Entry i of the estimate has variance sum_{j != i} a_ij^2 / m."""
    rng = np.random.default_rng(4)
    B = rng.standard_normal((50, 50))
    A = B + B.T
    off = np.sum(A * A, axis=1) - np.diag(A) ** 2
    rms = {}
    for m in (100, 1600):
        errs = np.array([krylov.diagonal(A, samples=m, seed=s) - np.diag(A) for s in range(20)])
        normalised = np.mean(errs ** 2 / (off / m))
        assert 0.7 < normalised < 1.4, (m, normalised)
        rms[m] = np.sqrt(np.mean(errs ** 2))
    assert 0.18 < rms[1600] / rms[100] < 0.35, rms
    np.testing.assert_allclose(krylov.diagonal(np.diag(np.diag(A)), samples=1), np.diag(A))


# -- on a Hessian operator, against gc.hessian ---------------------------------------------------
@pytest.fixture(scope="module")
def mlp_hessian():
    """A 4-5-3 tanh MLP's loss Hessian: the operator and the dense matrix from gc.hessian."""
    rng = np.random.default_rng(7)
    g = gc.Graph("mlp")
    X = g.input("X", shape=(20, 4))
    y = g.input("y", shape=(20,), dtype="int64")
    params = [g.input("W1", shape=(4, 5)), g.input("b1", shape=(5,)),
              g.input("W2", shape=(5, 3)), g.input("b2", shape=(3,))]
    W1, b1, W2, b2 = params
    loss = gc.softmax_cross_entropy(gc.tanh(X @ W1 + b1) @ W2 + b2, y).mean()
    at = {X: rng.standard_normal((20, 4)), y: rng.integers(0, 3, 20),
          **{p: rng.standard_normal(p.shape) for p in params}}
    H = gc.hessian_operator(loss, params, at=at)
    blocks = gc.eval([h for row in gc.hessian(loss, params) for h in row], at)
    sizes = [int(np.prod(p.shape)) for p in params]
    dense = np.block([[blocks[4 * i + j].reshape(sizes[i], sizes[j]) for j in range(4)]
                      for i in range(4)])
    np.testing.assert_allclose(H @ np.eye(H.shape[0]), dense, rtol=1e-10, atol=1e-12)
    return H, dense


def test_estimators_take_the_hessian_operator(mlp_hessian):
    H, dense = mlp_hessian
    n = H.shape[0]
    assert krylov.trace(H, samples=3 * n, seed=0) == pytest.approx(np.trace(dense), rel=1e-9)
    est = krylov.trace(H, samples=60, method="hutchinson", seed=1)
    assert abs(est - np.trace(dense)) < 4 * hutchinson_std(dense, 60)
    diag = krylov.diagonal(H, samples=400, seed=2)
    off = (np.sum(dense * dense, axis=1) - np.diag(dense) ** 2) / 400
    assert np.mean((diag - np.diag(dense)) ** 2 / off) < 2.0
    top = krylov.top_eigenvalues(H, k=5)
    np.testing.assert_allclose(top, np.linalg.eigvalsh(dense)[::-1][:5], rtol=1e-8, atol=1e-12)
    assert np.all(np.diff(top) <= 0)


def test_spectral_density_integrates_to_one_with_the_moments_of_the_spectrum(mlp_hessian):
    """Per probe, Lanczos quadrature integrates polynomials of degree < 2 num_lanczos exactly:
    the density's moments are Hutchinson estimates of tr(H^k)/n (k = 1, 2), plus the
    Gaussians' width^2 for k = 2; checked within 4 of their standard deviations."""
    H, dense = mlp_hessian
    n = H.shape[0]
    lo, hi = np.linalg.eigvalsh(dense)[[0, -1]]
    width = (hi - lo) / 100  # what the default picks from the nodes, near enough
    samples = 100
    grid, density = krylov.spectral_density(H, num_lanczos=20, num_samples=samples, seed=5,
                                            width=width)
    assert grid.shape == density.shape == (1000,) and np.all(density >= 0)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-8)
    m1 = np.trapezoid(grid * density, grid)
    m2 = np.trapezoid(grid ** 2 * density, grid) - width ** 2
    H2 = dense @ dense
    for moment, power, exact in ((m1, dense, np.trace(dense)), (m2, H2, np.trace(H2))):
        assert abs(moment - exact / n) < 4 * hutchinson_std(power, samples) / n, (moment, exact)
    # the nodes lie within the spectrum
    assert grid[0] >= lo - 7 * width - 1e-9 and grid[-1] <= hi + 7 * width + 1e-9


def test_spectral_density_puts_each_eigenvalue_s_multiplicity_at_it():
    """On a diagonal matrix v_i^2 = 1 for Rademacher v, so the weights are exact: mass 3/4
    at 1 and 1/4 at 5, whatever the seed."""
    A = np.diag([1.0] * 30 + [5.0] * 10)
    grid, density = krylov.spectral_density(A, num_lanczos=10, num_samples=3, seed=9,
                                            width=0.05, num_points=4001)
    low = grid < 3
    assert np.trapezoid(density[low], grid[low]) == pytest.approx(0.75, abs=1e-6)
    assert grid[np.argmax(density)] == pytest.approx(1.0, abs=2e-3)
    ax = krylov.plot_density(grid, density, log=True)
    assert ax.get_yscale() == "log" and len(ax.lines) == 1
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


def test_lanczos_stops_on_an_invariant_subspace():
    from graphc.estimators import lanczos

    alpha, beta = lanczos(np.diag([2.0, 2.0, 7.0]), np.ones(3), 3)
    assert alpha.shape == (2,) and beta.shape == (1,)  # two distinct eigenvalues
    import scipy.linalg

    np.testing.assert_allclose(scipy.linalg.eigh_tridiagonal(alpha, beta, eigvals_only=True),
                               [2.0, 7.0], rtol=1e-12)


def test_inverse_solves_by_cg(mlp_hessian):
    rng = np.random.default_rng(11)
    B = rng.standard_normal((30, 30))
    A = B @ B.T + 0.5 * np.eye(30)  # SPD
    v = rng.standard_normal(30)
    Ainv = krylov.inverse(A, damping=0.0, tol=1e-12)
    np.testing.assert_allclose(Ainv @ (A @ v), v, rtol=1e-8)
    assert Ainv.iterations >= 1
    damped = krylov.inverse(A, damping=2.0, tol=1e-12)
    np.testing.assert_allclose(damped @ (A @ v + 2.0 * v), v, rtol=1e-9)
    np.testing.assert_allclose(damped.rmatvec(A @ v + 2.0 * v), v, rtol=1e-9)
    H, dense = mlp_hessian
    shift = 1.0 - np.linalg.eigvalsh(dense)[0]  # H + shift I is positive definite
    u = rng.standard_normal(H.shape[0])
    Hinv = krylov.inverse(H, damping=shift, tol=1e-12)
    np.testing.assert_allclose(Hinv @ (dense @ u + shift * u), u, rtol=1e-7, atol=1e-9)
    with pytest.raises(gc.GraphError, match=r"inverse: cg did not reach tol=1e-12 in 2 "
                                            "iterations.*positive definite"):
        krylov.inverse(np.diag(np.arange(1.0, 11.0)), damping=0.0, tol=1e-12, maxiter=2) @ v[:10]


@pytest.mark.parametrize("call, error, message", [
    (lambda: krylov.trace(np.ones((3, 4))), gc.ShapeError, r"trace: .*square.*\(3, 4\)"),
    (lambda: krylov.trace(np.eye(3), samples=2), gc.GraphError, "samples must be an integer >= 3"),
    (lambda: krylov.trace(np.eye(3), samples=2.5, method="hutchinson"), gc.GraphError,
     "samples must be an integer >= 1, got 2.5"),
    (lambda: krylov.trace(np.eye(3), method="exact"), gc.GraphError, "method must be one of"),
    (lambda: krylov.diagonal("abc"), gc.GraphError, "diagonal: the operator must be a scipy"),
    (lambda: krylov.spectral_density(np.eye(3), width=-1.0), gc.GraphError,
     "width must be a positive number"),
    (lambda: krylov.top_eigenvalues(np.eye(3), k=3), gc.GraphError, "k must be below .* 3"),
    (lambda: krylov.inverse(np.eye(3), damping=-1.0), gc.GraphError,
     "damping must be a finite number >= 0"),
    (lambda: krylov.inverse(np.eye(3), tol=0.0), gc.GraphError, "tol must be a finite number > 0"),
])
def test_bad_arguments_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
