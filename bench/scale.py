"""Scaling out (issue 19): L2-regularised logistic regression with 32 features on the NumPy
backend and on Dask clusters of 1 and 2 worker processes (one thread each, BLAS pinned to one
thread everywhere).

(a) time per gradient and per Hessian-vector product, rows 10^6 to 10^7: NumPy in this
    process against Dask on 1 and 2 workers (the data generated on the workers and persisted),
    and the speedup of 2 workers over NumPy and over 1 worker;
(b) one HVP over 10^8 rows (25.6 GB of float64: more than this machine's memory), generated
    chunk by chunk on the workers and never held at once: rows per second and the peak
    resident memory of each worker (sampled every 0.2 s);
(c) time to solution of Newton-CG on graphc's Dask objective against
    dask_ml.linear_model.LogisticRegression(solver="newton") (dask_glm's Newton) on the same
    persisted data. dask_glm's Newton takes no penalty, so (c) fits the unregularised loss
    for both; the tolerance is the same: Newton-CG's xtol = dask_glm's tol on the step.

    python bench/scale.py --quick          # small sizes, about a minute
    python bench/scale.py                  # the full run (docs/scaling.md), about 20 minutes

Timings are best of --repeat rounds; the machine is shared, so read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # read by NumPy here and by every worker process it starts

import numpy as np  # noqa: E402

D = 32
LAMBDA = 1e-3
SEED = 19


def model(lam: float = LAMBDA):
    import graphc as gc

    g = gc.Graph("logreg")
    X = g.input("X", shape=("batch", D))
    y = g.input("y", shape=("batch",))
    w = g.input("w", shape=(D,))
    z = X @ w
    loss = gc.mean(gc.softplus(z) - y * z) + lam * gc.sum(w * w)
    return X, y, w, loss


def _block(block_id, rows: int, n: int):
    """Rows [k*rows, ...) of the data set: X and labels y drawn from a fixed logistic model,
    as one (rows, D + 1) block, the same whoever makes it."""
    k = block_id[0]
    m = min(rows, n - k * rows)
    rng = np.random.default_rng([SEED, k])
    X = rng.standard_normal((m, D))
    truth = np.random.default_rng(SEED).standard_normal(D) / np.sqrt(D)
    y = (rng.random(m) < 1.0 / (1.0 + np.exp(-X @ truth))).astype(np.float64)
    return np.concatenate([X, y[:, None]], axis=1)


def lazy_data(n: int, rows: int):
    """X, y as Dask arrays made chunk by chunk where they are computed."""
    import dask.array as da

    chunks = ((rows,) * (n // rows) + ((n % rows,) if n % rows else ()), (D + 1,))
    Z = da.map_blocks(_block_from_info, dtype=np.float64, chunks=chunks, rows=rows, n=n)
    return Z[:, :D], Z[:, D]


def _block_from_info(block_info=None, rows=0, n=0):
    return _block(block_info[None]["chunk-location"], rows, n)


def numpy_data(n: int, rows: int):
    blocks = [_block((k,), rows, n) for k in range(-(-n // rows))]
    Z = np.concatenate(blocks)
    return np.ascontiguousarray(Z[:, :D]), Z[:, D].copy()


def best(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cluster(workers: int, memory: str = "auto"):
    from distributed import Client, LocalCluster

    c = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                     dashboard_address=None, silence_logs=40, memory_limit=memory)
    return c, Client(c)


def numpy_run(X, y, w, loss, grad, n, rows, w0, p, repeat):
    """(seconds per gradient, per HVP) on the NumPy backend, and H p; the data is freed on
    return, before the clusters start."""
    import graphc as gc

    Xv, yv = numpy_data(n, rows)
    f = gc.function([X, y, w], grad)
    H = gc.hessian_operator(loss, w, at={X: Xv, y: yv, w: w0})
    return (best(lambda: f(Xv, yv, w0), repeat), best(lambda: H @ p, repeat)), H @ p


def dask_run(client, fd, X, y, w, loss, n, rows, w0, p, want, repeat):
    """(seconds per gradient, per HVP) on the cluster of `client`, the data made and
    persisted on its workers."""
    from distributed import wait

    import graphc as gc

    Xd, yd = lazy_data(n, rows)
    Xd, yd = client.persist([Xd, yd])
    wait([Xd, yd])
    Hd = gc.hessian_operator(loss, w, at={X: Xd, y: yd, w: w0})
    assert np.allclose(Hd @ p, want, rtol=1e-10), "the Dask HVP differs from NumPy's"
    return best(lambda: fd(Xd, yd, w0), repeat), best(lambda: Hd @ p, repeat)


def part_a(sizes, rows, repeat):
    import graphc as gc

    X, y, w, loss = model()
    grad = gc.grad(loss, w)
    w0 = 0.1 * np.random.default_rng(0).standard_normal(D)
    p = np.random.default_rng(1).standard_normal(D)
    results = {n: {} for n in sizes}
    want = {}
    for n in sizes:
        results[n]["numpy"], want[n] = numpy_run(X, y, w, loss, grad, n, rows, w0, p, repeat)
    fd = gc.function([X, y, w], grad, backend="dask")
    for k in (1, 2):  # one cluster per worker count, every size on it
        c, client = cluster(k)
        try:
            for n in sizes:  # the data persisted on the workers, freed after each size
                results[n][k] = dask_run(client, fd, X, y, w, loss, n, rows, w0, p, want[n],
                                         repeat)
        finally:
            client.close()
            c.close()
    for n in sizes:
        row = results[n]
        print(f"{n:>11,d} rows  numpy grad {row['numpy'][0] * 1e3:8.1f} ms  "
              f"hvp {row['numpy'][1] * 1e3:8.1f} ms  | 1 worker grad {row[1][0] * 1e3:8.1f} "
              f"hvp {row[1][1] * 1e3:8.1f}  | 2 workers grad {row[2][0] * 1e3:8.1f} "
              f"hvp {row[2][1] * 1e3:8.1f}  | speedup 2w/numpy grad "
              f"{row['numpy'][0] / row[2][0]:4.2f}x hvp {row['numpy'][1] / row[2][1]:4.2f}x, "
              f"2w/1w grad {row[1][0] / row[2][0]:4.2f}x hvp {row[1][1] / row[2][1]:4.2f}x")
    sys.stdout.flush()
    return results


def part_b(n, rows):
    import graphc as gc

    X, y, w, loss = model()
    w0 = 0.1 * np.random.default_rng(0).standard_normal(D)
    p = np.random.default_rng(1).standard_normal(D)
    c, client = cluster(2, memory="4GB")
    peaks: dict[str, int] = {}
    done = threading.Event()

    def sample():
        import psutil

        while not done.is_set():
            try:
                rss = client.run(lambda: psutil.Process().memory_info().rss)
            except Exception:  # noqa: BLE001 - a sample lost while a worker is busy
                rss = {}
            for k, v in rss.items():
                peaks[k] = max(peaks.get(k, 0), v)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        sampler.start()
        Xd, yd = lazy_data(n, rows)  # never persisted: each pass makes the chunks again
        t = time.perf_counter()
        H = gc.hessian_operator(loss, w, at={X: Xd, y: yd, w: w0})
        point = time.perf_counter() - t
        t = time.perf_counter()
        hv = H @ p
        product = time.perf_counter() - t
        done.set()
        sampler.join()
    finally:
        done.set()
        client.close()
        c.close()
    gb = n * (D + 1) * 8 / 1e9
    print(f"{n:,d} rows ({gb:.1f} GB of float64 made per chunk of {rows:,d} rows): point part "
          f"{point:.1f} s, HVP {product:.1f} s = {n / product / 1e6:.2f} M rows/s; peak RSS "
          f"per worker {', '.join(f'{v / 2**30:.2f} GiB' for v in peaks.values())}; "
          f"|Hp| = {np.linalg.norm(hv):.6g}")
    return point, product, peaks


def part_c(n, rows, tol):
    import scipy.optimize
    from distributed import wait

    import graphc as gc

    X, y, w, loss = model(lam=0.0)
    c, client = cluster(2)
    try:
        Xd, yd = lazy_data(n, rows)
        Xd, yd = client.persist([Xd, yd])
        wait([Xd, yd])
        t = time.perf_counter()
        obj = gc.objective(loss, w, at={X: Xd, y: yd, w: np.zeros(D)})
        res = scipy.optimize.minimize(obj.fun, obj.x0, jac=obj.jac, hessp=obj.hessp,
                                      method="Newton-CG", options={"xtol": tol})
        ours = time.perf_counter() - t
        try:
            from dask_ml.linear_model import LogisticRegression
        except ImportError:
            print("(c) dask_ml is not installed (pip install dask-ml): graphc Newton-CG "
                  f"{ours:.2f} s, {res.nit} iterations")
            return ours, None
        t = time.perf_counter()
        lr = LogisticRegression(solver="newton", fit_intercept=False, tol=tol, max_iter=100)
        lr.fit(Xd, yd)
        theirs = time.perf_counter() - t
        gap = np.max(np.abs(lr.coef_.ravel() - res.x))
        g_ours = np.linalg.norm(obj.jac(res.x))
        g_theirs = np.linalg.norm(obj.jac(lr.coef_.ravel()))
    finally:
        client.close()
        c.close()
    print(f"{n:,d} rows, tol {tol:g}: graphc Newton-CG {ours:.2f} s ({res.nit} iterations, "
          f"{res.nfev} fun, {res.njev} jac, {res.nhev} hessp, |grad| {g_ours:.1e}); dask_ml "
          f"newton {theirs:.2f} s (|grad| {g_theirs:.1e}); speedup {theirs / ours:.2f}x; "
          f"max |coef difference| {gap:.1e}")
    return ours, theirs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: under a minute")
    ap.add_argument("--rows", type=float, nargs="*", help="row counts for (a)")
    ap.add_argument("--big", type=float, default=1e8, help="rows for (b)")
    ap.add_argument("--newton-rows", type=float, default=1e6, help="rows for (c)")
    ap.add_argument("--chunk", type=int, default=500_000, help="rows per chunk")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--parts", default="abc", help="which parts to run (a, b, c)")
    args = ap.parse_args(argv)
    if args.quick:
        sizes, big, newton, chunk = [2e5], 1e6, 1e5, 50_000
        args.repeat = min(args.repeat, 2)
    else:
        sizes = args.rows or [1e6, 3e6, 1e7]
        big, newton, chunk = args.big, args.newton_rows, args.chunk
    print(f"L2-regularised logistic regression, {D} features; BLAS 1 thread; "
          f"{os.cpu_count()} CPUs; chunks of {chunk:,d} rows; best of {args.repeat}")
    if "a" in args.parts:
        print("(a) time per gradient and per HVP")
        part_a([int(n) for n in sizes], chunk, args.repeat)
    if "b" in args.parts:
        print("(b) one HVP over data made per chunk, never held at once")
        part_b(int(big), chunk)
    if "c" in args.parts:
        print("(c) time to solution, Newton (unregularised: dask_glm's Newton has no penalty)")
        part_c(int(newton), chunk, args.tol)


if __name__ == "__main__":
    main()
