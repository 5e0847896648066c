"""Forward, gradient and Hessian-vector product timings against hand-written NumPy.

Run: python bench/hvp.py [--quick] [--krylov]

1. The figure 6.11 MLP (784-512-512-10, tanh, batch 256, softmax cross-entropy plus weight
   decay, all weights and biases as parameters), float64. Baseline: hand-written NumPy forward,
   backprop and Pearlmutter's R-op for the HVP.
2. Rosenbrock at n = 10**6. Baseline: hand-written NumPy value, gradient and the tridiagonal
   Hessian's product.
3. Node counts of the k-th derivative (k = 1, 2, 3, by repeated grad) of the diamond ladder
   x -> h_1 -> ... -> h_d, h_{i+1} = sin(h_i) * cos(h_i): each rung a diamond.
4. Krylov on a small MLP (64-32-10, tanh, batch 32, softmax cross-entropy; n = 2,410
   parameters with the biases): a `gc.hessian_operator` matvec and 50 iterations of
   `scipy.sparse.linalg.cg` against a hand-written NumPy R-op that reuses the cached forward
   pass; then a Hessian-free loop over 1,000 minibatches (`Objective.with_data`,
   `HessianOperator.update`): graph nodes added after the first step, and the time per step
   outside the products.

Every time is the best of several runs; every ratio is against a baseline measured in this run.
The HVP rows time a full evaluation (forward + gradient + product) unless marked "per product",
which is a `gc.hessian_operator` matvec: the gradient side computed once per point.
"""

from __future__ import annotations

import argparse
import sys
import timeit

import numpy as np
import scipy.sparse.linalg

import graphc as gc
from graphc.autodiff.second_order import _hvp_forward, _hvp_reverse, cost
from graphc.ir import walk


def best_of(fns: dict, repeat: int) -> dict:
    """Best time of each callable over `repeat` rounds, the callables interleaved in each round
    so that a load change on the machine hits them all alike."""
    for fn in fns.values():
        fn()  # warm up
    times = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            times[k] = min(times[k], timeit.timeit(fn, number=1))
    return times


def row(label: str, t: float, base: float | None = None, note: str = "") -> None:
    ratio = f"{t / base:6.2f}x" if base else "       "
    print(f"  {label:<40} {t * 1e3:9.2f} ms  {ratio}  {note}")


