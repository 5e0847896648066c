"""An op is declared once: its flags and hooks live on its class, and an op declared outside
the library (one class) works in jacobian, hessian, the cost model and to_sympy without an
entry in any table. Also scatter_add, the compiler's op: registered, so the compiled graph of
a gradient saves, loads and is differentiated again."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.autodiff.second_order import flops
from graphc.ir.op import OPS, Op, has_hook
from graphc.ops import symbolic
from graphc.ops.scatter import ScatterAdd
from graphc.rewrite import RULES
from tests.ops.test_coverage import builtin_ops


def flagged(flag: str) -> set[str]:
    return {name for name, cls in builtin_ops().items() if getattr(cls, flag)}


def test_flags_declared_on_the_op_classes():
    """The sets the string-keyed tables held (rewrite/algebra.py, fold.py, patterns.py and
    export/dot.py before issue 13) are now the ops' own flags, unchanged."""
    assert flagged("bounded") == {"tanh", "sigmoid", "sin", "cos", "sign", "softmax",
                                  "one_hot", "eye_like", "zeros_like", "ones_like",
                                  # issue 15
                                  "arctan", "arctan2", "erf", "erfc", "zeros", "ones", "full",
                                  "eye", "matrix_mask"}
    assert flagged("finite_preserving") == {"neg", "abs", "where", "cast", "broadcast_to",
                                            "reshape", "transpose", "expand_dims", "squeeze",
                                            "getitem",
                                            # issue 15
                                            "erf", "erfc", "floor", "ceil", "round", "clip",
                                            "pad", "tile", "repeat", "flip", "roll", "triu",
                                            "tril", "sort", "permute_along", "zeros", "ones",
                                            "full", "eye", "arange", "linspace"}
    assert flagged("shape_only") == {"zeros_like", "ones_like", "eye_like", "count",
                                     # issue 15: constants made from a shape
                                     "zeros", "ones", "full", "eye", "arange", "linspace",
                                     "matrix_mask"}
    assert flagged("rearranges") == {"broadcast_to", "reshape", "expand_dims", "squeeze",
                                     "transpose",
                                     # issue 15
                                     "tile", "repeat", "flip", "roll", "sort", "permute_along"}
    assert flagged("commutative") == {"add", "mul", "maximum", "minimum", "equal",
                                      "not_equal", "add_n",
                                      # issue 15
                                      "hypot", "logaddexp"}
    assert flagged("pure") == set(builtin_ops())
    assert {"add", "sub", "neg", "sum", "reshape", "getitem", "add_n", "concatenate",
            "scatter_index", "scatter_add"} <= flagged("linear")
    assert not flagged("linear") & {"mul", "matmul", "div", "exp"}


def test_every_builtin_op_batches_by_its_own_rule():
    """No built-in op falls back to running row by row in jacobian and hessian."""
    loose = {name for name, cls in builtin_ops().items()
             if not (has_hook(cls, "batch") or cls.elementwise)}
    assert loose == {"input", "constant",  # leaves: never batched
                     "zeros", "ones", "full", "eye", "arange", "linspace"}  # made from a shape


def test_rewrite_rules_name_their_ops_by_class():
    for r in RULES:
        assert r.ops is None or all(isinstance(c, type) and issubclass(c, Op) for c in r.ops), \
            r.name


# -- an op declared outside the library: one class -------------------------------------------
@gc.register
@dataclasses.dataclass(frozen=True)
class Flip(Op):
    """Reverse the entries along `axis`: linear, its own adjoint. No batching rule and no cost
    rule of its own: the defaults carry it through jacobian, hessian and the cost model."""

    name: ClassVar[str] = "decl_flip"
    linear: ClassVar[bool] = True
    sympy = symbolic.run_forward
    axis: int = 0

    def infer(self, x):
        return x.shape, x.dtype

    def forward(self, x):
        return np.flip(x, self.axis)

    def bprop(self, inputs, out, g, i):
        return gc.apply(self, g)

    def jvp(self, inputs, out, t, i):
        return gc.apply(self, t)


@gc.register
@dataclasses.dataclass(frozen=True)
class Cube(Op):
    """x**3 entry by entry, declared `elementwise`: batched by broadcasting, not row by row."""

    name: ClassVar[str] = "decl_cube"
    elementwise: ClassVar[bool] = True

    def infer(self, x):
        return x.shape, x.dtype

    def forward(self, x):
        return x**3

    def bprop(self, inputs, out, g, i):
        return g * 3.0 * gc.square(inputs[0])

    jvp = bprop


