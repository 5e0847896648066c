"""`gc.remat`: an op that holds a graph, differentiated, vectorized, compiled, saved and drawn."""

from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
import pytest

import graphc as gc
from graphc.export import json as gjson
from graphc.ir.body import Body


def chain(n_blocks: int, layers: int, width: int, batch: int, use_remat: bool):
    """A deep tanh chain, optionally with each block of `layers` layers under remat."""
    g = gc.Graph("chain")
    x = g.input("x", shape=(width, batch))
    W = g.input("W", shape=(width, width))

    def block(h):
        for _ in range(layers):
            h = gc.tanh(W @ h)
        return h

    h = x
    for _ in range(n_blocks):
        h = gc.remat(block, h) if use_remat else block(h)
    z = (h * h).sum()
    return g, x, W, z


def small(use_remat=True):
    g = gc.Graph("small")
    x = g.input("x", shape=(3,))
    W = g.input("W", shape=(3, 3))

    def block(h):
        return gc.tanh(W @ gc.sin(W @ h))

    y = gc.remat(block, x) if use_remat else block(x)
    return g, x, W, y, (y * y).sum()


@pytest.fixture
def feed(rng):
    return lambda x, W: {x: rng.standard_normal(3), W: rng.standard_normal((3, 3)) * 0.5}


def test_captured_outer_nodes_are_operands():
    g, x, W, y, _ = small()
    assert y.op.name == "remat" and [a.name for a in y.inputs] == ["x", "W"]
    body = y.op.body
    assert [p.name for p in body.inputs] == ["x", "W"]
    assert body.graph is not g and all(n.graph is body.graph for n in body.graph.nodes)
    assert body.graph.parent is None  # closed once built
    with pytest.raises(gc.GraphError, match="different graphs"):
        body.outputs[0] + x  # the inner graph is closed: no capture after remat returns


def test_gradient_equals_the_graph_without_remat_and_finite_differences(rng):
    _, x, W, _, z = small(True)
    _, x0, W0, _, z0 = small(False)
    vx, vW = rng.standard_normal(3), rng.standard_normal((3, 3)) * 0.5
    got = gc.eval(gc.grad(z, [x, W]), {x: vx, W: vW})
    want = gc.eval(gc.grad(z0, [x0, W0]), {x0: vx, W0: vW})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert gc.check_grad(z, [x, W], at={x: vx, W: vW}, order=2,
                         modes=("reverse", "forward")) < 1e-6


def test_the_gradient_is_a_remat_node_that_recomputes_the_block():
    _, x, W, y, z = small()
    gx = gc.grad(z, x)
    assert gx.op.name == "remat"
    inner = gx.op.body.graph
    assert {"sin", "tanh"} <= {n.op.name for n in inner.nodes}  # the forward, recomputed
    ids = [id(a) for a in gx.inputs]  # the block's inner values are not operands: its inputs
    assert id(y) not in ids and id(x) in ids and id(W) in ids


