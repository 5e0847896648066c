"""Expression swell, measured: sympy.diff of the expanded expression against graphc's gradient.

    python bench/swell.py [--diamond 14] [--mlp 32] [--plot docs/img/swell.png]

Two families, for growing depth d:

- the diamond ladder h_{k+1} = sin(h_k) * cos(h_k), h_0 = x: every rung uses the one below
  twice, so written out as one expression (sympy's tree) it doubles with each rung;
- a d-layer tanh MLP on scalars, h_{k+1} = tanh(w_k * h_k + b_k), differentiated with respect to
  all 2d parameters (sympy: one `diff` per parameter).

Sizes: `sympy.count_ops` of the derivative (operations in the tree, as printed or lambdified)
against the number of nodes `gc.grad` inserts. Times: `sympy.diff` (cache cleared first)
against `gc.grad`, and evaluating the derivative at 10^4 points: `sympy.lambdify` of sympy's
derivative against `gc.function` of graphc's. Ratios are sympy / graphc, from the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import sympy  # noqa: E402
from sympy.core.cache import clear_cache  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import graphc as gc  # noqa: E402

POINTS = np.linspace(-1.0, 1.0, 10_000)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def best_of(fn, repeat=3):
    """Best of `repeat` runs; a run over a second is not repeated (sympy's deep rows)."""
    best = timed(fn)[1]
    for _ in range(repeat - 1 if best < 1.0 else 0):
        best = min(best, timed(fn)[1])
    return best


def diamond(d: int) -> dict:
    x = sympy.Symbol("x")
    e = x
    for _ in range(d):
        e = sympy.sin(e) * sympy.cos(e)
    clear_cache()
    de, t_sym = timed(lambda: sympy.diff(e, x))
    f_sym = sympy.lambdify(x, de, "numpy")

    g = gc.Graph(f"diamond{d}")
    xn = g.input("x", shape=(POINTS.size,))
    h = xn
    for _ in range(d):
        h = gc.sin(h) * gc.cos(h)
    n_fwd = len(g.nodes)
    gx, t_gc = timed(lambda: gc.grad(h.sum(), xn))
    f_gc = gc.function([xn], gx)
    np.testing.assert_allclose(f_gc(POINTS), f_sym(POINTS), rtol=1e-9, atol=1e-12)
    return dict(d=d, sym_fwd=sympy.count_ops(e), sym_ops=sympy.count_ops(de),
                gc_fwd=n_fwd, gc_nodes=len(g.nodes) - n_fwd, t_sym=t_sym, t_gc=t_gc,
                e_sym=best_of(lambda: f_sym(POINTS)), e_gc=best_of(lambda: f_gc(POINTS)))


def mlp(d: int) -> dict:
    x = sympy.Symbol("x")
    ws, bs = sympy.symbols(f"w0:{d}"), sympy.symbols(f"b0:{d}")
    e = x
    for w, b in zip(ws, bs):
        e = sympy.tanh(w * e + b)
    params = list(ws) + list(bs)
    clear_cache()
    des, t_sym = timed(lambda: [sympy.diff(e, p) for p in params])
    f_sym = sympy.lambdify([x, *params], des, "numpy")

    g = gc.Graph(f"mlp{d}")
    xn = g.input("x", shape=(POINTS.size,))
    pn = [g.input(str(p)) for p in params]
    h = xn
    for w, b in zip(pn[:d], pn[d:]):
        h = gc.tanh(w * h + b)
    n_fwd = len(g.nodes)
    grads, t_gc = timed(lambda: gc.grad(h.sum(), pn))
    f_gc = gc.function([xn, *pn], grads)
    theta = list(np.random.default_rng(d).uniform(-1.5, 1.5, 2 * d))
    want = [np.sum(np.broadcast_to(v, POINTS.shape)) for v in f_sym(POINTS, *theta)]
    np.testing.assert_allclose(f_gc(POINTS, *theta), want, rtol=1e-9, atol=1e-9)
    return dict(d=d, sym_fwd=sympy.count_ops(e), sym_ops=sum(sympy.count_ops(v) for v in des),
                gc_fwd=n_fwd, gc_nodes=len(g.nodes) - n_fwd, t_sym=t_sym, t_gc=t_gc,
                e_sym=best_of(lambda: f_sym(POINTS, *theta)),
                e_gc=best_of(lambda: f_gc(POINTS, *theta)))


HEADER = ("| d | sympy expr ops | sympy derivative ops | graphc forward nodes | graphc grad nodes "
          "| size ratio | sympy.diff (ms) | gc.grad (ms) | time ratio | eval sympy (ms) "
          "| eval graphc (ms) | eval ratio |\n|" + "---:|" * 12)


def row(r: dict) -> str:
    return (f"| {r['d']} | {r['sym_fwd']:,} | {r['sym_ops']:,} | {r['gc_fwd']:,} | "
            f"{r['gc_nodes']:,} | {r['sym_ops'] / r['gc_nodes']:,.1f} | {1e3 * r['t_sym']:,.1f} | "
            f"{1e3 * r['t_gc']:.2f} | {r['t_sym'] / r['t_gc']:,.0f} | {1e3 * r['e_sym']:,.2f} | "
            f"{1e3 * r['e_gc']:.2f} | {r['e_sym'] / r['e_gc']:,.1f} |")


def run(title: str, fn, depths) -> list[dict]:
    print(f"\n{title}\n\n{HEADER}", flush=True)
    rows = []
    for d in depths:
        rows.append(fn(d))
        print(row(rows[-1]), flush=True)
    return rows


def plot(path: str, ladder: list[dict], net: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex="col")
    for col, (rows, title) in enumerate([(ladder, "diamond ladder sin(h)·cos(h)"),
                                         (net, "scalar tanh MLP, all 2d parameters")]):
        d = [r["d"] for r in rows]
        top, bottom = axes[0, col], axes[1, col]
        top.semilogy(d, [r["sym_ops"] for r in rows], "o-", label="sympy.diff: count_ops")
        top.semilogy(d, [r["gc_nodes"] for r in rows], "s-", label="gc.grad: nodes inserted")
        top.set_title(title)
        top.set_ylabel("derivative size")
        bottom.semilogy(d, [r["t_sym"] for r in rows], "o-", label="sympy.diff")
        bottom.semilogy(d, [r["t_gc"] for r in rows], "s-", label="gc.grad")
        bottom.semilogy(d, [r["e_sym"] for r in rows], "o:", label="eval: lambdify(sympy)")
        bottom.semilogy(d, [r["e_gc"] for r in rows], "s:", label="eval: gc.function")
        bottom.set_ylabel("seconds")
        bottom.set_xlabel("depth d")
        for ax in (top, bottom):
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("Expression swell: sympy's expanded derivative vs graphc's gradient graph")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"\nplot written to {path}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--diamond", type=int, default=14, help="largest ladder depth (sympy "
                    "takes ~2.3x longer per rung)")
    ap.add_argument("--mlp", type=int, default=32, help="largest MLP depth (sympy's recursion "
                    "limit is hit near 64)")
    ap.add_argument("--plot", default=None, help="write the figure here (needs matplotlib)")
    args = ap.parse_args(argv)
    ladder = run("Diamond ladder h <- sin(h) * cos(h), d/dx", diamond,
                 range(1, args.diamond + 1))
    net = run("Scalar tanh MLP, gradient in all 2d parameters", mlp,
              [d for d in (1, 2, 4, 8, 12, 16, 24, 32, 48) if d <= args.mlp])
    if args.plot:
        plot(args.plot, ladder, net)


if __name__ == "__main__":
    main()
