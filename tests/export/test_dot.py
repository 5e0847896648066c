"""Graphviz drawings: DOT that pydot parses, the requested subgraph exactly, and real files."""

from __future__ import annotations

import os
import re
import shutil
import sysconfig
import xml.etree.ElementTree as ET

import numpy as np
import pydot
import pytest

import graphc as gc
from graphc.export import dot as dotmod

# pydot's parser uses pyparsing names that newer pyparsing deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pydot.*")

SVG = "{http://www.w3.org/2000/svg}"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def path_without_dot(tmp_path_factory) -> str:
    """PATH as it is, less Graphviz's `dot`: each folder on it that holds a `dot` is replaced by
    a folder of links to its other programs, so that scripts (pyenv's shims) still find `env`
    and `bash`."""
    folders = []
    for k, folder in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if not os.path.isfile(os.path.join(folder, "dot")):
            folders.append(folder)
            continue
        mirror = tmp_path_factory.mktemp(f"path{k}_without_dot")
        for entry in os.scandir(folder):
            if entry.name != "dot":
                os.symlink(entry.path, mirror / entry.name)
        folders.append(str(mirror))
    return os.pathsep.join(folders)


@pytest.fixture(params=["graphviz-pure", "dot"])
def renderer(request, monkeypatch, path_without_dot) -> str:
    """Each test that renders runs twice: with `dot` hidden from PATH, so that `find_dot` falls
    back to the pip-installed graphviz-pure, and with the system Graphviz's `dot`."""
    if request.param == "dot" and shutil.which("dot") is None:
        pytest.skip("Graphviz's `dot` is not on PATH (apt-get install graphviz): only the "
                    "graphviz-pure run of this test renders here")
    if request.param == "graphviz-pure":
        monkeypatch.setenv("PATH", path_without_dot)
        assert shutil.which("dot") is None
    assert os.path.basename(dotmod.find_dot("svg")).startswith(request.param)
    return request.param


def svg_nodes(root) -> dict[str, ET.Element]:
    """The drawn nodes of a rendered svg, by id (`n3`): the `<g class="node">` groups."""
    return {g.find(f"{SVG}title").text: g for g in root.iter(f"{SVG}g")
            if g.get("class") == "node"}


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height in pixels, from the PNG's IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def mlp():
    g = gc.Graph("mlp")
    X = g.input("X", shape=("batch", 4))
    y = g.input("y", shape=("batch",), dtype="int64")
    W1 = g.input("W1", shape=(4, 5))
    W2 = g.input("W2", shape=(5, 3))
    with g.scope("layer1"):
        H = gc.relu(X @ W1)
    with g.scope("layer2"):
        U = H @ W2
    J = gc.softmax_cross_entropy(U, y).mean() + 1e-3 * (gc.square(W1).sum() + gc.square(W2).sum())
    g.rename(J, "J")
    dW1, dW2 = gc.grad(J, [W1, W2])
    return g, (X, y, W1, W2, H, U, J, dW1, dW2)


def parse(src: str) -> pydot.Dot:
    graphs = pydot.graph_from_dot_data(src)
    assert graphs is not None and len(graphs) == 1
    return graphs[0]


def all_nodes(d) -> dict[str, pydot.Node]:
    out = {n.get_name(): n for n in d.get_nodes() if re.fullmatch(r"n\d+", n.get_name())}
    for sub in d.get_subgraphs():
        out.update(all_nodes(sub))
    return out


def all_edges(d) -> list[pydot.Edge]:
    out = list(d.get_edges())
    for sub in d.get_subgraphs():
        out += all_edges(sub)
    return out


def test_whole_graph_has_every_node_and_edge():
    g, _ = mlp()
    d = parse(gc.to_dot(g))
    assert set(all_nodes(d)) == {f"n{n.index}" for n in g.nodes}
    expected = {(f"n{x.index}", f"n{n.index}") for n in g.nodes for x in n.inputs}
    got = {(e.get_source(), e.get_destination()) for e in all_edges(d)}
    assert got == expected


