"""Draw the Deep Learning book's figure 6.11 (the single-layer MLP's cost) with its gradient.

    python docs/img/figure_6_11.py        # writes docs/img/figure_6_11_grad.{svg,png,dot}

Nodes carry the book's names (U(1), H, U(2), J_MLE, U(3) ... U(8), J), so the forward cluster
reads as the figure, and `grad` names each gradient node after what it differentiates (dJ/dH).
"""

import os

import numpy as np

import graphc as gc

HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    g = gc.Graph("Deep Learning book, figure 6.11, with grad(J, [W(1), W(2)])")
    X = g.input("X", shape=("m", "n_in"))
    y = g.input("y", shape=("m",), dtype="int64")
    W1 = g.input("W(1)", shape=("n_in", "n_h"))
    W2 = g.input("W(2)", shape=("n_h", "n_out"))
    lam = g.constant(np.asarray(1e-3), name="λ")
    names = {}

    def name(node, text):
        g.rename(node, text)
        names[text] = node
        return node

    U1 = name(gc.matmul(X, W1), "U(1)")
    H = name(gc.relu(U1), "H")
    U2 = name(gc.matmul(H, W2), "U(2)")
    J_MLE = name(gc.softmax_cross_entropy(U2, y).mean(), "J_MLE")
    U3 = name(gc.square(W1), "U(3)")
    U4 = name(gc.sum(U3), "U(4)")
    U5 = name(gc.square(W2), "U(5)")
    U6 = name(gc.sum(U5), "U(6)")
    U7 = name(U4 + U6, "U(7)")
    U8 = name(lam * U7, "U(8)")
    J = name(J_MLE + U8, "J")
    dW1, dW2 = gc.grad(J, [W1, W2])
    return g, J, dW1, dW2


def main():
    g, J, dW1, dW2 = build()
    options = dict(rankdir="BT", collapse_constants=True)
    base = os.path.join(HERE, "figure_6_11_grad")
    with open(base + ".dot", "w", encoding="utf-8") as fh:
        fh.write(gc.to_dot([J, dW1, dW2], **options))
    for ext in ("svg", "png"):
        gc.render([J, dW1, dW2], f"{base}.{ext}", **options)
    print(f"wrote {base}.dot, .svg, .png ({len(g.nodes)} nodes)")


if __name__ == "__main__":
    main()
