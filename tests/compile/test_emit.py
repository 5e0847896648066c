"""Code generation as plan + emit: ops declare their own emission, backends are one class each.

An op's class says how the NumPy backend writes it (`ufunc`, `ufunc_operands`, `fresh`,
`emit_numpy`) and how a fused kernel does (`scalar`); a subclass that changes `forward` never
inherits a form that computes the old thing; a backend is chosen by name, and a second one is
a `Backend` subclass, not a copy of `generate`.
"""

import dataclasses
from typing import ClassVar

import numpy as np
import pytest

import graphc as gc
from graphc.compile import codegen, emit, fusion
from graphc.compile.numpy_backend import NumpyBackend
from graphc.compile.schedule import make_schedule
from graphc.ops.elementwise import Exp


@dataclasses.dataclass(frozen=True)
class Hypot(gc.Op):
    """sqrt(x**2 + y**2), declared once with its NumPy ufunc and its scalar form."""

    name: ClassVar[str] = "test_hypot"
    arity: ClassVar[int] = 2
    ufunc: ClassVar[np.ufunc] = np.hypot
    scalar: ClassVar[str] = "np.hypot({0}, {1})"

    def infer(self, x, y):
        return x.shape, x.dtype

    def forward(self, x, y):
        return np.hypot(x, y)


@dataclasses.dataclass(frozen=True)
class HalfHypot(Hypot):
    """Overrides forward: the inherited ufunc and scalar form no longer describe it."""

    name: ClassVar[str] = "test_half_hypot"

    def forward(self, x, y):
        return 0.5 * np.hypot(x, y)


@dataclasses.dataclass(frozen=True)
class Doubled(gc.Op):
    """A special form through `emit_numpy`, declining (None) for float32."""

    name: ClassVar[str] = "test_doubled"

    def infer(self, x):
        return x.shape, x.dtype

    def forward(self, x):
        return x + x

    def emit_numpy(self, node, args, ctx):
        if node.dtype == np.float32:
            return None
        return f"np.multiply({args[0]}, {ctx.bind('_two', np.float64(2.0))})"


@dataclasses.dataclass(frozen=True)
class NoForward(gc.Op):
    name: ClassVar[str] = "test_no_forward"

    def infer(self, x):
        return x.shape, x.dtype


def test_an_op_declares_its_ufunc_and_gets_out_and_fusion(rng):
    g = gc.Graph()
    x, y = g.input("x", (5,)), g.input("y", (5,))
    f = gc.function([x, y], gc.apply(Hypot(), gc.exp(x), y) * 2.0)
    assert "np.hypot(exp_" in f.source and "out=" in f.source
    v, w = rng.standard_normal(5), rng.standard_normal(5)
    np.testing.assert_allclose(f(v, w), 2.0 * np.hypot(np.exp(v), w), rtol=1e-15)
    big = g.input("big", (fusion.FUSE_MIN_SIZE,))
    node = gc.apply(Hypot(), big, big)
    assert fusion.fusible(node)
    if fusion.enabled():
        h = gc.function([big], gc.sin(node) + 1.0)
        assert "fused: test_hypot, sin, add" in h.source
        b = rng.standard_normal(fusion.FUSE_MIN_SIZE)
        np.testing.assert_allclose(h(b), np.sin(np.hypot(b, b)) + 1.0, rtol=1e-14)


