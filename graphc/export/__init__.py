"""Export and interop: Graphviz drawings, text forms, saved files, sympy."""

from graphc.export.dot import GraphvizError, render, to_dot
from graphc.export.json import load, save
from graphc.export.text import debugprint

__all__ = ["to_dot", "render", "GraphvizError", "debugprint", "save", "load"]
