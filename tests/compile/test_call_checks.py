"""Evaluation: inputs checked at call time, outputs fresh, intermediates released."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


@pytest.fixture
def net():
    g = gc.Graph()
    X = g.input("X", shape=("batch", 3))
    y = g.input("y", shape=("batch",))
    W = g.input("W", shape=(3,), dtype="float32")
    z = gc.mean(gc.square(X @ gc.cast(W, "float64") - y))
    return g, X, y, W, z


@pytest.mark.parametrize("call, message", [
    (lambda f: f(np.ones((2, 3)), np.ones(2)), "missing input 'W'"),
    (lambda f: f(np.ones((2, 3)), np.ones(2), np.ones(3, np.float32), 1), "4 positional"),
    (lambda f: f(np.ones((2, 3)), np.ones(2), W=np.ones(3, np.float32), V=1), "unknown input 'V'"),
    (lambda f: f(np.ones((2, 3)), np.ones(2), np.ones(3, np.float32), X=1), "both"),
    (lambda f: f(np.ones(3), np.ones(2), np.ones(3, np.float32)), "'X': expected rank 2"),
    (lambda f: f(np.ones((2, 4)), np.ones(2), np.ones(3, np.float32)), "axis 1 is 4, not 3"),
    (lambda f: f(np.ones((2, 3)), np.ones(5), np.ones(3, np.float32)),
     "dimension batch is 2 .*'X'.* length 5"),
    (lambda f: f(np.ones((2, 3)), np.ones(2), np.ones(3)),
     "'W': expected dtype float32, got float64"),
    (lambda f: f(np.ones((2, 3)), np.array(["a", "b"]), np.ones(3, np.float32)), "'y'"),
])
def test_bad_calls_raise_input_error_naming_the_input(net, call, message):
    g, X, y, W, z = net
    f = gc.function([X, y, W], z)
    with pytest.raises(gc.InputError, match=message):
        call(f)
    # the function stays usable after a failed call
    assert float(f(np.ones((2, 3)), np.full(2, 3.0), np.ones(3, np.float32))) == 0.0


def test_python_lists_and_ints_are_accepted_where_they_cast(net):
    g, X, y, W, z = net
    f = gc.function([X, y, W], z)
    assert float(f(X=[[1, 1, 1]], y=[3], W=[1.0, 1.0, 1.0])) == 0.0


def test_outputs_never_alias_inputs_constants_or_each_other():
    g = gc.Graph()
    x = g.input("x", shape=(2, 2))
    c = g.constant(np.eye(2))
    f = gc.function([x], [x, x.T, c, x, gc.stop_gradient(x)])
    xv = np.arange(4.0).reshape(2, 2)
    outs = f(xv)
    for k, o in enumerate(outs):
        assert not np.shares_memory(o, xv)
        assert o.flags.writeable
        for o2 in outs[k + 1:]:
            assert not np.shares_memory(o, o2)
    outs[2][0, 0] = 7.0
    np.testing.assert_array_equal(f(xv)[2], np.eye(2))
    np.testing.assert_array_equal(xv, np.arange(4.0).reshape(2, 2))


def test_single_output_gives_an_array_and_list_gives_a_list():
    g = gc.Graph()
    x = g.input("x")
    assert isinstance(gc.function([x], x * 2.0)(1.0), np.ndarray)
    out = gc.function([x], [x * 2.0])(1.0)
    assert isinstance(out, list) and len(out) == 1


def test_every_intermediate_is_released_after_its_last_use():
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    h = x
    for _ in range(10):
        h = gc.tanh(h)
    f = gc.function([x], [h.sum()])
    import ast
    body = ast.parse(f.source).body[0].body
    # a value is released when its variable is deleted or assigned again (`a = tanh(a)`): the
    # chain holds at most the value being made and its operand, and ends holding its results
    live, most, steps = set(), 0, 0
    for s in body[1:-1]:
        if isinstance(s, ast.Assign):
            live |= {t.id for t in s.targets}
            steps += 1
        elif isinstance(s, ast.Delete):
            live -= {t.id for t in s.targets}
        most = max(most, len(live))
    returned = {n.id for n in ast.walk(body[-1]) if isinstance(n, ast.Name)}
    assert steps == 11 and most <= 2 and live <= returned and live


def test_missing_input_for_an_output_is_reported_at_compile_time():
    g = gc.Graph()
    x, y = g.input("x"), g.input("y")
    with pytest.raises(gc.GraphError, match="depends on input 'y'"):
        gc.function([x], x * y)


def test_eval_checks_its_feed_like_a_function():
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    with pytest.raises(gc.InputError, match="missing input 'x'"):
        gc.eval(x * 2.0, {})
    with pytest.raises(gc.InputError, match="unknown input 'nope'"):
        gc.eval(x * 2.0, {"nope": 1.0})
    np.testing.assert_array_equal(gc.eval(x * 2.0, {"x": [1.0, 2.0]}), [2.0, 4.0])


def test_run_time_value_errors_name_the_node():
    g = gc.Graph()
    logits = g.input("logits", shape=(2, 3))
    labels = g.input("labels", shape=(2,), dtype="int64")
    loss = gc.softmax_cross_entropy(logits, labels)
    with pytest.raises(gc.InputError, match="softmax_cross_entropy.*class ids"):
        loss.eval({logits: np.zeros((2, 3)), labels: np.array([0, 3])})


def test_check_finite_names_the_first_bad_node():
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    h = gc.log(x)
    z = (h * 2.0).sum()
    f = gc.function([x], z, check_finite=True)
    with pytest.raises(gc.NonFiniteError, match=f"{h.name}.*log.*NaN"):
        f(np.array([1.0, -1.0]))
    assert float(f(np.array([1.0, 1.0]))) == 0.0


def test_intermediate_nodes_can_be_fed_and_cut_the_graph_there():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = g.input("y", shape=(2, 3))
    b = gc.broadcast_to(x, (2, 3))
    e = gc.exp(x)
    f = gc.function([b, e, y], [gc.sum(b * y), gc.sum(gc.log(e) * y)])
    got = f(np.full((2, 3), 2.0), np.full(3, 2.0), np.ones((2, 3)))
    assert float(got[0]) == 12.0
    assert float(got[1]) == pytest.approx(6 * np.log(2.0), rel=1e-15)


def test_size_check_remembered_per_shape_still_refuses_new_shapes():
    """A Function checks each symbolic size once per input shapes: a shape that passed is not
    checked again, a new one is, and the error names the same node either way."""
    g = gc.Graph()
    x = g.input("x", shape=("n",))
    tail = x[5:]
    mid = tail[1:]  # size n - 6, first held by `mid`
    f = gc.function([x], [(tail * tail).sum(), (mid * mid).sum()])
    assert f._sized == [x, tail, mid]  # one node per symbolic size, not every node
    for _ in range(2):
        np.testing.assert_allclose(f(np.ones(7)), [2.0, 1.0])
        with pytest.raises(gc.InputError, match=f"{tail.name}.*n >= 5; n is 4"):
            f(np.ones(4))
        with pytest.raises(gc.InputError, match=f"{mid.name}.*n >= 6; n is 5"):
            f(np.ones(5))
        with pytest.raises(gc.InputError, match="n >= 6; n is 5"):
            f([1.0] * 5)  # not an ndarray: checked, never remembered
    assert f._sized_ok == {((7,),)}
