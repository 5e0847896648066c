"""Curvature products and estimators against hand-written NumPy and the PyTorch peers.

Run: python bench/curvature.py [--quick] [--fisher]

The MLP 784-512-512-10 (tanh, mean softmax cross-entropy, batch 256, float64; n = 669,706
parameters with the biases), one BLAS thread on one core (bench/_timing.py; PyTorch is given
one thread too).

1. Products, per product: the Hessian (`gc.hessian_operator`), the GGN (`gc.ggn_operator`) and
   the empirical Fisher (`gc.empirical_fisher_operator`), each against
   - hand-written NumPy with the forward pass computed once (Pearlmutter's R-op for the
     Hessian; J v, the softmax's Hessian, J^T for the GGN; the per-example directional
     derivatives then one backward pass for the empirical Fisher): the "numpy" column;
   - curvlinops (`HessianLinearOperator`, `GGNLinearOperator`, `EFLinearOperator`, PyTorch on
     the CPU), which runs the forward pass again in every product, where installed;
   - graphc with `batches=[the batch]`, which also runs the point part in every product
     (what curvlinops does): the like-for-like column.
2. Estimators: the top 5 eigenvalues (`krylov.top_eigenvalues`, ARPACK, tol 1e-3) against
   PyHessian's power iteration with deflation (tol 1e-3, at most 100 steps each), and
   Hutch++ (`krylov.trace`, 30 products) against PyHessian's Hutchinson with 30 probes; else
   against curvlinops' `hutchpp_trace` and SciPy's eigsh on its operator.

3. (`--fisher` only) the empirical Fisher's product, matrix-free as graphc builds it, against
   keeping the per-example gradients as an N x n matrix per point, on three MLPs.

A BLAS row (one GEMM of the first layer, NumPy against PyTorch) shows how far apart the two
libraries' matrix products are. Every ratio is against a baseline measured in the same run,
best of several rounds in which the candidates take turns.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import _timing  # sorts before NumPy, which must load after it: one BLAS thread, one core
import numpy as np

import graphc as gc
from graphc import krylov

SIZES, B = [784, 512, 512, 10], 256
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_CURVLINOPS = HAVE_TORCH and importlib.util.find_spec("curvlinops") is not None
HAVE_PYHESSIAN = HAVE_TORCH and importlib.util.find_spec("pyhessian") is not None


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    values = []
    for m, n in zip(SIZES[:-1], SIZES[1:]):
        values += [rng.standard_normal((m, n)) / np.sqrt(m), 0.1 * rng.standard_normal(n)]
    return rng.standard_normal((B, SIZES[0])), rng.integers(0, SIZES[-1], B), values


def graph():
    g = gc.Graph("mlp")
    X = g.input("X", shape=("m", SIZES[0]))
    y = g.input("y", shape=("m",), dtype="int64")
    params, h = [], X
    for k, (m, n) in enumerate(zip(SIZES[:-1], SIZES[1:]), start=1):
        W, b = g.input(f"W{k}", shape=(m, n)), g.input(f"b{k}", shape=(n,))
        params += [W, b]
        h = h @ W + b
        if k < len(SIZES) - 1:
            h = gc.tanh(h)
    per = gc.softmax_cross_entropy(h, y)
    return per.mean(), h, per, X, y, params


# -- hand-written NumPy, the forward pass computed once ------------------------------------------
def numpy_products(X, y, params):
    """(Hessian, GGN, empirical Fisher) products of flat vectors, by hand."""
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    a3 = h2 @ W3 + b3
    p = np.exp(a3 - a3.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g3 = (p - np.eye(SIZES[-1])[y]) / B  # d loss / d logits
    d1, d2 = 1 - h1 * h1, 1 - h2 * h2
    gh2 = g3 @ W3.T
    g2 = gh2 * d2
    gh1 = g2 @ W2.T
    c1, c2 = 2 * gh1 * h1, 2 * gh2 * h2  # R(d) = -2 h R(h), times d loss / d h
    pB, Bg3 = p / B, g3 * B
    shapes = [w.shape for w in params]
    ends = np.cumsum([w.size for w in params]).tolist()
    cuts = list(zip([0, *ends[:-1]], ends, shapes))

    def split(v):
        return [v[i:j].reshape(s) for i, j, s in cuts]

    def forward(V):  # J v: the tangents of the hidden layers and the logits
        V1, e1, V2, e2, V3, e3 = V
        Rh1 = d1 * (X @ V1 + e1)
        Rh2 = d2 * (Rh1 @ W2 + h1 @ V2 + e2)
        return Rh1, Rh2, Rh2 @ W3 + h2 @ V3 + e3

    def backward(G3):  # J^T u for u = G3 at the logits
        G2 = (G3 @ W3.T) * d2
        G1 = (G2 @ W2.T) * d1
        return np.concatenate([(X.T @ G1).ravel(), G1.sum(0), (h1.T @ G2).ravel(), G2.sum(0),
                               (h2.T @ G3).ravel(), G3.sum(0)])

    def hessian(v):  # Pearlmutter's R-op
        V1, e1, V2, e2, V3, e3 = V = split(v)
        Rh1, Rh2, Ra3 = forward(V)
        Rg3 = pB * (Ra3 - (p * Ra3).sum(axis=1, keepdims=True))
        Rg2 = (Rg3 @ W3.T + g3 @ V3.T) * d2 - c2 * Rh2
        Rg1 = (Rg2 @ W2.T + g2 @ V2.T) * d1 - c1 * Rh1
        return np.concatenate([(X.T @ Rg1).ravel(), Rg1.sum(0),
                               (Rh1.T @ g2 + h1.T @ Rg2).ravel(), Rg2.sum(0),
                               (Rh2.T @ g3 + h2.T @ Rg3).ravel(), Rg3.sum(0)])

    def ggn(v):
        Ra3 = forward(split(v))[2]
        return backward(pB * (Ra3 - (p * Ra3).sum(axis=1, keepdims=True)))

    def fisher(v):  # t_n = g_n . v, then (1/N) sum_n t_n g_n as one backward pass
        t = (Bg3 * forward(split(v))[2]).sum(axis=1)
        return backward(g3 * t[:, None])

    return hessian, ggn, fisher


# -- PyTorch ---------------------------------------------------------------------------------------
def torch_setup(X, y, params):
    """A model whose parameters have graphc's shapes (W: in x out), so flat vectors agree."""
    import torch

    torch.set_num_threads(1)

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ps = torch.nn.ParameterList([torch.nn.Parameter(torch.from_numpy(w.copy()))
                                              for w in params])

        def forward(self, x):
            W1, b1, W2, b2, W3, b3 = self.ps
            return torch.tanh(torch.tanh(x @ W1 + b1) @ W2 + b2) @ W3 + b3

    model = MLP()
    data = [(torch.from_numpy(X), torch.from_numpy(y))]
    return torch, model, torch.nn.CrossEntropyLoss(reduction="mean"), data


