"""Jupyter's rich display: a Graph, and a Node with its ancestors, show as their drawing (svg),
with debugprint's text beside it, and as that text, saying why, whenever there is no drawing."""

from __future__ import annotations

import os
import sys
import textwrap
import time
import xml.etree.ElementTree as ET

import pytest

import graphc as gc
from graphc.export import dot as dotmod
from tests.export import test_dot as drawing
from tests.export.test_dot import SVG, mlp, svg_nodes

# test_dot's fixtures: a test that asks for `renderer` runs with `dot` hidden from PATH (so the
# pip-installed graphviz-pure draws) and with the system Graphviz (skipped where there is none)
renderer = drawing.renderer
path_without_dot = drawing.path_without_dot
MIME = dotmod.SVG_MIME


def drawn_names(svg: str) -> dict[str, str]:
    """Node id -> the text of its label, from an svg that must parse as XML."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return {k: "\n".join(t.text or "" for t in g.iter(f"{SVG}text"))
            for k, g in svg_nodes(root).items()}


def no_renderer(monkeypatch, message="render: no renderer here (a test)"):
    def fail(format="svg"):  # noqa: A002
        raise gc.GraphvizError(message)
    monkeypatch.setattr(dotmod, "find_dot", fail)


def test_a_graph_shows_as_its_drawing(renderer):
    g, (X, y, W1, W2, H, U, J, dW1, dW2) = mlp()
    bundle = g._repr_mimebundle_()
    assert set(bundle) == {MIME, "text/plain"}
    labels = drawn_names(bundle[MIME])
    assert set(labels) == {f"n{n.index}" for n in g.nodes}
    for n in (X, W1, J, dW1, dW2):
        assert n.name in labels[f"n{n.index}"]
    assert bundle["text/plain"] == f"{g!r}\n{gc.debugprint(g)}"


def test_a_node_shows_as_the_drawing_of_its_ancestors(renderer):
    g, (X, y, W1, W2, H, U, J, dW1, dW2) = mlp()
    bundle = dW2._repr_mimebundle_(include=None, exclude=None)
    labels = drawn_names(bundle[MIME])
    import networkx as nx
    want = {dW2.name, *nx.ancestors(g.to_networkx(), dW2.name)}
    assert set(labels) == {f"n{g[name].index}" for name in want}
    assert f"n{dW1.index}" not in labels and "dJ/dW2" in labels[f"n{dW2.index}"]
    assert bundle["text/plain"] == gc.debugprint(dW2)


def test_hostile_names_are_escaped_in_the_drawing(renderer):
    g = gc.Graph('g <"&\'>\n')
    x = g.input('a<b & "c" \'d\'\nnext]]>', shape=(2,))
    y = gc.exp(x)
    g.rename(y, "y</text><script>&amp;\x01")
    for obj in (g, y):
        bundle = obj._repr_mimebundle_()
        labels = drawn_names(bundle[MIME])  # valid XML
        assert labels[f"n{x.index}"].startswith('a<b & "c" \'d\'\nnext]]>')
        assert labels[f"n{y.index}"].startswith("y</text><script>&amp;\\x01")
        assert "<script>" not in bundle[MIME] and "\x01" not in bundle[MIME]
        assert "y</text><script>&amp;\x01" in bundle["text/plain"]


def test_without_a_renderer_the_text_says_why(monkeypatch):
    g, (X, y, W1, W2, H, U, J, dW1, dW2) = mlp()
    no_renderer(monkeypatch)
    bundle = g._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    assert bundle["text/plain"] == (f"{g!r}\n(not drawn: render: no renderer here (a test))\n"
                                    f"{gc.debugprint(g)}")
    text = dW1._repr_mimebundle_()["text/plain"]
    assert text == f"(not drawn: render: no renderer here (a test))\n{gc.debugprint(dW1)}"
    assert "dJ/dW1" in text and "W1" in text


def test_with_nothing_on_path_the_text_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(dotmod.shutil, "which", lambda name, **kw: None)
    g, _ = mlp()
    text = g._repr_mimebundle_()["text/plain"]
    assert "not drawn: Graphviz's `dot` program was not found" in text
    assert 'pip install "graphc[render]"' in text and "apt-get install graphviz" in text


def test_a_failing_renderer_gives_the_text_and_its_message(monkeypatch):
    # Python stands in for a broken renderer: `python -Tsvg` exits with an error
    monkeypatch.setattr(dotmod, "find_dot", lambda format="svg": sys.executable)  # noqa: A006
    g, _ = mlp()
    bundle = g._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    assert "(not drawn: render: " in bundle["text/plain"]
    assert "exited with status" in bundle["text/plain"]
    assert gc.debugprint(g) in bundle["text/plain"]


def test_a_slow_renderer_is_stopped(monkeypatch, tmp_path):
    slow = tmp_path / "slow-dot"
    slow.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    slow.chmod(0o755)
    monkeypatch.setattr(dotmod, "find_dot", lambda format="svg": str(slow))  # noqa: A006
    monkeypatch.setattr(dotmod, "DISPLAY_TIMEOUT", 0.5)
    g, _ = mlp()
    start = time.perf_counter()
    text = g._repr_mimebundle_()["text/plain"]
    assert time.perf_counter() - start < 20
    assert f"(not drawn: render: {slow} took longer than 0.5 s drawing for a notebook" in text


def test_nothing_raises(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("to_dot broke (a test)")
    monkeypatch.setattr(dotmod, "to_dot", broken)
    g, (X, *_rest) = mlp()
    assert "not drawn: RuntimeError: to_dot broke (a test)" in g._repr_mimebundle_()[
        "text/plain"]
    monkeypatch.setattr(dotmod, "debugprint", broken)
    text = X._repr_mimebundle_()["text/plain"]
    assert "not drawn" in text and "debugprint failed: RuntimeError" in text
    monkeypatch.setattr(dotmod, "_drawn_size", broken)
    assert X._repr_mimebundle_() == {"text/plain": f"{X!r}\n(not drawn: RuntimeError: to_dot "
                                                   "broke (a test))"}


def chain(n: int) -> tuple[gc.Graph, gc.Node]:
    """A graph of n + 1 nodes whose input feeds every layer (the slowest kind to lay out)."""
    g = gc.Graph("chain")
    x = g.input("x", shape=(3,))
    h = x
    while len(g.nodes) + 3 <= n + 1:
        h = gc.tanh(h) * x + h
    return g, h


def test_a_graph_too_large_to_draw_is_text_at_once(monkeypatch):
    no_renderer(monkeypatch, "the renderer must not be asked (a test)")
    g, h = chain(dotmod.DISPLAY_MAX_NODES + 30)
    start = time.perf_counter()
    text = g._repr_mimebundle_()["text/plain"]
    assert time.perf_counter() - start < 5
    assert f"(not drawn: {len(g.nodes)} nodes; a notebook draws at most " \
           f"{dotmod.DISPLAY_MAX_NODES}" in text
    assert "gc.render" in text and "must not be asked" not in text
    text = h._repr_mimebundle_()["text/plain"]
    assert f"(not drawn: more than {dotmod.DISPLAY_MAX_NODES} nodes" in text
    tree = text.split("\n", 1)[1]
    assert tree == gc.debugprint(h, max_depth=dotmod.DISPLAY_TEXT_DEPTH)


def test_the_limit_counts_inner_graphs(monkeypatch):
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = gc.remat(lambda h: gc.tanh(gc.exp(gc.sin(h))), x).sum()
    assert len(g.nodes) == 3  # x, the remat node, sum: its body holds 4 more
    no_renderer(monkeypatch)
    monkeypatch.setattr(dotmod, "DISPLAY_MAX_NODES", 5)
    assert "(not drawn: 3 nodes" not in g._repr_mimebundle_()["text/plain"]
    assert "(not drawn: more than 5 nodes" in y._repr_mimebundle_()["text/plain"]


def test_a_graph_at_the_limit_is_drawn_in_reasonable_time(renderer, monkeypatch):
    """The slowest kind of graph at the size limit draws in seconds (with Graphviz's default
    layout, `dot` needs more than 30 s for half as many nodes); the timeout is raised here so
    that a busy machine does not turn the drawing into text."""
    monkeypatch.setattr(dotmod, "DISPLAY_TIMEOUT", 60)
    g, h = chain(dotmod.DISPLAY_MAX_NODES - 1)
    assert dotmod.DISPLAY_FAST_NODES < len(g.nodes) <= dotmod.DISPLAY_MAX_NODES
    start = time.perf_counter()
    bundle = g._repr_mimebundle_()
    took = time.perf_counter() - start
    assert MIME in bundle, bundle["text/plain"][:300]
    assert set(drawn_names(bundle[MIME])) == {f"n{n.index}" for n in g.nodes}
    assert took < 30


def test_long_text_is_cut(monkeypatch):
    no_renderer(monkeypatch)
    monkeypatch.setattr(dotmod, "DISPLAY_MAX_LINES", 3)
    g, h = chain(30)
    lines = h._repr_mimebundle_()["text/plain"].splitlines()
    full = gc.debugprint(h).splitlines()
    assert lines[1:4] == full[:3]
    assert lines[4:] == [f"··· {len(full) - 3} more lines: gc.debugprint prints all"]


def test_include_and_exclude(monkeypatch):
    g, _ = mlp()
    no_renderer(monkeypatch, "the renderer must not be asked (a test)")
    for kwargs in ({"exclude": [MIME]}, {"include": ["text/plain"]},
                   {"include": [MIME, "text/plain"], "exclude": [MIME]}):
        assert g._repr_mimebundle_(**kwargs) == {"text/plain": f"{g!r}\n{gc.debugprint(g)}"}


def test_ipython_shows_the_drawing(renderer):
    formatters = pytest.importorskip("IPython.core.formatters")
    g, (*_rest, dW2) = mlp()
    data, _meta = formatters.DisplayFormatter().format(dW2)
    assert f"n{dW2.index}" in drawn_names(data[MIME])
    assert data["text/plain"] == gc.debugprint(dW2)


def test_a_notebook_shows_the_drawing(renderer, tmp_path):
    """A real kernel (nbclient, as tests/test_notebooks.py runs the notebooks): a cell that
    ends with a graph or a node shows its drawing; without a renderer, the text."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [
        """\
        import graphc as gc
        g = gc.Graph("nb")
        x = g.input("x<&>", shape=(3,))
        J = gc.exp(x).sum()
        dx = gc.grad(J, x)
        g""",
        "dx",
        """\
        import graphc.export.dot as d
        def fail(format="svg"):
            raise gc.GraphvizError("no renderer (a test)")
        d.find_dot = fail
        g""",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(c))
                                         for c in cells])
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    shown = [c.outputs[0]["data"] for c in nb.cells]
    assert {"n0", "n1", "n2", "n3"} <= set(drawn_names(shown[0][MIME]))
    assert "x<&>" in drawn_names(shown[0][MIME])["n0"]
    assert set(drawn_names(shown[1][MIME])) < set(drawn_names(shown[0][MIME]))
    assert MIME not in shown[2]
    assert shown[2]["text/plain"].startswith("<Graph 'nb'")
    assert "(not drawn: no renderer (a test))" in shown[2]["text/plain"]
    assert os.environ["PATH"]  # the kernel ran with this test's PATH (dot hidden, or not)
