"""Derivative rules' results are checked where they are used: a bad user rule fails at once,
naming the op, the node, the input index and both shapes."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest

import graphc as gc


@dataclasses.dataclass(frozen=True)
class Scaled(gc.Op):
    """x * 3 with rules chosen by `how`: "right", or one of the ways to get them wrong."""

    name: ClassVar[str] = "scaled_rule_test"
    how: str = "right"

    def infer(self, x):
        return x.shape, x.dtype

    def forward(self, x):
        return 3.0 * x

    def bprop(self, inputs, out, g, i):
        if self.how == "shape":
            return gc.sum(g, keepdims=True).reshape((1, 1))
        if self.how == "list":
            return [g]
        if self.how == "other_graph":
            return gc.Graph("elsewhere").input("u", shape=g.shape)
        if self.how == "int":
            return gc.cast(g, "int64")
        if self.how == "number":
            return np.full(3, 3.0)  # an array: lifted to a constant
        return g * 3.0

    def jvp(self, inputs, out, t, i):
        if self.how == "shape":
            return gc.concatenate([t, t])
        return t * 3.0


def build(how):
    g = gc.Graph("rules")
    x = g.input("x", shape=(3,))
    y = gc.apply(Scaled(how), x, name="s")
    return g, x, y


def test_right_rules_pass_and_agree_with_finite_differences():
    _, x, y = build("right")
    z = gc.sum(y * y)
    at = {x: np.array([0.5, -1.0, 2.0])}
    assert gc.check_grad(z, x, at=at, modes=("reverse", "forward")) < 1e-6
    np.testing.assert_allclose(gc.grad(z, x).eval(at), 18.0 * at[x])


def test_a_number_is_lifted_to_a_constant():
    _, x, y = build("number")
    np.testing.assert_allclose(gc.grad(gc.sum(y), x).eval({x: np.zeros(3)}), [3.0, 3.0, 3.0])


@pytest.mark.parametrize("how, error, fragments", [
    ("shape", gc.ShapeError, ["scaled_rule_test.bprop", "input 0", "'s'", "(1, 1)", "(3,)"]),
    ("list", gc.GraphError, ["scaled_rule_test.bprop", "returned list"]),
    ("other_graph", gc.GraphError, ["graph 'elsewhere'"]),
    ("int", gc.GraphError, ["int64", "derivatives are floats"]),
])
def test_a_bad_bprop_is_named_where_it_is_used(how, error, fragments):
    g, x, y = build(how)
    z = gc.sum(y)
    before = len(g.nodes)
    with pytest.raises(error) as info:
        gc.grad(z, x)
    for f in fragments:
        assert f in str(info.value), str(info.value)
    assert len(g.nodes) == before  # nothing half-built is left behind


def test_a_bad_jvp_names_op_input_and_shapes():
    g, x, y = build("shape")
    with pytest.raises(gc.ShapeError) as info:
        gc.jvp(y, x, np.ones(3))
    msg = str(info.value)
    assert "scaled_rule_test.jvp" in msg and "(6,)" in msg and "(3,)" in msg
