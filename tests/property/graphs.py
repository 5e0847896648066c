"""A hypothesis strategy for random well-typed graphs.

A graph is drawn as a small program over four inputs of broadcastable shapes: each step applies
an op from the table to earlier nodes (so subexpressions are shared), steps whose shapes do not
fit are skipped (the ShapeError is part of what is exercised), and several nodes become outputs.
Every op is smooth on the whole real line here, so finite differences are valid everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import graphc as gc

INPUT_SHAPES = {"a": (3, 4), "b": (4,), "c": (3, 1), "s": ()}

UNARY = {
    "sin": gc.sin, "cos": gc.cos, "tanh": gc.tanh, "sigmoid": gc.sigmoid,
    "softplus": gc.softplus, "square": gc.square, "neg": lambda x: -x,
    "exp_tanh": lambda x: gc.exp(gc.tanh(x)),
    "log1p_square": lambda x: gc.log1p(gc.square(x)),
    "sqrt_1p_square": lambda x: gc.sqrt(1.0 + gc.square(x)),
    "logsumexp": lambda x: gc.logsumexp(x) if x.ndim else x,
    "softmax": lambda x: gc.softmax(x) if x.ndim else x,
    "sum0": lambda x: gc.sum(x, axis=0) if x.ndim else x,
    "mean": lambda x: x.mean(),
    "T": lambda x: x.T,
    "expand": lambda x: gc.expand_dims(x, 0),
    "slice": lambda x: x[1:] if x.ndim and x.shape[0] > 1 else x,
}
BINARY = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / (1.5 + gc.sin(y)),
    "pow": lambda x, y: (1.0 + gc.square(x)) ** gc.tanh(y),
    "matmul": lambda x, y: x @ y,
    "concat": lambda x, y: gc.concatenate([x, y], axis=-1),
    "stack": lambda x, y: gc.stack([x, y]),
    "where": lambda x, y: gc.where(gc.stop_gradient(x) > 100.0, y, x),
}


@dataclass
class RandomGraph:
    graph: gc.Graph
    inputs: list
    outputs: list
    program: list  # (op name, operand indices): what hypothesis shrinks, printed on failure

    def values(self, rng):
        return {x: rng.standard_normal(INPUT_SHAPES[x.name]) for x in self.inputs}

    def loss(self):
        """A scalar from all outputs with fixed random weights (a random cotangent)."""
        g = self.graph
        rng = np.random.default_rng(len(self.program))
        terms = [gc.sum(o * g.constant(rng.standard_normal(_static(o.shape))))
                 for o in self.outputs]
        return gc.add_n(terms)


def _static(shape):
    return tuple(int(d) for d in shape)


@st.composite
def random_graphs(draw, max_steps: int = 8) -> RandomGraph:
    g = gc.Graph("random")
    inputs = [g.input(name, shape=shape) for name, shape in INPUT_SHAPES.items()]
    nodes = list(inputs)
    program = []
    n_steps = draw(st.integers(1, max_steps))
    for _ in range(n_steps):
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(UNARY)))
            k = draw(st.integers(0, len(nodes) - 1))
            build, operands = UNARY[name], [nodes[k]]
        else:
            name = draw(st.sampled_from(sorted(BINARY)))
            k1 = draw(st.integers(0, len(nodes) - 1))
            k2 = draw(st.integers(0, len(nodes) - 1))
            build, operands = BINARY[name], [nodes[k1], nodes[k2]]
        try:
            node = build(*operands)
        except gc.ShapeError:
            continue
        program.append((name, tuple(n.name for n in operands)))
        if node is not operands[0]:
            nodes.append(node)
    made = nodes[len(inputs):] or nodes
    n_out = draw(st.integers(1, min(3, len(made))))
    picks = draw(st.lists(st.integers(0, len(made) - 1), min_size=n_out, max_size=n_out,
                          unique=True))
    return RandomGraph(g, inputs, [made[k] for k in picks], program)