# -- 1. the MLP ----------------------------------------------------------------------------
def mlp_numpy(params, X, Y, lam):
    W1, b1, W2, b2, W3, b3 = params
    B = X.shape[0]

    def forward():
        h1 = np.tanh(X @ W1 + b1)
        h2 = np.tanh(h1 @ W2 + b2)
        a3 = h2 @ W3 + b3
        m = a3.max(axis=1, keepdims=True)
        lse = np.log(np.exp(a3 - m).sum(axis=1, keepdims=True)) + m
        ce = (lse[:, 0] - (a3 * Y).sum(axis=1)).mean()
        return ce + lam * ((W1 * W1).sum() + (W2 * W2).sum() + (W3 * W3).sum()), (h1, h2, a3, lse)

    def gradient():
        loss, (h1, h2, a3, lse) = forward()
        g3 = (np.exp(a3 - lse) - Y) / B
        gh2 = g3 @ W3.T
        g2 = gh2 * (1 - h2 * h2)
        gh1 = g2 @ W2.T
        g1 = gh1 * (1 - h1 * h1)
        return [X.T @ g1 + 2 * lam * W1, g1.sum(0), h1.T @ g2 + 2 * lam * W2, g2.sum(0),
                h2.T @ g3 + 2 * lam * W3, g3.sum(0)]

    def hvp(V):
        V1, c1, V2, c2, V3, c3 = V
        h1 = np.tanh(X @ W1 + b1)
        Rh1 = (1 - h1 * h1) * (X @ V1 + c1)
        h2 = np.tanh(h1 @ W2 + b2)
        Rh2 = (1 - h2 * h2) * (Rh1 @ W2 + h1 @ V2 + c2)
        a3 = h2 @ W3 + b3
        Ra3 = Rh2 @ W3 + h2 @ V3 + c3
        p = np.exp(a3 - a3.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g3 = (p - Y) / B
        Rg3 = p * (Ra3 - (p * Ra3).sum(axis=1, keepdims=True)) / B
        gh2 = g3 @ W3.T
        Rgh2 = Rg3 @ W3.T + g3 @ V3.T
        d2 = 1 - h2 * h2
        Rg2 = Rgh2 * d2 - 2 * gh2 * h2 * Rh2
        g2 = gh2 * d2
        gh1 = g2 @ W2.T
        Rgh1 = Rg2 @ W2.T + g2 @ V2.T
        d1 = 1 - h1 * h1
        Rg1 = Rgh1 * d1 - 2 * gh1 * h1 * Rh1
        return [X.T @ Rg1 + 2 * lam * V1, Rg1.sum(0), Rh1.T @ g2 + h1.T @ Rg2 + 2 * lam * V2,
                Rg2.sum(0), Rh2.T @ g3 + h2.T @ Rg3 + 2 * lam * V3, Rg3.sum(0)]

    return (lambda: forward()[0]), gradient, hvp


def bench_mlp(repeat: int) -> dict:
    rng = np.random.default_rng(0)
    sizes, B, lam = [784, 512, 512, 10], 256, 1e-4
    g = gc.Graph("mlp")
    X = g.input("X", shape=(B, 784))
    y = g.input("y", shape=(B,), dtype="int64")
    params, values = [], []
    h = X
    for k, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        W = g.input(f"W{k}", shape=(m, n))
        b = g.input(f"b{k}", shape=(n,))
        params += [W, b]
        values += [rng.standard_normal((m, n)) / np.sqrt(m), 0.1 * rng.standard_normal(n)]
        h = h @ W + b
        if k < len(sizes) - 1:
            h = gc.tanh(h)
    ce = gc.softmax_cross_entropy(h, y).mean()
    loss = ce + lam * gc.add_n([gc.sum(W * W) for W in params[0::2]])
    X_val = rng.standard_normal((B, 784))
    y_val = rng.integers(0, 10, B)
    Y_val = np.eye(10)[y_val]
    V_val = [rng.standard_normal(v.shape) for v in values]
    vs = [g.input(f"v_{p.name}", shape=p.shape) for p in params]
    feed = [X_val, y_val, *values]
    inputs = [X, y, *params]

    np_fwd, np_grad, np_hvp = mlp_numpy(values, X_val, Y_val, lam)
    grads = gc.grad(loss, params)
    hv = {m: gc.hvp(loss, params, vs, mode=m) for m in ("forward", "reverse", "auto")}
    f_fwd = gc.function(inputs, loss)
    f_grad = gc.function(inputs, grads)
    f_hvp = {m: gc.function(inputs + vs, out) for m, out in hv.items()}

    # Correctness against the hand-written versions before timing anything.
    assert abs(float(f_fwd(*feed)) - np_fwd()) < 1e-9
    for a, b in zip(f_grad(*feed), np_grad()):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    ref = np_hvp(V_val)
    for m, f in f_hvp.items():
        for a, b in zip(f(*feed, *V_val), ref):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9, err_msg=m)

    op = gc.hessian_operator(loss, params, at=dict(zip(inputs, feed)))
    flat_v = np.concatenate([v.ravel() for v in V_val])
    np.testing.assert_allclose(op @ flat_v, np.concatenate([r.ravel() for r in ref]),
                               rtol=1e-7, atol=1e-9)

    fns = {"np_fwd": np_fwd, "np_grad": np_grad, "np_hvp": lambda: np_hvp(V_val),
           "fwd": lambda: f_fwd(*feed), "grad": lambda: f_grad(*feed),
           "op": lambda: op.matvec(flat_v)}
    fns.update({m: (lambda f=f: f(*feed, *V_val)) for m, f in f_hvp.items()})
    t = best_of(fns, repeat)
    t["np_op"] = t["np_hvp"]  # the R-op has no separable point part worth caching by hand
    with g.scratch():
        gs = gc.grad(loss, params)
        costs = {"forward": cost(_hvp_forward(loss, params, vs, gs)),
                 "reverse": cost(_hvp_reverse(loss, params, vs, gs))}
    from graphc.autodiff.second_order import choose_mode
    t["picked"] = choose_mode(loss, params, vs)
    t["costs"] = costs
    return t


