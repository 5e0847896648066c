"""Nodes with several outputs (`split`, `slogdet`): one apply node, one `output` view per
result, through grad, jvp, second order, compilation, rewriting, files and drawings."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphc as gc
from graphc.ir.op import Output


@pytest.fixture
def mats(rng):
    a = np.eye(3) + 0.3 * rng.standard_normal((3, 3))
    return a


def slogdet_graph():
    g = gc.Graph("slogdet")
    a = g.input("a", shape=(3, 3))
    sign, logdet = gc.linalg.slogdet(a)
    return g, a, sign, logdet


def test_split_returns_views_of_one_node():
    g = gc.Graph()
    x = g.input("x", shape=(5, 2))
    parts = gc.split(x, [1, 3])
    assert [p.shape for p in parts] == [(1, 2), (2, 2), (2, 2)]
    assert all(isinstance(p.op, Output) for p in parts)
    assert len({p.inputs[0] for p in parts}) == 1
    assert [n.op.name for n in g.nodes] == ["input", "split", "output", "output", "output"]
    xv = np.arange(10.0).reshape(5, 2)
    for p, want in zip(parts, np.split(xv, [1, 3])):
        np.testing.assert_array_equal(p.eval({x: xv}), want)


@pytest.mark.parametrize("pick", ["first", "second", "both"])
def test_split_grad_from_any_subset_of_outputs(pick, rng):
    g = gc.Graph()
    x = g.input("x", shape=(6,))
    a, b = gc.split(x, 2)
    z = {"first": lambda: gc.sin(a).sum(), "second": lambda: (b * b).sum(),
         "both": lambda: (gc.sin(a) * b).sum()}[pick]()
    assert gc.check_grad(z, x, at={x: rng.standard_normal(6)}, order=2) < 1e-6


@pytest.mark.parametrize("pick", ["sign", "logdet", "both"])
def test_slogdet_grad_from_any_subset_of_outputs(pick, mats):
    g, a, sign, logdet = slogdet_graph()
    z = {"sign": lambda: sign * 2.0, "logdet": lambda: logdet,
         "both": lambda: sign * logdet}[pick]()
    assert gc.check_grad(z, a, at={a: mats}, order=2) < 1e-6
    ga = gc.grad(z, a).eval({a: mats})
    want = {"sign": 0 * mats, "logdet": np.linalg.inv(mats).T,
            "both": np.sign(np.linalg.det(mats)) * np.linalg.inv(mats).T}[pick]
    np.testing.assert_allclose(ga, want, atol=1e-12)


def test_jvp_gives_a_tangent_per_output(mats, rng):
    g, a, sign, logdet = slogdet_graph()
    v = rng.standard_normal((3, 3))
    ts, tl = gc.jvp([sign, logdet], a, v)
    np.testing.assert_allclose(tl.eval({a: mats}), np.trace(np.linalg.solve(mats, v)))
    assert ts.eval({a: mats}) == 0.0


def test_hvp_jacobian_hessian_through_slogdet(mats, rng):
    g, a, sign, logdet = slogdet_graph()
    inv = np.linalg.inv(mats)
    want = -np.einsum("jk,li->ijkl", inv, inv)  # d2 log|det A| / dA_ij dA_kl
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(gc.hessian(logdet, a, mode=mode).eval({a: mats}), want,
                                   atol=1e-10)
    v = rng.standard_normal((3, 3))
    np.testing.assert_allclose(gc.hvp(logdet, a, v).eval({a: mats}),
                               np.einsum("ijkl,kl->ij", want, v), atol=1e-10)
    J = gc.jacobian(gc.linalg.inv(a), a).eval({a: mats})
    np.testing.assert_allclose(J, -np.einsum("ik,lj->ijkl", inv, inv), atol=1e-10)


def test_hessian_through_split(rng):
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    a, b = gc.split(x, 2)
    z = (a * a * b).sum()
    xv = rng.standard_normal(4)
    H = gc.hessian(z, x).eval({x: xv})
    want = np.zeros((4, 4))
    for i in range(2):
        want[i, i] = 2 * xv[2 + i]
        want[i, 2 + i] = want[2 + i, i] = 2 * xv[i]
    np.testing.assert_allclose(H, want)
    J = gc.jacobian(b * 2.0, x).eval({x: xv})
    np.testing.assert_allclose(J, np.hstack([np.zeros((2, 2)), 2 * np.eye(2)]))


def test_compiled_once_and_unpacked(mats):
    g, a, sign, logdet = slogdet_graph()
    ga = gc.grad(logdet, a)
    f = gc.function([a], [sign, logdet, ga])
    s, ld, gav = f(mats)
    ws, wld = np.linalg.slogdet(mats)
    assert s == ws and ld == pytest.approx(wld)
    np.testing.assert_allclose(gav, np.linalg.inv(mats).T)
    calls = [line for line in f.source.splitlines() if "# slogdet" in line]
    assert len(calls) == 1 and calls[0].split("=")[0].count(",") == 1  # `s, ld = ...`


def test_unused_output_is_dropped_and_the_others_work(rng):
    g = gc.Graph()
    x = g.input("x", shape=(6,))
    a, b, c = gc.split(x, 3)
    f = gc.function([x], [c * 2.0])
    assert "output" in [n.op.name for n in f.graph.nodes]
    assert sum(n.op.name == "output" for n in f.graph.nodes) == 1
    assert "_, _," in f.source
    xv = rng.standard_normal(6)
    np.testing.assert_allclose(f(xv)[0], xv[4:] * 2.0)
    # an output returned as it is does not alias the input
    out = gc.function([x], [a])(xv)[0]
    out[:] = 0.0
    assert xv[0] != 0.0 or xv[1] != 0.0


def test_two_identical_applications_merge(rng):
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    a1, b1 = gc.split(x, 2)
    a2, b2 = gc.split(x, 2)
    f = gc.function([x], [a1 * b2, a2 + b1])
    assert sum(n.op.name == "split" for n in f.graph.nodes) == 1
    xv = rng.standard_normal(4)
    p, q = f(xv)
    np.testing.assert_allclose(p, xv[:2] * xv[2:])
    np.testing.assert_allclose(q, xv[:2] + xv[2:])


def test_check_finite_and_unoptimized(mats):
    g, a, sign, logdet = slogdet_graph()
    for kw in ({"check_finite": True}, {"optimize": False}):
        s, ld = gc.function([a], [sign, logdet], **kw)(mats)
        assert (s, ld) == pytest.approx(tuple(np.linalg.slogdet(mats)))


def test_save_load_round_trip_writes_the_current_version(tmp_path, mats):
    g, a, sign, logdet = slogdet_graph()
    x = g.input("x", shape=(4,))
    p, q = gc.split(x, [1])
    gc.grad(logdet, a)
    path = tmp_path / "multi.json"
    gc.save(g, path)
    data = json.loads(path.read_text())
    assert data["version"] == 3  # version 2 added multi-output nodes; 3, loops
    entry = next(e for e in data["nodes"] if e["op"] == "slogdet")
    assert entry["outputs"] == [{"shape": [], "dtype": "float64"}] * 2 and "shape" not in entry
    h = gc.load(path)
    assert [n.op.name for n in h.nodes] == [n.op.name for n in g.nodes]
    hv = gc.function([h["a"]], [h[sign.name], h[logdet.name]])(mats)
    assert tuple(hv) == pytest.approx(tuple(np.linalg.slogdet(mats)))
    assert h[q.name].shape == (3,) and h[p.name].shape == (1,)


def test_version_1_files_still_load(tmp_path):
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    gc.exp(x).sum()
    path = tmp_path / "v1.json"
    gc.save(g, path)
    data = json.loads(path.read_text())
    assert data["version"] == 3  # version 2 added multi-output nodes; 3, loops
    path.write_text(json.dumps({**data, "version": 1}))  # a file of the previous release
    assert len(gc.load(path).nodes) == 3


def test_a_version_1_file_cannot_hold_outputs(tmp_path):
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    gc.split(x, 2)
    gc.save(g, tmp_path / "v2.json")
    data = json.loads((tmp_path / "v2.json").read_text())
    data["version"] = 1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(gc.LoadError, match="outputs"):
        gc.load(path)


def test_drawing_and_debugprint_show_every_output():
    g, a, sign, logdet = slogdet_graph()
    dot = gc.to_dot(g)
    assert "slogdet" in dot and "[0] ()" in dot and "[1] ()" in dot
    assert "box3d" in dot and "output(index=0)" in dot and "output(index=1)" in dot
    text = gc.debugprint([sign, logdet])
    assert "slogdet -> [0] () | [1] ()" in text
    assert "slogdet_1[0]: output(index=0)" in text and "slogdet_1[1]: output(index=1)" in text


def test_to_sympy_writes_each_output():
    import sympy

    g = gc.Graph()
    a = g.input("a", shape=(2, 2))
    sign, logdet = gc.linalg.slogdet(a)
    x = g.input("x", shape=(3,))
    p, q = gc.split(x, [1])
    exprs = gc.to_sympy([logdet, q])
    a00, a01, a10, a11 = (gc.to_sympy(a)[i, j] for i in (0, 1) for j in (0, 1))
    assert sympy.simplify(exprs[0] - sympy.log(sympy.Abs(a00 * a11 - a01 * a10))) == 0
    assert [str(e) for e in exprs[1]] == ["x[1]", "x[2]"]


def test_bad_multi_output_jvp_is_named(rng):
    from graphc.ops.shape import Split

    class BadSplit(Split):
        def jvp(self, inputs, outs, t, i):
            return t  # not a list

    g = gc.Graph()
    x = g.input("x", shape=(4,))
    t = g.apply(BadSplit((2,), 0), [x])
    a, _ = g.views(t)
    with pytest.raises(gc.GraphError, match="list of 2 tangents"):
        gc.jvp(a, x, np.ones(4))
