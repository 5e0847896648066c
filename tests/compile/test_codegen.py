"""Generated code: readable and safe source, memory planning that never overwrites what the
caller or the graph owns, the structural cache, threads, run-time errors naming the node."""

import importlib
import re
import threading

import numpy as np
import pytest

import graphc as gc

function_module = importlib.import_module("graphc.compile.function")


def test_source_is_straight_line_with_node_names():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    W = g.input("W", shape=(2, 3))
    with g.scope("layer1"):
        h = gc.tanh(W @ x)
    g.rename(h, "layer1/h")
    f = gc.function([x, W], h)
    src = f.source
    assert src.startswith("def graph(x, W, _ops):")
    assert "layer1_h = np.tanh(" in src and "return [layer1_h]" in src
    assert "for " not in src and "while " not in src
    np.testing.assert_allclose(f(np.ones(3), np.eye(2, 3)), np.tanh(np.eye(2, 3) @ np.ones(3)))


def test_hostile_names_never_become_code():
    g = gc.Graph()
    x = g.input("x\nimport os; os.system('echo pwned')#", shape=(2,))
    y = gc.exp(x)
    g.rename(y, "def __import__('os')\r\n)")
    f = gc.function([x], y)
    for line in f.source.splitlines()[1:]:
        assert "import os" not in line.split("#")[0]
    compile(f.source, "<test>", "exec")  # still valid Python
    np.testing.assert_allclose(f(np.zeros(2)), np.ones(2))


def test_inplace_writes_into_dead_intermediates_only(rng):
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    c = g.constant(np.arange(4.0), name="c")
    a = gc.exp(x)              # fresh, dies in the next op: may be overwritten
    b = gc.tanh(a) * c         # must not write into x or c
    r = a.reshape((2, 2))
    y = gc.sin(b) + x          # x is the caller's: never written
    f = gc.function([x], [y, r])
    assert "out=x" not in f.source and "out=c_" not in f.source
    xv = rng.standard_normal(4)
    keep = xv.copy()
    yv, rv = f(xv)
    np.testing.assert_array_equal(xv, keep)
    np.testing.assert_array_equal(c.op.value, np.arange(4.0))
    np.testing.assert_allclose(rv, np.exp(keep).reshape(2, 2))  # a is viewed by r: not reused
    np.testing.assert_allclose(yv, np.sin(np.tanh(np.exp(keep)) * np.arange(4.0)) + keep)


def test_inplace_is_used_on_chains():
    g = gc.Graph()
    x = g.input("x", shape=(1000,))
    y = gc.tanh(gc.sin(gc.exp(x) + 1.0))
    src = gc.function([x], y).source
    assert src.count("out=") >= 2
    f = gc.function([x], y)
    v = np.linspace(-1, 1, 1000)
    np.testing.assert_allclose(f(v), np.tanh(np.sin(np.exp(v) + 1.0)))


def test_outputs_never_alias_inputs_or_each_other():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = gc.stop_gradient(x) * 1.0
    f = gc.function([x], [y, x, y.reshape((3,))])
    v = np.arange(3.0)
    a, b, c = f(v)
    assert not np.shares_memory(a, v) and not np.shares_memory(b, v)
    assert not np.shares_memory(a, c)
    a[0] = 99
    assert v[0] == 0 and c[0] == 0


def test_same_structure_compiles_once():
    def build():
        g = gc.Graph("twice")
        x = g.input("x", shape=(3,))
        z = gc.sum(gc.tanh(x) ** 2.0)
        return x, z, gc.grad(z, x)

    x1, z1, g1 = build()
    x2, z2, g2 = build()
    f1 = gc.function([x1], [z1, g1])
    f2 = gc.function([x2], [z2, g2])
    assert f1._compiled is f2._compiled
    v = np.array([0.1, -0.2, 0.3])
    np.testing.assert_allclose(f2(v)[1], 2 * np.tanh(v) * (1 - np.tanh(v) ** 2))
    f3 = gc.function([x1], [z1, g1], optimize=False)
    assert f3._compiled is not f1._compiled


def test_cache_keys_differ_by_constant_value():
    g = gc.Graph()
    x = g.input("x")
    f1, f2 = gc.function([x], x * 2.0), gc.function([x], x * 3.0)
    assert f1(1.0) == 2.0 and f2(1.0) == 3.0


