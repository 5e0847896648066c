"""Formulas given as text are read, never run (issue 12, finding 23).

`gc.elementwise(name, "text", args)` reads the text with `graphc.ir.exprtext`: only numbers,
the names in `args`, arithmetic and a fixed table of functions. Hostile text is a GraphError,
quickly, with nothing executed; valid text gives the same op as the sympy-built formula.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import scipy.special
import sympy

import graphc as gc
from graphc.ir import exprtext

x_sym = sympy.Symbol("x")
y_sym = sympy.Symbol("y")

HOSTILE = {
    "import": "__import__('os').system('touch {marker}')",
    "import call": "__import__('os')",
    "builtins": "__builtins__",
    "attribute": "x.__class__",
    "attribute of a call": "exp(x).func",
    "lambda": "(lambda: x)()",
    "list comprehension": "[x for x in (1, 2)][0]",
    "generator": "sum(x for x in (1, 2))",
    "subscript": "x[0]",
    "f-string": "f'{x}'",
    "string": "'x'",
    "bytes": "b'x'",
    "keyword argument": "exp(x=1)",
    "starred": "Max(*x)",
    "walrus": "(y := x)",
    "if-expression": "x if x else 1",
    "comparison": "x < 1",
    "bool": "True",
    "complex": "1j * x",
    "huge exponent": "2**10**10",
    "huge symbolic exponent": "x**10**10",
    "huge integer": "(10**60)**64",
    "long text": "x + " * 25_000 + "x",
    "deep parentheses": "(" * 400 + "x" + ")" * 400,
    "deep calls": "exp(" * 100 + "x" + ")" * 100,
    "deep unary": "-" * 900 + "x",
    "unknown name": "x + z",
    "unknown function": "gamma(x)",
    "statement": "x; import os",
    "null byte": "x\0",
    "matmul": "x @ x",
    "invert": "~x",
    "wrong arity": "exp(x, x)",
    "division by zero": "x / 0",
}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_formula_is_refused_quickly_with_nothing_run(text, tmp_path):
    marker = tmp_path / "ran"
    text = text.replace("{marker}", str(marker))
    before = set(gc.ir.op.OPS)
    start = time.perf_counter()
    with pytest.raises(gc.GraphError, match="test_hostile.*cannot read the formula"):
        gc.elementwise("test_hostile", text, [x_sym])
    assert time.perf_counter() - start < 1.0
    assert not marker.exists() and not os.path.exists("ran")
    assert set(gc.ir.op.OPS) == before


def test_hostile_text_messages_say_what_is_wrong():
    def why(text):
        with pytest.raises(ValueError) as e:
            exprtext.formula(text, [x_sym])
        return str(e.value)

    assert "attribute access is not allowed" in why("x.real")
    assert "lambdas are not allowed" in why("lambda: 1")
    assert "comprehensions are not allowed" in why("[x for x in y]")
    assert "subscripts are not allowed" in why("x[0]")
    assert "f-strings are not allowed" in why("f'{x}'")
    assert "exponent 10000000000 is outside" in why("2**10**10")
    assert "longer than the 1000" in why("x" * 100_000)
    assert "nested too deeply" in why("-" * 900 + "x")
    assert "unknown name 'z'; the names it may use are x" in why("z")
    assert "unknown function 'gamma'" in why("gamma(x)")
    assert "unknown function '__import__'" in why("__import__('os')")


def test_valid_text_matches_the_sympy_built_op_in_values_and_derivatives():
    text_op = gc.elementwise("test_swish_text", "x/(1+exp(-x))", [x_sym])
    sym_op = gc.elementwise("test_swish_sym", x_sym / (1 + sympy.exp(-x_sym)), [x_sym])
    assert sympy.simplify(text_op.expr - sym_op.expr) == 0
    g = gc.Graph()
    x = g.input("x", shape=(7,))
    xv = np.linspace(-3, 3, 7)
    a, b = text_op(x), sym_op(x)
    da, db = gc.grad(a.sum(), x), gc.grad(b.sum(), x)
    d2a = gc.grad(da.sum(), x)
    va, vb, vda, vdb, vd2a = gc.eval([a, b, da, db, d2a], {x: xv})
    sig = 1 / (1 + np.exp(-xv))
    np.testing.assert_allclose(va, xv * sig)                      # NumPy
    np.testing.assert_allclose(vb, va)
    np.testing.assert_allclose(vda, sig * (1 + xv * (1 - sig)))  # hand-derived
    np.testing.assert_allclose(vdb, vda)
    h = 1e-5
    fd = ((xv + h) / (1 + np.exp(-(xv + h))) - (xv - h) / (1 + np.exp(-(xv - h)))) / (2 * h)
    np.testing.assert_allclose(vda, fd, rtol=1e-8)
    dd = sig * (1 - sig)
    np.testing.assert_allclose(vd2a, 2 * dd + xv * dd * (1 - 2 * sig), rtol=1e-10)


def test_valid_text_covers_the_function_table_and_operators():
    f = gc.elementwise("test_text_table",
                       "sqrt(x**2 + 1) + arctan2(y, 2) - Max(x, y) + abs(y) % 2 + x // 1 "
                       "+ erf(x) * tanh(y) + log(1 + x**2, 2) + -x + +y - 1.5e-1",
                       [x_sym, y_sym])
    g = gc.Graph()
    x = g.input("x", shape=(5,))
    y = g.input("y", shape=(5,))
    xv = np.array([-1.5, -0.2, 0.0, 0.7, 2.3])
    yv = np.array([0.4, -2.1, 1.0, 3.3, -0.5])
    want = (np.sqrt(xv ** 2 + 1) + np.arctan2(yv, 2) - np.maximum(xv, yv) + np.mod(abs(yv), 2)
            + np.floor(xv) + scipy.special.erf(xv) * np.tanh(yv) + np.log2(1 + xv ** 2) - xv
            + yv - 0.15)
    np.testing.assert_allclose(f(x, y).eval({x: xv, y: yv}), want)


def test_dimension_grammar_is_integer_only_with_small_powers():
    def size_symbol(name):
        return gc.ir.types.symbol(name)

    n = size_symbol("n")
    assert exprtext.dimension("2*n + 1", size_symbol) == 2 * n + 1
    assert exprtext.dimension("n // 2 + Mod(n, 3)", size_symbol) == (
        sympy.floor(n / 2) + sympy.Mod(n, 3))
    assert exprtext.dimension("Max(n, 4) ** 8", size_symbol) == sympy.Max(n, 4) ** 8
    for bad, why in [("n ** 9", "outside the allowed 0..8"), ("n ** -1", "outside"),
                     ("n ** m", "must be an integer from 0 to 8"), ("n * 0.5", "not an integer"),
                     ("exp(n)", "unknown function 'exp'"), ("Mod(n, 0)", "zero"),
                     ("n" * 201, "longer than the 200")]:
        with pytest.raises(ValueError, match=why):
            exprtext.dimension(bad, size_symbol)
    seen = []

    def refusing(name):
        seen.append(name)
        raise ValueError(f"no symbol {name!r} here")

    with pytest.raises(ValueError, match="no symbol 'q' here"):
        exprtext.dimension("q + 1", refusing)
    assert seen == ["q"]
