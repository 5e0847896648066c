"""Curvature beyond the Hessian: the generalised Gauss-Newton matrix, the empirical Fisher and
the Jacobian, as SciPy `LinearOperator`s with `hessian_operator`'s conventions.

Each product is built once, symbolically, from forward and reverse mode (no Jacobian matrix is
ever formed), and compiled by `graphc.krylov.compile_products` exactly as the Hessian's is: a
point part (the forward pass and whatever else does not depend on the vector) computed once
per point, and a product part that runs only what depends on the vector. They take `batches=`
like `hessian_operator`: a product is then the sum of the batches' products.

- `ggn_operator`: G v = J^T (H_L (J v)), J = d outputs / d wrt and H_L = d2 loss / d outputs2
  (the other inputs held fixed): `jvp` of the outputs, the HVP of the loss in the outputs,
  then `vjp` of the outputs. G is positive semi-definite when the loss is convex in the
  outputs, which makes it the matrix that Hessian-free optimisation (Martens, 2010) solves
  with. Terms of the loss that depend on the parameters other than through `outputs` (weight
  decay) are not in G: add their curvature yourself (as damping, say).
- `empirical_fisher_operator`: F v = (1/N) sum_n g_n (g_n . v) = (1/N) J^T (J v), J the
  Jacobian of the per-example losses: `jvp` of the loss vector, then the gradient of the mean
  of the losses weighted by that (stopped) tangent. The per-example gradients (an N x n
  matrix) never exist: for a 784-512-512-10 MLP and N = 256 they would take 1.4 GB.
- `jacobian_operator`: J v by `jvp`, J^T u (`rmatvec`, `J.T`) by `vjp`.

For softmax cross-entropy on logits and for squared error 1/2 |z - t|^2 the GGN is the Fisher
information of the model's predictive distribution, E_y~p(y|x)[grad log p grad log p^T]:
there H_L = diag(p) - p p^T, resp. I, is the covariance of the score of the log-likelihood in
the outputs (a categorical over softmax(z), resp. a unit Gaussian around z), and it does not
depend on the labels (Martens, "New insights and perspectives on the natural gradient
method", 2020, section 9.2).
"""

from __future__ import annotations

from graphc import ops
from graphc.autodiff import grad, jvp, vjp
from graphc.autodiff.arguments import check_float, check_node
from graphc.autodiff.second_order import hvp_and_grad
from graphc.errors import GraphError, ShapeError
from graphc.ir import types
from graphc.ir.graph import Node
from graphc.krylov import PointOperator, check_loss, compile_products


class GGNOperator(PointOperator):
    """The generalised Gauss-Newton matrix J^T H_L J at one point: symmetric, positive
    semi-definite for a loss convex in the outputs; `update(at)` moves it."""


class EmpiricalFisherOperator(PointOperator):
    """The empirical Fisher (1/N) sum_n g_n g_n^T at one point: symmetric, positive
    semi-definite, of rank at most N; `update(at)` moves it."""


class JacobianOperator(PointOperator):
    """The Jacobian d y / d wrt at one point, shape (y.size, n): `J @ v` pushes v forward,
    `J.T @ u` (`rmatvec`) pulls u back. `update(at)` moves it; when y's size depends on the
    data (a batch axis), its shape follows."""

    TRANSPOSE = 1


def _nodes(fn: str, what: str, value, g) -> list[Node]:
    """A float node of `g`, or a non-empty list of them, as a list."""
    nodes = [value] if isinstance(value, Node) else list(value) if isinstance(
        value, (list, tuple)) else []
    if not nodes:
        raise GraphError(f"{fn}: {what} must be a node or a non-empty list of nodes, got "
                         f"{type(value).__name__}")
    for k, n in enumerate(nodes):
        check_node(fn, what if isinstance(value, Node) else f"{what}[{k}]", n, g)
        check_float(n, fn, f"{what} node {n.name!r}")
    if len(set(nodes)) != len(nodes):
        raise GraphError(f"{fn}: a node of {what} is listed twice")
    return nodes


def _pullback(ys: list[Node], xs: list[Node], us: list[Node]) -> list[Node]:
    """u^T (d y / d x) summed over the ys: `vjp` for one, else the gradient of
    sum_k <y_k, stop_gradient(u_k)> (one reverse pass through what the ys share)."""
    if len(ys) == 1:
        return vjp(ys[0], xs, us[0])
    inner = ops.add_n([ops.sum(y * ops.stop_gradient(u)) for y, u in zip(ys, us)])
    return grad(inner, xs)


