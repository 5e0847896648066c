"""Export and interop: Graphviz drawings, text forms, saved files, sympy."""

from graphc.export import dot
from graphc.export.dot import GraphvizError, render, to_dot
from graphc.export.json import load, save
from graphc.export.text import debugprint

dot.install()  # Jupyter shows a Graph, and a Node with its ancestors, as its drawing

__all__ = ["to_dot", "render", "GraphvizError", "debugprint", "save", "load"]