# -- 2. Rosenbrock -------------------------------------------------------------------------
def rosen_numpy(x):
    a, b = x[:-1], x[1:]

    def fun():
        return float((100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2).sum())

    def grad():
        d = b - a * a
        out = np.zeros_like(x)
        out[:-1] = -400.0 * a * d - 2.0 * (1.0 - a)
        out[1:] += 200.0 * d
        return out

    def hvp(v):
        out = np.zeros_like(x)
        out[:-1] = (1200.0 * a * a - 400.0 * b + 2.0) * v[:-1] - 400.0 * a * v[1:]
        out[1:] += 200.0 * v[1:] - 400.0 * a * v[:-1]
        return out

    return fun, grad, hvp


def rosenbrock(x):
    """The n-dimensional Rosenbrock function as a graph (also used by the tests)."""
    a, b = x[:-1], x[1:]
    return (100.0 * (b - a ** 2) ** 2 + (1.0 - a) ** 2).sum()


def bench_rosen(n: int, repeat: int) -> dict:
    rng = np.random.default_rng(1)
    g = gc.Graph("rosenbrock")
    x = g.input("x", shape=(n,))
    v = g.input("v", shape=(n,))
    f = rosenbrock(x)
    x_val = rng.uniform(-1.5, 1.5, n)
    v_val = rng.standard_normal(n)
    np_fun, np_grad, np_hvp = rosen_numpy(x_val)
    f_fwd = gc.function([x], f)
    f_grad = gc.function([x], gc.grad(f, x))
    f_hvp = {m: gc.function([x, v], gc.hvp(f, x, v, mode=m))
             for m in ("forward", "reverse", "auto")}
    assert abs(float(f_fwd(x_val)) - np_fun()) <= 1e-9 * abs(np_fun())
    np.testing.assert_allclose(f_grad(x_val), np_grad(), rtol=1e-10, atol=1e-8)
    for m, fh in f_hvp.items():
        np.testing.assert_allclose(fh(x_val, v_val), np_hvp(v_val), rtol=1e-10, atol=1e-8,
                                   err_msg=m)
    op = gc.hessian_operator(f, x, at={x: x_val})
    np.testing.assert_allclose(op @ v_val, np_hvp(v_val), rtol=1e-10, atol=1e-8)
    fns = {"np_fwd": np_fun, "np_grad": np_grad, "np_hvp": lambda: np_hvp(v_val),
           "fwd": lambda: f_fwd(x_val), "grad": lambda: f_grad(x_val),
           "op": lambda: op.matvec(v_val)}
    fns.update({m: (lambda fh=fh: fh(x_val, v_val)) for m, fh in f_hvp.items()})
    t = best_of(fns, repeat)
    t["np_op"] = t["np_hvp"]
    with g.scratch():
        gs = gc.grad(f, [x])
        t["costs"] = {"forward": cost(_hvp_forward(f, [x], [v], gs)),
                      "reverse": cost(_hvp_reverse(f, [x], [v], gs))}
    from graphc.autodiff.second_order import choose_mode
    t["picked"] = choose_mode(f, [x], [v])
    return t


