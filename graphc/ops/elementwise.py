"""Elementwise ops: one stanza each, with the derivative d out / d input as a graph rule.

Conventions at points where the derivative does not exist (documented in docs/ops.md):
relu'(0) = 0, abs'(0) = sign(0) = 0, sign' = 0, maximum/minimum split a tie 1/2 : 1/2,
d(x**y)/dy uses log(x) for x > 0 and 0 elsewhere; floor, ceil and round let no gradient
through (their derivative is 0 wherever it exists); d mod(x, y) = (1, -floor(x / y)); clip's
gradient goes to x strictly inside (lo, hi) and to the bound whose value the result takes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import scipy.special
import sympy

from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.ir.op import Op, register
from graphc.ir.params import DTYPE, param
from graphc.ops import symbolic
from graphc.ops.base import (
    MINUS_ONE,
    ONE,
    all_batched,
    atomic,
    build,
    elementwise_op,
    graph_of,
    lift,
)

# stanza: E(name, numpy forward, [d out/d x_i rules], why, formula=the op on sympy scalars,
# scalar=the op in a fused kernel, flags), the flags those of graphc.ir.op.Op (bounded, linear,
# commutative, ...); a forward that is a NumPy ufunc is the op's `ufunc` in generated code.
# simd_ufunc=True where NumPy's float64 loop is SIMD and numba's is a libm call per entry
# (measured, ns per entry at 2**17: exp 0.8 vs 7.4, log 0.8 vs 6.7, log1p 1.0 vs 17, expm1
# 1.4 vs 19, tan 1.3 vs 30, tanh 1.7 vs 14, pow 6.8 vs 32); sin, cos, sigmoid, softplus and
# sqrt are as fast or faster in a kernel, so they stay fusible
E = elementwise_op

# -- unary ---------------------------------------------------------------------------------
Neg = E("neg", np.negative, [lambda x, y: MINUS_ONE], "-x; linear.",
        formula=lambda x: -x, scalar="-{0}", linear=True, finite_preserving=True)
Exp = E("exp", np.exp, [lambda x, y: y], "e**x; its own derivative, reused from the output.",
        formula=sympy.exp, scalar="np.exp({0})", simd_ufunc=True)
Log = E("log", np.log, [lambda x, y: 1.0 / x], "Natural log; domain x > 0.", formula=sympy.log,
        scalar="np.log({0})", simd_ufunc=True)
Log1p = E("log1p", np.log1p, [lambda x, y: 1.0 / (1.0 + x)],
          "log(1 + x), accurate for small x; domain x > -1.", formula=lambda x: sympy.log(1 + x),
          scalar="np.log1p({0})", simd_ufunc=True)
Expm1 = E("expm1", np.expm1, [lambda x, y: y + 1.0], "e**x - 1, accurate for small x.",
          formula=lambda x: sympy.exp(x) - 1, scalar="np.expm1({0})", simd_ufunc=True)
Sqrt = E("sqrt", np.sqrt, [lambda x, y: 0.5 / y], "Square root; derivative infinite at 0.",
         formula=sympy.sqrt, scalar="np.sqrt({0})")
Square = E("square", np.square, [lambda x, y: 2.0 * x], "x*x as one op.",
           formula=lambda x: x**2, scalar="{0} * {0}")
Abs = E("abs", np.abs, [lambda x, y: sign(x)], "|x|; abs'(0) = sign(0) = 0.",
        formula=sympy.Abs, scalar="np.abs({0})", finite_preserving=True)
Sign = E("sign", np.sign, [None], "-1, 0 or 1; derivative 0 everywhere it exists.",
         formula=sympy.sign, scalar="np.sign({0})", bounded=True)
Sin = E("sin", np.sin, [lambda x, y: cos(x)], "Sine.", formula=sympy.sin,
        scalar="np.sin({0})", bounded=True)
Cos = E("cos", np.cos, [lambda x, y: -sin(x)], "Cosine.", formula=sympy.cos,
        scalar="np.cos({0})", bounded=True)
Tan = E("tan", np.tan, [lambda x, y: 1.0 + square(y)], "Tangent; tan' = 1 + tan**2.",
        formula=sympy.tan, scalar="np.tan({0})", simd_ufunc=True)
Tanh = E("tanh", np.tanh, [lambda x, y: 1.0 - square(y)], "Hyperbolic tangent.",
         formula=sympy.tanh, scalar="np.tanh({0})", bounded=True, simd_ufunc=True)
Sigmoid = E("sigmoid", scipy.special.expit, [lambda x, y: y * (1.0 - y)],
            "Logistic 1/(1+e**-x), stable for large |x| (scipy's expit).",
            formula=lambda x: 1 / (1 + sympy.exp(-x)), scalar="1.0 / (1.0 + np.exp(-{0}))",
            bounded=True)
Softplus = E("softplus", lambda x: np.logaddexp(0.0, x), [lambda x, y: sigmoid(x)],
             "log(1 + e**x), stable for large |x|.", formula=lambda x: sympy.log(1 + sympy.exp(x)),
             scalar="({0} if {0} > 0.0 else 0.0) + np.log1p(np.exp(-np.abs({0})))",
             ufunc=np.logaddexp, ufunc_operands="{zero}, {0}")
Relu = E("relu", lambda x: np.maximum(x, 0), [lambda x, y: cast(x > 0, y.dtype)],
         "max(x, 0); relu'(0) = 0.", formula=lambda x: sympy.Max(x, 0),
         scalar="np.maximum({0}, 0.0)", ufunc=np.maximum, ufunc_operands="{0}, {zero}")


# -- more unary: inverse trigonometric and hyperbolic, error function, bases 2 and 10 -------
# Domains: arcsin, arccos, arctanh on [-1, 1] (derivative infinite at the ends), arccosh on
# [1, inf) (infinite at 1), log2 and log10 on x > 0; outside, NaN as in NumPy. Each rule is
# written in the form that keeps its precision near the ends: (1 - x)(1 + x), not 1 - x**2.
_LN2, _LN10 = math.log(2.0), math.log(10.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

Arcsin = E("arcsin", np.arcsin, [lambda x, y: 1.0 / sqrt((1.0 - x) * (1.0 + x))],
           "Inverse sine; arcsin' = 1/sqrt(1 - x**2), infinite at -1 and 1.",
           formula=sympy.asin, scalar="np.arcsin({0})")
Arccos = E("arccos", np.arccos, [lambda x, y: -1.0 / sqrt((1.0 - x) * (1.0 + x))],
           "Inverse cosine; arccos' = -1/sqrt(1 - x**2), infinite at -1 and 1.",
           formula=sympy.acos, scalar="np.arccos({0})")
Arctan = E("arctan", np.arctan, [lambda x, y: 1.0 / (1.0 + square(x))],
           "Inverse tangent; arctan' = 1/(1 + x**2).", formula=sympy.atan,
           scalar="np.arctan({0})", bounded=True)
Sinh = E("sinh", np.sinh, [lambda x, y: cosh(x)], "Hyperbolic sine; sinh' = cosh.",
         formula=sympy.sinh, scalar="np.sinh({0})")
Cosh = E("cosh", np.cosh, [lambda x, y: sinh(x)], "Hyperbolic cosine; cosh' = sinh.",
         formula=sympy.cosh, scalar="np.cosh({0})")
Arcsinh = E("arcsinh", np.arcsinh, [lambda x, y: 1.0 / hypot(x, 1.0)],
            "Inverse hyperbolic sine; arcsinh' = 1/sqrt(x**2 + 1) (as a hypot: no overflow).",
            formula=sympy.asinh, scalar="np.arcsinh({0})")
Arccosh = E("arccosh", np.arccosh, [lambda x, y: 1.0 / sqrt((x - 1.0) * (x + 1.0))],
            "Inverse hyperbolic cosine; domain x >= 1, derivative infinite at 1.",
            formula=sympy.acosh, scalar="np.arccosh({0})")
Arctanh = E("arctanh", np.arctanh, [lambda x, y: 1.0 / ((1.0 - x) * (1.0 + x))],
            "Inverse hyperbolic tangent; domain (-1, 1), arctanh' = 1/(1 - x**2).",
            formula=sympy.atanh, scalar="np.arctanh({0})")
Erf = E("erf", scipy.special.erf, [lambda x, y: _TWO_OVER_SQRT_PI * exp(-square(x))],
        "Error function (SciPy's ufunc; math.erf in a kernel); erf' = 2/sqrt(pi) e**-x**2.",
        formula=sympy.erf, scalar="math.erf({0})", bounded=True, finite_preserving=True)
Erfc = E("erfc", scipy.special.erfc, [lambda x, y: -_TWO_OVER_SQRT_PI * exp(-square(x))],
         "1 - erf(x), accurate where erf is near 1; erfc' = -2/sqrt(pi) e**-x**2.",
         formula=sympy.erfc, scalar="math.erfc({0})", bounded=True, finite_preserving=True)
Log2 = E("log2", np.log2, [lambda x, y: (1.0 / _LN2) / x], "Base-2 log; domain x > 0.",
         formula=lambda x: sympy.log(x, 2), scalar="np.log2({0})")
Log10 = E("log10", np.log10, [lambda x, y: (1.0 / _LN10) / x], "Base-10 log; domain x > 0.",
          formula=lambda x: sympy.log(x, 10), scalar="np.log10({0})")
Exp2 = E("exp2", np.exp2, [lambda x, y: y * _LN2], "2**x; its derivative reuses the output.",
         formula=lambda x: sympy.Integer(2) ** x, scalar="np.exp2({0})")
Reciprocal = E("reciprocal", np.reciprocal, [lambda x, y: -square(y)],
               "1/x (integers are made float first); reciprocal' = -1/x**2 = -y**2.",
               formula=lambda x: 1 / x, scalar="1.0 / {0}")
# Rounding: piecewise constant, so no gradient flows (the derivative is 0 wherever it exists,
# as for sign); round is NumPy's: halves to even (np.rint).
Floor = E("floor", np.floor, [None], "Largest integer <= x; derivative 0 where it exists.",
          formula=sympy.floor, scalar="np.floor({0})", finite_preserving=True)
Ceil = E("ceil", np.ceil, [None], "Smallest integer >= x; derivative 0 where it exists.",
         formula=sympy.ceiling, scalar="np.ceil({0})", finite_preserving=True)


def _round_half_even(x):
    """NumPy's rounding (halves to even) in sympy: floor(x + 1/2), less one at an odd tie."""
    r = sympy.floor(x + sympy.S.Half)
    tie = sympy.And(sympy.Eq(x + sympy.S.Half, r), sympy.Eq(sympy.Mod(r, 2), 1))
    return sympy.Piecewise((r - 1, tie), (r, True))


