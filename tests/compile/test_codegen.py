"""Generated code: readable and safe source, memory planning that never overwrites what the
caller or the graph owns, the structural cache, threads, run-time errors naming the node."""

import importlib
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
