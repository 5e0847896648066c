"""The graph IR: nodes, graphs, shapes and dtypes, the op interface, iterative walks."""

from graphc.ir.graph import Graph, Node
from graphc.ir.op import OPS, Constant, Input, Op, register

__all__ = ["Graph", "Node", "Op", "OPS", "Input", "Constant", "register"]
