"""Estimators that need a symmetric matrix only through its products (`krylov.trace` etc.).

They take any operator SciPy can wrap (`scipy.sparse.linalg.aslinearoperator`): graphc's
curvature operators (`gc.hessian_operator`, `gc.ggn_operator`, ...), any `LinearOperator`, a
sparse matrix or a dense ndarray. `graphc.krylov` re-exports them, as API.md names them.

- `trace`: Hutchinson's estimator (1989), the mean of z^T A z over Rademacher probes z, whose
  error falls as 1/sqrt(m) in the number m of products; and Hutch++ (Meyer, Musco, Musco and
  Woodruff, 2021), which spends a third of the products on a sketch A S, takes the trace of A
  on its range Q exactly and Hutchinson's estimate on the rest: error O(1/m) when the spectrum
  decays, as a Hessian's does.
- `diagonal`: Bekas, Kokiopoulou and Saad (2007): the mean of z * (A z).
- `spectral_density`: stochastic Lanczos quadrature (Ubaru, Chen and Saad, 2017; for network
  Hessians Ghorbani, Krishnan and Xiao, 2019, as PyHessian does): Lanczos from a random unit
  vector gives a tridiagonal T whose eigenvalues (the nodes) and the squared first entries of
  its eigenvectors (the weights) are a Gauss quadrature of the spectral measure, exact for
  polynomials of degree < 2m. SciPy has no routine that returns T (`eigsh` hides ARPACK's),
  so the Lanczos recurrence is written here; `scipy.linalg.eigh_tridiagonal` solves T.
- `top_eigenvalues`: SciPy's `eigsh` (ARPACK's implicitly restarted Lanczos).
- `inverse`: SciPy's `cg` on (A + damping I), once per product.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from graphc.errors import GraphError, ShapeError

METHODS = ("hutch++", "hutchinson")


def _square(fn: str, op) -> scipy.sparse.linalg.LinearOperator:
    """`op` as a square SciPy `LinearOperator`, or a clear error."""
    try:
        A = scipy.sparse.linalg.aslinearoperator(op)
    except (TypeError, ValueError) as e:
        raise GraphError(f"{fn}: the operator must be a scipy LinearOperator, a sparse matrix "
                         f"or a 2-D array, got {type(op).__name__} ({e})") from None
    if A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ShapeError(f"{fn}: the operator must be square and non-empty, got shape "
                         f"{A.shape}")
    return A


def _count(fn: str, what: str, value, least: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
        raise GraphError(f"{fn}: {what} must be an integer >= {least}, got {value!r}")
    return int(value)


def _rademacher(rng: np.random.Generator, n: int) -> np.ndarray:
    """A vector of independent +1 and -1, each with probability 1/2."""
    z = rng.integers(0, 2, size=n, dtype=np.int8).astype(np.float64)
    z *= 2.0
    z -= 1.0
    return z


def _product(A, z: np.ndarray) -> np.ndarray:
    return np.asarray(A.matvec(z)).reshape(-1)


def trace(op, samples: int = 100, method: str = "hutch++", seed=None) -> float:
    """An estimate of the trace of `op` from `samples` products with Rademacher probes.

    `method="hutch++"` (the default) or `"hutchinson"`; both use exactly `samples` products,
    so their errors compare at equal cost. `seed` (an int or a `numpy.random.Generator`)
    makes the probes reproducible.

    Examples:
        >>> import numpy as np
        >>> from graphc import krylov
        >>> A = np.diag(np.arange(1.0, 11.0))            # trace 55
        >>> round(krylov.trace(A, samples=30, seed=0), 6)  # Hutch++: the sketch spans it
        55.0
        >>> krylov.trace(A, samples=30, method="hutchinson", seed=0)  # diagonal: z_i^2 = 1
        55.0
    """
    fn = "trace"
    A = _square(fn, op)
    if method not in METHODS:
        raise GraphError(f"{fn}: method must be one of {METHODS}, got {method!r}")
    m = _count(fn, "samples", samples, least=3 if method == "hutch++" else 1)
    n, rng = A.shape[0], np.random.default_rng(seed)
    if method == "hutchinson":
        total = 0.0
        for _ in range(m):
            z = _rademacher(rng, n)
            total += float(z @ _product(A, z))
        return total / m
    k = m // 3  # the sketch's width; the products are k (A S), k (A Q) and m - 2k probes
    sketch = np.empty((k, n))  # (A S)^T: each product a contiguous row
    for j in range(k):
        sketch[j] = _product(A, _rademacher(rng, n))
    # an orthonormal basis of A S's range, as the rows of Q^T (LAPACK reads sketch.T, a
    # Fortran-ordered view, without a copy)
    QT = scipy.linalg.qr(sketch.T, mode="economic", overwrite_a=True, check_finite=False)[0].T
    del sketch
    top = sum(float(q @ _product(A, q)) for q in QT)
    rest, probes = 0.0, m - 2 * k
    for _ in range(probes):
        z = _rademacher(rng, n)
        z -= QT.T @ (QT @ z)  # (I - Q Q^T) z: the probe on the complement of the sketch
        rest += float(z @ _product(A, z))
    return top + rest / probes


def diagonal(op, samples: int = 100, seed=None) -> np.ndarray:
    """An estimate of the diagonal of `op`: the mean of z * (op z) over Rademacher probes z.

    The error of each entry falls as 1/sqrt(samples), in proportion to the off-diagonal
    entries of its row.

    Examples:
        >>> import numpy as np
        >>> from graphc import krylov
        >>> krylov.diagonal(np.diag([1.0, 2.0, 3.0]), samples=5, seed=0)
        array([1., 2., 3.])
    """
    fn = "diagonal"
    A = _square(fn, op)
    m = _count(fn, "samples", samples)
    n, rng = A.shape[0], np.random.default_rng(seed)
    total = np.zeros(n)
    for _ in range(m):
        z = _rademacher(rng, n)
        total += z * _product(A, z)
    return total / m


def lanczos(op, v: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The tridiagonal T of `steps` Lanczos steps from `v`: (diagonal, off-diagonal).

    Every new vector is orthogonalised against all the previous ones (twice, classical
    Gram-Schmidt), so the quadrature's nodes do not repeat (no "ghost" eigenvalues) at the
    cost of holding `steps` vectors. Stops early, with a smaller T, when the Krylov space is
    invariant (then the quadrature is exact).

    Examples:
        >>> import numpy as np
        >>> a, b = lanczos(np.diag([1.0, 2.0, 3.0]), np.ones(3), 5)   # invariant after 3
        >>> np.sort(scipy.linalg.eigh_tridiagonal(a, b, eigvals_only=True)).round(12)
        array([1., 2., 3.])
    """
    A = _square("lanczos", op)
    n = A.shape[0]
    steps = min(_count("lanczos", "steps", steps), n)
    basis = np.empty((steps, n))
    alpha, beta = np.empty(steps), np.empty(max(steps - 1, 0))
    q = np.asarray(v, dtype=np.float64).reshape(-1)
    q = q / np.linalg.norm(q)
    scale = 0.0
    for j in range(steps):
        basis[j] = q
        w = _product(A, q)
        scale = max(scale, float(np.linalg.norm(w)))
        alpha[j] = q @ w
        if j == steps - 1:
            break
        done = basis[:j + 1]
        w -= done.T @ (done @ w)
        w -= done.T @ (done @ w)
        b = float(np.linalg.norm(w))
        if b <= 64 * np.finfo(float).eps * max(scale, 1e-300):
            return alpha[:j + 1], beta[:j]
        beta[j] = b
        q = w / b
    return alpha, beta