def test_ancestors_of_outputs_only():
    g, (X, y, W1, W2, H, U, J, dW1, dW2) = mlp()
    d = parse(gc.to_dot(dW2))
    want = set()  # ancestors by an independent walk over networkx
    import networkx as nx
    dg = g.to_networkx()
    want = {dW2.name, *nx.ancestors(dg, dW2.name)}
    assert {k for k in all_nodes(d)} == {f"n{g[name].index}" for name in want}
    assert f"n{dW1.index}" not in all_nodes(d)
    assert all_nodes(d)[f"n{dW2.index}"].get("peripheries") == '"2"'


def test_roles_have_their_own_clusters_and_colours():
    g, _ = mlp()
    d = parse(gc.to_dot(g))
    clusters = {s.get_name().strip('"'): s for s in d.get_subgraphs()}
    assert set(clusters) == {"cluster_7forward", "cluster_4grad"}
    for role, sub in (("forward", clusters["cluster_7forward"]),
                      ("grad", clusters["cluster_4grad"])):
        names = set(all_nodes(sub))
        assert names == {f"n{n.index}" for n in g.nodes if n.role == role}
        fills = {n.get("fillcolor") for n in all_nodes(sub).values()
                 if g.nodes[int(n.get_name()[1:])].op.name not in ("input", "constant")}
        assert fills == {f'"{dotmod.STYLE[role][0]}"'}


def test_inputs_constants_and_ops_have_distinct_shapes():
    g, _ = mlp()
    nodes = all_nodes(parse(gc.to_dot(g)))
    kinds = {}
    for n in g.nodes:
        kind = n.op.name if n.op.name in ("input", "constant") else "op"
        kinds.setdefault(kind, set()).add((nodes[f"n{n.index}"].get("shape"),
                                           nodes[f"n{n.index}"].get("style")))
    assert kinds["input"] == {('"ellipse"', '"filled,bold"')}
    assert kinds["constant"] == {('"box"', '"rounded,filled,dashed"')}
    assert kinds["op"] == {('"box"', '"rounded,filled"')}


def test_labels_show_op_and_symbolic_shape():
    g, (X, y, W1, W2, H, U, J, dW1, dW2) = mlp()
    nodes = all_nodes(parse(gc.to_dot(g)))
    assert "(batch, 5)" in nodes[f"n{H.index}"].get("label")
    assert "relu" in nodes[f"n{H.index}"].get("label")
    assert "int64" in nodes[f"n{y.index}"].get("label")
    assert "dJ/dW1" in nodes[f"n{dW1.index}"].get("label")
    assert "add_n" in nodes[f"n{dW1.index}"].get("label")


def test_argument_positions_on_non_commutative_edges_only():
    g = gc.Graph()
    a, b = g.input("a", shape=(2, 2)), g.input("b", shape=(2, 2))
    s, p, m = a - b, a @ b, a * b
    edges = all_edges(parse(gc.to_dot([s, p, m])))
    labels = {(e.get_source(), e.get_destination()): e.get("headlabel") for e in edges}
    for n in (s, p):
        assert labels[(f"n{a.index}", f"n{n.index}")] == '"0"'
        assert labels[(f"n{b.index}", f"n{n.index}")] == '"1"'
    assert labels[(f"n{a.index}", f"n{m.index}")] is None


def test_collapse_constants_folds_them_into_labels():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = 2.5 - x
    d = parse(gc.to_dot(y, collapse_constants=True))
    nodes = all_nodes(d)
    assert set(nodes) == {f"n{x.index}", f"n{y.index}"}
    assert "sub[2.5, ·]" in nodes[f"n{y.index}"].get("label")
    assert len(all_edges(d)) == 1
    assert len(all_nodes(parse(gc.to_dot(y)))) == 3


def test_rankdir_and_bad_options():
    g, (X, *_rest) = mlp()
    assert "rankdir=LR" in gc.to_dot(g, rankdir="LR")
    assert "rankdir=TB" in gc.to_dot(g)
    with pytest.raises(gc.GraphError, match="rankdir"):
        gc.to_dot(g, rankdir="sideways")
    other = gc.Graph("other").input("z")
    with pytest.raises(gc.GraphError, match="highlight"):
        gc.to_dot(g, highlight=[other])
    with pytest.raises(gc.GraphError):
        gc.to_dot([X, other])
    with pytest.raises(gc.GraphError):
        gc.to_dot([])


