"""Compilation and runtime: schedules, input checks, `Function`, `eval`."""

from graphc.compile.function import Function, eval, function

__all__ = ["Function", "eval", "function"]
