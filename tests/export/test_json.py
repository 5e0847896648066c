"""Save / load: round trips on every op case with its gradient, and strict validation."""

from __future__ import annotations

import base64
import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.export import json as gjson
from tests.ops.cases import CASES


def values(graph, feed):
    """Every float/int/bool node's value: the oracle is the original graph's evaluation."""
    nodes = [n for n in graph.nodes if n.op.name != "input" and not n.op.multi]  # views hold
    #                                                             a multi-output node's results
    return gc.function(graph.inputs, nodes, optimize=False)(**feed) if nodes else []


def build_case(case, rng):
    g = gc.Graph(case.id or case.op)
    xs = [g.input(f"x{k}", shape=s, dtype=case.dtype) for k, s in enumerate(case.shapes)]
    out = case.build(*xs)
    if out.dtype.kind == "f":
        z = gc.sum(out * g.constant(rng.standard_normal(out.shape)))
        gc.grad(z, xs)
        if case.order >= 2:
            gx = gc.grad(z, xs[0])
            gc.grad(gc.sum(gx * gx), xs[0])  # second order: the gradient of a gradient
    feed = {x.name: case.sample(rng, k) for k, x in enumerate(xs)}
    return g, feed


@pytest.mark.parametrize("case", CASES, ids=[c.id or c.op for c in CASES])
def test_round_trip_every_case_with_gradients(case, rng, tmp_path):
    g, feed = build_case(case, rng)
    path = gc.save(g, tmp_path / "g.json")
    g2 = gc.load(path)
    assert [(n.name, n.op, n.role, n.scope, n.shape, n.dtype) for n in g2.nodes if
            n.op.name != "constant"] == [(n.name, n.op, n.role, n.scope, n.shape, n.dtype)
                                         for n in g.nodes if n.op.name != "constant"]
    assert [[x.index for x in n.inputs] for n in g2.nodes] == [
        [x.index for x in n.inputs] for n in g.nodes]
    for a, b in zip(values(g, feed), values(g2, feed)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert gjson.dumps(g2) == gjson.dumps(g)  # a fixed point: nothing lost on the way


def test_symbolic_dims_scopes_dtypes_and_constants(tmp_path):
    g = gc.Graph("sym")
    X = g.input("X", shape=("batch", 4), dtype="float32")
    with g.scope("layer1"), g.scope("inner"):
        h = gc.tanh(X @ g.constant(np.arange(8.0, dtype=np.float32).reshape(4, 2), name="W"))
    flat = h.reshape(("batch", 2)).reshape(-1)
    c16 = g.constant(np.array([1.5, -np.inf], dtype=">f2"))  # big-endian in memory
    ints = g.constant(np.array([[1, -2], [3, 2**40]], dtype=np.int64))
    flags = g.constant(np.array([True, False, True]))
    gc.grad(gc.sum(flat * flat), X)
    g2 = gc.load(gc.save(g, tmp_path / "s.json"))
    assert g2["X"].shape == X.shape and str(g2["X"].shape[0]) == "batch"
    assert g2[flat.name].shape == flat.shape  # a product of symbols
    assert g2[h.name].scope == "layer1/inner" and g2[h.name].name == h.name
    assert g2["layer1/inner/W"].op.value.dtype == np.float32
    np.testing.assert_array_equal(g2[c16.name].op.value, [1.5, -np.inf])
    assert g2[c16.name].op.value.dtype == np.float16
    np.testing.assert_array_equal(g2[ints.name].op.value, ints.op.value)
    np.testing.assert_array_equal(g2[flags.name].op.value, flags.op.value)
    feed = {"X": np.arange(12, dtype=np.float32).reshape(3, 4) / 10}
    for a, b in zip(values(g, feed), values(g2, feed)):
        np.testing.assert_array_equal(a, b)


def test_index_params_round_trip(tmp_path):
    g = gc.Graph()
    x = g.input("x", shape=(5, 4, 3))
    y = x[::-2, None, ..., 1:3]
    g2 = gc.load(gc.save(g, tmp_path / "i.json"))
    assert g2[y.name].op == y.op
    v = np.arange(60.0).reshape(5, 4, 3)
    np.testing.assert_array_equal(g2[y.name].eval({"x": v}), v[::-2, None, ..., 1:3])


# -- validation --------------------------------------------------------------------------------
def saved(tmp_path):
    g = gc.Graph("v")
    x = g.input("x", shape=("n", 3))
    c = g.constant(np.ones(3), name="c")
    y = gc.sum(x * c, axis=1)
    gc.grad(gc.sum(y), x)
    return json.loads(gjson.dumps(g))


def must_fail(data, *fragments, max_bytes=gjson.MAX_BYTES):
    text = data if isinstance(data, (str, bytes)) else json.dumps(data)
    with pytest.raises(gc.LoadError) as info:
        gjson.loads(text, max_bytes=max_bytes, where="f.json")
    for f in fragments:
        assert f in str(info.value), str(info.value)
    return str(info.value)


def test_the_saved_data_is_valid(tmp_path):
    data = saved(tmp_path)
    g = gjson.from_data(data)
    assert len(g.nodes) == len(data["nodes"])


def test_wrong_version_and_format(tmp_path):
    data = saved(tmp_path)
    must_fail({**data, "version": 4}, "f.json: version", "reads versions 1 to 3")
    must_fail({**data, "version": True}, "version")
    must_fail({**data, "format": "onnx"}, "format")
    must_fail([], "top level")
    must_fail({**data, "extra": 1}, "unknown keys ['extra']")


def test_unknown_op_and_bad_arity(tmp_path):
    data = saved(tmp_path)
    bad = copy.deepcopy(data)
    bad["nodes"][2]["op"] = "os.system"
    must_fail(bad, "nodes[2]", "unknown op 'os.system'")
    bad = copy.deepcopy(data)
    bad["nodes"][2]["inputs"] = [0]
    must_fail(bad, "nodes[2] ('mul_2').inputs", "mul takes 2 inputs, got 1")


def test_shape_and_dtype_mismatch(tmp_path):
    data = saved(tmp_path)
    bad = copy.deepcopy(data)
    bad["nodes"][2]["shape"] = ["n", 4]
    must_fail(bad, "nodes[2] ('mul_2').shape", "the file says (n, 4)", "gives (n, 3)")
    bad = copy.deepcopy(data)
    bad["nodes"][2]["dtype"] = "float32"
    must_fail(bad, "nodes[2] ('mul_2').dtype")
    bad = copy.deepcopy(data)
    bad["nodes"][1]["value"]["shape"] = [4]
    must_fail(bad, "nodes[1] ('c').value.data")
    bad = copy.deepcopy(data)
    bad["nodes"][3]["params"]["axis"] = [5]
    must_fail(bad, "nodes[3]", "out of range")


def test_cycles_and_forward_references(tmp_path):
    data = saved(tmp_path)
    bad = copy.deepcopy(data)
    bad["nodes"][2]["inputs"] = [3, 1]  # mul <- sum <- mul
    must_fail(bad, "nodes[2].inputs", "cycle", "nodes[2] -> nodes[3]", "nodes[3] -> nodes[2]")
    bad = copy.deepcopy(data)
    bad["nodes"][2]["inputs"] = [2, 1]
    must_fail(bad, "cycle")
    bad = copy.deepcopy(data)
    bad["nodes"][0], bad["nodes"][1] = bad["nodes"][1], bad["nodes"][0]
    bad["nodes"][2]["inputs"] = [1, 0]
    bad["nodes"][3]["inputs"] = [2]
    bad["nodes"].append(copy.deepcopy(bad["nodes"][3]))
    bad["nodes"][-1]["name"] = "later"
    bad["nodes"][3]["inputs"] = [len(bad["nodes"]) - 1]
    must_fail(bad, "comes later")


def test_non_finite_and_oversized(tmp_path):
    data = saved(tmp_path)
    text = json.dumps(data).replace('"keepdims": false', '"keepdims": NaN')
    must_fail(text, "NaN is not allowed")
    must_fail(json.dumps(data).replace('"shape": ["n", 3]', '"shape": ["n", Infinity]', 1),
              "Infinity")
    must_fail(data, "exceed", max_bytes=16)  # the constant holds 24 bytes
    bad = copy.deepcopy(data)
    bad["nodes"][1]["value"]["shape"] = [10**12]
    bad["nodes"][1]["shape"] = [10**12]
    must_fail(bad, "nodes[1] ('c').value", "exceed")


def test_bad_constant_data(tmp_path):
    data = saved(tmp_path)
    bad = copy.deepcopy(data)
    bad["nodes"][1]["value"]["data"] = "!!!!" * 8
    must_fail(bad, "base64")
    bad = copy.deepcopy(data)
    bad["nodes"][1]["value"]["dtype"] = "object"
    must_fail(bad, "value.dtype", "expected one of")
    bad = copy.deepcopy(data)
    bad["nodes"][1]["value"] = {"dtype": "bool", "shape": [3],
                                "data": base64.b64encode(b"\x00\x07\x01").decode()}
    bad["nodes"][1]["dtype"] = "bool"
    must_fail(bad, "0 or 1")


def test_nothing_in_the_file_is_executed(tmp_path):
    marker = tmp_path / "pwned"
    data = saved(tmp_path)
    payloads = [f"__import__('os').system('touch {marker}')",
                f"open('{marker}', 'w')", "(lambda: 1)()", "n.__class__", "[n]", "n if n else n",
                "9" * 30, "n**99999999"]
    for p in payloads:
        bad = copy.deepcopy(data)
        bad["nodes"][0]["shape"] = [p, 3]
        must_fail(bad, "nodes[0] ('x').shape[0]")
        bad = copy.deepcopy(data)
        bad["nodes"][3]["params"]["axis"] = {"dim": p}
        must_fail(bad)
    assert not marker.exists()


def test_file_level_errors(tmp_path):
    p = tmp_path / "x.json"
    p.write_bytes(b"\xff\xfe not utf8")
    with pytest.raises(gc.LoadError, match="UTF-8"):
        gc.load(p)
    p.write_text('{"format": "graphc", ')
    with pytest.raises(gc.LoadError, match="line 1"):
        gc.load(p)
    p.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(gc.LoadError):
        gc.load(p)
    with pytest.raises(gc.LoadError, match="cannot read"):
        gc.load(tmp_path / "missing.json")
    with pytest.raises(gc.GraphError):
        gc.save("not a graph", tmp_path / "y.json")


def test_duplicate_names_and_bad_roles(tmp_path):
    data = saved(tmp_path)
    bad = copy.deepcopy(data)
    bad["nodes"][2]["name"] = "x"
    must_fail(bad, "nodes[2].name", "already the name")
    bad = copy.deepcopy(data)
    bad["nodes"][2]["role"] = "backward"
    must_fail(bad, "role")
    bad = copy.deepcopy(data)
    bad["nodes"][2]["params"] = {"eval": "1"}
    must_fail(bad, "params", "no parameters")
    bad = copy.deepcopy(data)
    bad["nodes"][3]["params"]["keepdims"] = 1
    must_fail(bad, "params.keepdims", "expected a bool")


# -- fuzz: mutated files give a graph or a LoadError, nothing else --------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False,
                                                                    allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["n", "float64", "sum", "input", "2*n", "grad"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["dim", "dtype", "slice", "axis", "shape", "data", "op"]), inner,
        max_size=2), max_leaves=6)