def test_highlight_marks_exactly_the_gradient_of_one_parameter():
    g, (X, y, W1, W2, H, U, J, dW1, dW2) = mlp()
    path = dotmod.derivation(dW2)
    assert all(n.role == "grad" for n in path)
    assert dW2 in set(path) and dW1 not in set(path)  # sets: `in` on a list would build ==
    nodes = all_nodes(parse(gc.to_dot(g, highlight=path)))
    marked = {k for k, n in nodes.items() if n.get("penwidth") == '"3"'}
    assert marked == {f"n{n.index}" for n in path}
    # The derivation is the grad-role part of dW2's ancestors, by an independent walk.
    import networkx as nx
    dg = g.to_networkx()
    anc = {dW2.name, *nx.ancestors(dg, dW2.name)}
    assert {n.name for n in path} <= {a for a in anc if g[a].role == "grad"}


def test_scope_clusters_group_scoped_nodes():
    g, (X, y, W1, W2, H, U, J, dW1, dW2) = mlp()
    d = parse(gc.to_dot(g, group_scopes=True, cluster_roles=False))
    clusters = {s.get_name().strip('"'): s for s in d.get_subgraphs()}
    assert set(clusters) == {"cluster_6layer1", "cluster_6layer2"}
    assert set(all_nodes(clusters["cluster_6layer1"])) == {
        f"n{n.index}" for n in g.nodes if n.scope == "layer1"}
    assert f"n{H.index}" in all_nodes(clusters["cluster_6layer1"])
    assert f"n{U.index}" in all_nodes(clusters["cluster_6layer2"])
    # Gradient nodes are named dJ/d...: their '/' is not a scope.
    assert all(n.scope == "" for n in g.nodes if n.role == "grad")


def test_names_that_need_quoting():
    g = gc.Graph('we "quote" \\ and <html>')
    x = g.input('x"<&>', shape=(2,))
    y = gc.exp(x)
    g.rename(y, "a\\b")
    nodes = all_nodes(parse(gc.to_dot(g, title="t\"itle")))
    assert "&lt;&amp;&gt;" in nodes[f"n{x.index}"].get("label")


def test_render_svg_is_real_and_has_every_node(renderer, tmp_path):
    g, (X, y, W1, W2, H, U, J, dW1, dW2) = mlp()
    out = gc.render(g, tmp_path / "mlp.svg", rankdir="LR", group_scopes=True)
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG}svg"
    drawn = svg_nodes(root)
    assert set(drawn) == {f"n{n.index}" for n in g.nodes}
    text = {k: " ".join(t.text or "" for t in v.iter(f"{SVG}text")) for k, v in drawn.items()}
    for n in (X, W1, J, dW1, dW2):
        assert n.name in text[f"n{n.index}"]
    assert "relu" in text[f"n{H.index}"] and "(batch, 5)" in text[f"n{H.index}"]


def test_render_png_is_a_picture_the_size_of_the_svg(renderer, tmp_path):
    g, _ = mlp()
    png = open(gc.render(g, tmp_path / "a.png"), "rb").read()
    width, height = png_size(png)
    root = ET.parse(gc.render(g, tmp_path / "a.svg")).getroot()
    pt = [float(root.get(k).removesuffix("pt")) for k in ("width", "height")]
    # Graphviz's png is 96 dpi: 4/3 pixels per point of the svg
    assert 200 < width < 10_000 and 100 < height < 10_000
    assert width == pytest.approx(pt[0] * 4 / 3, rel=0.02)
    assert height == pytest.approx(pt[1] * 4 / 3, rel=0.02)