Round = E("round", np.rint, [None], "Nearest integer, halves to even (np.rint); derivative 0.",
          formula=_round_half_even, scalar="np.rint({0})", finite_preserving=True)


# -- binary --------------------------------------------------------------------------------
def _tie(x, y, strict_wins):
    """Derivative of maximum/minimum for the first argument: 1 where it wins, 1/2 at ties."""
    return cast(strict_wins, x.dtype) + 0.5 * cast(x == y, x.dtype)


Add = E("add", np.add, [lambda x, y, o: ONE, lambda x, y, o: ONE], "x + y.", 2,
        formula=lambda x, y: x + y, scalar="{0} + {1}", linear=True, commutative=True)
Sub = E("sub", np.subtract, [lambda x, y, o: ONE, lambda x, y, o: MINUS_ONE], "x - y.", 2,
        formula=lambda x, y: x - y, scalar="{0} - {1}", linear=True)
Mul = E("mul", np.multiply, [lambda x, y, o: y, lambda x, y, o: x], "x * y.", 2,
        formula=lambda x, y: x * y, scalar="{0} * {1}", commutative=True)
Div = E("div", np.true_divide, [lambda x, y, o: 1.0 / y, lambda x, y, o: -o / y],
        "x / y (true division).", 2, formula=lambda x, y: x / y, scalar="{0} / {1}")
