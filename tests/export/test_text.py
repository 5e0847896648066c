"""debugprint's tree and a node's repr."""

from __future__ import annotations

import re

import graphc as gc


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
    assert len(lines) == 3001
    assert lines[-1].endswith("#0 x: input ()")


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