def test_render_pdf_needs_graphviz_itself(renderer, tmp_path):
    g = gc.Graph()
    x = g.input("x", shape=(2,))
    gc.grad(gc.sin(x).sum(), x)
    if renderer == "dot":
        pdf = open(gc.render(g, tmp_path / "a.out", format="pdf"), "rb").read()
        assert pdf[:5] == b"%PDF-"
    else:  # only the pip renderer: it says pdf needs Graphviz itself
        with pytest.raises(gc.GraphvizError, match="pdf needs Graphviz's own"):
            gc.render(g, tmp_path / "a.out", format="pdf")
        assert not (tmp_path / "a.out").exists()
    with pytest.raises(gc.GraphError, match="format"):
        gc.render(g, tmp_path / "a.gif")


def test_hostile_names_render_as_valid_svg(renderer, tmp_path):
    """Markup, entities, quotes, newlines and control characters in names: the svg parses,
    labels show each name (a newline as a line break, a control character as its escape) and
    tooltips hold it exactly."""
    names = ['a<b & "c" \'d\'\nnext]]>', "y</text><script>&amp;", "tab\there\x01\x00\x7f",
             "back\\slash\\l"]
    g = gc.Graph('g <"&\'>\n\x02')
    x = g.input(names[0], shape=(2,))
    with g.scope("s&<\n"):
        y = gc.exp(x)
    g.rename(y, names[1])
    z = g.input(names[2])
    w = gc.sin(z)
    g.rename(w, names[3])
    for options in ({}, {"group_scopes": True, "title": 'T"<&>\n'}):
        root = ET.parse(gc.render(g, tmp_path / "h.svg", **options)).getroot()
        drawn = svg_nodes(root)
        escaped = "tab\\there\\x01\\x00\\x7f"  # as the label and the tooltip show names[2]
        for n, shown, tip in ((x, ['a<b & "c" \'d\'', "next]]>"], names[0]),
                              (y, [names[1]], names[1]), (z, [escaped], escaped),
                              (w, [names[3]], names[3])):
            node = drawn[f"n{n.index}"]
            assert [t.text for t in node.iter(f"{SVG}text")][:len(shown)] == shown
            tips = [a.get("{http://www.w3.org/1999/xlink}title") for a in node.iter(f"{SVG}a")]
            assert tips and tips[0].startswith(f"{tip}: ")
    svg = open(tmp_path / "h.svg", encoding="utf-8").read()
    assert "<script>" not in svg and "\x00" not in svg and "\x01" not in svg


def test_missing_dot_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(dotmod.shutil, "which", lambda name, **kw: None)
    g = gc.Graph()
    g.input("x")
    with pytest.raises(gc.GraphvizError, match="apt-get install graphviz"):
        gc.render(g, tmp_path / "x.svg")
    assert not (tmp_path / "x.svg").exists()


def test_dot_failure_is_reported(renderer, tmp_path):
    with pytest.raises(gc.GraphvizError, match="exited with status .* writing .*bad.svg"):
        dotmod.run_dot("digraph { a -> }", tmp_path / "bad.svg")


def test_the_pip_renderer_is_found_beside_python(monkeypatch, tmp_path):
    """Found beside the running Python (a virtual environment that is not activated), with
    nothing at all on PATH."""
    here = sysconfig.get_path("scripts")
    if shutil.which(dotmod.PIP_RENDERER, path=here) is None:
        pytest.skip(f"{dotmod.PIP_RENDERER} is not installed beside this Python ({here})")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "")
    assert os.path.dirname(dotmod.find_dot("png")) == here
    g, _ = mlp()
    assert open(gc.render(g, tmp_path / "m.png"), "rb").read()[:8] == PNG_SIGNATURE


def test_drawing_does_not_change_the_graph():
    g, (X, y, W1, W2, H, U, J, dW1, dW2) = mlp()
    before = [(n.name, n.index) for n in g.nodes]
    gc.to_dot(g, collapse_constants=True, group_scopes=True, highlight=[H])
    assert [(n.name, n.index) for n in g.nodes] == before
    val = gc.eval(dW1, {X: np.ones((2, 4)), y: np.array([0, 2]), W1: np.ones((4, 5)),
                        W2: np.ones((5, 3))})
    assert val.shape == (4, 5)
