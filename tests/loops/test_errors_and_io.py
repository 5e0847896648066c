"""Loops given bad input, and loops through every way out of graphc: JSON files (round trips and
hostile edits), to_sympy, Graphviz and debugprint.

Every failed build must leave the graph as it was: the predicates and operands are built before
the count is taken, so only what the loop builder itself adds is measured."""

from __future__ import annotations

import json
import time

import numpy as np
import pydot
import pytest
import sympy

import graphc as gc
from tests.loops.unroll import close

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pydot.*")


@pytest.fixture
def g():
    return gc.Graph("bad")


def fails(g, error, fragments, build):
    """`build()` raises `error` whose message holds every fragment, and adds no node to `g`."""
    before = len(g.nodes)
    with pytest.raises(error) as info:
        build()
    for f in fragments:
        assert f in str(info.value), str(info.value)
    assert len(g.nodes) == before, [n.name for n in g.nodes[before:]]
    return str(info.value)


# -- the body's structure ------------------------------------------------------------------------
def test_scan_body_not_returning_a_pair(g):
    x = g.input("x", shape=(3,))
    X = g.input("X", shape=(4, 3))

    def only_carry(c, xt):
        return gc.tanh(c + xt)

    def triple(c, xt):
        return c, c, xt

    fails(g, gc.GraphError, ["only_carry", "(new_carry, y)", "a pair", "Node"],
          lambda: gc.scan(only_carry, x, X))
    fails(g, gc.GraphError, ["triple", "a pair", "a tuple of 3"], lambda: gc.scan(triple, x, X))


def test_scan_carry_structure_mismatch(g):
    x = g.input("x", shape=(3,))
    s = g.input("s")
    X = g.input("X", shape=(4, 3))

    def drops_one(c, xt):
        return (c[0] + xt,), None

    def grows(c, xt):
        return (c, c), None

    fails(g, gc.GraphError, ["drops_one", "a tuple of 1", "a tuple of 2"],
          lambda: gc.scan(drops_one, (x, s), X))
    fails(g, gc.GraphError, ["grows", "a tuple of 2", "a node"], lambda: gc.scan(grows, x, X))


def test_scan_carry_changing_shape_names_the_entry_and_both_shapes(g):
    x = g.input("x", shape=(3,))
    s = g.input("s")
    W = g.input("W", shape=(2, 3))
    X = g.input("X", shape=(4, 3))
    msg = fails(g, gc.ShapeError, ["carry[0]", "(3,)", "(2,)"],
                lambda: gc.scan(lambda c, xt: ((W @ c[0], c[1]), None), (x, s), X))
    assert "carry[1]" not in msg
    fails(g, gc.ShapeError, ["the carry", "(3,)", "()"],
          lambda: gc.scan(lambda c, xt: (gc.sum(c), None), x, X))


def test_scan_carry_changing_dtype(g):
    x = g.input("x", shape=(3,))
    s = g.input("s")
    n = g.input("n", dtype="int64")
    X = g.input("X", shape=(4, 3))
    fails(g, gc.ShapeError, ["carry[1]", "float64", "bool"],
          lambda: gc.scan(lambda c, xt: ((c[0], c[1] > 0.0), None), (x, s), X))
    fails(g, gc.ShapeError, ["carry[1]", "int64", "float64"],
          lambda: gc.scan(lambda c, xt: ((c[0], gc.cast(c[1], "float64") + 0.5), None),
                          (x, n), X))


def test_error_raised_inside_the_body_leaves_nothing(g):
    x = g.input("x", shape=(3,))
    W = g.input("W", shape=(3, 3))
    X = g.input("X", shape=(4, 3))

    def half_built(c, xt):
        h = gc.tanh(W @ c + xt)              # fine ...
        return h[:2] + gc.exp(c), None       # ... then a shape error

    fails(g, gc.ShapeError, ["(2,)", "(3,)"], lambda: gc.scan(half_built, x, X))
    # the graph is still usable: a good scan builds and runs after the failed one
    hT, _ = gc.scan(lambda c, xt: (gc.tanh(W @ c + xt), None), x, X)
    assert hT.shape == (3,)


