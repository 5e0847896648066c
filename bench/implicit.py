"""The gradient of a fixed point: `gc.fixed_point` (implicit differentiation, one linear solve)
against the same iteration unrolled 100 times as a graph and differentiated through.

    python bench/implicit.py [repeat]

The equation is x = 0.5 tanh(W x + b) + c with x of size n (a contraction: |W| is about 1),
the loss sum(x * x), the gradient with respect to W and b. For each method the table gives the
time to build the loss and its gradient, to compile them (`gc.function`, cold: fresh names),
the first call (where fixed_point compiles its body), `total` (their sum: what a user waits for
a first gradient), each the best of `repeat` fresh graphs, and `run`, a later call (best of
max(repeat, 5)). The ratios are unrolled / fixed_point (above 1: the implicit gradient is
cheaper). The fixed point
iterates until max|f(x) - x| <= 1e-10 (1 + max|x|), so it runs fewer steps than 100 (shown);
both gradients are checked against each other first. BLAS runs on one thread.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import graphc as gc  # noqa: E402

STEPS = 100


def build(n: int, implicit: bool, tag: int):
    """The loss and its gradient; `tag` makes the names (so the compiled-program cache, which
    keys on structure and names, never answers: every compile below is a cold one)."""
    g = gc.Graph("fixed_point" if implicit else "unrolled")
    W = g.input(f"W{tag}", shape=(n, n))
    b = g.input(f"b{tag}", shape=(n,))
    c = g.input(f"c{tag}", shape=(n,))

    def f(x, wb):
        return 0.5 * gc.tanh(wb[0] @ x + wb[1]) + c

    if implicit:
        x = gc.fixed_point(f, np.zeros(n), [W, b])
    else:
        x = g.constant(np.zeros(n))
        for _ in range(STEPS):
            x = f(x, [W, b])
    z = (x * x).sum()
    return [W, b, c], [z, *gc.grad(z, [W, b])]


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


TAGS = iter(range(10**9))


def cold(n: int, implicit: bool, args, repeat: int):
    """Best of `repeat` fresh graphs: (build, compile, first call) seconds, and the values."""
    found = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        inputs, outputs = build(n, implicit, next(TAGS))
        t1 = time.perf_counter()
        fn = gc.function(inputs, outputs)
        t2 = time.perf_counter()
        values = fn(*args)  # the fixed point's body is compiled here, on its first run
        t3 = time.perf_counter()
        found.append((t1 - t0, t2 - t1, t3 - t2))
    return [min(t[k] for t in found) for k in range(3)], fn, values


def steps_taken(args) -> int:
    W, b, c = args
    x = np.zeros(len(b))
    for k in range(1, 10**4):
        fx = 0.5 * np.tanh(W @ x + b) + c
        if np.max(np.abs(fx - x)) <= 1e-10 * (1 + np.max(np.abs(fx))):
            return k
        x = fx
    return -1


def run(repeat: int) -> None:
    rng = np.random.default_rng(0)
    print(f"gradient of sum(x*x) at x = 0.5 tanh(Wx + b) + c, wrt W and b: fixed_point against "
          f"{STEPS} unrolled steps (ms, best of {repeat}; ratio = unrolled / fixed_point)")
    print(f"{'n':>5} {'method':<12} {'steps':>5} {'build':>9} {'compile':>9} {'1st call':>9} "
          f"{'total':>9} {'run':>9}")
    for n in (10, 50, 200):
        args = [rng.standard_normal((n, n)) / np.sqrt(n), rng.standard_normal(n),
                rng.standard_normal(n)]
        row, values = {}, {}
        for implicit in (True, False):
            (t_build, t_compile, t_first), fn, values[implicit] = cold(n, implicit, args, repeat)
            t_run = best(lambda fn=fn: fn(*args), max(repeat, 5))
            row[implicit] = (t_build, t_compile, t_first, t_build + t_compile + t_first, t_run)
        err = max(float(np.max(np.abs(a - b)) / (1 + np.max(np.abs(b))))
                  for a, b in zip(values[True], values[False]))
        assert err < 1e-8, f"n={n}: the two gradients differ by {err:.1e}"
        for implicit, label, steps in ((True, "fixed_point", steps_taken(args)),
                                       (False, "unrolled", STEPS)):
            print(f"{n:>5} {label:<12} {steps:>5} "
                  + " ".join(f"{t * 1e3:9.2f}" for t in row[implicit]))
        print(f"{n:>5} {'ratio':<12} {'':>5} "
              + " ".join(f"{u / f:8.2f}x" for u, f in zip(row[False], row[True]))
              + f"   (gradients agree to {err:.0e})")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