def ggn_operator(loss, outputs, wrt, at: dict, mode: str = "auto", batches=None,
                 progress: bool = False) -> GGNOperator:
    """The generalised Gauss-Newton matrix J^T H_L J of `loss` through `outputs` in `wrt`.

    J = d outputs / d wrt, H_L = the Hessian of `loss` in `outputs` (a node or a list);
    `mode` is that HVP's. For softmax cross-entropy and squared error it is the Fisher.
    With `batches`, the sum of the batches' GGNs (of per-batch means for a mean loss).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> w = g.input("w", shape=(2,))
        >>> z = g.input("A", shape=(3, 2)) @ w                # linear outputs: J = A
        >>> A = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        >>> G = gc.ggn_operator(0.5 * (z ** 2).sum(), z, w, at={"A": A, w: np.ones(2)})
        >>> G @ np.eye(2)                                     # A^T I A
        array([[2., 1.],
               [1., 5.]])
    """
    fn = "ggn_operator"
    check_loss(fn, loss, mode)
    zs = _nodes(fn, "outputs", outputs, loss.graph)

    def build(xs, vs):
        _, hz, mode_used = hvp_and_grad(loss, zs, jvp(zs, xs, vs), mode)
        return [], [(vs, _pullback(zs, xs, hz))], mode_used

    program, values, data = compile_products(fn, ("ggn", loss, mode, zs), wrt, at, build,
                                             batches, progress)
    return GGNOperator(fn, program, values, data)


def empirical_fisher_operator(per_example_loss, wrt, at: dict, batches=None,
                              progress: bool = False) -> EmpiricalFisherOperator:
    """The empirical Fisher (1/N) sum_n g_n g_n^T, g_n the gradient of `per_example_loss[n]`.

    `per_example_loss` is a vector of shape (N,) (N may be symbolic). With `batches`, the
    sum of the batches' empirical Fishers, each averaged over its own batch.

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> w = g.input("w", shape=(2,))
        >>> X = g.input("X", shape=("N", 2))
        >>> F = gc.empirical_fisher_operator(0.5 * (X @ w) ** 2, w,      # g_n = (x_n . w) x_n
        ...                                  at={X: np.eye(2), w: np.array([1.0, 3.0])})
        >>> F @ np.eye(2)                                    # (1/2)(e1 e1^T + 9 e2 e2^T)
        array([[0.5, 0. ],
               [0. , 4.5]])
    """
    fn = "empirical_fisher_operator"
    check_node(fn, "per_example_loss", per_example_loss)
    check_float(per_example_loss, fn, "per_example_loss")
    if per_example_loss.ndim != 1:
        raise ShapeError(f"{fn}: per_example_loss must be a vector, one loss per example, "
                         f"got node {per_example_loss.name!r} of shape "
                         f"{types.fmt_shape(per_example_loss.shape)}")
    losses = per_example_loss

    def build(xs, vs):
        tangent = ops.stop_gradient(jvp(losses, xs, vs))  # J v, one number per example
        return [], [(vs, grad(ops.mean(losses * tangent), xs))], None

    program, values, data = compile_products(fn, ("empirical_fisher", losses), wrt, at, build,
                                             batches, progress)
    return EmpiricalFisherOperator(fn, program, values, data)


def jacobian_operator(y, wrt, at: dict, batches=None, progress: bool = False
                      ) -> JacobianOperator:
    """The Jacobian of `y` (a node or a list, flattened and joined like `wrt`) in `wrt`.

    `J @ v` is forward mode, `J.T @ u` (`J.rmatvec(u)`) reverse mode; shape (y.size, n).
    With `batches`, the Jacobian of the sum over the batches of y (whose shape must then
    not depend on the batch).

    Examples:
        >>> import numpy as np, graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x", shape=(2,))
        >>> J = gc.jacobian_operator(gc.stack([x[0] * x[1], gc.sin(x[0]), x[1]]), x,
        ...                          at={x: np.array([2.0, 3.0])})
        >>> J.shape, J @ np.array([1.0, 0.0])
        ((3, 2), array([ 3.        , -0.41614684,  0.        ]))
        >>> J.T @ np.array([1.0, 0.0, 1.0])
        array([3., 3.])
    """
    fn = "jacobian_operator"
    first = y[0] if isinstance(y, (list, tuple)) and y else y
    check_node(fn, "y", first)
    ys = _nodes(fn, "y", y, first.graph)

    def build(xs, vs):
        g = xs[0].graph
        us = [g.input(g.fresh_name(f"u({n.name})"), n.shape, n.dtype) for n in ys]
        return ys, [(vs, jvp(ys, xs, vs)), (us, _pullback(ys, xs, us))], None

    program, values, data = compile_products(fn, ("jacobian", ys[0], ys), wrt, at, build,
                                             batches, progress)
    return JacobianOperator(fn, program, values, data, outputs=ys)