Pow = E("pow", np.power,
        [lambda x, y, o: y * x ** (y - 1.0),
         lambda x, y, o: o * log(where(x > 0, x, 1.0))],
        "x ** y; d/dy uses log(x) where x > 0, 0 elsewhere.", 2, formula=lambda x, y: x**y,
        scalar="np.power({0}, {1})", simd_ufunc=True)
Maximum = E("maximum", np.maximum,
            [lambda x, y, o: _tie(x, y, x > y), lambda x, y, o: _tie(y, x, y > x)],
            "Elementwise max; a tie sends half the gradient to each side.", 2,
            formula=sympy.Max, scalar="np.maximum({0}, {1})", commutative=True)
Minimum = E("minimum", np.minimum,
            [lambda x, y, o: _tie(x, y, x < y), lambda x, y, o: _tie(y, x, y < x)],
            "Elementwise min; a tie sends half the gradient to each side.", 2,
            formula=sympy.Min, scalar="np.minimum({0}, {1})", commutative=True)

Arctan2 = E("arctan2", np.arctan2,
            [lambda y, x, o: x / (square(x) + square(y)),
             lambda y, x, o: -y / (square(x) + square(y))],
            "Angle of the point (x, y), arctan2(y, x) in (-pi, pi]; its gradient is NaN at the "
            "origin (0/0).", 2, formula=sympy.atan2, scalar="np.arctan2({0}, {1})", bounded=True)