def test_while_loop_carry_and_predicate_errors(g):
    x = g.input("x", shape=(3,))

    def shrinks(c):
        return gc.sum(c)

    fails(g, gc.ShapeError, ["while_loop", "the carry", "(3,)", "()"],
          lambda: gc.while_loop(lambda c: gc.sum(c) > 0.0, shrinks, x, max_steps=3))

    def not_boolean(c):
        return gc.sum(c)

    def not_scalar(c):
        return c > 0.0

    fails(g, gc.ShapeError, ["not_boolean", "bool scalar", "float64"],
          lambda: gc.while_loop(not_boolean, lambda c: 0.5 * c, x, max_steps=3))
    fails(g, gc.ShapeError, ["not_scalar", "bool scalar", "(3,)"],
          lambda: gc.while_loop(not_scalar, lambda c: 0.5 * c, x, max_steps=3))

    def two(c):
        return c, c

    fails(g, gc.GraphError, ["two", "a tuple of 2", "a node"],
          lambda: gc.while_loop(lambda c: gc.sum(c) > 0.0, two, x, max_steps=3))


def test_cond_predicate_and_branch_errors(g):
    x = g.input("x", shape=(3,))
    s = g.input("s")
    vector_pred = x > 0.0
    scalar_pred = s > 0.0
    fails(g, gc.ShapeError, ["pred", "'s'", "bool scalar", "float64"],
          lambda: gc.cond(s, lambda v: v, lambda v: -v, x))
    fails(g, gc.ShapeError, ["pred", "bool scalar", "(3,)"],
          lambda: gc.cond(vector_pred, lambda v: v, lambda v: -v, x))
    fails(g, gc.ShapeError, ["result 0", "(3,)", "()", "true", "false"],
          lambda: gc.cond(scalar_pred, lambda v: v, lambda v: gc.sum(v), x))
    fails(g, gc.ShapeError, ["result 0", "float64", "bool"],
          lambda: gc.cond(scalar_pred, lambda v: v, lambda v: v > 0.0, x))
    fails(g, gc.GraphError, ["a tuple of 2", "a node"],
          lambda: gc.cond(scalar_pred, lambda v: (v, v), lambda v: v, x))


@pytest.mark.parametrize("bad", ["bogus", 0, -2, 2.5, None, True])
def test_bad_checkpoint(g, bad):
    x = g.input("x", shape=(3,))
    X = g.input("X", shape=(4, 3))
    fails(g, gc.GraphError, ["checkpoint", repr(bad)],
          lambda: gc.scan(lambda c, xt: (c + xt, None), x, X, checkpoint=bad))


def test_bad_lengths_and_xs(g):
    x = g.input("x", shape=(3,))
    X = g.input("X", shape=(4, 3))
    Y = g.input("Y", shape=(5, 3))
    fails(g, gc.GraphError, ["length"], lambda: gc.scan(lambda c, _: (c, None), x))
    fails(g, gc.GraphError, ["length", "-1"],
          lambda: gc.scan(lambda c, _: (c, None), x, length=-1))
    fails(g, gc.ShapeError, ["xs[1]", "5 rows", "4"],
          lambda: gc.scan(lambda c, xy: (c + xy[0] * xy[1], None), x, (X, Y)))
    fails(g, gc.ShapeError, ["length=3", "4 rows"],
          lambda: gc.scan(lambda c, xt: (c + xt, None), x, X, length=3))


# -- run time: max_steps, and reverse mode without it -------------------------------------------
def test_max_steps_exceeded_at_run_time_names_the_loop(g):
    x = g.input("x", shape=(2,))

    def count_down(c):
        return c - 1.0

    r = gc.while_loop(lambda c: gc.sum(c) > 0.0, count_down, x, max_steps=3)
    gx = gc.grad(gc.sum(r * r), x)
    f = gc.function([x], [r, gx])
    got = f(np.array([1.0, 0.5]))             # one step: within the bound
    close(got[0], [0.0, -0.5])
    close(got[1], 2 * got[0])
    for run in (lambda: f(np.array([5.0, 5.0])),
                lambda: gc.eval(r, {x: np.array([5.0, 5.0])})):
        with pytest.raises(gc.InputError) as info:
            run()
        msg = str(info.value)
        assert r.inputs[0].name in msg and "max_steps=3" in msg and "count_down" in msg, msg