def test_second_order_through_remat(rng):
    _, x, W, _, z = small(True)
    _, x0, W0, _, z0 = small(False)
    vx, vW, v = rng.standard_normal(3), rng.standard_normal((3, 3)) * 0.5, rng.standard_normal(3)
    for mode in ("forward", "reverse"):
        got = gc.hvp(z, x, v, mode=mode).eval({x: vx, W: vW})
        want = gc.hvp(z0, x0, v, mode=mode).eval({x0: vx, W0: vW})
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    ggW = gc.grad(gc.grad(z, x).sum(), W)  # grad of grad: the gradient op differentiated again
    want = gc.grad(gc.grad(z0, x0).sum(), W0).eval({x0: vx, W0: vW})
    np.testing.assert_allclose(ggW.eval({x: vx, W: vW}), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_jacobian_and_hessian_vectorize_the_body(mode, rng):
    _, x, W, y, z = small(True)
    _, x0, W0, y0, z0 = small(False)
    vx, vW = rng.standard_normal(3), rng.standard_normal((3, 3)) * 0.5
    for a, b in [(gc.jacobian(y, x, mode=mode), gc.jacobian(y0, x0, mode=mode)),
                 (gc.jacobian(y, W, mode=mode), gc.jacobian(y0, W0, mode=mode)),
                 (gc.hessian(z, x, mode=mode), gc.hessian(z0, x0, mode=mode))]:
        np.testing.assert_allclose(a.eval({x: vx, W: vW}), b.eval({x0: vx, W0: vW}),
                                   rtol=0, atol=1e-12)
    J = gc.jacobian(y, x, mode=mode)
    # one batched remat node per block, not one per row
    assert any(n.op.name == "remat" and n.op.body.graph.name.endswith(".batch")
               for n in J.graph.nodes)


def test_compile_and_call(rng):
    _, x, W, _, z = small()
    f = gc.function([x, W], [z, gc.grad(z, W)])
    vx, vW = rng.standard_normal(3), rng.standard_normal((3, 3))
    zv, gW = f(vx, vW)
    _, x0, W0, _, z0 = small(False)
    np.testing.assert_allclose(zv, z0.eval({x0: vx, W0: vW}), rtol=1e-14)
    np.testing.assert_allclose(gW, gc.grad(z0, W0).eval({x0: vx, W0: vW}), atol=1e-12)
    assert sum(n.op.name == "remat" for n in f.graph.nodes) == 2


def test_two_identical_applications_merge():
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    W = g.input("W", shape=(4, 4))
    a = gc.remat(lambda h: gc.tanh(W @ h), x)
    b = gc.remat(lambda h: gc.tanh(W @ h), x)  # built separately: another inner graph
    c = gc.remat(lambda h: gc.sin(W @ h), x)
    assert a.op.body.graph is not b.op.body.graph and a.op == b.op and a.op != c.op
    f = gc.function([x, W], a + b + c)
    assert sum(n.op.name == "remat" for n in f.graph.nodes) == 2
    vx, vW = np.ones(4), np.eye(4)
    np.testing.assert_allclose(f(vx, vW), 2 * np.tanh(vx) + np.sin(vx))


def test_a_block_returning_a_tuple_is_a_clear_error():
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    n = len(g)
    with pytest.raises(gc.GraphError, match="multi-output"):
        gc.remat(lambda h: (gc.sin(h), gc.cos(h)), x)
    assert len(g) == n


def test_nested_remat_captures_through_each_level(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    W = g.input("W", shape=(3, 3))
    y = gc.remat(lambda h: gc.remat(lambda k: gc.tanh(W @ k), gc.sin(h)) * 2.0, x)
    vx, vW = rng.standard_normal(3), rng.standard_normal((3, 3))
    np.testing.assert_allclose(y.eval({x: vx, W: vW}), 2.0 * np.tanh(vW @ np.sin(vx)))
    inner = y.op.body.graph.nodes
    assert any(n.op.name == "remat" and [a.name for a in n.inputs][-1] == "W" for n in inner)
    z = y.sum()
    assert gc.check_grad(z, [x, W], at={x: vx, W: vW}, order=2) < 1e-6


# -- drawing and text ------------------------------------------------------------------------
def test_debugprint_and_to_dot_show_the_body():
    _, x, W, y, z = small()
    text = gc.debugprint(z)
    assert "remat" in text and "╞═ body" in text and "┆" in text
    assert any("sin" in line and "┆" in line for line in text.splitlines())
    dot = gc.to_dot(z)
    assert "cluster_b1_" in dot and "b1_n" in dot and 'arrowhead="odot"' in dot
    assert dot.count("{") == dot.count("}")


# -- saving ----------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path, rng):
    g, x, W, _, z = small()
    gz = gc.grad(gc.grad(z, x).sum(), W)
    path = gc.save(g, tmp_path / "r.json")
    data = json.loads(open(path).read())
    assert data["version"] == 3
    g2 = gc.load(path)
    assert [n.name for n in g2.nodes] == [n.name for n in g.nodes]
    feed = {"x": rng.standard_normal(3), "W": rng.standard_normal((3, 3))}
    np.testing.assert_allclose(g2[gz.name].eval(feed), gz.eval(feed), rtol=0, atol=0)
    assert g2[gz.name].op == gz.op  # the same structure, read back


def test_a_version_1_file_still_loads():
    text = json.dumps({"format": "graphc", "version": 1, "name": "old", "nodes": [
        {"name": "x", "op": "input", "inputs": [], "shape": [2], "dtype": "float64",
         "role": "forward", "scope": ""},
        {"name": "y", "op": "exp", "inputs": [0], "shape": [2], "dtype": "float64",
         "role": "forward", "scope": ""}]})
    g = gjson.loads(text)
    np.testing.assert_allclose(g["y"].eval({"x": np.zeros(2)}), np.ones(2))


def _saved(tmp_path):
    g, x, W, y, z = small()
    return json.loads(open(gc.save(g, tmp_path / "s.json")).read())


def _entry(name, op, inputs, shape, **extra):
    return {"name": name, "op": op, "inputs": inputs, "shape": shape, "dtype": "float64",
            "role": "forward", "scope": "", **extra}


def _nested(depth: int) -> dict:
    """A file whose remat holds a remat holding a remat ... `depth` deep."""
    body = {"name": "b", "nodes": [_entry("x", "input", [], [2]),
                                   _entry("y", "exp", [0], [2])], "inputs": [0], "outputs": [1]}
    for _ in range(depth):
        body = {"name": "b", "nodes": [_entry("x", "input", [], [2]),
                                       _entry("r", "remat", [0], [2],
                                              params={"body": {"graph": body}})],
                "inputs": [0], "outputs": [1]}
    return {"format": "graphc", "version": 2, "name": "g", "nodes": body["nodes"]}


def _quick_load_error(tmp_path, text, fragment, **kw):
    path = tmp_path / "hostile.json"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(gc.LoadError) as info:
        gc.load(path, **kw)
    assert time.perf_counter() - start < 1.0
    assert fragment in str(info.value), str(info.value)
    assert str(path) in str(info.value)


def test_hostile_inner_graph_nested_10000_deep(tmp_path):
    # written as text (json.dumps would itself refuse the depth); json.loads refuses it too
    head = ('{"name": "b", "nodes": [{"name": "x", "op": "input", "inputs": [], "shape": [2], '
            '"dtype": "float64", "role": "forward", "scope": ""}, {"name": "r", "op": "remat", '
            '"inputs": [0], "shape": [2], "dtype": "float64", "role": "forward", "scope": "", '
            '"params": {"body": {"graph": ')
    tail = '}}}], "inputs": [0], "outputs": [1]}'
    core = json.dumps(_nested(0)["nodes"])
    core = '{"name": "b", "nodes": ' + core + ', "inputs": [0], "outputs": [1]}'
    inner = head * 9_999 + core + tail * 9_999
    text = ('{"format": "graphc", "version": 2, "name": "g", "nodes": [{"name": "x", "op": '
            '"input", "inputs": [], "shape": [2], "dtype": "float64", "role": "forward", '
            '"scope": ""}, {"name": "r", "op": "remat", "inputs": [0], "shape": [2], "dtype": '
            '"float64", "role": "forward", "scope": "", "params": {"body": {"graph": '
            + inner + '}}}]}')
    _quick_load_error(tmp_path, text, "nested too deeply")
    # data already parsed is bounded by the reader itself
    start = time.perf_counter()
    with pytest.raises(gc.LoadError, match="nest at most 32 deep"):
        gjson.from_data(_nested(200))
    assert time.perf_counter() - start < 1.0
    assert gjson.from_data(_nested(3))  # a few levels are fine


def test_hostile_inner_graph_with_a_cycle(tmp_path):
    data = _nested(1)
    inner = data["nodes"][1]["params"]["body"]["graph"]
    inner["nodes"].append(_entry("z", "exp", [3], [2]))
    inner["nodes"].append(_entry("w", "exp", [2], [2]))
    _quick_load_error(tmp_path, json.dumps(data), "the inputs form a cycle")


def test_hostile_inner_graph_outputs_do_not_match_the_declared_shape(tmp_path):
    data = _nested(1)
    inner = data["nodes"][1]["params"]["body"]["graph"]
    inner["nodes"].append(_entry("s", "sum", [1], [], params={"axis": [0]}))
    inner["outputs"] = [2]
    _quick_load_error(tmp_path, json.dumps(data), "the file says (2,) but remat")
    data["nodes"][1]["params"]["body"]["graph"]["outputs"] = [7]
    _quick_load_error(tmp_path, json.dumps(data), "outputs[0]")
    data["nodes"][1]["params"]["body"]["graph"]["outputs"] = [1]
    data["nodes"][1]["params"]["body"]["graph"]["inputs"] = []
    _quick_load_error(tmp_path, json.dumps(data), ".graph.inputs")


def test_inner_graphs_share_the_node_budget_and_need_version_2(tmp_path):
    data = _nested(4)  # 2 nodes per level: 10 in all
    _quick_load_error(tmp_path, json.dumps(data), "left of max_nodes=9", max_nodes=9)
    assert gjson.from_data(data, max_nodes=10)
    _quick_load_error(tmp_path, json.dumps({**data, "version": 1}), "need version 2")


def test_body_fingerprint_ignores_names():
    def build(name):
        h = gc.Graph(name)
        x = h.input(name + "_x", shape=(2,))
        return Body(h, [gc.exp(x)])

    assert build("a") == build("b") and hash(build("a")) == hash(build("b"))


# -- the memory effect -----------------------------------------------------------------------
def test_remat_keeps_fewer_activations_alive_with_equal_values(rng):
    n_blocks, layers, width, batch = 16, 8, 64, 64
    vx = rng.standard_normal((width, batch))
    vW = rng.standard_normal((width, width)) / np.sqrt(width)
    peaks, values = {}, {}
    for use in (False, True):
        _, x, W, z = chain(n_blocks, layers, width, batch, use)
        f = gc.function([x, W], gc.grad(z, [x, W]))
        f(vx, vW)  # compile the bodies first
        tracemalloc.start()
        values[use] = f(vx, vW)
        _, peaks[use] = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    for a, b in zip(values[True], values[False]):  # equal up to the order of summation
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    activation = width * batch * 8
    # without: every layer's activation is kept for the backward pass (128 here);
    # with: the 16 block boundaries plus one block's recomputed layers
    assert peaks[False] > 100 * activation, peaks
    assert peaks[True] < 0.5 * peaks[False], peaks