Hypot = E("hypot", np.hypot, [lambda x, y, o: x / o, lambda x, y, o: y / o],
          "sqrt(x**2 + y**2) without overflow; its gradient is NaN at the origin (0/0).", 2,
          formula=lambda x, y: sympy.sqrt(x**2 + y**2), scalar="np.hypot({0}, {1})",
          commutative=True)
Logaddexp = E("logaddexp", np.logaddexp,
              [lambda x, y, o: exp(x - o), lambda x, y, o: exp(y - o)],
              "log(e**x + e**y), stable; the derivatives are softmax weights, from the output.",
              2, formula=lambda x, y: sympy.log(sympy.exp(x) + sympy.exp(y)),
              scalar="np.logaddexp({0}, {1})", commutative=True)
Mod = E("mod", np.mod, [lambda x, y, o: ONE, lambda x, y, o: -floor(x / y)],
        "x - y floor(x / y), the sign of y (NumPy's mod, Python's %); d/dx = 1, "
        "d/dy = -floor(x / y) (away from the jumps, where x / y is an integer).", 2,
        formula=sympy.Mod, scalar="np.remainder({0}, {1})")


def _inside(x, lo, hi, o):
    """d clip / dx: 1 strictly inside (lo, hi), else 0."""
    return where(x > lo, cast(x < hi, o.dtype), 0.0)


def _at_lo(x, lo, hi, o):
    """d clip / dlo: 1 where the result is lo (x <= lo < hi)."""
    return where(x <= lo, cast(lo < hi, o.dtype), 0.0)


def _at_hi(x, lo, hi, o):
    """d clip / dhi: 1 where the result is hi (max(x, lo) >= hi)."""
    return cast(maximum(x, lo) >= hi, o.dtype)


Clip = E("clip", np.clip, [_inside, _at_lo, _at_hi],
         "min(max(x, lo), hi) as np.clip (hi wins where lo > hi); the gradient goes to x "
         "strictly inside (lo, hi) and to the bound the result equals, so it sums to 1.", 3,
         formula=lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi),
         scalar="np.minimum(np.maximum({0}, {1}), {2})", finite_preserving=True)


# Comparisons give boolean nodes through which no gradient flows.
Less = E("less", np.less, [], "x < y, boolean.", 2, formula=sympy.Lt)
LessEqual = E("less_equal", np.less_equal, [], "x <= y, boolean.", 2, formula=sympy.Le)
Greater = E("greater", np.greater, [], "x > y, boolean.", 2, formula=sympy.Gt)
GreaterEqual = E("greater_equal", np.greater_equal, [], "x >= y, boolean.", 2,
                 formula=sympy.Ge)
Equal = E("equal", np.equal, [], "x == y, boolean.", 2, formula=sympy.Eq, commutative=True)
NotEqual = E("not_equal", np.not_equal, [], "x != y, boolean.", 2, formula=sympy.Ne,
             commutative=True)