def test_max_steps_exceeded_in_forward_mode(g):
    x = g.input("x")
    r = gc.while_loop(lambda c: c < 100.0, lambda c: 2.0 * c, x, max_steps=4)
    t = gc.jvp(r, x, g.constant(1.0))
    f = gc.function([x], [r, t])
    close(f(10.0), [160.0, 16.0])
    with pytest.raises(gc.InputError, match="max_steps=4"):
        f(1.0)


def test_reverse_mode_of_a_while_loop_without_max_steps(g):
    x = g.input("x")
    r = gc.while_loop(lambda c: c < 100.0, lambda c: 2.0 * c, x)
    z = r * r
    v = g.constant(1.0)
    for build in (lambda: gc.grad(z, x), lambda: gc.hvp(z, x, v, mode="reverse"),
                  lambda: gc.vjp(r, x, v)):
        fails(g, gc.GraphError, ["max_steps", "reverse mode", "gc.jvp"], build)
    t = gc.jvp(z, x, v)                      # forward mode needs no bound
    close(gc.eval(t, {x: 3.0}), 2 * 192.0 * 64.0)


# -- JSON round trips ----------------------------------------------------------------------------
def _round_trip(tmp_path, ins, outs, feeds):
    """Saving and loading keeps every node in order; the loaded graph computes the same values
    (both compiled), and can be differentiated again."""
    g = ins[0].graph
    path = tmp_path / "loops.json"
    gc.save(g, path)
    g2 = gc.load(path)
    assert [(n.name, n.op.name, n.shape, str(n.dtype)) for n in g2.nodes] == \
        [(n.name, n.op.name, n.shape, str(n.dtype)) for n in g.nodes]
    pos = {id(n): k for k, n in enumerate(g.nodes)}
    ins2 = [g2.nodes[pos[id(x)]] for x in ins]
    outs2 = [g2.nodes[pos[id(o)]] for o in outs]
    for feed in feeds:
        want = gc.function(ins, outs)(*feed)
        got = gc.function(ins2, outs2)(*feed)
        for a, b in zip(got, want):
            assert np.array_equal(a, b)
    return g2, ins2, outs2


def test_scan_and_its_derivatives_round_trip(tmp_path, rng):
    g = gc.Graph("rnn")
    W = g.input("W", shape=(3, 3))
    X = g.input("X", shape=(6, 3))
    h0 = g.input("h0", shape=(3,))
    hT, ys = gc.scan(lambda h, x: (gc.tanh(W @ h + x), gc.sum(h * h)), h0, X)
    z = gc.sum(hT) + gc.sum(ys * ys)
    gW, gh = gc.grad(z, [W, h0])
    hv_r = gc.hvp(z, W, g.constant(np.ones((3, 3))), mode="reverse")
    hv_f = gc.hvp(z, W, g.constant(np.ones((3, 3))), mode="forward")
    feed = (0.5 * rng.standard_normal((3, 3)), rng.standard_normal((6, 3)), rng.standard_normal(3))
    g2, ins2, outs2 = _round_trip(tmp_path, [W, X, h0], [z, gW, gh, hv_r, hv_f], [feed])
    # differentiate the loaded scan again: the same gradient
    z2, W2 = outs2[0], ins2[0]
    gW2 = gc.grad(z2, W2)
    close(gc.function(ins2, gW2)(*feed), gc.function([W, X, h0], gW)(*feed))


@pytest.mark.parametrize("checkpoint", ["sqrt", 2])
def test_checkpointed_scan_gradient_round_trips(tmp_path, rng, checkpoint):
    g = gc.Graph("ckpt")
    W = g.input("W", shape=(2, 2))
    X = g.input("X", shape=(7, 2))
    h0 = g.input("h0", shape=(2,))
    hT, ys = gc.scan(lambda h, x: (gc.tanh(W @ h + x), h[0]), h0, X, checkpoint=checkpoint)
    z = gc.sum(hT * hT) + gc.sum(ys)
    feed = (rng.standard_normal((2, 2)), rng.standard_normal((7, 2)), rng.standard_normal(2))
    _round_trip(tmp_path, [W, X, h0], [z, *gc.grad(z, [W, h0, X])], [feed])


