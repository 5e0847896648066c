"""Arithmetic text to sympy, safely: formulas for `gc.elementwise`, dimensions in graph files.

Nothing is evaluated as Python. The text is parsed with `ast` (which only builds a tree) and
the tree is rebuilt with sympy operators from fixed tables:

    number literal         int (and float unless `integers_only`), never bool, str, complex
    name                   looked up in the caller's `names`; otherwise made by `new_name`
                           if the caller gives one; otherwise an error
    a + b, a - b, a * b    sympy arithmetic
    a / b, a // b, a % b   true division, floor(a / b), Mod(a, b)
    a ** b                 an integer exponent within `powers`; a symbolic or fractional one
                           only if `symbolic_powers`
    -a, +a                 unary minus and plus
    f(a, ...)              only a function of the caller's `functions` table, positional args

Everything else (attributes, subscripts, lambdas, comprehensions, f-strings, keywords, starred
arguments, comparisons, ...) is refused. Limits bound the work whatever the text: its length,
the number of tree nodes, the nesting depth (checked iteratively before the rebuild, which
then recurses at most that deep) and the size of every integer made along the way. Every
failure is a `ValueError` that quotes the text and says what is wrong.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sympy

MAX_LENGTH = 1000   # characters of text
MAX_NODES = 400     # nodes of the syntax tree
MAX_DEPTH = 60      # nesting depth of the syntax tree
MAX_BITS = 4096     # bits of any integer (numerator or denominator) made while rebuilding


@dataclass(frozen=True)
class Function:
    """A function that text may call: the sympy callable and how many arguments it takes."""

    fn: Callable
    min_args: int = 1
    max_args: int | None = 1  # None: any number from min_args up


@dataclass(frozen=True)
class Grammar:
    """What a kind of text may contain (see the module docstring)."""

    what: str                                        # "formula", "dimension": for messages
    functions: Mapping[str, Function] = field(default_factory=dict)
    integers_only: bool = False
    powers: tuple[int, int] = (-64, 64)              # allowed integer exponents, inclusive
    symbolic_powers: bool = True                     # x ** y, x ** 0.5
    max_length: int = MAX_LENGTH
    max_nodes: int = MAX_NODES
    max_depth: int = MAX_DEPTH


def _f(fn, lo=1, hi=1) -> Function:
    return Function(fn, lo, hi)


FORMULA_FUNCTIONS: dict[str, Function] = {
    "exp": _f(sympy.exp), "log": _f(sympy.log, 1, 2), "sqrt": _f(sympy.sqrt),
    "sin": _f(sympy.sin), "cos": _f(sympy.cos), "tan": _f(sympy.tan),
    "sinh": _f(sympy.sinh), "cosh": _f(sympy.cosh), "tanh": _f(sympy.tanh),
    "asin": _f(sympy.asin), "arcsin": _f(sympy.asin),
    "acos": _f(sympy.acos), "arccos": _f(sympy.acos),
    "atan": _f(sympy.atan), "arctan": _f(sympy.atan),
    "atan2": _f(sympy.atan2, 2, 2), "arctan2": _f(sympy.atan2, 2, 2),
    "asinh": _f(sympy.asinh), "arcsinh": _f(sympy.asinh),
    "acosh": _f(sympy.acosh), "arccosh": _f(sympy.acosh),
    "atanh": _f(sympy.atanh), "arctanh": _f(sympy.atanh),
    "erf": _f(sympy.erf), "erfc": _f(sympy.erfc),
    "Abs": _f(sympy.Abs), "abs": _f(sympy.Abs), "sign": _f(sympy.sign),
    "Max": _f(sympy.Max, 1, None), "max": _f(sympy.Max, 1, None),
    "Min": _f(sympy.Min, 1, None), "min": _f(sympy.Min, 1, None),
    "floor": _f(sympy.floor), "ceiling": _f(sympy.ceiling), "ceil": _f(sympy.ceiling),
}

DIMENSION_FUNCTIONS: dict[str, Function] = {
    "floor": _f(sympy.floor), "ceiling": _f(sympy.ceiling), "Mod": _f(sympy.Mod, 2, 2),
    "Max": _f(sympy.Max, 1, None), "Min": _f(sympy.Min, 1, None),
}

FORMULA = Grammar("formula", FORMULA_FUNCTIONS)
DIMENSION = Grammar("dimension", DIMENSION_FUNCTIONS, integers_only=True, powers=(0, 8),
                    symbolic_powers=False, max_length=200, max_nodes=200, max_depth=40)

_BINOPS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: sympy.floor(a / b),
    ast.Mod: lambda a, b: sympy.Mod(a, b), ast.Pow: lambda a, b: a ** b,
}
_BINOP_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
               ast.Mod: "%", ast.Pow: "**"}
_UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: a}
_REFUSED = {  # what a refused syntax node is, in words, for "... not allowed"
    ast.Attribute: "attribute access is", ast.Subscript: "subscripts are",
    ast.Lambda: "lambdas are", ast.ListComp: "comprehensions are",
    ast.SetComp: "comprehensions are", ast.DictComp: "comprehensions are",
    ast.GeneratorExp: "comprehensions are", ast.JoinedStr: "f-strings are",
    ast.FormattedValue: "f-strings are", ast.Compare: "comparisons are",
    ast.BoolOp: "and/or are", ast.IfExp: "if-expressions are", ast.NamedExpr: ":= is",
    ast.Starred: "starred arguments are", ast.Await: "await is", ast.Yield: "yield is",
    ast.YieldFrom: "yield is", ast.List: "lists are", ast.Tuple: "tuples are",
    ast.Dict: "dicts are", ast.Set: "sets are", ast.Slice: "slices are",
}


def parse(text: str, grammar: Grammar, names: Mapping[str, sympy.Expr] | None = None,
          new_name: Callable[[str], sympy.Expr] | None = None) -> sympy.Expr:
    """The sympy expression that `text` spells under `grammar`; ValueError if it is not one.

    `names` maps the names the text may use to sympy expressions; a name not in it is made by
    `new_name(name)` when given (which may raise ValueError to refuse it), else refused.

    Examples:
        >>> import sympy
        >>> x = sympy.Symbol("x")
        >>> parse("x / (1 + exp(-x))", FORMULA, {"x": x})
        x/(1 + exp(-x))
        >>> parse("2*n + 1", DIMENSION, new_name=lambda s: sympy.Symbol(s, positive=True))
        2*n + 1
        >>> parse("x.real", FORMULA, {"x": x})
        Traceback (most recent call last):
        ...
        ValueError: formula 'x.real': attribute access is not allowed
    """
    if not isinstance(text, str):
        raise ValueError(f"a {grammar.what} must be text, got {type(text).__name__}")
    if len(text) > grammar.max_length:
        raise ValueError(f"{grammar.what} of {len(text)} characters is longer than the "
                         f"{grammar.max_length} allowed")
    quoted = _quote(text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        msg = getattr(e, "msg", None) or str(e) or type(e).__name__
        raise ValueError(f"{grammar.what} {quoted} is not arithmetic text: {msg}") from None
    _check_size(tree.body, grammar, quoted)
    reader = _Reader(grammar, quoted, dict(names or {}), new_name)
    try:
        return reader.build(tree.body)
    except ValueError:
        raise
    except Exception as e:  # sympy's own refusals: ZeroDivisionError, TypeError, ...
        raise ValueError(f"{grammar.what} {quoted}: {type(e).__name__}: {e}") from None


def formula(text: str, symbols) -> sympy.Expr:
    """A formula in `symbols` (the only names it may use), for `gc.elementwise`.

    Examples:
        >>> import sympy
        >>> t = sympy.Symbol("t")
        >>> formula("t**2 * erf(t)", [t])
        t**2*erf(t)
    """
    return parse(text, FORMULA, {str(s): s for s in symbols})


def dimension(text: str, new_symbol: Callable[[str], sympy.Expr]) -> sympy.Expr:
    """A size expression such as "2*n + 1", each name made a size symbol by `new_symbol`.

    Examples:
        >>> import sympy
        >>> dimension("floor(n / 2) + Mod(m, 3)", lambda s: sympy.Symbol(s, integer=True))
        Mod(m, 3) + floor(n/2)
    """
    return parse(text, DIMENSION, new_name=new_symbol)


# -- checks and the rebuild ------------------------------------------------------------------
def _quote(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77] + "...")


def _check_size(root: ast.AST, grammar: Grammar, quoted: str) -> None:
    """Count nodes and measure depth without recursion, so that the rebuild's recursion is
    bounded by `max_depth`."""
    count = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > grammar.max_nodes:
            raise ValueError(f"{grammar.what} {quoted} is too large (more than "
                             f"{grammar.max_nodes} syntax nodes)")
        if depth > grammar.max_depth:
            raise ValueError(f"{grammar.what} {quoted} is nested too deeply (more than "
                             f"{grammar.max_depth} levels)")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


class _Reader:
    def __init__(self, grammar: Grammar, quoted: str, names: dict, new_name):
        self.grammar, self.quoted, self.names, self.new_name = grammar, quoted, names, new_name

    def fail(self, why: str):
        raise ValueError(f"{self.grammar.what} {self.quoted}: {why}")

    def build(self, node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant):
            return self.number(node.value)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return self.binop(node)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return self.check_value(_UNARY[type(node.op)](self.build(node.operand)))
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BinOp):
            self.fail(f"the operator {type(node.op).__name__} is not allowed (only "
                      "+ - * / // % **)")
        if isinstance(node, ast.UnaryOp):
            self.fail(f"the operator {type(node.op).__name__} is not allowed (only unary - +)")
        self.fail(f"{_REFUSED.get(type(node), type(node).__name__ + ' is')} not allowed")

    def number(self, value) -> sympy.Expr:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"the literal {value!r:.40} is not a number")
        if isinstance(value, float):
            if self.grammar.integers_only:
                self.fail(f"the literal {value!r} is not an integer")
            if not math.isfinite(value):
                self.fail(f"the literal {value!r} is not finite")
            return sympy.Float(value)
        if value.bit_length() > MAX_BITS:
            self.fail(f"the integer literal has more than {MAX_BITS} bits")
        return sympy.Integer(value)

    def name(self, name: str) -> sympy.Expr:
        if name in self.names:
            return self.names[name]
        if self.new_name is None:
            known = ", ".join(sorted(self.names)) or "none"
            self.fail(f"unknown name {name!r}; the names it may use are {known}")
        value = self.new_name(name)
        if not isinstance(value, sympy.Expr):
            self.fail(f"the name {name!r} did not give a sympy expression")
        self.names[name] = value
        return value

    def binop(self, node: ast.BinOp) -> sympy.Expr:
        op = type(node.op)
        left = self.build(node.left)
        right = self.build(node.right)
        if op is ast.Pow:
            self.check_power(left, right)
        if op in (ast.Div, ast.FloorDiv, ast.Mod) and right == 0:
            self.fail(f"division by zero in {_BINOP_TEXT[op]}")
        return self.check_value(_BINOPS[op](left, right))

    def check_power(self, base: sympy.Expr, exponent: sympy.Expr) -> None:
        lo, hi = self.grammar.powers
        if exponent.is_Integer:
            e = int(exponent)
            if not lo <= e <= hi:
                self.fail(f"the exponent {e} is outside the allowed {lo}..{hi}")
            if base.is_Rational:  # an exact number: bound the size of the result first
                bits = max(abs(base.p).bit_length(), abs(base.q).bit_length())
                if bits * abs(e) > MAX_BITS:
                    self.fail(f"{base}**{e} would have more than {MAX_BITS} bits")
            return
        if not self.grammar.symbolic_powers:
            self.fail(f"an exponent must be an integer from {lo} to {hi}, got {exponent}")

    def check_value(self, value) -> sympy.Expr:
        if not isinstance(value, sympy.Expr):
            self.fail(f"it does not make a scalar expression ({type(value).__name__})")
        if value.is_Rational and max(abs(value.p).bit_length(),
                                     abs(value.q).bit_length()) > MAX_BITS:
            self.fail(f"a number in it has more than {MAX_BITS} bits")
        return value

    def call(self, node: ast.Call) -> sympy.Expr:
        if not isinstance(node.func, ast.Name):
            self.fail("only functions named in the table can be called, not the result of "
                      "an expression")
        name = node.func.id
        spec = self.grammar.functions.get(name)
        if spec is None:
            known = ", ".join(sorted(self.grammar.functions)) or "none"
            self.fail(f"unknown function {name!r}; the functions it may call are {known}")
        if node.keywords:
            self.fail(f"{name}() takes no keyword arguments")
        n = len(node.args)
        if n < spec.min_args or (spec.max_args is not None and n > spec.max_args):
            want = (f"{spec.min_args}" if spec.max_args == spec.min_args else
                    f"{spec.min_args} or more" if spec.max_args is None else
                    f"{spec.min_args} to {spec.max_args}")
            self.fail(f"{name}() takes {want} argument(s), got {n}")
        args = [self.build(a) for a in node.args]  # a Starred arg fails here, in build
        return self.check_value(spec.fn(*args))