def test_threads_share_one_function(rng):
    g = gc.Graph()
    x = g.input("x", shape=(50,))
    y = gc.sum(gc.tanh(gc.exp(x * 0.1) * 2.0))
    f = gc.function([x], [y, gc.grad(y, x)])
    vals = [rng.standard_normal(50) for _ in range(8)]
    want = [f(v) for v in vals]
    errors = []

    def work(k):
        for _ in range(50):
            got = f(vals[k])
            if not all(np.array_equal(a, b) for a, b in zip(got, want[k])):
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_run_time_failure_names_the_node():
    g = gc.Graph()
    y = g.input("y", shape=(2,), dtype="int64")
    h = gc.one_hot(y, 3)
    g.rename(h, "labels_onehot")
    f = gc.function([y], h * 2.0)
    with pytest.raises(gc.InputError, match="labels_onehot"):
        f(np.array([0, 7]))


def test_symbolic_dimensions_run_per_call():
    g = gc.Graph()
    X = g.input("X", shape=("batch", 3))
    y = gc.sum(gc.tanh(X).mean(axis=0) * 1.0)
    f = gc.function([X], [y, gc.grad(y, X)])
    for n in (2, 5):
        v = np.ones((n, 3))
        out = f(v)
        np.testing.assert_allclose(out[0], 3 * np.tanh(1.0))
        np.testing.assert_allclose(out[1], np.full((n, 3), (1 - np.tanh(1.0) ** 2) / n))


def test_check_finite_names_node_in_generated_code():
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    y = gc.log(x - 1.0)
    g.rename(y, "bad_log")
    f = gc.function([x], y, check_finite=True)
    with pytest.raises(gc.NonFiniteError, match="bad_log"), np.errstate(all="ignore"):
        f(np.array([3.0, 0.5]))


def test_optimize_false_runs_graph_as_built():
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    y = gc.log(1.0 + x) * 1.0
    f = gc.function([x], y, optimize=False)
    assert [n.op.name for n in f.graph.nodes] == ["input", "constant", "add", "log", "constant",
                                                  "mul"]
    assert f.fired == ()


def test_structure_key_is_none_for_unhashable():
    assert function_module.structure_key([], [], ([],)) is None


def test_outputs_fresh_by_construction_skip_the_call_time_check(rng):
    g = gc.Graph()
    x, W = g.input("x", (3,)), g.input("W", (3, 3))
    y = gc.exp(x)
    f = gc.function([x, W], [W @ x, y, gc.sum(y)])
    assert not f._compiled.program.checked  # matmul, ufunc, 0-d copy: nothing to check
    v, m = rng.standard_normal(3), rng.standard_normal((3, 3))
    a, b, s = f(v, m)
    np.testing.assert_allclose(a, m @ v)
    np.testing.assert_allclose(s, np.exp(v).sum())
    assert type(s) is np.ndarray and s.shape == () and s.flags.writeable
    a2, b2, _ = f(v, m)
    assert not np.shares_memory(a, a2) and not np.shares_memory(b, b2)
    # a repeated output or a view still gets the check, and distinct arrays
    h = gc.function([x, W], [y, y, y.reshape(3, 1)])
    assert h._compiled.program.checked
    p, q, r = h(v, m)
    assert not np.shares_memory(p, q) and not np.shares_memory(p, r)


# -- small arrays: the call overhead is the cost --------------------------------------------
@pytest.mark.parametrize("shape,axis", [((5,), 0), ((4, 3), 0), ((4, 3), 1), ((4, 3), -1)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_small_sum_is_a_dot_with_ones(rng, shape, axis, dtype):
    g = gc.Graph()
    x = g.input("x", shape=shape, dtype=dtype)
    f = gc.function([x], gc.sum(x, axis=axis))
    assert re.search(r"_ones_\w+\.dot\(x\)|x\.dot\(_ones_", f.source)
    assert "add.reduce" not in f.source
    v = rng.standard_normal(shape).astype(dtype)
    got = f(v)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, v.sum(axis=axis), rtol=1e-12 if dtype == "float64" else 1e-6)
    special = np.array([np.inf, -np.inf, np.nan, 1.0, 2.0][:shape[0]])
    if len(shape) == 1:  # IEEE semantics are the sum's: inf - inf and nan give nan
        with np.errstate(invalid="ignore"):
            assert np.isnan(f(special.astype(dtype)))


def test_large_or_integer_sums_stay_reductions():
    g = gc.Graph()
    big = g.input("big", shape=(2000,))
    ints = g.input("ints", shape=(5,), dtype="int64")
    three = g.input("three", shape=(2, 3, 4))
    f = gc.function([big, ints, three], [gc.sum(big, axis=0), gc.sum(ints, axis=0),
                                         gc.sum(three, axis=1)])
    assert "_ones_" not in f.source and f.source.count("np.add.reduce(") == 3
    b, i, t = np.arange(2000.0), np.arange(5), np.ones((2, 3, 4))
    got = f(b, i, t)
    assert got[0] == b.sum() and got[1] == 10 and got[1].dtype == np.int64
    np.testing.assert_array_equal(got[2], np.full((2, 4), 3.0))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scalar_arithmetic_uses_operators_with_the_ufuncs_result(dtype):
    g = gc.Graph()
    a, b = g.input("a", dtype=dtype), g.input("b", dtype=dtype)
    outs = [a * 3.0 + b, (a - b) / 7.0, -a * b]
    f = gc.function([a, b], outs)
    assert "np.multiply" not in f.source and "np.add" not in f.source
    assert " * _s_c_" in f.source  # the constant is bound as a NumPy scalar
    va, vb = np.array(1.25, dtype), np.array(-0.5, dtype)
    for got, want in zip(f(va, vb), [np.multiply(va, 3.0).astype(dtype) + vb,
                                     np.divide(va - vb, np.array(7.0, dtype)),
                                     np.multiply(np.negative(va), vb)]):
        assert got.dtype == np.dtype(dtype) and got.shape == ()
        assert got == want  # bit for bit: the same IEEE operation
    q = gc.function([a, b], a / b)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert q(np.array(1.0, dtype), np.array(0.0, dtype)) == np.inf
        assert np.isnan(q(np.array(0.0, dtype), np.array(0.0, dtype)))


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 2)), ((3, 4), (4,)), ((4,), (4, 2)),
                                   ((4,), (4,)), ((2, 3, 4), (4, 5))])
