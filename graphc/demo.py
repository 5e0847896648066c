"""The demo: the Deep Learning book's figure 6.11 MLP, differentiated and checked.

It builds H = relu(X W1), U = H W2, J = mean cross-entropy(U, y) + lambda (|W1|^2 + |W2|^2)
(section 6.5.7) on embedded synthetic data, asks `grad` for dJ/dW1 and dJ/dW2 (nodes of the
same graph), runs them, checks them against finite differences, takes a few gradient steps, and
writes the graph with its gradient nodes as a Graphviz DOT file.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import graphc as gc


def synthetic_data(n: int = 96, d: int = 20, classes: int = 3, seed: int = 6511):
    """Three Gaussian blobs in d dimensions: embedded, so the demo needs no download."""
    rng = np.random.default_rng(seed)
    centers = 2.0 * rng.standard_normal((classes, d))
    y = np.arange(n) % classes
    X = centers[y] + rng.standard_normal((n, d))
    return X, y


def build_mlp(d: int = 20, hidden: int = 16, classes: int = 3, weight_decay: float = 1e-3):
    """Figure 6.11: no biases, relu hidden layer, cross-entropy plus weight decay."""
    g = gc.Graph("figure_6_11_mlp")
    X = g.input("X", shape=("batch", d))
    y = g.input("y", shape=("batch",), dtype="int64")
    W1 = g.input("W1", shape=(d, hidden))
    W2 = g.input("W2", shape=(hidden, classes))
    with g.scope("layer1"):
        H = gc.relu(X @ W1)
    with g.scope("layer2"):
        U = H @ W2
    with g.scope("cost"):
        J_mle = gc.softmax_cross_entropy(U, y).mean()
        J = J_mle + weight_decay * (gc.sum(gc.square(W1)) + gc.sum(gc.square(W2)))
    g.rename(J, "J")
    return g, (X, y, W1, W2), J


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphc demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="mlp_grad.dot",
                        help="where to write the DOT drawing (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=50, help="gradient-descent steps")
    args = parser.parse_args(argv)

    X_val, y_val = synthetic_data()
    g, (X, y, W1, W2), J = build_mlp(d=X_val.shape[1])
    dW1, dW2 = gc.grad(J, [W1, W2])
    rng = np.random.default_rng(0)
    params = {W1: 0.3 * rng.standard_normal(W1.shape), W2: 0.3 * rng.standard_normal(W2.shape)}
    step = gc.function([X, y, W1, W2], [J, dW1, dW2])

    loss, g1, g2 = step(X_val, y_val, params[W1], params[W2])
    print(f"graph {g.name!r}: {len(g.nodes)} nodes "
          f"({sum(n.role == 'grad' for n in g.nodes)} inserted by grad)")
    print(f"loss J = {float(loss):.6f}")
    print(f"|dJ/dW1| = {np.linalg.norm(g1):.6f}   |dJ/dW2| = {np.linalg.norm(g2):.6f}")
    # relu has kinks: a small step keeps the differences from straddling one.
    err = gc.check_grad(J, [W1, W2], at={X: X_val, y: y_val, **params}, eps=1e-6)
    print(f"finite-difference check along a random direction: relative error {err:.2e}")

    lr = 0.5
    for _ in range(args.steps):
        loss, g1, g2 = step(X_val, y_val, params[W1], params[W2])
        params[W1] = params[W1] - lr * g1
        params[W2] = params[W2] - lr * g2
    final = float(step(X_val, y_val, params[W1], params[W2])[0])
    print(f"after {args.steps} gradient steps (lr {lr}): J = {final:.6f}")

    with open(args.out, "w") as fh:
        fh.write(gc.to_dot(g))
    print(f"wrote {os.path.abspath(args.out)} (Graphviz DOT: forward and gradient nodes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