def test_nested_scan_round_trips(tmp_path, rng):
    g = gc.Graph("nested")
    W = g.input("W", shape=(2, 2))
    X = g.input("X", shape=(3, 4))
    c0 = g.input("c0", shape=(2,))

    def inner(c, x):
        return gc.tanh(W @ c + x), None

    def outer(c, row):
        c_end, _ = gc.scan(inner, c, row)
        return c_end, gc.sum(c_end)

    cT, zs = gc.scan(outer, c0, X)
    z = gc.sum(cT * cT) + gc.sum(gc.sin(zs))
    gW = gc.grad(z, W)
    H = gc.hessian(z, c0)
    feed = (rng.standard_normal((2, 2)), rng.standard_normal((3, 4)), rng.standard_normal(2))
    _round_trip(tmp_path, [W, X, c0], [z, gW, H], [feed])


def test_while_loop_and_its_derivatives_round_trip(tmp_path):
    g = gc.Graph("newton")
    a = g.input("a")
    r = gc.while_loop(lambda x: gc.abs(x * x - a) > 1e-13 * a, lambda x: 0.5 * (x + a / x),
                      1.0 + 0.0 * a, max_steps=60)
    d1 = gc.grad(r, a)
    t = gc.jvp(r, a, g.constant(1.0))
    n = g.input("n", dtype="int64")
    p = gc.fori_loop(0, n, lambda i, c: c * a, 1.0 + 0.0 * a)
    g2, _, outs2 = _round_trip(tmp_path, [a, n], [r, d1, t, p], [(2.0, 3), (9.0, 0)])
    close(gc.eval(outs2[0], {g2.inputs[0]: 2.0}), np.sqrt(2.0), rtol=1e-13)


def test_cond_and_its_gradient_round_trip(tmp_path):
    g = gc.Graph("branch")
    x = g.input("x", shape=(2,))
    A = g.input("A", shape=(2, 2))
    y = gc.cond(gc.sum(x) > 0.0, lambda v: gc.tanh(A @ v), lambda v: gc.sin(v) * 3.0, x)
    z = gc.sum(y * y)
    gx, gA = gc.grad(z, [x, A])
    Av = np.array([[0.3, -1.0], [0.7, 0.2]])
    _round_trip(tmp_path, [x, A], [z, gx, gA],
                [(np.array([1.0, 0.5]), Av), (np.array([-1.0, 0.5]), Av)])


# -- hostile edits of a saved loop ----------------------------------------------------------------
def _saved_scan(tmp_path, with_xs=True):
    g = gc.Graph("rnn")
    W = g.input("W", shape=(3, 3))
    X = g.input("X", shape=(4, 3))
    h0 = g.input("h0", shape=(3,))
    hT, ys = gc.scan(lambda h, x: (gc.tanh(W @ h + x), gc.sum(h)), h0, X)
    gc.grad(gc.sum(hT) + gc.sum(ys), W)
    path = tmp_path / "good.json"
    gc.save(g, path)
    return json.loads(path.read_text())


def _first_scan(doc):
    return next(n for n in doc["nodes"] if n["op"] == "scan")


def _quick_load_error(tmp_path, doc, fragments):
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(doc))
    start = time.perf_counter()
    with pytest.raises(gc.LoadError) as info:
        gc.load(path)
    elapsed = time.perf_counter() - start
    for f in fragments:
        assert f in str(info.value), str(info.value)
    assert str(path) in str(info.value)
    assert elapsed < 2.0, f"{elapsed:.2f} s"   # bounds a loop over the length; not a timing


def test_edited_body_with_a_carry_of_another_shape(tmp_path):
    doc = _saved_scan(tmp_path)
    body = _first_scan(doc)["params"]["body"]["graph"]
    body["outputs"][0] = body["outputs"][1]                # the carry leaves as the scalar y
    _quick_load_error(tmp_path, doc, ["scan", "carry 0", "(3,)", "()"])