@register
@dataclasses.dataclass(frozen=True)
class Where(Op):
    """`cond ? x : y` entry by entry; the gradient goes to the chosen side only. Both sides
    are computed everywhere, so a NaN or inf in the derivative of the side not chosen still
    meets that side's zero cotangent (0 * inf = NaN): see docs/ops.md, the double `where`."""

    name: ClassVar[str] = "where"
    arity: ClassVar[int] = 3
    elementwise: ClassVar[bool] = True
    finite_preserving: ClassVar[bool] = True
    fresh: ClassVar[bool] = True

    def infer(self, c, x, y):
        if c.dtype != np.bool_:
            raise ShapeError(f"where: the condition must be boolean, got {c.dtype}")
        return types.broadcast_shapes(c.shape, x.shape, y.shape), np.result_type(x.dtype,
                                                                                y.dtype)

    def forward(self, c, x, y):
        return np.where(c, x, y)

    def bprop(self, inputs, out, g, i):
        c = inputs[0]
        if i == 0 or not types.is_float(inputs[i].dtype):
            return None
        return where(c, g, 0.0) if i == 1 else where(c, 0.0, g)

    jvp = bprop

    def sympy(self, node, c, x, y):
        return symbolic.entrywise(lambda c, a, b: sympy.Piecewise((a, c), (b, True)), 3)(c, x, y)


@register
@dataclasses.dataclass(frozen=True)
class Cast(Op):
    """Convert to `dtype`; gradients flow between float dtypes only."""

    name: ClassVar[str] = "cast"
    elementwise: ClassVar[bool] = True
    finite_preserving: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    dtype: np.dtype = param(DTYPE, np.dtype(np.float64))

    def infer(self, x):
        return x.shape, types.as_dtype(self.dtype)

    def forward(self, x):
        return x.astype(self.dtype)

    def emit_numpy(self, node, args, ctx):
        return f"{args[0]}.astype({ctx.dtype(node.dtype)})"

    def bprop(self, inputs, out, g, i):
        x = inputs[0]
        if not (types.is_float(x.dtype) and types.is_float(self.dtype)):
            return None
        return g if x.dtype == out.dtype else cast(g, x.dtype)

    def jvp(self, inputs, out, t, i):
        if not (types.is_float(inputs[0].dtype) and types.is_float(self.dtype)):
            return None
        return cast(t, self.dtype)

    def sympy(self, node, x):
        src, dst = node.inputs[0].dtype, node.dtype
        if src.kind == "b":
            return symbolic.entrywise(lambda c: sympy.Piecewise((1, c), (0, True)), 1)(x)
        if dst.kind in "iu" and src.kind == "f":  # truncation toward zero
            return symbolic.entrywise(lambda v: sympy.sign(v) * sympy.floor(sympy.Abs(v)), 1)(x)
        if dst.kind == "b":
            return symbolic.entrywise(lambda v: sympy.Ne(v, 0), 1)(x)
        return x


@register
@dataclasses.dataclass(frozen=True)
class StopGradient(Op):
    """Identity forward; no gradient (and no tangent) flows through it."""

    name: ClassVar[str] = "stop_gradient"
    differentiable: ClassVar[bool] = False
    elementwise: ClassVar[bool] = True

    def infer(self, x):
        return x.shape, x.dtype

    def forward(self, x):
        return x

    def sympy(self, node, x):
        return x  # the value; the graph's "no gradient" mark has no sympy form

    def cost(self, node):
        return 0.0  # the input itself


@register
@dataclasses.dataclass(frozen=True)
class ZerosLike(Op):
    """Zeros of its input's shape and dtype: what a disconnected gradient is."""

    name: ClassVar[str] = "zeros_like"
    differentiable: ClassVar[bool] = False
    elementwise: ClassVar[bool] = True
    bounded: ClassVar[bool] = True
    shape_only: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward

    def infer(self, x):
        return x.shape, x.dtype

    def forward(self, x):
        return np.zeros(x.shape, x.dtype)


