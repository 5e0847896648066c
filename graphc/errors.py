"""The error classes of graphc's public API.

Every error a user can provoke derives from `GraphcError`, so one `except` catches them all,
and each message names the node or input at fault, what was expected and what came.
"""


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose."""


class GraphError(GraphcError, TypeError):
    """A graph was used wrongly: nodes of two graphs mixed, a name reused, a bad argument,
    a node asked for a truth value it has only when it runs."""


class ShapeError(GraphcError, ValueError):
    """Shapes or dtypes of an op's inputs do not fit; raised when the node is built."""


class InputError(GraphcError, ValueError):
    """A value fed to a compiled function does not match its input node."""


class DisconnectedError(GraphcError):
    """`grad(z, x, disconnected="raise")` found that z does not depend on x."""


class LoadError(GraphcError):
    """A saved graph file is malformed; the message gives the location in the file."""


class NonFiniteError(GraphcError, FloatingPointError):
    """`function(..., check_finite=True)` saw a node produce NaN or Inf."""


class GradCheckError(GraphcError, AssertionError):
    """`check_grad` found a derivative that disagrees with finite differences."""