def test_edited_body_input_of_another_shape(tmp_path):
    doc = _saved_scan(tmp_path)
    body = _first_scan(doc)["params"]["body"]["graph"]
    body["nodes"][0]["shape"] = [2]                        # the carry enters as (2,)
    _quick_load_error(tmp_path, doc, ["body", "(2,)"])


@pytest.mark.parametrize("length", [10**15, 2**62, 2**70, -1])
def test_edited_huge_or_negative_length(tmp_path, length):
    doc = _saved_scan(tmp_path)
    _first_scan(doc)["params"]["length"] = length
    _quick_load_error(tmp_path, doc, ["scan"])


def test_edited_carry_count(tmp_path):
    doc = _saved_scan(tmp_path)
    _first_scan(doc)["params"]["n_carry"] = 7
    _quick_load_error(tmp_path, doc, ["scan"])


def test_consistently_huge_length_loads_without_running(tmp_path):
    """A scan of 10**15 steps whose every shape agrees is a valid graph, like an input with a
    huge dimension: it loads and compiles without any per-step work (the body is compiled
    once); running it is the caller's decision."""
    g = gc.Graph("long")
    c0 = g.input("c0", shape=(2,))
    cT, _ = gc.scan(lambda c, _: (0.5 * c, None), c0, length=5)
    path = tmp_path / "long.json"
    gc.save(g, path)
    doc = json.loads(path.read_text())
    _first_scan(doc)["params"]["length"] = 10**15
    path.write_text(json.dumps(doc))
    start = time.perf_counter()
    g2 = gc.load(path)
    f = gc.function([g2.inputs[0]], g2.nodes[-1])
    assert time.perf_counter() - start < 5.0
    assert g2.nodes[1].op.length == 10**15
    assert f.graph is not None


def _nested_scans_text(depth: int) -> str:
    """A file of `depth` scans nested inside each other's bodies (each of 2 steps), the
    innermost body a sin: written as text, since json.dumps itself would recurse."""
    leaf = json.dumps({"name": "c", "op": "input", "inputs": [], "shape": [2],
                       "dtype": "float64", "role": "forward", "scope": ""})
    view = json.dumps({"name": "o", "op": "output", "inputs": [1], "shape": [2],
                       "dtype": "float64", "role": "forward", "scope": "",
                       "params": {"index": 0}})

    def scan_node(body_nodes: str, out: int) -> str:
        return ('{"name": "s", "op": "scan", "inputs": [0], "role": "forward", "scope": "", '
                '"outputs": [{"shape": [2], "dtype": "float64"}], "params": {"body": '
                f'{{"graph": {{"name": "b", "nodes": [{body_nodes}], "inputs": [0], '
                f'"outputs": [{out}]}}}}, "length": 2, "n_carry": 1}}}}')

    sin = json.dumps({"name": "t", "op": "sin", "inputs": [0], "shape": [2],
                      "dtype": "float64", "role": "forward", "scope": ""})
    node = scan_node(f"{leaf}, {sin}", 1)
    for _ in range(depth - 1):
        node = scan_node(f"{leaf}, {node}, {view}", 2)
    return ('{"format": "graphc", "version": 3, "name": "deep", "nodes": ['
            f'{leaf}, {node}, {view}]}}')


def test_nested_loops_written_by_hand_load_and_run(tmp_path):
    path = tmp_path / "nested.json"
    path.write_text(_nested_scans_text(3))
    g2 = gc.load(path)
    want = np.array([0.3, -1.2])
    for _ in range(2 ** 3):
        want = np.sin(want)
    close(gc.function(g2.inputs, g2.nodes[-1])(np.array([0.3, -1.2])), want, rtol=1e-15)


def test_deeply_nested_loops_are_a_quick_load_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(_nested_scans_text(300))
    start = time.perf_counter()
    with pytest.raises(gc.LoadError) as info:
        gc.load(path)
    assert str(path) in str(info.value)
    assert time.perf_counter() - start < 2.0