def report(title: str, t: dict) -> None:
    print(f"\n{title}")
    print(f"  {'':<40} {'graphc':>12}  {'/ numpy':>7}")
    row("forward", t["fwd"], t["np_fwd"])
    row("gradient", t["grad"], t["np_grad"], f"gradient/forward = {t['grad'] / t['fwd']:.2f}x "
        f"(numpy {t['np_grad'] / t['np_fwd']:.2f}x; target <= 3)")
    for m in ("reverse", "forward", "auto"):
        note = ""
        if m == "auto":
            note = (f"picked {t['picked']!r}; hvp/gradient = {t['auto'] / t['grad']:.2f}x "
                    "(target <= 2.5)")
        row(f"hvp mode={m!r}", t[m], t["np_hvp"], note)
    row("hvp per product (hessian_operator)", t["op"], t["np_op"],
        f"/gradient = {t['op'] / t['grad']:.2f}x")
    faster = "forward" if t["forward"] <= t["reverse"] else "reverse"
    c = t["costs"]
    print(f"  cost model: forward {c['forward']:.3g} flops, reverse {c['reverse']:.3g} flops; "
          f"auto picked {t['picked']!r}, measured faster {faster!r} "
          f"({'agrees' if faster == t['picked'] else 'DISAGREES'})")
    print(f"  graphc hvp (auto) / hand-written numpy hvp = {t['auto'] / t['np_hvp']:.2f}x "
          "(target <= 1.3)")


# -- 4. Krylov on a small MLP ------------------------------------------------------------------
SMALL = [64, 32, 10]  # n = 64*32 + 32 + 32*10 + 10 = 2,410 parameters


def small_mlp(batch: int = 32):
    """The 64-32-10 tanh MLP with mean softmax cross-entropy; (graph, loss, X, y, params)."""
    g = gc.Graph("small_mlp")
    X = g.input("X", shape=(batch, SMALL[0]))
    y = g.input("y", shape=(batch,), dtype="int64")
    W1, b1 = g.input("W1", shape=tuple(SMALL[:2])), g.input("b1", shape=(SMALL[1],))
    W2, b2 = g.input("W2", shape=tuple(SMALL[1:])), g.input("b2", shape=(SMALL[2],))
    loss = gc.softmax_cross_entropy(gc.tanh(X @ W1 + b1) @ W2 + b2, y).mean()
    return g, loss, X, y, [W1, b1, W2, b2]


def small_values(rng, batch: int = 32):
    params = [rng.standard_normal(tuple(SMALL[:2])) / np.sqrt(SMALL[0]),
              0.1 * rng.standard_normal(SMALL[1]),
              rng.standard_normal(tuple(SMALL[1:])) / np.sqrt(SMALL[1]),
              0.1 * rng.standard_normal(SMALL[2])]
    return rng.standard_normal((batch, SMALL[0])), rng.integers(0, SMALL[2], batch), params


