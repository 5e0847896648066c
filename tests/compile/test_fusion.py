"""Elementwise fusion: large regions become one kernel with the same values (NaN and Inf
included), small arrays stay on NumPy, and the fused program keeps a valid order."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphc as gc
from graphc.compile import fusion

pytestmark = pytest.mark.skipif(not fusion.enabled(), reason="numba is not installed")
N = fusion.FUSE_MIN_SIZE


def test_rosenbrock_gradient_fused_matches_numpy(rng):
    from scipy.optimize import rosen_der, rosen_hess_prod
    g = gc.Graph()
    x, p = g.input("x", (N + 1,)), g.input("p", (N + 1,))
    z = gc.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1.0 - x[:-1]) ** 2.0)
    f = gc.function([x, p], [gc.grad(z, x), gc.hvp(z, x, p)])
    assert "fused:" in f.source
    xv, pv = rng.uniform(-1, 1, N + 1), rng.standard_normal(N + 1)
    gx, hv = f(xv, pv)
    np.testing.assert_allclose(gx, rosen_der(xv), rtol=1e-12)
    np.testing.assert_allclose(hv, rosen_hess_prod(xv, pv), rtol=1e-10, atol=1e-10)


def test_kernels_keep_numpy_semantics():
    g = gc.Graph()
    x = g.input("x", (N,))
    ys = [gc.log(x) * 2.0 + 1.0, 1.0 / x - gc.sqrt(x), gc.relu(x) * gc.softplus(x),
          gc.sigmoid(x) - gc.tanh(x) * gc.exp(x), gc.maximum(x, 0.5) ** gc.abs(x)]
    v = np.linspace(-3, 3, N)
    v[:4] = [0.0, np.nan, np.inf, -np.inf]
    with np.errstate(all="ignore"):
        fused = gc.function([x], ys)(v)
        plain = gc.function([x], ys, optimize=False)(v)
    # one-ulp differences of the libm calls: operands reach |20|, so 1e-14 absolute is a few
    # ulps of the operands (sigmoid - tanh * exp cancels near x = 0.1)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14, equal_nan=True)


def test_small_arrays_stay_on_numpy():
    g = gc.Graph()
    x = g.input("x", (N // 2,))
    f = gc.function([x], gc.tanh(gc.exp(x) * 2.0 + 1.0))
    assert "fused" not in f.source


def test_groups_never_form_a_cycle(rng):
    # a -> (reduction, not fusible) -> back into the region: must be split, not reordered
    g = gc.Graph()
    x = g.input("x", (N,))
    a = gc.exp(x) * 2.0
    s = gc.sum(a)
    b = gc.tanh(a) * s + gc.sin(x) * gc.cos(x)
    c = gc.sum(gc.sin(b) * a)
    f = gc.function([x], [b, c])
    v = rng.standard_normal(N) * 0.1
    want = gc.function([x], [b, c], optimize=False)(v)
    for p, q in zip(f(v), want):
        np.testing.assert_allclose(p, q, rtol=1e-12)


def test_fused_outputs_are_fresh(rng):
    g = gc.Graph()
    x = g.input("x", (N,))
    y = gc.exp(x) * 3.0 + x
    f = gc.function([x], [y, y])
    v = rng.standard_normal(N)
    a, b = f(v)
    assert not np.shares_memory(a, b) and not np.shares_memory(a, v)


def test_scatter_add_ends_the_kernel_in_two_dimensions(rng):
    # grad of x[:, 1:] and x[:, :-1]: one kernel writes the whole gradient
    g = gc.Graph()
    x = g.input("x", (64, N // 64 + 1))
    z = gc.sum(gc.sin(x[:, 1:]) * x[:, :-1] + gc.square(x[:, :-1]))
    f = gc.function([x], gc.grad(z, x))
    fused = [line for line in f.source.splitlines() if "fused:" in line]
    assert len(fused) == 1 and fused[0].endswith("scatter_add")
    v = rng.standard_normal((64, N // 64 + 1))
    want = np.zeros_like(v)  # hand-derived
    want[:, 1:] += np.cos(v[:, 1:]) * v[:, :-1]
    want[:, :-1] += np.sin(v[:, 1:]) + 2 * v[:, :-1]
    got = f(v)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
    assert not np.shares_memory(got, v) and got is not f(v)


def test_strided_scatter_stays_on_numpy(rng):
    g = gc.Graph()
    x = g.input("x", (2 * N,))
    z = gc.sum(gc.sin(x[::2]) * gc.cos(x[1::2]))
    f = gc.function([x], gc.grad(z, x))
    assert not any(line.endswith("scatter_add") for line in f.source.splitlines())
    v = rng.standard_normal(2 * N)
    want = np.empty_like(v)
    want[::2] = np.cos(v[::2]) * np.cos(v[1::2])
    want[1::2] = -np.sin(v[::2]) * np.sin(v[1::2])
    np.testing.assert_allclose(f(v), want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("index", [(slice(1, None),), (slice(None, -2), slice(3, 7)),
                                   (slice(-5, None), slice(None)), (slice(2, 6),)])
def test_window_offsets_select_what_numpy_selects(index):
    out = np.arange(9 * 10).reshape(9, 10)
    part = out[index]
    offsets = fusion.window(index, out.shape, part.shape)
    box = tuple(slice(o, o + s) for o, s in zip(offsets, part.shape))
    np.testing.assert_array_equal(out[box], part)
    assert fusion.window((slice(None, None, 2),), (10,), (5,)) is None
    assert fusion.window((3,), (10,), ()) is None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_vector_scatter_keeps_open_elements_in_registers(rng, dtype, monkeypatch):
    # windows at offsets 0, 1 and 3 of a vector 5 longer than the terms: elements N..N+3 are
    # completed after the loop, element N+4 receives nothing and is zero
    g = gc.Graph()
    x = g.input("x", (N + 5,), dtype)
    a, b, c = x[:N], x[1:N + 1], x[3:N + 3]
    z = gc.sum(gc.sin(a) * b + gc.square(c) * a + gc.tanh(b))
    f = gc.function([x], gc.grad(z, x))
    (group,) = fusion.find_groups(f.schedule)
    assert "o0_r3 = o0_r3 + " in group.source and "+= " not in group.source
    v = rng.standard_normal(N + 5).astype(dtype)
    w = v.astype(np.float64)
    want = np.zeros(N + 5)  # hand-derived
    want[:N] += np.cos(w[:N]) * w[1:N + 1] + w[3:N + 3] ** 2
    want[1:N + 1] += np.sin(w[:N]) + 1 - np.tanh(w[1:N + 1]) ** 2
    want[3:N + 3] += 2 * w[3:N + 3] * w[:N]
    got = f(v)
    assert got.dtype == np.dtype(dtype) and got[N + 4] == 0.0
    np.testing.assert_allclose(got, want, rtol=1e-12 if dtype == "float64" else 2e-5,
                               atol=1e-13 if dtype == "float64" else 2e-5)
    monkeypatch.setenv("GRAPHC_FUSION", "0")  # the same graph on NumPy alone
    unfused = gc.function([x], gc.grad(z, x))
    assert "fused:" not in unfused.source
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(got, unfused(v), rtol=tol, atol=tol)


def test_inplace_plan_follows_the_order_fused_code_runs_in(rng):
    # A fused group runs where its unit is placed, which can be after some of its members'
    # places in the schedule; a buffer that one of those members reads must not be reused by
    # a plain step in between. Found by bench/hvp.py: the reverse-mode HVP of this MLP was
    # wrong in its first layer when the plan followed the schedule's order.
    sizes, B = [64, 64, 64, 10], 64
    g = gc.Graph("mlp")
    X, y = g.input("X", shape=(B, sizes[0])), g.input("y", shape=(B,), dtype="int64")
    params, values, h = [], [], X
    for k, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        W, b = g.input(f"W{k}", shape=(m, n)), g.input(f"b{k}", shape=(n,))
        params += [W, b]
        values += [rng.standard_normal((m, n)) / np.sqrt(m), 0.1 * rng.standard_normal(n)]
        h = h @ W + b
        if k < len(sizes) - 1:
            h = gc.tanh(h)
    loss = (gc.softmax_cross_entropy(h, y).mean()
            + 1e-4 * gc.add_n([gc.sum(W * W) for W in params[0::2]]))
    vs = [g.input(f"v_{p.name}", shape=p.shape) for p in params]
    feed = [rng.standard_normal((B, sizes[0])), rng.integers(0, 10, B), *values,
            *[rng.standard_normal(v.shape) for v in values]]
    rev = gc.function([X, y, *params, *vs], gc.hvp(loss, params, vs, mode="reverse"))
    assert "fused:" in rev.source
    fwd = gc.function([X, y, *params, *vs], gc.hvp(loss, params, vs, mode="forward"),
                      optimize=False)  # forward-over-reverse, unfused: the oracle
    for a, b in zip(rev(*feed), fwd(*feed)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_simd_ufuncs_stay_on_numpy_between_kernels(rng):
    # tanh and exp run NumPy's SIMD loops (5-20x faster than numba's libm call per entry);
    # the ops around them still fuse: 1 - tanh**2 times the cotangent is one kernel
    g = gc.Graph()
    x, w = g.input("x", (64, N // 64)), g.input("w", (64, N // 64))
    h = gc.tanh(x * w)
    z = gc.sum(h * gc.exp(w))
    f = gc.function([x, w], [z, *gc.grad(z, [x, w])])
    assert "= np.tanh(" in f.source and "= np.exp(" in f.source and "fused:" in f.source
    sources = [gr.source for gr in fusion.find_groups(f.schedule)]
    assert sources and not any("np.tanh" in s or "np.exp" in s for s in sources)
    xv, wv = rng.standard_normal((2, 64, N // 64))
    t, e = np.tanh(xv * wv), np.exp(wv)
    gx = (1 - t * t) * e * wv
    for a, b in zip(f(xv, wv), [(t * e).sum(), gx, (1 - t * t) * e * xv + t * e]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def _into(f) -> dict[str, str]:
    """Which outputs a program's one kernel writes into which input's buffer (its comment)."""
    (line,) = [s for s in f.source.splitlines() if "fused:" in s]
    return dict(part.split(" into ") for part in line.split("  # ")[1].split("; ")[1:])


def test_kernel_writes_into_a_dying_operands_buffer(rng):
    # the weight-gradient pattern X.T @ d + 2 lam W: the kernel writes into the matmul's
    # buffer, as `dW = X.T @ d; dW += 2 * lam * W` does by hand
    g = gc.Graph()
    X, d, W = g.input("X", (32, 64)), g.input("d", (32, N // 64)), g.input("W", (64, N // 64))
    m = gc.transpose(X) @ d
    g.rename(m, "m")
    y = m * gc.sigmoid(W) + 2e-3 * W
    f = gc.function([X, d, W], y)
    # the variable holding m (it may have taken over its dying operand's: `t = t @ d`)
    (held,) = [s.split(" = ")[0].strip() for s in f.source.splitlines() if s.endswith("'m'")]
    assert list(_into(f).values()) == [held]
    Xv, dv, Wv = rng.standard_normal((32, 64)), rng.standard_normal((32, N // 64)), \
        rng.standard_normal((64, N // 64))
    got = f(Xv, dv, Wv)
    np.testing.assert_allclose(got, (Xv.T @ dv) / (1 + np.exp(-Wv)) + 2e-3 * Wv, rtol=1e-13)
    assert not any(np.shares_memory(got, v) for v in (Xv, dv, Wv))
    assert not np.shares_memory(got, f(Xv, dv, Wv))


@pytest.mark.parametrize("later", ["read", "output", "view"])
def test_kernel_keeps_an_operand_that_lives_on(rng, later):
    # m is read after the kernel, returned, or viewed by a later step: the kernel makes a
    # new array, never writes into m's buffer
    g = gc.Graph()
    X, d = g.input("X", (32, 64)), g.input("d", (32, N // 64))
    m = gc.transpose(X) @ d
    g.rename(m, "m")
    y = gc.sin(m) * 2.0 + m
    extra = {"read": gc.sum(m * m), "output": m, "view": gc.transpose(m) @ gc.ones_like(m[0])}
    f = gc.function([X, d], [y, extra[later]])
    assert "fused:" in f.source and _into(f) == {}
    Xv, dv = rng.standard_normal((32, 64)), rng.standard_normal((32, N // 64))
    mv = Xv.T @ dv
    want = {"read": (mv * mv).sum(), "output": mv, "view": mv.T @ np.ones(N // 64)}
    got_y, got_extra = f(Xv, dv)
    np.testing.assert_allclose(got_y, np.sin(mv) * 2 + mv, rtol=1e-13)
    np.testing.assert_allclose(got_extra, want[later], rtol=1e-12)


def test_kernel_outputs_take_distinct_buffers(rng):
    # four outputs, two dying operands: two outputs take one buffer each, the others new arrays
    g = gc.Graph()
    A, B, C = (g.input(k, (64, N // 64)) for k in "ABC")
    a, b = gc.exp(A), gc.exp(B)
    s = a * b
    outs = [s + C, s - C, s * C + 1.0]
    f = gc.function([A, B, C], [gc.sum(o * o) for o in outs] + [gc.sum(s * a * b)])
    into = _into(f)
    assert len(into) == 2 and len(set(into.values())) == 2
    Av, Bv, Cv = rng.standard_normal((3, 64, N // 64)) * 0.5
    sv = np.exp(Av) * np.exp(Bv)
    want = [((sv + Cv) ** 2).sum(), ((sv - Cv) ** 2).sum(), ((sv * Cv + 1) ** 2).sum(),
            (sv * np.exp(Av) * np.exp(Bv)).sum()]
    for p, q in zip(f(Av, Bv, Cv), want):
        np.testing.assert_allclose(p, q, rtol=1e-12)


def test_kernel_never_writes_into_a_buffer_another_input_views(rng):
    # the kernel reads m and m.T entry by entry: written into m, entry (i, j) would change
    # m.T's entry (j, i) before the kernel reads it (NumPy's ufuncs copy overlapping operands;
    # a kernel does not)
    g = gc.Graph()
    A, B = g.input("A", (64, 64)), g.input("B", (64, 64))
    m = A @ B
    f = gc.function([A, B], gc.sin(m * gc.transpose(m)) + m)
    assert "fused:" in f.source and _into(f) == {}
    Av, Bv = rng.standard_normal((2, 64, 64))
    mv = Av @ Bv
    np.testing.assert_allclose(f(Av, Bv), np.sin(mv * mv.T) + mv, rtol=1e-13, atol=1e-15)


_VIEWS = [lambda a: gc.transpose(a), lambda a: a, lambda a: a.reshape(-1).reshape(a.shape)]
_UNARY = [gc.sin, lambda a: a * a, lambda a: 1.0 - gc.tanh(a), lambda a: gc.exp(-a * a),
          lambda a: 0.5 * a + 1.0]
_BINARY = [lambda a, b: a * b, lambda a, b: a - b, lambda a, b: a + 2.0 * b,
           lambda a, b: (a @ b) * 0.25]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 99), st.integers(0, 99),
                          st.integers(0, 99), st.integers(0, 2)), min_size=2, max_size=9),
       st.integers(0, 2**32 - 1))
def test_fused_programs_with_views_match_numpy(steps, seed):
    # random programs over a 4 x 4 matrix mixing kernels, matmuls (fresh buffers) and views
    # of them (transposes): kernels writing into dying buffers compute what NumPy computes
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fusion, "FUSE_MIN_SIZE", 16)
        g = gc.Graph()
        x, w = g.input("x", (4, 4)), g.input("w", (4, 4))
        nodes = [x @ w, gc.transpose(x) @ w]
        for kind, k, a, b, view in steps:
            p, q = (_VIEWS[view](nodes[i % len(nodes)]) for i in (a, b))
            nodes.append(_UNARY[k % len(_UNARY)](p) if kind < 2
                         else _BINARY[k % len(_BINARY)](p, q))
        outs = [nodes[-1], gc.sum(nodes[len(nodes) // 2] * nodes[-2])]
        rng = np.random.default_rng(seed)
        xv, wv = rng.uniform(-1, 1, (2, 4, 4))
        fused = gc.function([x, w], outs)(xv, wv)
        mp.setenv("GRAPHC_FUSION", "0")
        plain = gc.function([x, w], outs)(xv, wv)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
