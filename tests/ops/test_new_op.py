"""Adding an op is one class and one case: this file declares `softsign` here and nowhere
else, and it then works in every layer: gradient, jvp, HVP, jacobian, hessian, code
generation, numba fusion (it is elementwise and declares its scalar form), save/load, drawing,
debugprint and to_sympy. Every value is checked against an independent oracle (hand-derived
formulas, finite differences, sympy)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.ops.base import Elementwise
from tests.ops.cases import Case, normal

# -- the one class ------------------------------------------------------------------------


@gc.register
@dataclasses.dataclass(frozen=True)
class Softsign(Elementwise):
    """x / (1 + |x|): a smooth squashing function; derivative 1 / (1 + |x|)^2 (at 0 too)."""

    name: ClassVar[str] = "softsign_new_op"
    fn: ClassVar = staticmethod(lambda x: x / (1.0 + np.abs(x)))
    derivs: ClassVar = (lambda x, out: 1.0 / gc.square(1.0 + gc.abs(x)),)
    formula: ClassVar = staticmethod(lambda x: x / (1 + sympy.Abs(x)))
    scalar: ClassVar = "{0} / (1.0 + abs({0}))"
    bounded: ClassVar[bool] = True
    finite_preserving: ClassVar[bool] = True


def softsign(x):
    return gc.apply(Softsign(), x)


# -- the one case ---------------------------------------------------------------------------
CASE = Case("softsign_new_op", softsign, [(3, 4)], [normal], id="softsign(3, 4)")


def d1(x):
    return 1.0 / (1.0 + np.abs(x)) ** 2


def d2(x):
    return -2.0 * np.sign(x) / (1.0 + np.abs(x)) ** 3


@pytest.fixture
def setting(rng):
    g = gc.Graph("new_op")
    x = g.input("x", shape=CASE.shapes[0])
    return g, x, CASE.sample(rng, 0)


def test_gradient_and_second_order_by_finite_differences(setting, rng):
    g, x, xv = setting
    w = g.constant(rng.standard_normal(CASE.shapes[0]))
    z = gc.sum(CASE.build(x) * w)
    assert gc.check_grad(z, x, at={x: xv}, order=2, modes=("reverse", "forward")) < 1e-6
    np.testing.assert_allclose(gc.grad(z, x).eval({x: xv}), gc.eval(w) * d1(xv), rtol=1e-13)


def test_jvp_hvp_jacobian_hessian_against_hand_derived(setting, rng):
    g, x, xv = setting
    y = softsign(x)
    z = gc.sum(y)
    v = rng.standard_normal(xv.shape)
    np.testing.assert_allclose(gc.jvp(y, x, v).eval({x: xv}), d1(xv) * v, rtol=1e-13)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(gc.hvp(z, x, v, mode=mode).eval({x: xv}), d2(xv) * v,
                                   rtol=1e-12)
    J = gc.jacobian(y, x).eval({x: xv})
    np.testing.assert_allclose(J.reshape(12, 12), np.diag(d1(xv).ravel()), rtol=1e-13,
                               atol=0)
    H = gc.hessian(z, x).eval({x: xv})
    np.testing.assert_allclose(H.reshape(12, 12), np.diag(d2(xv).ravel()), rtol=1e-12,
                               atol=0)


def test_code_generation_and_fusion():
    g = gc.Graph("fused")
    x = g.input("x", shape=(64, 128))  # 8192 entries: large enough to fuse
    y = softsign(gc.exp(x) * 0.5)
    f = gc.function([x], [y, gc.grad(gc.sum(y * y), x)])
    assert "softsign_new_op" in f.source
    xv = np.random.default_rng(3).standard_normal((64, 128)) * 0.3
    u = np.exp(xv) * 0.5
    s = u / (1 + np.abs(u))
    value, grad = f(xv)
    np.testing.assert_allclose(value, s, rtol=1e-14)
    np.testing.assert_allclose(grad, 2 * s * d1(u) * u, rtol=1e-12)
    if gc.compile.fusion.enabled():
        assert "kernel" in f.source  # the op joined a numba kernel through its scalar form


def test_save_load_drawing_debugprint_and_sympy(setting, tmp_path):
    g, x, xv = setting
    y = softsign(x)
    gx = gc.grad(gc.sum(y), x)
    g2 = gc.load(gc.save(g, tmp_path / "g.json"))
    assert [n.op.label() for n in g2.nodes] == [n.op.label() for n in g.nodes]
    np.testing.assert_allclose(g2.nodes[gx.index].eval({"x": xv}), d1(xv), rtol=1e-13)
    assert "softsign_new_op" in gc.to_dot(g)
    assert "softsign_new_op" in gc.debugprint(gx)
    t = sympy.Symbol("t", real=True)
    h = gc.Graph("s")
    s = h.input("s")
    expr = gc.to_sympy(softsign(s), {s: t})
    assert sympy.simplify(expr - t / (1 + sympy.Abs(t))) == 0