def test_a_linear_op_without_a_batching_rule_works_in_jacobian_and_hessian():
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    y = gc.apply(Flip(), gc.sin(x)) * x
    at = np.array([0.3, -1.2, 0.8, 2.0])
    # y_i = sin(x_{3-i}) x_i: sin(x_{3-i}) on the diagonal, cos(x_{3-i}) x_i on the other one
    want_j = np.diag(np.sin(at[::-1])) + np.eye(4)[::-1] * (np.cos(at[::-1]) * at)[:, None]
    for mode in ("forward", "reverse"):
        J = gc.jacobian(y, x, mode=mode)
        np.testing.assert_allclose(J.eval({x: at}), want_j, rtol=1e-12, atol=1e-12)
    z = gc.sum(y * y)
    H = gc.hessian(z, x)
    eps = 1e-6
    grad_f = gc.function([x], gc.grad(z, x))
    fd = np.stack([(grad_f(at + eps * e) - grad_f(at - eps * e)) / (2 * eps) for e in np.eye(4)])
    np.testing.assert_allclose(H.eval({x: at}), fd, rtol=1e-6, atol=1e-6)


def test_an_elementwise_op_batches_by_broadcasting():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    before = len(g.nodes)
    J = gc.jacobian(gc.apply(Cube(), x), x, mode="forward")
    np.testing.assert_allclose(J.eval({x: np.array([1.0, 2.0, -1.0])}),
                               np.diag([3.0, 12.0, 3.0]))
    assert not any(n.op.name == "stack" for n in g.nodes[before:])  # not row by row


def test_default_cost_and_sympy_hooks():
    g = gc.Graph()
    x = g.input("x", shape=(2, 3))
    y = gc.apply(Flip(1), x)
    assert flops(y) == 12.0  # entries read and written
    assert flops(gc.apply(Cube(), x)) == 12.0
    assert gc.to_sympy(y).tolist() == [[sympy.Symbol(f"x[{i}, {j}]", real=True)
                                        for j in (2, 1, 0)] for i in (0, 1)]
    with pytest.raises(gc.GraphError, match=r"decl_cube.*sympy\(node, \*args\)"):
        gc.to_sympy(gc.apply(Cube(), x))
    with pytest.raises(gc.GraphError, match=r"decl_cube has no 'sympy' hook.*Cube\.sympy"):
        Cube().sympy(None)


def test_an_elementwise_subclass_without_a_formula_names_the_hook():
    @dataclasses.dataclass(frozen=True)
    class Twice(gc.ops.base.Elementwise):
        name: ClassVar[str] = "decl_twice"
        fn = staticmethod(lambda x: 2 * x)

    g = gc.Graph()
    x = g.input("x")
    with pytest.raises(gc.GraphError, match="decl_twice has no 'formula' hook"):
        gc.to_sympy(gc.apply(Twice(), x))


# -- scatter_add ---------------------------------------------------------------------------
def rosenbrock(n: int):
    g = gc.Graph("rosenbrock")
    x = g.input("x", (n,))
    z = gc.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1.0 - x[:-1]) ** 2.0)
    return g, x, z


def test_scatter_add_is_a_registered_op():
    assert OPS["scatter_add"] is ScatterAdd
    assert gc.rewrite.scatter.ScatterAdd is ScatterAdd  # the rewrite builds the registered op


def test_saved_gradient_function_graph_loads_and_computes_the_same(tmp_path, rng):
    from scipy.optimize import rosen_der, rosen_hess

    g, x, z = rosenbrock(6)
    dx = gc.grad(z, x)
    f = gc.function([x], [z, dx])
    assert "scatter_add" in [n.op.name for n in f.graph.nodes]
    g2 = gc.load(gc.save(f.graph, tmp_path / "f.graph.json"))
    x2, z2, dx2 = g2["x"], g2[z.name], g2[dx.name]
    f2 = gc.function([x2], [z2, dx2])
    at = rng.uniform(-1, 1, 6)
    for a, b in zip(f(at), f2(at)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(f2(at)[1], rosen_der(at), rtol=1e-12)
    # the loaded graph is differentiated again: scatter_add's bprop, jvp and batching rule
    for mode in ("forward", "reverse"):
        H = gc.jacobian(dx2, x2, mode=mode)
        np.testing.assert_allclose(H.eval({x2: at}), rosen_hess(at), rtol=1e-10, atol=1e-10)
    # and written in sympy: the gradient of the formula
    s = sympy.symbols("s0:6", real=True)
    formula = sum(100 * (s[k + 1] - s[k] ** 2) ** 2 + (1 - s[k]) ** 2 for k in range(5))
    got = gc.to_sympy(dx2, symbols={x2: sympy.Array(s)})
    assert all(sympy.expand(got[k] - sympy.diff(formula, s[k])) == 0 for k in range(6))


def test_scatter_add_checks_its_terms():
    g = gc.Graph()
    like, w = g.input("like", shape=(4, 3)), g.input("w", shape=(2, 3))
    with pytest.raises(gc.ShapeError, match="does not fit its index"):
        gc.apply(ScatterAdd(0, ((slice(0, 3),),)), like, w)
    with pytest.raises(gc.ShapeError, match="not of the result's shape"):
        gc.apply(ScatterAdd(1, ()), like, w)
    with pytest.raises(gc.ShapeError, match="2 terms given, expected 0 dense and 1"):
        gc.apply(ScatterAdd(0, ((slice(0, 2),),)), like, w, w)