@register
@dataclasses.dataclass(frozen=True)
class OnesLike(Op):
    """Ones of its input's shape and dtype."""

    name: ClassVar[str] = "ones_like"
    differentiable: ClassVar[bool] = False
    elementwise: ClassVar[bool] = True
    bounded: ClassVar[bool] = True
    shape_only: ClassVar[bool] = True
    fresh: ClassVar[bool] = True
    sympy = symbolic.run_forward

    def infer(self, x):
        return x.shape, x.dtype

    def forward(self, x):
        return np.ones(x.shape, x.dtype)


# -- public functions ----------------------------------------------------------------------
def neg(x): return build(Neg(), x)
def exp(x): return build(Exp(), x)
def log(x): return build(Log(), x)
def log1p(x): return build(Log1p(), x)
def expm1(x): return build(Expm1(), x)
def sqrt(x): return build(Sqrt(), x)
def square(x): return build(Square(), x)
def abs(x): return build(Abs(), x)  # noqa: A001 - the API's name, as in NumPy
def sign(x): return build(Sign(), x)
def sin(x): return build(Sin(), x)
def cos(x): return build(Cos(), x)
def tan(x): return build(Tan(), x)
def tanh(x): return build(Tanh(), x)
def sigmoid(x): return build(Sigmoid(), x)
def softplus(x): return build(Softplus(), x)
def relu(x): return build(Relu(), x)
def add(x, y): return build(Add(), x, y)
def sub(x, y): return build(Sub(), x, y)
def mul(x, y): return build(Mul(), x, y)
def div(x, y): return build(Div(), x, y)
def pow(x, y): return build(Pow(), x, y)  # noqa: A001
def maximum(x, y): return build(Maximum(), x, y)
def minimum(x, y): return build(Minimum(), x, y)
def less(x, y): return build(Less(), x, y)
def less_equal(x, y): return build(LessEqual(), x, y)
def greater(x, y): return build(Greater(), x, y)
def greater_equal(x, y): return build(GreaterEqual(), x, y)
def equal(x, y): return build(Equal(), x, y)
def not_equal(x, y): return build(NotEqual(), x, y)
def stop_gradient(x): return build(StopGradient(), x)
def zeros_like(x): return build(ZerosLike(), x)
def ones_like(x): return build(OnesLike(), x)

def arcsin(x): return build(Arcsin(), x)
def arccos(x): return build(Arccos(), x)
def arctan(x): return build(Arctan(), x)
def arctan2(y, x): return build(Arctan2(), y, x)
def sinh(x): return build(Sinh(), x)
def cosh(x): return build(Cosh(), x)
def arcsinh(x): return build(Arcsinh(), x)
def arccosh(x): return build(Arccosh(), x)
def arctanh(x): return build(Arctanh(), x)
def erf(x): return build(Erf(), x)
def erfc(x): return build(Erfc(), x)
def log2(x): return build(Log2(), x)
def log10(x): return build(Log10(), x)
def exp2(x): return build(Exp2(), x)
def hypot(x, y): return build(Hypot(), x, y)
def logaddexp(x, y): return build(Logaddexp(), x, y)
def floor(x): return build(Floor(), x)
def ceil(x): return build(Ceil(), x)
def mod(x, y): return build(Mod(), x, y)


@atomic
def reciprocal(x):
    """1 / x; an integer input is made float64 first (NumPy's integer reciprocal truncates).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> gc.reciprocal(x).eval({x: np.array([2.0, -4.0])})
        array([ 0.5 , -0.25])
    """
    x = lift(x, graph_of(x, caller="reciprocal"))
    return build(Reciprocal(), x if types.is_float(x.dtype) else cast(x, np.float64))


@atomic
def round(x, decimals=0):  # noqa: A001 - the API's name, as in NumPy
    """Round to `decimals` places, halves to even (np.round); no gradient flows through it.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(4,))
        >>> gc.round(x).eval({x: np.array([0.5, 1.5, 2.5, -1.7])})
        array([ 0.,  2.,  2., -2.])
    """
    if type(decimals) is not int:
        raise ShapeError(f"round: decimals must be an int, got {decimals!r}")
    if decimals == 0:
        return build(Round(), x)
    if decimals > 0:  # as np.round: rint(x * 10**d) / 10**d, or rint(x / 10**-d) * 10**-d
        return build(Round(), x * 10.0**decimals) / 10.0**decimals
    return build(Round(), x / 10.0**-decimals) * 10.0**-decimals


