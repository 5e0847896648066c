"""Every public function given bad input: a clear error of the documented class that names
the node or input at fault, never a NumPy traceback from deep inside. One row per case."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import graphc as gc

g = gc.Graph("g")
x = g.input("x", shape=(3,))
k = g.input("k", dtype="int64")
W = g.input("W", shape=(2, 3))
z = gc.sum(gc.tanh(W @ x))
y = W @ x
other = gc.Graph("o").input("x", shape=(3,))
s = sympy.Symbol("s")
AT = {x: np.ones(3), W: np.ones((2, 3))}
# Built once here, so each row's call is the only thing that could leave nodes behind.
positive = x > 0
double_k = gc.function([k], k * 2)
H = gc.hessian_operator(z, x, at=AT)
objective = gc.objective(z, x, at=AT)

CASES = [
    ("graph name", lambda: gc.Graph(123), gc.GraphError, "name must be a str"),
    ("negative dim", lambda: g.input("q", shape=(-1,)), gc.ShapeError, "'q'.*>= 0"),
    ("complex dtype", lambda: g.input("q", dtype="complex128"), gc.ShapeError, "complex128"),
    ("duplicate input", lambda: g.input("x"), gc.GraphError, "already has a node named 'x'"),
    ("add a str", lambda: x + "a", gc.GraphError, "got str"),
    ("nodes of two graphs", lambda: x + other, gc.GraphError, "'x' belongs to graph 'o'"),
    ("matmul shapes", lambda: x @ W, gc.ShapeError, r"matmul.*\(3,\).*\(2, 3\)"),
    ("sum axis", lambda: gc.sum(x, axis=4), gc.ShapeError, "axis 4"),
    ("reshape size", lambda: x.reshape(7), gc.ShapeError, r"\(3,\).*\(7,\)"),
    ("advanced index", lambda: x[[0, 3]], gc.ShapeError, "index 3 at position 1 is out of bounds"),
    ("truth of a node", lambda: bool(positive), gc.GraphError, "truth value"),
    ("cast to complex", lambda: gc.cast(x, "complex128"), gc.ShapeError, "complex128"),
    ("where on floats", lambda: gc.where(x, x, x), gc.ShapeError, "boolean"),
    ("labels shape", lambda: gc.softmax_cross_entropy(W, x), gc.ShapeError, r"\(2, 3\)"),
    ("grad of a number", lambda: gc.grad(3.0, x), gc.GraphError, "z must be a graph node"),
    ("grad non-scalar z", lambda: gc.grad(y, x), gc.ShapeError, "scalar.*vjp"),
    ("grad wrt integer", lambda: gc.grad(z, k), gc.GraphError, "'k' has dtype int64"),
    ("grad wrt a name", lambda: gc.grad(z, "x"), gc.GraphError, "got str"),
    ("grad wrt other graph", lambda: gc.grad(z, other), gc.GraphError, "graph 'o'"),
    ("grad option", lambda: gc.grad(z, x, disconnected="maybe"), gc.GraphError, "'maybe'"),
    ("vjp u shape", lambda: gc.vjp(y, x, np.ones(3)), gc.ShapeError, r"\(2,\).*\(3,\)"),
    ("jvp v shape", lambda: gc.jvp(y, x, np.ones(2)), gc.ShapeError, "'x'.*(3,)"),
    ("hvp v shape", lambda: gc.hvp(z, x, np.ones(4)), gc.ShapeError, "'x'.*(4,)"),
    ("hvp mode", lambda: gc.hvp(z, x, np.ones(3), mode="sideways"), gc.GraphError,
     "'sideways'"),
    ("hvp non-scalar z", lambda: gc.hvp(y, x, np.ones(3)), gc.ShapeError, "scalar"),
    ("hvp list lengths", lambda: gc.hvp(z, [x, W], [np.ones(3)]), gc.GraphError, "2 wrt"),
    ("jacobian wrt integer", lambda: gc.jacobian(y, k), gc.GraphError, "'k'"),
    ("hessian non-scalar", lambda: gc.hessian(y, x), gc.ShapeError, "scalar"),
    ("function outputs", lambda: gc.function([x], "z"), gc.GraphError, "outputs"),
    ("function input twice", lambda: gc.function([x, x], z), gc.GraphError, "'x'.*twice"),
    ("function missing input", lambda: gc.function([x], z), gc.GraphError, "input 'W'"),
    ("float into int input", lambda: double_k(1.5), gc.InputError,
     "'k'.*int64.*float64"),
    ("NaN input, check_finite", lambda: gc.function([x, W], z, check_finite=True)(
        np.array([np.nan, 1.0, 1.0]), np.ones((2, 3))), gc.NonFiniteError, "'x'"),
    ("object input", lambda: gc.function([x, W], z)(object(), np.ones((2, 3))),
     gc.InputError, "'x'.*object"),
    ("ragged input", lambda: gc.function([x, W], z)([1, [2, 3]], np.ones((2, 3))),
     gc.InputError, "'x'"),
    ("eval feed a list", lambda: gc.eval(z, [1, 2]), gc.InputError, "dict"),
    ("eval key of other graph", lambda: gc.eval(z, {other: np.ones(3)}), gc.InputError,
     "graph 'o'"),
    ("operator without a value", lambda: gc.hessian_operator(z, x, at={x: np.ones(3)}),
     gc.InputError, "'W'"),
    ("operator point shape", lambda: gc.hessian_operator(
        z, x, at={x: np.ones(4), W: np.ones((2, 3))}), gc.InputError, "'x'.*(4,)"),
    ("operator vector shape", lambda: H.matvec(np.ones(5)),
     gc.InputError, r"\(3,\).*'x'.*\(5,\)"),
    ("objective theta", lambda: objective.fun(np.ones(2)), gc.InputError,
     r"\(3,\).*'x'"),
    ("objective non-scalar", lambda: gc.objective(y, x, at=AT), gc.ShapeError, "scalar"),
    ("check_grad at", lambda: gc.check_grad(z, x, at=[1]), gc.GraphError, "`at`"),
    ("check_grad order", lambda: gc.check_grad(z, x, at=AT, order=0), gc.GraphError, "order"),
    ("to_dot of an int", lambda: gc.to_dot(123), gc.GraphError, "123"),
    ("render format", lambda: gc.render(g, "/tmp/g.xyz"), gc.GraphError, "format"),
    ("save into a folder", lambda: gc.save(g, "/"), gc.GraphError, "cannot write"),
    ("save a number", lambda: gc.save(3, "/tmp/a.json"), gc.GraphError, "Graph"),
    ("load a missing file", lambda: gc.load("/nonexistent/g.json"), gc.LoadError, "g.json"),
    ("debugprint an int", lambda: gc.debugprint(5), gc.GraphError, "int"),
    ("to_sympy an int", lambda: gc.to_sympy(5), gc.GraphError, "5"),
    ("from_sympy gamma", lambda: gc.from_sympy(sympy.gamma(s), g, {s: x}), gc.GraphError,
     "gamma"),
    ("from_sympy unmapped", lambda: gc.from_sympy(sympy.Symbol("zz") + 1, g), gc.GraphError,
     "zz"),
    ("elementwise no args", lambda: gc.elementwise("bad", s + 1, []), gc.GraphError, "'bad'"),
    ("elementwise arity", lambda: gc.elementwise("bad3", s + 1, [s])(x, x), gc.GraphError,
     "1 argument"),
]


@pytest.mark.parametrize("call, error, message", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_documented_error(call, error, message):
    n_nodes = len(g.nodes)
    with pytest.raises(error, match=message) as info:
        call()
    assert isinstance(info.value, gc.GraphcError)
    assert len(g.nodes) == n_nodes  # nothing half-built


def test_dot_of_mismatched_lengths_names_dot_not_matmul():
    g = gc.Graph()
    a, b = g.input("a", shape=(3,)), g.input("b", shape=(4,))
    with pytest.raises(gc.ShapeError) as info:
        gc.dot(a, b)
    msg = str(info.value)
    assert msg.startswith("dot of (3,) and (4,)") and "3 and 4" in msg and "matmul" not in msg
    assert "test_bad_input.py" in msg  # the user's line
    assert len(g.nodes) == 2
    A = g.input("A", shape=(2, 4))
    np.testing.assert_allclose(gc.dot(A, b).eval({A: np.ones((2, 4)), b: np.arange(4.0)}),
                               [6.0, 6.0])
