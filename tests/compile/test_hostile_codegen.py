"""Generated code under hostile input: labels and parameters that try to end a comment, names
that collide with what the code binds, graphs wide enough to nest past the parser's limit,
folds that would allocate a huge constant, and the call's own argument names."""

import ast
import copy
import dataclasses
import importlib
import io
import json
import threading
import tokenize
import tracemalloc
from typing import ClassVar

import numpy as np
import pytest

import graphc as gc
from graphc.ops.reduce import Count

function_module = importlib.import_module("graphc.compile.function")


def code_without_comments(source: str) -> list[str]:
    """The source's tokens, each comment replaced by `#`: what Python runs."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            assert all(" " <= ch <= "~" for ch in tok.string), tok.string  # printable ASCII
            out.append("#")
        else:
            out.append(tok.string)
    return out


def max_nesting(source: str) -> int:
    """The deepest nesting of brackets in the source."""
    depth = deepest = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
    return deepest


# -- finding 2: a label or a parameter never ends its comment -----------------------------------
@dataclasses.dataclass(frozen=True)
class Labelled(gc.Op):
    """Doubles its input; its label is whatever text it was given."""

    name: ClassVar[str] = "labelled"
    text: str = ""

    def infer(self, x):
        return x.shape, x.dtype

    def forward(self, x):
        return x * 2.0

    def label(self) -> str:
        return self.text


def payloads(marker) -> list[str]:
    """Texts that run `open(marker, 'w')` when a line break in them ends a comment."""
    code = f"open({str(marker)!r}, 'w').close()"
    return ["x\nimport os; os.system('touch /tmp/pwned')\n#",
            f"x\n    {code}\n    #", f"x\r    {code}\r    #", f"x\r\n    {code}\r\n    #",
            f"x\n{code}\ndef _g():\n    #", f"\x00\x0c\x0b\u2028\x85\n    {code}\n    #"]


@pytest.mark.parametrize("k", range(6))
def test_a_user_ops_label_never_ends_its_comment(tmp_path, k):
    marker = tmp_path / "pwned"
    text = payloads(marker)[k]
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = gc.sin(gc.apply(Labelled(text), x))
    for optimize in (True, False):
        f = gc.function([x], y, optimize=optimize)
        assert "open" not in code_without_comments(f.source)
        v = np.array([0.1, -0.4, 2.0])
        np.testing.assert_allclose(f(v), np.sin(2.0 * v), rtol=1e-15)
        np.testing.assert_allclose(f(v.tolist()), np.sin(2.0 * v), rtol=1e-15)  # checked path
    assert not marker.exists()


def _corrupt(op, **params):
    """A copy of `op` with parameters set past its constructor's checks (as a loader that
    skipped them, or a later bug, might)."""
    op = copy.copy(op)
    for k, v in params.items():
        object.__setattr__(op, k, v)
    return op


@pytest.mark.parametrize("case", ["count", "sum", "getitem", "transpose"])
def test_a_parameter_holding_code_never_reaches_the_source(tmp_path, case):
    marker = tmp_path / "pwned"
    bad = f"0\n    open({str(marker)!r}, 'w').close()\n    #"
    g = gc.Graph()
    x = g.input("x", shape=("n", 2))
    node = {"count": lambda: gc.mean(x), "sum": lambda: gc.sum(x, axis=0),
            "getitem": lambda: x[0], "transpose": lambda: gc.transpose(x)}[case]()
    if case == "count":
        node = node.inputs[1]  # mean is sum / count over a symbolic size
    param = {"count": "axis", "sum": "axis", "getitem": "index", "transpose": "axes"}[case]
    node.op = _corrupt(node.op, **{param: (bad,)})
    f = gc.function([x], node, optimize=False)
    assert "open" not in code_without_comments(f.source)
    with pytest.raises(gc.InputError):  # the op's own forward refuses its parameter
        f(np.ones((4, 2)))
    assert not marker.exists()


def test_a_loaded_count_with_code_in_its_axis_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    g = gc.Graph()
    x = g.input("x", shape=("n",))
    gc.mean(x)
    path = tmp_path / "g.json"
    gc.save(g, path)
    data = json.loads(path.read_text())
    count = next(e for e in data["nodes"] if e["op"] == "count")
    count["params"]["axis"] = [f"0\n    open({str(marker)!r}, 'w').close()\n    #"]
    path.write_text(json.dumps(data))
    try:
        loaded = gc.load(path)
    except gc.LoadError:  # the loader refuses the parameter: nothing to compile
        assert not marker.exists()
        return
    f = gc.function([loaded.inputs[0]], loaded.nodes[-1])
    assert "open" not in code_without_comments(f.source)
    with pytest.raises(gc.GraphcError):
        f(np.ones(3))
    assert not marker.exists()


def test_count_of_a_valid_axis_still_folds_and_runs():
    g = gc.Graph()
    x = g.input("x", shape=("n", 3))
    f = gc.function([x], gc.mean(x, axis=0))
    v = np.arange(12.0).reshape(4, 3)
    np.testing.assert_allclose(f(v), v.mean(axis=0))
    assert Count((0,)).label() == "count(axis=(0,), dtype=float64)"


# -- finding 3: no expression nests deeper than a constant, however wide the graph ----------------
def _many_terms(n: int, shape):
    g = gc.Graph()
    x = g.input("x", shape=shape)
    z = gc.sum(gc.sin(x * 1.0))
    for i in range(2, n + 1):
        z = z + gc.sum(gc.sin(x * float(i)))
    return x, z


@pytest.mark.parametrize("n", [250, 1000, 5000])
@pytest.mark.parametrize("shape", [(3,), ()])
def test_a_gradient_with_thousands_of_terms_compiles_flat(n, shape):
    x, z = _many_terms(n, shape)
    f = gc.function([x], gc.grad(z, x))
    assert max_nesting(f.source) <= 4
    v = np.full(shape, 0.3)
    i = np.arange(1.0, n + 1).reshape((-1,) + (1,) * len(shape))
    want = (i * np.cos(i * v)).sum(axis=0)
    np.testing.assert_allclose(f(v), want, rtol=1e-10)
    if n <= 1000:
        raw = gc.function([x], gc.grad(z, x), optimize=False)
        assert max_nesting(raw.source) <= 4
        np.testing.assert_allclose(raw(v), want, rtol=1e-10)


@pytest.mark.parametrize("n", [250, 1000])
@pytest.mark.parametrize("shape", [(3,), ()])
def test_a_chain_of_binary_adds_compiles_flat(n, shape):
    g = gc.Graph()
    x = g.input("x", shape=shape)
    z = gc.sin(x * 1.0)
    for i in range(2, n + 1):
        z = z + gc.sin(x * float(i))
    f = gc.function([x], z)
    assert max_nesting(f.source) <= 4
    v = np.full(shape, 0.7)
    want = np.sin(np.arange(1.0, n + 1).reshape((-1,) + (1,) * len(shape)) * v).sum(axis=0)
    np.testing.assert_allclose(f(v), want, rtol=1e-10)


@pytest.mark.parametrize("shape", [(3,), ()])
def test_add_n_of_many_inputs_and_many_outputs(shape, rng):
    g = gc.Graph()
    xs = [g.input(f"x{k}", shape=shape) for k in range(1500)]
    outs = [gc.add_n(xs), *(gc.exp(x) for x in xs[:600])]
    f = gc.function(xs, outs)
    assert max_nesting(f.source) <= 4
    vs = [rng.standard_normal(shape) for _ in xs]
    got = f(*vs)
    want = vs[0] + vs[1]
    for v in vs[2:]:
        want = want + v  # add_n's order: ((a + b) + c) + ...
    np.testing.assert_allclose(got[0], want, rtol=1e-13)
    for a, v in zip(got[1:], vs):
        np.testing.assert_allclose(a, np.exp(v), rtol=1e-15)


# -- finding 6: every generated name is unique ---------------------------------------------------
HOSTILE_NAMES = [
    ("c_k", ["x", "w", "k", "out"]),  # the function's name and a constant's global
    ("graph", ["np", "_ops", "self", "c_k"]),
    ("_ndarray", ["_ndarray", "_dtype_0", "_ones_3_f8", "_zero_f8"]),
    ("_dtype_0", ["_s_c_k", "_check", "_kernel0", "_n1"]),
    ("def", ["class", "lambda", "None", "return"]),
    ("type", ["type", "slice", "Ellipsis", "__builtins__"]),
    ("x", ["x", "x_", "x__", "c_x"]),
    ("a b", ["a b", "a_b", "a-b", "a.b"]),  # identical after sanitising
    ("q'\"\n", ["it's", 'say "hi"', "new\nline\r\n", "nul\x00byte"]),
    ("\u03c0", ["\u03c0", "\u65e5\u672c", "\u2028", "\U0001f600"]),
    ("L" * 10_000, ["x" * 5000, "x" * 5000 + "y", "k" * 300, "y" * 300]),
    ("v", ["v", "v_1", "0", "1"]),
]


@pytest.mark.parametrize("graph_name, names", HOSTILE_NAMES)
def test_hostile_graph_and_node_names_compile_and_run(graph_name, names, rng):
    g = gc.Graph(graph_name)
    a = g.input(names[0], shape=(3,))
    b = g.input(names[1], shape=(3,))
    k = g.constant(2.0, name=names[2])
    h = gc.relu(gc.sin(a) * k + b)  # relu: the `_zero_f8` global
    s = gc.sum(h, axis=0) * k  # a small sum (`_ones_3_f8`), a 0-d product with a constant
    g.rename(h, names[3])
    f = gc.function([a, b], [h, s])
    av, bv = rng.standard_normal(3), rng.standard_normal(3)
    hv = np.maximum(np.sin(av) * 2.0 + bv, 0.0)
    for got in (f(av, bv), f(av.tolist(), bv.tolist()), f(**{names[0]: av, names[1]: bv})):
        np.testing.assert_allclose(got[0], hv, rtol=1e-15)
        np.testing.assert_allclose(got[1], hv.sum() * 2.0, rtol=1e-15)
    # one name per binding: the function, its parameters, its locals and its globals (a
    # local may be assigned again: a result takes over the variable of an operand that dies)
    tree = ast.parse(f.source)
    fn = tree.body[0]
    bound = [fn.name, *(p.arg for p in fn.args.args)]
    bound += sorted({t.id for n in ast.walk(fn) if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name)}
                    | {e.id for n in ast.walk(fn) if isinstance(n, ast.Assign)
                       for t in n.targets if isinstance(t, ast.Tuple) for e in t.elts})
    assert len(bound) == len(set(bound))
    globals_ = set(f._fn.__globals__) - {"__builtins__", fn.name}
    assert not (set(bound) - {fn.name}) & globals_
    assert fn.name in f._fn.__globals__ and f._fn.__globals__[fn.name] is f._fn
    assert all(len(name) <= 80 for name in bound)


def test_function_named_like_a_constant_global():
    g = gc.Graph("c_k")
    x = g.input("x", shape=(3,))
    k = g.constant(3.0, name="k")
    f = gc.function([x], x * k)
    np.testing.assert_allclose(f(np.arange(3.0)), 3.0 * np.arange(3.0))


# -- finding 7: folding never allocates a constant of the input's size ---------------------------
def test_compiling_a_zero_gradient_of_a_huge_input_allocates_nothing_of_its_size():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    w = g.input("w", shape=(10**6, 10**6))
    outs = [gc.grad(x.sum(), w), gc.ones_like(w), gc.mean(w, axis=1),
            gc.grad(gc.sum(gc.sin(w[0, :3])) + x.sum(), w)]  # a scatter of a window
    tracemalloc.start()
    try:
        f = gc.function([x, w], outs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    assert f.source  # compiled; calling it with a 10**12-entry w is the caller's business


@pytest.mark.parametrize("shape", [(2000, 3), (300, 300)])  # folded / kept as the op
def test_zero_gradients_of_moderate_inputs_run(shape, rng):
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    w = g.input("w", shape=shape)
    f = gc.function([x, w], [gc.grad(x.sum(), w), gc.ones_like(w), gc.mean(w, axis=1)])
    xv, wv = rng.standard_normal(3), rng.standard_normal(shape)
    zeros, ones, mean = f(xv, wv)
    np.testing.assert_array_equal(zeros, np.zeros(shape))
    np.testing.assert_array_equal(ones, np.ones(shape))
    np.testing.assert_allclose(mean, wv.mean(axis=1), rtol=1e-13)


# -- finding 12: the call's own receiver is positional-only --------------------------------------
def test_inputs_named_self_args_kwargs_pass_by_keyword():
    g = gc.Graph()
    s, a, k = (g.input(n, shape=(2,)) for n in ("self", "args", "kwargs"))
    f = gc.function([s, a, k], s * 2.0 + a - k)
    sv, av, kv = np.array([1.0, 2.0]), np.array([3.0, 5.0]), np.array([0.5, 0.25])
    want = sv * 2.0 + av - kv
    np.testing.assert_allclose(f(self=sv, args=av, kwargs=kv), want)
    np.testing.assert_allclose(f(sv, kwargs=kv, args=av), want)
    np.testing.assert_allclose(f(sv, av, kv), want)
    with pytest.raises(gc.InputError, match="both"):
        f(sv, self=sv, args=av, kwargs=kv)


# -- finding 19: ops resolved per size are kept for a bounded number of sizes --------------------
def _symbolic_function():
    g = gc.Graph()
    x = g.input("x", shape=("n",))
    f = gc.function([x], gc.grad(gc.sum(gc.sin(x)) * gc.sum(x), x))
    assert f._compiled.symbolic  # a broadcast_to resolved per size

    def want(v):
        return np.cos(v) * v.sum() + np.sin(v).sum()

    return f, want


def test_the_per_size_cache_stays_bounded():
    f, want = _symbolic_function()
    for n in range(1, 501):
        v = np.linspace(-1.0, 1.0, n)
        np.testing.assert_allclose(f(v), want(v), rtol=1e-12, atol=1e-12)
        assert len(f._resolved) <= function_module.RESOLVED_SIZE
    assert len(f._resolved) == function_module.RESOLVED_SIZE
    v = np.linspace(-1.0, 1.0, 3)  # an evicted size is resolved again, correctly
    np.testing.assert_allclose(f(v), want(v), rtol=1e-12, atol=1e-12)


def test_the_per_size_cache_is_shared_by_threads():
    f, want = _symbolic_function()
    errors = []

    def work(seed):
        r = np.random.default_rng(seed)
        try:
            for n in r.integers(1, 300, size=150):
                v = r.standard_normal(int(n))
                np.testing.assert_allclose(f(v), want(v), rtol=1e-12, atol=1e-12)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(f._resolved) <= function_module.RESOLVED_SIZE


def test_generated_source_is_dropped_from_linecache_with_its_function():
    import gc as collector
    import linecache

    before = sum(1 for k in linecache.cache if str(k).startswith("<graphc-generated-"))
    for k in range(30):
        g = gc.Graph(f"lc{k}")
        x = g.input("x", shape=(k + 1,))
        f = gc.function([x], gc.sum(gc.exp(x)))
        assert f(np.zeros(k + 1)) == k + 1
        g.cache.clear()
        del f, g, x
    import sys
    sys.modules["graphc.compile.function"]._CACHE.clear()  # compiled programs kept for reuse
    collector.collect()
    after = sum(1 for k in linecache.cache if str(k).startswith("<graphc-generated-"))
    assert after <= before + 1