def test_matmul_small_operands(rng, sa, sb):
    g = gc.Graph()
    a, b = g.input("a", shape=sa), g.input("b", shape=sb)
    f = gc.function([a, b], a @ b)
    assert ("np.matmul(" in f.source) == (len(sa) > 2)  # 1-D and 2-D: ndarray.dot
    va, vb = rng.standard_normal(sa), rng.standard_normal(sb)
    np.testing.assert_allclose(f(va, vb), np.matmul(va, vb), rtol=1e-13)
    np.testing.assert_allclose(f(np.asfortranarray(va), vb[..., ::-1][..., ::-1]),
                               np.matmul(va, vb), rtol=1e-13)


def test_relu_and_softplus_keep_float32():
    g = gc.Graph()
    x = g.input("x", shape=(3,), dtype="float32")
    f = gc.function([x], [gc.relu(x), gc.softplus(x)])
    v = np.array([-1.0, 0.0, 2.0], np.float32)
    r, s = f(v)
    assert r.dtype == np.float32 and s.dtype == np.float32
    np.testing.assert_array_equal(r, [0.0, 0.0, 2.0])
    np.testing.assert_allclose(s, np.log1p(np.exp(v)), rtol=1e-6)


def test_fast_path_only_for_exact_arrays(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    k = g.input("k", shape=(3,), dtype="int64")
    f = gc.function([x, k], [2.0 * x, k + 1])
    assert ("if _ops is None and not (\n            type(x) is _ndarray and x.shape == (3,)"
            in f.source)
    assert f._fn(np.ones(3), np.arange(3), None) is not None          # exact: runs at once
    import pickle  # an equal dtype object that is not NumPy's own (numba's kernels make them)
    twin = pickle.loads(pickle.dumps(np.dtype("f8")))
    assert twin is not np.dtype("f8")
    assert f._fn(np.ones(3).view(twin), np.arange(3), None) is not None
    assert f._fn([1.0, 2.0, 3.0], np.arange(3), None) is None         # a list: checks first
    assert f._fn(np.ones(3, np.float32), np.arange(3), None) is None  # other dtype
    assert f._fn(np.ones((1, 3)), np.arange(3), None) is None         # other shape
    want = [np.array([2.0, 4.0, 6.0]), np.array([1, 2, 3])]
    strided = np.repeat([1.0, 2.0, 3.0], 2)[::2]
    for args in [([1.0, 2.0, 3.0], [0, 1, 2]),
                 (np.arange(1.0, 4.0, dtype=np.float32), np.arange(3)),
                 (strided, np.arange(3))]:
        for got, w in zip(f(*args), want):
            np.testing.assert_allclose(got, w)
    with pytest.raises(gc.InputError, match="'x'"):
        f(np.ones(4), np.arange(3))
    with pytest.raises(gc.InputError, match="'k'"):
        f(np.ones(3), np.array([0.5, 1.5, 2.5]))


def test_inputs_named_like_what_the_code_uses():
    g = gc.Graph()
    xs = [g.input(n, shape=(2,)) for n in ("type", "slice", "Ellipsis", "np", "_ops")]
    f = gc.function(xs, gc.add_n([x[0:1] for x in xs]))
    assert "def graph(type_, slice_, Ellipsis_, np_, ops, _ops):" in f.source
    np.testing.assert_allclose(f(*[np.full(2, k + 1.0) for k in range(5)]), [15.0])


def test_add_n_adds_into_one_buffer_without_clobbering_a_repeated_operand(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    c = gc.cos(x)
    outs = [gc.add_n([c, x, c]), gc.add_n([gc.sin(x), x, gc.exp(x)]), gc.add_n([x, x])]
    v = rng.standard_normal(3)
    want = [2 * np.cos(v) + v, np.sin(v) + v + np.exp(v), 2 * v]
    for optimize in (True, False):
        f = gc.function([x], outs, optimize=optimize)
        for got, w in zip(f(v), want):
            np.testing.assert_allclose(got, w, rtol=1e-14)
    raw = gc.function([x], outs, optimize=False).source
    # three terms, one buffer, one flat statement per term
    assert re.search(r"(\w+) = np\.add\(sin_\w+, x, out=sin_\w+\).*\n    np\.add\(\1, exp_", raw)
    assert "np.add(np.add(" not in raw


def _stack_grad(depth, width, used):
    g = gc.Graph()
    W, x = g.input("W", (depth, width, width)), g.input("x", (width,))
    h = x
    for k in used:
        h = gc.tanh(W[k] @ h)
    z = gc.sum(h)
    return W, x, z


def _hand_stack_grad(Wv, xv, used):
    hs = [xv]
    for k in used:
        hs.append(np.tanh(Wv[k] @ hs[-1]))
    gW, d = np.zeros_like(Wv), np.ones(len(xv))
    for j in reversed(range(len(used))):
        d = d * (1 - hs[j + 1] ** 2)
        gW[used[j]] += np.outer(d, hs[j])
        d = Wv[used[j]].T @ d
    return gW, d


@pytest.mark.parametrize("used", [(0, 1, 2), (2, 0), (1, 1)])
def test_scatter_terms_are_written_into_their_windows(rng, used):
    W, x, z = _stack_grad(3, 4, used)
    f = gc.function([W, x], gc.grad(z, [W, x]))
    Wv, xv = rng.standard_normal((3, 4, 4)), rng.standard_normal(4)
    want = _hand_stack_grad(Wv, xv, used)
    for got, w in zip(f(Wv, xv), want):
        np.testing.assert_allclose(got, w, rtol=1e-13, atol=1e-15)
    src = f.source
    if used == (0, 1, 2):  # the windows tile the buffer: no zeroing, every term in place
        assert "np.empty((3, 4, 4), np.float64)" in src and "+=" not in src
        assert all(re.search(rf"out=\w+_dW\[\({k},\)\]\)", src) for k in used)
    elif used == (2, 0):  # W[1] is never used: its window stays zero
        assert "np.zeros((3, 4, 4), np.float64)" in src
        assert f(Wv, xv)[0][1].tolist() == np.zeros((4, 4)).tolist()
    else:  # the same window twice: added, not written
        assert not re.search(r"out=\w+_dW\[", src) and "_scatter_add_" in src
    raw = gc.function([W, x], gc.grad(z, [W, x]), optimize=False)
    for a, b in zip(f(Wv, xv), raw(Wv, xv)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_scatter_terms_that_are_returned_stay_arrays(rng):
    g = gc.Graph()
    x = g.input("x", (2, 3))
    a, b = x[0], x[1]
    z = gc.sum(gc.sin(a) * gc.cos(b))
    f = gc.function([x], [gc.grad(z, x), gc.grad(z, a)])  # the term of window 0 is an output
    src = f.source
    assert "np.zeros((2, 3), np.float64)" in src and "[(0,)] += " in src
    assert re.search(r"out=\w+\[\(1,\)\]\)", src)  # window 1 written in place
    v = rng.standard_normal((2, 3))
    gx, ga = f(v)
    want = np.stack([np.cos(v[0]) * np.cos(v[1]), -np.sin(v[1]) * np.sin(v[0])])
    np.testing.assert_allclose(gx, want, rtol=1e-14)
    np.testing.assert_allclose(ga, want[0], rtol=1e-14)
    assert not np.shares_memory(gx, ga)


def test_a_runtime_warning_shows_the_node_and_the_users_line_that_built_it():
    import inspect
    import linecache
    import warnings

    g = gc.Graph("warns")
    x = g.input("x", shape=(3,))
    line = inspect.currentframe().f_lineno + 1
    y = gc.log(x) * 2.0
    f = gc.function([x], [y])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = f(np.array([0.0, 1.0, -1.0]))[0]
    assert out[0] == -np.inf and out[1] == 0.0 and np.isnan(out[2])
    shown = {linecache.getline(w.filename, w.lineno) for w in caught
             if issubclass(w.category, RuntimeWarning)}
    assert len(shown) == 1, shown  # both warnings (divide by zero, invalid) on the log's line
    text = shown.pop()
    assert "np.log(x)" in text and "'log_1'" in text
    assert f"built at {__file__}:{line}" in text