def test_a_subclass_that_changes_forward_is_written_through_its_forward(rng):
    g = gc.Graph()
    x = g.input("x", (5,))
    big = g.input("big", (fusion.FUSE_MIN_SIZE,))
    assert emit.declares(Hypot(), "ufunc") and not emit.declares(HalfHypot(), "ufunc")
    assert not fusion.fusible(gc.apply(HalfHypot(), big, big))
    f = gc.function([x], gc.apply(HalfHypot(), x, x))
    assert "np.hypot" not in f.source and "_test_half_hypot_" in f.source
    v = rng.standard_normal(5)
    np.testing.assert_allclose(f(v), 0.5 * np.hypot(v, v), rtol=1e-15)
    # a library op subclassed the same way keeps its own forward too
    Twice = dataclasses.dataclass(frozen=True)(type("TwiceExp", (Exp,), {
        "forward": lambda self, a: 2.0 * np.exp(a), "__module__": __name__}))
    t = gc.function([x], gc.apply(Twice(), x))
    assert "np.exp" not in t.source
    np.testing.assert_allclose(t(v), 2.0 * np.exp(v), rtol=1e-15)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_emit_numpy_writes_the_step_or_declines_to_forward(dtype, rng):
    g = gc.Graph()
    x = g.input("x", (3,), dtype)
    f = gc.function([x], gc.apply(Doubled(), x))
    assert ("np.multiply(x, _two)" in f.source) == (dtype == "float64")
    assert ("_test_doubled_" in f.source) == (dtype == "float32")
    v = rng.standard_normal(3).astype(dtype)
    np.testing.assert_allclose(f(v), 2 * v, rtol=1e-6)


def test_an_op_without_forward_or_emission_is_named_at_compile_time():
    g = gc.Graph()
    x = g.input("x", (3,))
    with pytest.raises(gc.GraphError, match="test_no_forward.*'forward'.*NoForward.forward"):
        gc.function([x], gc.apply(NoForward(), x))


def test_the_backend_is_chosen_by_name():
    g = gc.Graph()
    x = g.input("x", (2,))
    schedule = make_schedule([x], [gc.exp(x)])
    assert emit.BACKENDS["numpy"] is NumpyBackend
    assert set(emit.BACKENDS) >= {"numpy", "array_api", "dask", "cupy"}
    assert "np.exp(x)" in codegen.generate(schedule, backend="numpy").source
    assert "xp.exp(x)" in codegen.generate(schedule, backend="array_api").source
    with pytest.raises(gc.GraphError, match="unknown code-generation backend 'tpu'.*numpy"):
        codegen.generate(schedule, backend="tpu")


class ForwardOnly(emit.Backend):
    """A second backend in a few lines: every op through its own forward, nothing in place,
    nothing fused, no fast path."""

    name: ClassVar[str] = "forward_only"
    namespace: ClassVar[dict] = {"np": np}

    def step(self, node, args, out, target, ctx):
        return [self.forward_call(node, args, ctx)]

    def buffer(self, node, tiled, ctx):
        return f"np.zeros({emit.literal(tuple(node.shape))}, np.{node.dtype.name})"

    def took(self, expression, out):
        return False

    def result(self, node, var):
        return f"np.array({var})"


def test_a_second_backend_is_one_class(rng):
    g = gc.Graph("two")
    x, W = g.input("x", (4,)), g.input("W", (3, 4, 4))
    h = x
    for k in (0, 2, 1):
        h = gc.tanh(W[k] @ h)
    z = gc.sum(h)
    outs = [z, *gc.grad(z, [W, x])]
    f = gc.function([W, x], outs)
    program = codegen.generate(f.schedule, "two", backend=ForwardOnly(), groups=[])
    assert "out=" not in program.source and "np.tanh" not in program.source
    assert all(line.strip().startswith(("def", "if", "return", "del", "pass")) or " = _" in line
               or "+=" in line for line in program.source.splitlines()), program.source
    Wv, xv = rng.standard_normal((3, 4, 4)), rng.standard_normal(4)
    got = program.fn(Wv, xv, {})
    for a, b in zip(got, f(Wv, xv)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_function_takes_a_backend_by_name_and_refuses_an_unknown_one():
    g = gc.Graph("b")
    x = g.input("x", shape=(3,))
    f = gc.function([x], gc.exp(x), backend="numpy")
    np.testing.assert_allclose(f(np.zeros(3)), np.ones(3))
    before = len(g.nodes)
    with pytest.raises(gc.GraphError, match="unknown code-generation backend 'fortran'"):
        gc.function([x], gc.sin(x), backend="fortran")
    assert len(g.nodes) == before + 1  # the sin node the user built, nothing from compiling
