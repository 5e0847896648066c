"""Graph's public API for the layers above: copies, names, membership, rollback, the cache, and
the hook behind `Node.eval`."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ir import graph as ir_graph
from graphc.rewrite import optimize


def same(a, b) -> bool:
    """The same nodes in the same order (`==` on nodes builds a node: compare identities)."""
    return len(a) == len(b) and all(p is q for p, q in zip(a, b))


def scoped_graph():
    g = gc.Graph("g")
    with g.scope("layer"):
        x = g.input("x", shape=(3,))
        with g.role("grad"):
            y = gc.exp(x)
    return g, x, y


def test_append_copy_keeps_op_shape_role_scope_and_source():
    g, x, y = scoped_graph()
    h = gc.Graph("h")
    x2 = h.append_copy(x)
    y2 = h.append_copy(y, [x2])
    assert same(h.inputs, [x2]) and same(h.nodes, [x2, y2])
    for old, new in ((x, x2), (y, y2)):
        assert (new.op, new.shape, new.dtype, new.role, new.scope, new.source, new.name) == (
            old.op, old.shape, old.dtype, old.role, old.scope, old.source, old.name)
    assert same(y2.inputs, [x2]) and y2.graph is h and y2.index == 1


def test_append_copy_names_fed_leaves_and_refusals():
    g, x, y = scoped_graph()
    h = gc.Graph("h")
    leaf = h.append_copy(y, as_input=True)  # a fed node becomes an input of its shape
    assert leaf.op.name == "input" and same(h.inputs, [leaf]) and leaf.scope == "layer"
    again = h.append_copy(y, [], as_input=True)
    assert again.name == f"{y.name}_1"  # made unique, like every name
    assert h.append_copy(y, [leaf], name="e").name == "e"
    with pytest.raises(gc.GraphError, match="must be nodes of graph 'h'"):
        h.append_copy(y, [x])
    with pytest.raises(gc.GraphError, match="exp takes 1 inputs, got 2"):
        h.append_copy(y, [leaf, leaf])
    with pytest.raises(gc.GraphError, match="takes no inputs"):
        h.append_copy(x, [leaf])
    with pytest.raises(gc.GraphError, match="must not be empty"):
        h.append_copy(y, [leaf], name="")


def test_optimize_and_compile_keep_each_nodes_scope():
    """The rewrite engine's copies keep the scope (they used to drop it)."""
    g = gc.Graph()
    with g.scope("enc"):
        x = g.input("x", shape=(3,))
        h = gc.tanh(x)
    with g.scope("dec"):
        y = (h * 2.0).sum()
    pruned = optimize([x], [y], rules=[])
    assert {n.name: n.scope for n in pruned.graph.nodes} == {n.name: n.scope for n in g.nodes}
    fed = optimize([h], [y], rules=[])  # h is fed: an input now, in its own scope still
    assert fed.inputs[0].op.name == "input" and fed.inputs[0].scope == "enc"
    assert same(fed.graph.inputs, fed.inputs)
    f = gc.function([x], y)
    assert {n.scope for n in f.graph.nodes if n.op.name == "tanh"} == {"enc"}


def test_fresh_name_get_and_membership():
    g, x, y = scoped_graph()
    other = gc.Graph()
    z = other.input("x", shape=(3,))
    assert g.fresh_name("free") == "free"
    assert g.fresh_name(x.name) == "layer/x_1"
    assert g.get("layer/x") is x and g.get("nothing") is None and g.get("nothing", 0) == 0
    assert "layer/x" in g and "x" not in g and 3 not in g
    assert x in g and y in g and z not in g and x not in other


def test_rollback_removes_nodes_inputs_names_and_refuses_bad_marks():
    g, x, y = scoped_graph()
    mark = len(g)
    v = g.input("v", shape=(3,))
    w = x * v
    g.rollback(mark)
    assert same(g.nodes, [x, y]) and same(g.inputs, [x])
    assert v not in g and w not in g and "v" not in g and w.name not in g
    assert g.input("v").name == "v"  # the name is free again
    for bad in (-1, len(g) + 1, 1.0, True, None):
        with pytest.raises(gc.GraphError, match="rollback: mark must be an int"):
            g.rollback(bad)
    g.rollback(len(g))  # nothing to remove
    assert len(g) == 3


def test_rollback_drops_only_the_cache_entries_that_refer_to_removed_nodes():
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    y = gc.exp(x)
    g.cache.put(("test", "none"), "no nodes")
    g.cache.put(("test", "x"), "x", [x])
    g.cache.put(("test", "y"), "y", [x, y])
    g.cache.put(("test", "sized"), "sizes", g.nodes[-1:])
    assert gc.eval(y, {x: np.zeros(2)}).tolist() == [1.0, 1.0]
    kept = len(g.cache)
    with g.scratch():
        s = gc.sin(y)
        g.cache.put(("test", "s"), "s", [s])
        gc.eval(s, {x: np.zeros(2)})
        assert len(g.cache) == kept + 2
    assert len(g.cache) == kept  # what referred to sin went with it; the rest stayed
    assert [g.cache.get(("test", k)) for k in ("none", "x", "y", "sized", "s")] == [
        "no nodes", "x", "y", "sizes", None]
    g.rollback(1)
    assert [g.cache.get(("test", k)) for k in ("none", "x", "y", "sized")] == [
        "no nodes", "x", None, None]
    assert g.cache.pop(("test", "x")) == "x" and ("test", "x") not in g.cache
    g.cache.clear()
    assert len(g.cache) == 0


def test_derivatives_and_eval_functions_survive_a_scratch_block():
    """A check in a scratch block (check_grad, hvp's mode choice) no longer clears the graph's
    memory: asking again for the same gradient adds no node."""
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    z = (gc.tanh(x) ** 2).sum()
    gx = gc.grad(z, x)
    n = len(g)
    gc.check_grad(z, [x], {x: np.array([0.1, 0.2, 0.3])})
    assert len(g) == n and gc.grad(z, x) is gx
    gc.hvp(z, x, g.constant(np.ones(3)))
    n = len(g)
    with g.scratch():
        gc.sin(x)
    assert gc.grad(z, x) is gx and len(g) == n


def test_node_eval_is_defined_in_the_ir_and_runs_through_the_registered_hook():
    assert "eval" in ir_graph.Node.__dict__
    g = gc.Graph()
    x = g.input("x")
    assert float((x * x).eval({x: 3.0})) == 9.0
    assert float((x * x).eval({"x": 2.0})) == 4.0
    try:
        ir_graph.set_evaluator(lambda node, feed: ("evaluated", node.name, feed))
        assert x.eval({x: 1.0}) == ("evaluated", "x", {x: 1.0})
    finally:
        ir_graph.set_evaluator(gc.eval)
    with pytest.raises(TypeError, match="expected a callable"):
        ir_graph.set_evaluator(None)
