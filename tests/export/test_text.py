"""debugprint's tree and a node's repr."""

from __future__ import annotations

import re

import graphc as gc
from graphc.ir import walk


def test_tree_exact_for_a_small_graph():
    g = gc.Graph()
    x = g.input("x", shape=("n",))
    w = g.input("w", shape=("n",), dtype="float32")
    h = gc.tanh(x)
    z = (h * h).sum() + gc.cast(w, "float64").sum()
    expected = "\n".join([
        "#7 add_7: add ()",
        "├─ #4 sum_4: sum(axis=(0,)) ()",
        "│  └─ #3 mul_3: mul (n,)",
        "│     ├─ #2 tanh_2: tanh (n,)",
        "│     │  └─ #0 x: input (n,)",
        "│     └─ #2 tanh_2 ··· see above",
        "└─ #6 sum_6: sum(axis=(0,)) ()",
        "   └─ #5 cast_5: cast(dtype=float64) (n,)",
        "      └─ #1 w: input (n,) float32",
    ])
    assert gc.debugprint(z) == expected


def test_shared_subtrees_printed_once_and_roles_marked():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    z = gc.exp(gc.sin(x)).sum()
    dz = gc.grad(z, x)
    text = gc.debugprint([z, dz])
    lines = text.splitlines()
    full = [ln for ln in lines if "see above" not in ln]
    ids = [int(re.search(r"#(\d+) ", ln).group(1)) for ln in full]
    # Every node reachable from z and dz is printed in full exactly once, except leaves.
    leaves = {n.index for n in g.nodes if not n.inputs}
    inner = [i for i in ids if i not in leaves]
    assert sorted(inner) == sorted({n.index for n in g.nodes if n.inputs})
    assert len(inner) == len(set(inner))
    grad_lines = [ln for ln in full if "[grad]" in ln]
    assert len(grad_lines) == sum(1 for n in g.nodes if n.role == "grad")


def test_graph_prints_its_sinks_and_max_depth_cuts():
    g = gc.Graph()
    x = g.input("x")
    a, b = gc.exp(x), gc.sin(x)
    text = gc.debugprint(g)
    assert text.splitlines()[0].startswith(f"#{a.index} ")
    assert f"#{b.index} " in text
    cut = gc.debugprint(gc.exp(gc.exp(x)), max_depth=1)
    assert cut.splitlines()[-1].endswith("1 input(s) below depth 1")
    assert len(cut.splitlines()) == 3


def test_deep_graph_prints_without_recursion():
    g = gc.Graph()
    y = g.input("x")
    for _ in range(3000):
        y = gc.sin(y)
    lines = gc.debugprint(y).splitlines()
    full = [ln for ln in lines if "···" not in ln]  # the others refer to a node printed later
    assert len(full) == 3001
    assert full[-1].endswith("#0 x: input ()")


def shown_in_full(text: str) -> set[int]:
    return {int(m.group(1)) for m in re.finditer(r"#(\d+) [^ ]+: ", text)}


def test_a_long_chain_prints_in_linear_size():
    # each line used to be indented by its depth: a 4,000-chain printed 24 MB
    g = gc.Graph()
    y = x = g.input("x")
    for _ in range(4000):
        y = gc.sin(y)
    text = gc.debugprint(y)
    assert shown_in_full(text) == {n.index for n in g.nodes}
    assert len(text.encode()) < 200 * len(g.nodes)
    assert max(len(ln) for ln in text.splitlines()) < 3 * 33 + 40
    assert text.count(" ··· continued below") == text.count("\n#") > 100
    assert text.splitlines()[-1].endswith(f"└─ #{x.index} x: input ()")  # a leaf stays inline


def test_a_diamond_ladder_prints_in_linear_size():
    # y_{k+1} = sin(y_k) * cos(y_k): every rung shares y_k, 2^k paths from the top
    g = gc.Graph()
    y = g.input("x", shape=(2,))
    for _ in range(2000):
        y = gc.sin(y) * gc.cos(y)
    roots = [y, gc.grad(gc.sum(y), g.nodes[0])]
    text = gc.debugprint(roots)
    assert shown_in_full(text) == {n.index for n in walk.ancestors(roots)}
    assert len(text.encode()) < 200 * len(g.nodes)
    inner = [m.group(1) for m in re.finditer(r"^[│├└─ ]*#(\d+) [^ ]+: (?!input|constant)",
                                             text, re.M)]
    assert len(inner) == len(set(inner))  # each node with inputs in full exactly once


def test_moved_subtrees_keep_their_depth_for_max_depth():
    g = gc.Graph()
    y = g.input("x")
    for _ in range(100):
        y = gc.exp(y)
    text = gc.debugprint(y, max_depth=50)
    assert shown_in_full(text) == {n.index for n in g.nodes[-51:]}
    assert text.splitlines()[-1].endswith("1 input(s) below depth 50")


def test_repr_is_short_and_useful():
    g = gc.Graph()
    xs = [g.input(f"x{k}", shape=(2,)) for k in range(7)]
    s = gc.add_n(xs)
    r = repr(s)
    assert r == f"<Node {s.name}: add_n(x0, x1, x2, x3, ... 3 more) shape=(2,) dtype=float64>"
    d = gc.grad(gc.sum(xs[0] * xs[1]), xs[0])
    assert repr(d).endswith("role=grad>") and "dsum" in repr(d)


def test_bad_argument():
    import pytest
    with pytest.raises(gc.GraphError):
        gc.debugprint(3)
