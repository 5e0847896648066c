"""What the op benchmarks share: one BLAS thread on one core, best-of rounds in which the
callables take turns, and rows printed as ratios to hand-written NumPy measured in the same run.

Import it before NumPy: it sets the thread variables that NumPy's BLAS (and XLA, where JAX is
installed) read when they load.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import timeit

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
os.environ["JAX_ENABLE_X64"] = "1"
if hasattr(os, "sched_setaffinity"):  # one core: XLA's CPU client ignores the flags above
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

HAVE_JAX = importlib.util.find_spec("jax") is not None


def measure(fns: dict, repeat: int, min_time: float = 0.02, max_number: int = 10000) -> dict:
    """Best seconds per call of each callable; they take turns in every round, so a change of
    load on the machine hits them all alike. Each runs enough calls a round to last
    `min_time` (at most `max_number`)."""
    numbers = {}
    for k, fn in fns.items():
        fn()  # warm up (and compile)
        n = 1
        while timeit.timeit(fn, number=n) < min_time and n < max_number:
            n *= 2
        numbers[k] = n
    times = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            times[k] = min(times[k], timeit.timeit(fn, number=numbers[k]) / numbers[k])
    return times


def report(label: str, fns: dict, repeat: int, width: int = 44, **kwargs) -> None:
    """One row: hand-written NumPy's time (the callable named "numpy"), then every other
    callable as a ratio to it. Callables that are None are left out."""
    t = measure({k: v for k, v in fns.items() if v is not None}, repeat, **kwargs)
    hand = t.pop("numpy")
    cells = [f"{label:<{width}}", f"numpy {hand * 1e3:9.3f} ms"]
    cells += [f"{name} {sec / hand:5.2f}x" for name, sec in t.items()]
    print("  ".join(cells))
    sys.stdout.flush()