BASE = None


def base_data():
    global BASE
    if BASE is None:
        g = gc.Graph("fuzz")
        x = g.input("x", shape=("n", 3))
        with g.scope("s"):
            y = gc.softmax(x * g.constant(np.arange(3.0)))[:, 1:]
        gc.grad(gc.sum(gc.log(y + 2.0)), x)
        BASE = json.loads(gjson.dumps(g))
    return copy.deepcopy(BASE)


def paths(v, prefix=()):
    yield prefix
    if isinstance(v, dict):
        for k, x in v.items():
            yield from paths(x, (*prefix, k))
    elif isinstance(v, list):
        for k, x in enumerate(v):
            yield from paths(x, (*prefix, k))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_data_only_raises_load_error(data):
    doc = base_data()
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(list(paths(doc))[1:]))
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        action = data.draw(st.sampled_from(["replace", "delete", "duplicate"]))
        if action == "replace":
            parent[where[-1]] = data.draw(JSON_VALUES)
        elif action == "delete":
            del parent[where[-1]]
        elif isinstance(parent, list):
            parent.insert(where[-1], copy.deepcopy(parent[where[-1]]))
    try:
        g = gjson.from_data(doc)
    except gc.LoadError:
        return
    assert isinstance(g, gc.Graph)  # a mutation can leave a valid graph (say a new name)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_fuzz_mutated_bytes_only_raise_load_error(data):
    raw = bytearray(json.dumps(base_data()).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        k = data.draw(st.integers(0, len(raw) - 1))
        raw[k] = data.draw(st.integers(0, 255))
    try:
        gjson.loads(bytes(raw))
    except gc.LoadError:
        pass


def test_a_loop_in_a_version_2_file_is_refused_and_version_3_round_trips(tmp_path):
    g = gc.Graph("loops")
    x = g.input("x", shape=(3,))
    hT, ys = gc.scan(lambda h, t: (gc.tanh(h + t), h.sum()), x, g.constant(np.ones((4, 3))))
    path = tmp_path / "loop.json"
    gc.save(g, path)
    data = json.loads(path.read_text())
    assert data["version"] == 3
    must_fail({**data, "version": 2}, "scan needs a version 3 file, this one is 2")
    g2 = gc.load(path)
    xv = np.array([0.1, -0.2, 0.3])
    want, h = [], xv
    for _ in range(4):
        want.append(h.sum())
        h = np.tanh(h + 1.0)
    got = gc.function([g2["x"]], [g2.nodes[hT.index], g2.nodes[ys.index]])(xv)
    np.testing.assert_allclose(got[0], h, rtol=1e-15)
    np.testing.assert_allclose(got[1], want, rtol=1e-15)