def spectral_density(op, num_lanczos: int = 80, num_samples: int = 10, seed=None, *,
                     num_points: int = 1000, width: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The eigenvalue density of symmetric `op` by stochastic Lanczos quadrature: (grid,
    density), the density a sum of Gaussians of standard deviation `width` at the nodes.

    Each of `num_samples` Rademacher probes runs `num_lanczos` Lanczos steps (one product
    each); the quadrature weights of each probe sum to 1, so the density integrates to 1, its
    mean estimates tr(op)/n and its second moment tr(op^2)/n + width^2 (the Gaussians add
    their variance). `width` defaults to 1/100 of the span of the nodes; the grid of
    `num_points` points reaches 6 widths beyond the extreme nodes (a width below the grid's
    spacing needs more points for the curve, and its integral, to be right). Holds
    `num_lanczos` vectors of size n.

    Examples:
        >>> import numpy as np
        >>> from graphc import krylov
        >>> grid, density = krylov.spectral_density(np.diag([1.0, 2.0, 5.0]), seed=0)
        >>> round(float(np.trapezoid(density, grid)), 6)          # a probability density
        1.0
        >>> round(float(np.trapezoid(grid * density, grid)), 6)   # tr/n = 8/3: exact here
        2.666667
    """
    fn = "spectral_density"
    A = _square(fn, op)
    steps = _count(fn, "num_lanczos", num_lanczos)
    draws = _count(fn, "num_samples", num_samples)
    points = _count(fn, "num_points", num_points, least=2)
    if width is not None and not (isinstance(width, numbers.Real) and width > 0):
        raise GraphError(f"{fn}: width must be a positive number, got {width!r}")
    n, rng = A.shape[0], np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(draws):
        alpha, beta = lanczos(A, _rademacher(rng, n), steps)
        theta, vectors = scipy.linalg.eigh_tridiagonal(alpha, beta)
        nodes.append(theta)
        weights.append(vectors[0] ** 2 / draws)
    nodes, weights = np.concatenate(nodes), np.concatenate(weights)
    lo, hi = float(nodes.min()), float(nodes.max())
    if width is None:
        width = (hi - lo) / 100 if hi > lo else max(abs(hi), 1.0) * 1e-3
    grid = np.linspace(lo - 6 * width, hi + 6 * width, points)
    density = np.zeros(points)
    for chunk in range(0, nodes.size, 256):  # (points x 256) at a time
        d = (grid[:, None] - nodes[None, chunk:chunk + 256]) / width
        density += np.exp(-0.5 * d * d) @ weights[chunk:chunk + 256]
    return grid, density / (width * np.sqrt(2 * np.pi))


def plot_density(grid: np.ndarray, density: np.ndarray, ax=None, log: bool = False, **kwargs):
    """Draw a spectral density with matplotlib (imported only here); returns the axes.

    `log=True` puts the density on a log scale, where a Hessian's few outliers and its bulk
    near zero both show; keyword arguments go to `ax.plot`.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise GraphError("plot_density needs matplotlib: pip install matplotlib") from None
    if ax is None:
        ax = plt.subplots(figsize=(5, 3.5))[1]
    if log:
        density = np.maximum(density, 1e-300)
        ax.set_yscale("log")
    ax.plot(grid, density, **kwargs)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    return ax


def top_eigenvalues(op, k: int = 5, tol: float = 0.0) -> np.ndarray:
    """The `k` algebraically largest eigenvalues of symmetric `op`, in descending order, by
    SciPy's `eigsh` (k < n; `tol`: ARPACK's relative accuracy, 0 for machine precision).

    Examples:
        >>> import numpy as np
        >>> from graphc import krylov
        >>> krylov.top_eigenvalues(np.diag([3.0, -7.0, 1.0, 2.0]), k=2)
        array([3., 2.])
    """
    fn = "top_eigenvalues"
    A = _square(fn, op)
    k = _count(fn, "k", k)
    if k >= A.shape[0]:
        raise GraphError(f"{fn}: k must be below the operator's size {A.shape[0]} (eigsh "
                         f"finds at most n - 1 eigenvalues), got {k}")
    values = scipy.sparse.linalg.eigsh(A, k=k, which="LA", tol=tol, return_eigenvectors=False)
    return np.sort(values)[::-1].copy()


class DampedInverse(scipy.sparse.linalg.LinearOperator):
    """(A + damping I)^-1 as a symmetric `LinearOperator`: each product solves by SciPy's `cg`
    to relative residual `tol`. `iterations` counts the products with A of the last solve."""

    def __init__(self, A, damping: float, tol: float, maxiter: int | None):
        super().__init__(np.float64, A.shape)
        self.operator, self.damping, self.tol, self.maxiter = A, damping, tol, maxiter
        self.iterations = 0
        n = A.shape[0]

        def damped(v):
            self.iterations += 1
            return _product(A, v) + damping * v

        self._damped = scipy.sparse.linalg.LinearOperator((n, n), matvec=damped,
                                                          dtype=np.float64)

    def _matvec(self, v):
        v = np.asarray(v).reshape(-1)
        if np.iscomplexobj(v):
            return self._matvec(v.real) + 1j * self._matvec(v.imag)
        self.iterations = 0
        x, info = scipy.sparse.linalg.cg(self._damped, v.astype(np.float64, copy=False),
                                         rtol=self.tol, atol=0.0, maxiter=self.maxiter)
        if info != 0:
            residual = np.linalg.norm(self._damped.matvec(x) - v) / max(np.linalg.norm(v),
                                                                        1e-300)
            raise GraphError(
                f"inverse: cg did not reach tol={self.tol:g} in {info} iterations (relative "
                f"residual {residual:.3g}): A + {self.damping:g} I may not be positive "
                "definite (a Hessian away from a minimum is not; raise damping or use the GGN) "
                "or needs more iterations (maxiter=)")
        return x

    _rmatvec = _matvec


def inverse(op, damping: float = 1e-3, tol: float = 1e-8, maxiter: int | None = None
            ) -> DampedInverse:
    """An operator whose product solves (op + damping I) x = v by conjugate gradients.

    `op + damping I` must be symmetric positive definite (a GGN or Fisher plus any damping >
    0, a Hessian near a minimum); a solve that does not converge within `maxiter` (SciPy's
    default, 10 n) raises `gc.GraphError`.

    Examples:
        >>> import numpy as np
        >>> from graphc import krylov
        >>> Hinv = krylov.inverse(np.diag([1.0, 4.0]), damping=1.0)
        >>> Hinv @ np.array([2.0, 5.0])
        array([1., 1.])
    """
    fn = "inverse"
    A = _square(fn, op)
    if not isinstance(damping, numbers.Real) or not np.isfinite(damping) or damping < 0:
        raise GraphError(f"{fn}: damping must be a finite number >= 0, got {damping!r}")
    if not isinstance(tol, numbers.Real) or not np.isfinite(tol) or tol <= 0:
        raise GraphError(f"{fn}: tol must be a finite number > 0, got {tol!r}")
    if maxiter is not None:
        maxiter = _count(fn, "maxiter", maxiter)
    return DampedInverse(A, float(damping), float(tol), maxiter)
