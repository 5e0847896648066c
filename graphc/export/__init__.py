"""Export and interop: Graphviz drawings, text forms, saved files, sympy."""

from graphc.export.dot import to_dot

__all__ = ["to_dot"]