def small_rop(X, y, params):
    """Pearlmutter's R-op by hand, for the flat vector of all four tensors: the forward pass
    and everything in the product that does not depend on v computed once, here."""
    W1, b1, W2, b2 = params
    B = X.shape[0]
    h = np.tanh(X @ W1 + b1)
    d = 1.0 - h * h
    a = h @ W2 + b2
    p = np.exp(a - a.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g2 = (p - np.eye(SMALL[2])[y]) / B  # d loss / d logits
    c = 2.0 * (g2 @ W2.T) * h  # R(d) = -2 h Rh, times dloss/dh: the product needs c * Rh
    pB, W2T, XT, hT = p / B, W2.T, X.T, h.T
    shapes = [w.shape for w in params]
    ends = np.cumsum([w.size for w in params]).tolist()
    cuts = list(zip([0, *ends[:-1]], ends, shapes))

    def rop(v):
        V1, c1, V2, c2 = [v[i:j].reshape(s) for i, j, s in cuts]
        Rh = d * (X @ V1 + c1)
        Ra = Rh @ W2 + h @ V2 + c2
        Rg2 = pB * (Ra - (p * Ra).sum(axis=1, keepdims=True))
        Rg1 = (Rg2 @ W2T + g2 @ V2.T) * d - c * Rh
        return np.concatenate([(XT @ Rg1).ravel(), Rg1.sum(axis=0),
                               (Rh.T @ g2 + hT @ Rg2).ravel(), Rg2.sum(axis=0)])

    return rop


class _Direct(scipy.sparse.linalg.LinearOperator):
    """A LinearOperator whose matvec is `fn` itself, without SciPy's per-call checks (as
    graphc's operator skips them for a float64 vector of the right shape)."""

    def __init__(self, fn, n: int):
        super().__init__(np.float64, (n, n))
        self.fn = self.matvec = self.rmatvec = fn

    def _matvec(self, v):
        return self.fn(v)


def bench_small(repeat: int) -> dict:
    rng = np.random.default_rng(2)
    g, loss, X, y, params = small_mlp()
    X_val, y_val, values = small_values(rng)
    at = {X: X_val, y: y_val, **dict(zip(params, values))}
    op = gc.hessian_operator(loss, params, at=at)
    n = op.shape[0]
    rop = small_rop(X_val, y_val, values)
    hand = _Direct(rop, n)
    v = rng.standard_normal(n)
    # Correctness first: the two products agree, and cg does 50 products with each.
    np.testing.assert_allclose(op.matvec(v), rop(v), rtol=1e-9, atol=1e-12)
    counts = {}
    for name, A in (("graphc", op), ("hand", hand)):
        calls = [0]
        counted = _Direct(lambda u, A=A, calls=calls: calls.__setitem__(0, calls[0] + 1)
                          or A.matvec(u), n)
        sla_cg(counted, v)
        counts[name] = calls[0]
    assert counts == {"graphc": 50, "hand": 50}, counts
    # (n = 2,410 > 32 * 10: the Hessian is singular and 50 cg steps amplify rounding, so the
    # solutions are compared after 5 steps)
    few = {"rtol": 1e-300, "atol": 0.0, "maxiter": 5}
    np.testing.assert_allclose(scipy.sparse.linalg.cg(op, v, **few)[0],
                               scipy.sparse.linalg.cg(hand, v, **few)[0], rtol=1e-8, atol=1e-10)
    # 10 products per timed call (well above the timer's resolution), and many short rounds,
    # so that the best of them is one the other jobs on the machine left alone
    matvecs = 10
    t = best_of({"op": lambda: [op.matvec(v) for _ in range(matvecs)],
                 "hand": lambda: [rop(v) for _ in range(matvecs)]}, 10 * repeat)
    t["op"] /= matvecs
    t["hand"] /= matvecs
    t.update(best_of({"cg_op": lambda: sla_cg(op, v), "cg_hand": lambda: sla_cg(hand, v)},
                     repeat))
    t["n"], t["mode"] = n, op.mode
    return t


def sla_cg(A, b):
    """Exactly 50 iterations of scipy's cg (no tolerance can stop it earlier)."""
    return scipy.sparse.linalg.cg(A, b, rtol=1e-300, atol=0.0, maxiter=50)[0]


def bench_loop(steps: int, repeat: int) -> dict:
    """A Hessian-free loop's bookkeeping over `steps` minibatches: each step moves to the
    next minibatch and the current parameters and computes the gradient (the right-hand side
    of the Newton system); no products. Against one compiled forward-and-gradient call."""
    rng = np.random.default_rng(3)
    g, loss, X, y, params = small_mlp()
    _, _, values = small_values(rng)
    batches = [small_values(rng)[:2] for _ in range(steps)]
    at = {X: batches[0][0], y: batches[0][1], **dict(zip(params, values))}
    obj = gc.objective(loss, params, at=at)
    op = gc.hessian_operator(loss, params, at=at)
    f_point = gc.function([X, y, *params], [loss, *gc.grad(loss, params)])
    nodes = len(g.nodes)

    def objective_steps():
        theta = obj.x0
        for X_b, y_b in batches:
            step = obj.with_data({X: X_b, y: y_b})
            H = step.hess_operator(theta)  # noqa: F841 (what cg would be given)
            theta = theta - 1e-3 * step.jac(theta)

    def operator_steps():
        for X_b, y_b in batches:
            op.update(at={X: X_b, y: y_b, **dict(zip(params, values))})

    def point_only():
        for X_b, y_b in batches:
            f_point(X_b, y_b, *values)

    t = best_of({"objective": objective_steps, "operator": operator_steps,
                 "point": point_only}, repeat)
    t = {k: v / steps for k, v in t.items()}
    t["nodes_added"] = len(g.nodes) - nodes
    t["steps"] = steps
    return t


def row_us(label: str, t: float, base: float, note: str = "") -> None:
    print(f"  {label:<40} {t * 1e6:9.1f} us  {base * 1e6:7.1f} us  {t / base:6.2f}x  {note}")


def report_small(t: dict, loop: dict) -> None:
    print(f"\nKrylov, MLP 64-32-10, tanh, batch 32, softmax cross-entropy, n = {t['n']} "
          f"(hvp mode {t['mode']!r}); baseline: hand-written R-op with the forward pass cached")
    print(f"  {'':<40} {'graphc':>12}  {'hand':>10}  {'ratio':>7}")
    row_us("hessian_operator matvec", t["op"], t["hand"], "(target <= 1.1x)")
    row_us("scipy cg, 50 iterations", t["cg_op"], t["cg_hand"])
    print(f"\nHessian-free loop bookkeeping, {loop['steps']} minibatches, per step (no products)")
    print(f"  {'':<40} {'graphc':>12}  {'fwd+grad':>10}  {'ratio':>7}")
    row_us("obj.with_data + hess_operator + jac", loop["objective"], loop["point"])
    row_us("op.update(at=data and parameters)", loop["operator"], loop["point"])
    print(f"  graph nodes added after the first step: {loop['nodes_added']}; outside the "
          f"products a step costs {max(loop['objective'], loop['operator']) * 1e3:.3f} ms "
          "(target < 1 ms)")


# -- 3. the diamond ladder -----------------------------------------------------------------
def diamond_counts(depth: int, order: int) -> int:
    g = gc.Graph("ladder")
    x = g.input("x")
    h = x
    for _ in range(depth):
        h = gc.sin(h) * gc.cos(h)
    d = h
    for _ in range(order):
        d = gc.grad(d, x)
    return len(walk.ancestors([d]))


def report_ladder(depths) -> None:
    print("\nDiamond ladder h_{i+1} = sin(h_i) * cos(h_i): nodes of the k-th derivative "
          "(ancestors of d^k h / dx^k)")
    print("  depth " + "".join(f"{'k=' + str(k):>10}{'/depth':>8}" for k in (1, 2, 3)))
    for d in depths:
        cells = "".join(f"{(c := diamond_counts(d, k)):>10}{c / d:>8.1f}" for k in (1, 2, 3))
        print(f"  {d:>5} {cells}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer repeats, Rosenbrock n = 10**5, 200 minibatches")
    ap.add_argument("--krylov", action="store_true", help="section 4 only (the small MLP)")
    args = ap.parse_args(argv)
    repeat = 5 if args.quick else 20
    n = 10 ** 5 if args.quick else 10 ** 6
    print(f"graphc {gc.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    if not args.krylov:
        report("MLP 784-512-512-10, tanh, batch 256, float64 (figure 6.11 loss)",
               bench_mlp(repeat))
        report(f"Rosenbrock, n = {n}, float64", bench_rosen(n, repeat))
        report_ladder([8, 16, 32, 64, 128])
    report_small(bench_small(repeat), bench_loop(200 if args.quick else 1000, repeat=5))


if __name__ == "__main__":
    main()