def test_max_nodes_counts_the_bodies(tmp_path):
    g = gc.Graph("fat")
    c0 = g.input("c0", shape=(2,))

    def many_ops(c, _):
        for _ in range(20):
            c = gc.sin(c)
        return c, None

    gc.scan(many_ops, c0, length=3)
    assert len(g.nodes) < 10
    path = tmp_path / "fat.json"
    gc.save(g, path)
    with pytest.raises(gc.LoadError, match="max_nodes"):
        gc.load(path, max_nodes=10)


# -- to_sympy, Graphviz, debugprint --------------------------------------------------------------
def test_to_sympy_of_loops_is_a_graph_error(g):
    x = g.input("x")
    X = g.input("X", shape=(3,))
    total, _ = gc.scan(lambda c, xt: (c + xt * x, None), 0.0 * x, X)
    p = gc.fori_loop(0, 3, lambda i, c: c * x, 1.0 + 0.0 * x)
    r = gc.while_loop(lambda c: c < 10.0, lambda c: 2.0 * c, x, max_steps=10)
    for node, word in ((total, "loop"), (p, "loop"), (r, "while loop")):
        with pytest.raises(gc.GraphError) as info:
            gc.to_sympy(node + 1.0)
        assert word in str(info.value) and "to_sympy" in str(info.value)


def test_to_sympy_of_cond_is_a_piecewise(g):
    x = g.input("x")
    y = gc.cond(x > 0.5, lambda v: v * v, lambda v: gc.sin(v), x)
    expr = gc.to_sympy(y)
    xs = sympy.Symbol("x")
    [sym] = expr.free_symbols
    assert isinstance(expr, sympy.Piecewise)
    for v in (2.0, -1.0, 0.5, 0.7):
        want = v * v if v > 0.5 else np.sin(v)
        close(float(expr.subs(sym, v)), want, rtol=1e-15)
        close(float(y.eval({x: v})), want, rtol=1e-15)
    assert sym.name == xs.name


def _scan_graph():
    g = gc.Graph("drawn")
    W = g.input("W", shape=(3, 3))
    X = g.input("X", shape=(4, 3))
    h0 = g.input("h0", shape=(3,))

    def rnn_step(h, x):
        return gc.tanh(W @ h + x), gc.sum(h)

    hT, ys = gc.scan(rnn_step, h0, X)
    return g, gc.sum(hT) + gc.sum(ys * ys)


def _subgraphs(d):
    for sub in d.get_subgraphs():
        yield sub
        yield from _subgraphs(sub)


def test_to_dot_draws_the_body_as_a_cluster():
    g, z = _scan_graph()
    gc.grad(z, g.inputs[0])
    src = gc.to_dot(g)
    [d] = pydot.graph_from_dot_data(src)
    bodies = {s.get_label().strip('"'): s.to_string() for s in _subgraphs(d)
              if s.get_name().strip('"').startswith("cluster") and "body" in (s.get_label() or "")}
    assert bodies, src[:2000]
    forward = [text for label, text in bodies.items() if label.endswith("body scan_rnn_step")]
    backward = [text for label, text in bodies.items() if label.endswith(".grad")]
    assert forward and backward, list(bodies)
    assert "tanh" in forward[0] and "matmul" in forward[0] and "sum" in forward[0]
    assert "scan(" not in forward[0]        # the loop node itself is drawn outside its body


def test_debugprint_shows_the_body_lines():
    _, z = _scan_graph()
    text = gc.debugprint(z)
    lines = text.splitlines()
    scan_line = next(k for k, line in enumerate(lines) if "scan(" in line)
    body_line = next(k for k, line in enumerate(lines) if "body" in line and "rnn_step" in line)
    assert body_line > scan_line
    body_text = "\n".join(lines[body_line:body_line + 12])
    for op in ("tanh", "matmul", "add", "sum"):
        assert op in body_text, text
    # the body's lines are indented deeper than the scan's
    indent = len(lines[scan_line]) - len(lines[scan_line].lstrip("│├└─ "))
    assert len(lines[body_line + 1]) - len(lines[body_line + 1].lstrip("│├└─┆╞═ ")) > indent