@atomic
def clip(x, lo, hi):
    """`x` limited to [lo, hi] entry by entry; `lo` and `hi` are numbers or nodes that broadcast
    (None: no bound on that side). The gradient goes to x strictly inside (lo, hi) and to the
    bound the result equals (at x == lo, lo's; where lo >= hi, hi's), as docs/ops.md says.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(4,))
        >>> y = gc.clip(x, -1.0, 1.0)
        >>> y.eval({x: np.array([-3.0, -1.0, 0.5, 2.0])})
        array([-1. , -1. ,  0.5,  1. ])
        >>> gc.grad(y.sum(), x).eval({x: np.array([-3.0, -1.0, 0.5, 2.0])})
        array([0., 0., 1., 0.])
    """
    if lo is None and hi is None:
        raise GraphError("clip: lo and hi cannot both be None")
    g = graph_of(x, lo, hi, caller="clip")
    like = next(v for v in (x, lo, hi) if isinstance(v, Node))
    x = lift(x, g, like)
    lo = lift(_unbounded(x, -1) if lo is None else lo, g, x)
    hi = lift(_unbounded(x, 1) if hi is None else hi, g, x)
    return g.apply(Clip(), [x, lo, hi])


def _unbounded(x, sign: int):
    """No bound on one side: an infinity, or for integers the dtype's extreme (x stays int)."""
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return int(info.min if sign < 0 else info.max)
    return sign * math.inf



@atomic
def cast(x, dtype):
    """`x` converted to `dtype` (a no-op node is not built when the dtype already matches)."""
    try:
        dtype = types.as_dtype(dtype)
    except (TypeError, ValueError) as e:
        raise ShapeError(f"cast: {e}") from None
    if x.dtype == dtype:
        return x
    return build(Cast(dtype), x)


@atomic
def where(cond, x, y):
    """`x` where `cond` holds, else `y`; NumPy broadcasting."""
    g = graph_of(cond, x, y)
    like = x if hasattr(x, "graph") else y if hasattr(y, "graph") else None
    return g.apply(Where(), [lift(cond, g), lift(x, g, like), lift(y, g, like)])


@register
@dataclasses.dataclass(frozen=True)
class AddN(Op):
    """The sum of any number of same-shape nodes: the book's single buffer that the
    contributions to one gradient are added into (one node, not a chain of binary adds)."""

    name: ClassVar[str] = "add_n"
    arity: ClassVar[None] = None
    linear: ClassVar[bool] = True
    commutative: ClassVar[bool] = True
    sympy = symbolic.run_forward
    # code: np.add folded left into one buffer, as forward adds; `a + b + ...` in a kernel
    ufunc: ClassVar[np.ufunc] = np.add
    fresh: ClassVar[bool] = True
    scalar: ClassVar[str] = "{0} + {1}"

    def infer(self, *xs):
        if not xs:
            raise ShapeError("add_n needs at least one input")
        for x in xs:
            if not types.shape_eq(x.shape, xs[0].shape):
                raise ShapeError("add_n: shapes " + ", ".join(
                    types.fmt_shape(y.shape) for y in xs) + " differ")
        return xs[0].shape, np.result_type(*(x.dtype for x in xs))

    def forward(self, *xs):
        out = np.add(xs[0], xs[1], dtype=np.result_type(*xs)) if len(xs) > 1 else np.array(xs[0])
        if not isinstance(out, np.ndarray):  # 0-d sums come back as NumPy scalars
            out = np.asarray(out)
        for x in xs[2:]:
            np.add(out, x, out=out)  # one buffer, as in the book
        return out

    def bprop(self, inputs, out, g, i):
        return g

    def jvp(self, inputs, out, t, i):
        return t

    def batch(self, node, ins, m):
        return node.graph.apply(self, all_batched(ins, m))  # shapes must match: no padding


@atomic
def add_n(xs):
    """One node summing a list of same-shape nodes (a single node passes through)."""
    xs = list(xs)
    if len(xs) == 1:
        return lift(xs[0], graph_of(xs))
    g = graph_of(xs)
    return g.apply(AddN(), [lift(x, g) for x in xs])