def curvlinops_products(torch, model, loss_func, data):
    import curvlinops

    ops = {}
    for name, cls in (("hessian", curvlinops.HessianLinearOperator),
                      ("ggn", curvlinops.GGNLinearOperator),
                      ("fisher", curvlinops.EFLinearOperator)):
        A = cls(model, loss_func, list(model.parameters()), data, check_deterministic=False)
        ops[name] = (lambda v, A=A: (A @ torch.from_numpy(v)).numpy())
    return ops


def check(name, got, want):
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-9, (name, err)


# -- 1. products -----------------------------------------------------------------------------------
def products(repeat: int) -> None:
    X, y, values = problem()
    loss, logits, per, Xn, yn, params = graph()
    at = {Xn: X, yn: y, **dict(zip(params, values))}
    par = dict(zip(params, values))
    one = [{Xn: X, yn: y}]
    ours = {"hessian": gc.hessian_operator(loss, params, at=at),
            "ggn": gc.ggn_operator(loss, logits, params, at=at),
            "fisher": gc.empirical_fisher_operator(per, params, at=at)}
    again = {"hessian": gc.hessian_operator(loss, params, at=par, batches=one),
             "ggn": gc.ggn_operator(loss, logits, params, at=par, batches=one),
             "fisher": gc.empirical_fisher_operator(per, params, at=par, batches=one)}
    hand = dict(zip(("hessian", "ggn", "fisher"), numpy_products(X, y, values)))
    peers = {}
    if HAVE_CURVLINOPS:
        peers = curvlinops_products(*torch_setup(X, y, values))
    v = np.random.default_rng(1).standard_normal(ours["ggn"].shape[0])
    print(f"\n1. per product, n = {v.size:,} (graphc: point part cached; 'recomputed': "
          "batches=[batch], the point part in every product, as curvlinops does)")
    for name in ("hessian", "ggn", "fisher"):
        want = hand[name](v)
        check(name, ours[name].matvec(v), want)
        check(name + " batches", again[name].matvec(v), want)
        if name in peers:
            check(name + " curvlinops", peers[name](v), want)
        fns = {"numpy": lambda f=hand[name]: f(v),
               "graphc": lambda A=ours[name]: A.matvec(v),
               "graphc recomputed": lambda A=again[name]: A.matvec(v),
               "curvlinops": (lambda f=peers[name]: f(v)) if name in peers else None}
        t = _timing.measure({k: f for k, f in fns.items() if f is not None}, repeat,
                            min_time=0.2, max_number=100)
        cells = [f"  {name + ' product':<24}", f"numpy {t['numpy'] * 1e3:7.1f} ms",
                 f"graphc {t['graphc'] / t['numpy']:5.2f}x",
                 f"recomputed {t['graphc recomputed'] / t['numpy']:5.2f}x"]
        if "curvlinops" in t:
            cells += [f"curvlinops {t['curvlinops'] / t['numpy']:5.2f}x",
                      f"graphc/curvlinops {t['graphc'] / t['curvlinops']:5.2f}x "
                      f"(recomputed {t['graphc recomputed'] / t['curvlinops']:5.2f}x)"]
        print("  ".join(cells))
        sys.stdout.flush()
    if HAVE_TORCH:
        torch = sys.modules["torch"] if "torch" in sys.modules else __import__("torch")
        torch.set_num_threads(1)
        W1 = values[0]
        tX, tW = torch.from_numpy(X), torch.from_numpy(W1)
        t = _timing.measure({"numpy": lambda: X @ W1, "torch": lambda: tX @ tW}, repeat)
        print(f"  {'BLAS: X @ W1 (256x784x512)':<24}  numpy {t['numpy'] * 1e3:7.1f} ms  "
              f"torch {t['torch'] / t['numpy']:5.2f}x")


# -- 2. estimators ---------------------------------------------------------------------------------
class Counted:
    """Counts the products of an operator's `matvec`."""

    def __init__(self, A):
        self.A, self.calls = A, 0

    def __call__(self, v):
        self.calls += 1
        return self.A.matvec(v)


def best_runs(fns: dict, repeat: int) -> dict:
    """{name: (best seconds, its result)}: each callable run once per round, taking turns."""
    best = {k: (np.inf, None) for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            start = time.perf_counter()
            out = fn()
            best[k] = min(best[k], (time.perf_counter() - start, out), key=lambda r: r[0])
    return best


def estimators(repeat: int) -> None:
    import scipy.sparse.linalg as sla

    X, y, values = problem()
    loss, logits, per, Xn, yn, params = graph()
    H = gc.hessian_operator(loss, params, at={Xn: X, yn: y, **dict(zip(params, values))})
    count = Counted(H)
    counted = sla.LinearOperator(H.shape, matvec=count, rmatvec=count, dtype=np.float64)

    def ours_eig():
        count.calls = 0
        return krylov.top_eigenvalues(counted, k=5, tol=1e-3), count.calls

    def ours_trace():
        count.calls = 0
        return krylov.trace(counted, samples=30, seed=0), count.calls

    fns = {"eig": ours_eig, "trace": ours_trace}
    peer = None
    if HAVE_PYHESSIAN:
        import warnings

        from pyhessian import hessian as pyhessian

        warnings.filterwarnings("ignore", message="Using backward.. with create_graph")
        torch, model, loss_func, data = torch_setup(X, y, values)
        peer = "PyHessian"
        ph = pyhessian(model, loss_func, data=data[0], cuda=False)
        fns["peer eig"] = lambda: (np.array(ph.eigenvalues(maxIter=100, tol=1e-3, top_n=5)[0]),
                                   None)
        fns["peer trace"] = lambda: (float(np.mean(ph.trace(maxIter=30, tol=0.0))), 30)
    elif HAVE_CURVLINOPS:
        import curvlinops

        torch, model, loss_func, data = torch_setup(X, y, values)
        peer = "curvlinops"
        A = curvlinops.HessianLinearOperator(model, loss_func, list(model.parameters()), data,
                                             check_deterministic=False)
        fns["peer eig"] = lambda: (np.sort(sla.eigsh(A.to_scipy(), k=5, which="LA", tol=1e-3,
                                                     return_eigenvectors=False))[::-1], None)
        fns["peer trace"] = lambda: (float(curvlinops.hutchpp_trace(A, 30)), 30)
    t = best_runs(fns, repeat)
    print(f"\n2. estimators on the Hessian: best of {repeat} runs, taking turns")
    (te, ((top, calls_e))), (tt, (tr, calls_t)) = t["eig"], t["trace"]
    print(f"  graphc top_eigenvalues(k=5, tol=1e-3)  {te:6.2f} s  {calls_e:3d} products  "
          f"{np.array2string(top, precision=4)}")
    print(f"  graphc trace(samples=30, 'hutch++')    {tt:6.2f} s  {calls_t:3d} products  "
          f"{tr:.4f}")
    if peer is None:
        print("  (neither PyHessian nor curvlinops is installed: no peer rows)")
        return
    (pe, (ptop, _)), (pt, (ptr, _)) = t["peer eig"], t["peer trace"]
    what = ("eigenvalues(top_n=5, tol=1e-3)", "trace(maxIter=30)") if peer == "PyHessian" \
        else ("eigsh(k=5, tol=1e-3)", "hutchpp_trace(30)")
    print(f"  {peer} {what[0]:<29} {pe:6.2f} s  {'':>12}  "
          f"{np.array2string(ptop, precision=4)}   graphc / {peer} {te / pe:5.2f}x")
    print(f"  {peer} {what[1]:<29} {pt:6.2f} s  {30:3d} products  {ptr:.4f}"
          f"{'':>29}graphc / {peer} {tt / pt:5.2f}x")


# -- 3. the empirical Fisher: matrix-free, or the per-example gradients kept per point ----------
def fisher_choice(repeat: int) -> None:
    """`gc.empirical_fisher_operator`'s product (jvp, then one backward pass) against keeping
    the N x n per-example gradients (`gc.jacobian` of the loss vector) per point and
    multiplying G^T (G v) / N per product: which is cheaper, on three MLPs."""
    print("\n3. empirical Fisher: jvp then vjp, against the per-example gradient matrix G kept "
          "per point (G^T (G v) / N per product)")
    for sizes, N in (([64, 32, 10], 32), ([784, 128, 10], 256), ([784, 512, 512, 10], 64)):
        rng = np.random.default_rng(0)
        g = gc.Graph("mlp")
        X = g.input("X", shape=(N, sizes[0]))
        y = g.input("y", shape=(N,), dtype="int64")
        params, values, h = [], [], X
        for k, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
            W, b = g.input(f"W{k}", shape=(m, n)), g.input(f"b{k}", shape=(n,))
            params += [W, b]
            values += [rng.standard_normal((m, n)) / np.sqrt(m), 0.1 * rng.standard_normal(n)]
            h = h @ W + b
            if k < len(sizes) - 2:
                h = gc.tanh(h)
        per = gc.softmax_cross_entropy(h, y)
        at = {X: rng.standard_normal((N, sizes[0])), y: rng.integers(0, sizes[-1], N),
              **dict(zip(params, values))}
        F = gc.empirical_fisher_operator(per, params, at=at)
        per_example = gc.function([X, y, *params], gc.jacobian(per, params))
        start = time.perf_counter()
        G = np.hstack([j.reshape(N, -1) for j in per_example(at[X], at[y], *values)])
        point = time.perf_counter() - start
        v = rng.standard_normal(F.shape[0])
        check("fisher", F.matvec(v), G.T @ (G @ v) / N)
        t = _timing.measure({"matrix": lambda G=G, v=v, N=N: G.T @ (G @ v) / N,
                             "graphc": lambda F=F, v=v: F.matvec(v)}, repeat, min_time=0.1)
        label = "-".join(map(str, sizes)) + f", N = {N}, n = {F.shape[0]:,}"
        print(f"  {label:<34} jvp-vjp {t['graphc'] * 1e3:8.3f} ms   matrix "
              f"{t['matrix'] * 1e3:8.3f} ms + {point * 1e3:7.1f} ms per point "
              f"({G.nbytes / 1e6:.1f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--fisher", action="store_true",
                    help="section 3 only: the empirical Fisher's product, two ways")
    args = ap.parse_args()
    print(f"graphc {gc.__version__}; curvlinops: {'yes' if HAVE_CURVLINOPS else 'no'}, "
          f"PyHessian: {'yes' if HAVE_PYHESSIAN else 'no'}; one thread, float64")
    if args.fisher:
        fisher_choice(3 if args.quick else 5)
        return
    products(3 if args.quick else 7)
    estimators(1 if args.quick else 3)


if __name__ == "__main__":
    main()
