"""The command line end to end: demo, render, info, --help, and errors as exit status 1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import graphc as gc
from graphc.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def saved(tmp_path):
    g = gc.Graph("cli")
    x = g.input("x", shape=("n", 3))
    W = g.input("W", shape=(3, 2))
    with g.scope("layer"):
        h = gc.tanh(x @ W)
    z = gc.sum(h * h)
    g.rename(z, "z")
    gc.grad(z, W)
    return g, str(gc.save(g, tmp_path / "g.json"))


def test_info(saved, capsys):
    g, path = saved
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    n_grad = sum(n.role == "grad" for n in g.nodes)
    assert f"graph 'cli': {len(g.nodes)} nodes, forward {len(g.nodes) - n_grad}, grad {n_grad}" \
        in out
    assert "  x: (n, 3) float64" in out and "  W: (3, 2) float64" in out
    # depth by hand: x -> matmul -> tanh -> mul -> sum -> (grad) ... the longest path is the
    # gradient's; compare with networkx on the graph itself.
    import networkx as nx
    assert f"depth: {nx.dag_longest_path_length(g.to_networkx())} " in out
    sinks = [n for n in g.nodes if not any(n in set(m.inputs) for m in g.nodes)]
    assert f"outputs ({len(sinks)}" in out and "dz/dW" in out
    tanh_line = next(ln for ln in out.splitlines() if ln.split()[:1] == ["tanh"])
    assert tanh_line.split()[1:] == ["1", "0"]


def test_render_svg_and_dot(saved, tmp_path, capsys):
    g, path = saved
    svg = tmp_path / "out.svg"
    assert main(["render", path, "-o", str(svg), "--rankdir", "LR", "--scopes",
                 "--collapse-constants", "--outputs", "dz/dW", "--highlight-grad", "dz/dW"]) == 0
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    dot_path = tmp_path / "out.dot"
    assert main(["render", path, "-o", str(dot_path), "--highlight", "z"]) == 0
    src = dot_path.read_text()
    assert src.startswith('digraph "cli"') and src.count("->") == sum(
        len(n.inputs) for n in g.nodes)


def test_errors_exit_1_with_message(saved, tmp_path, capsys):
    g, path = saved
    assert main(["render", path, "-o", str(tmp_path / "o.svg"), "--outputs", "nope"]) == 1
    assert "no node named 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "graphc", "version": 7, "nodes": []}')
    assert main(["info", str(bad)]) == 1
    assert "version" in capsys.readouterr().err
    assert main(["render", path]) == 2  # -o is required
    assert main([]) == 2


def test_help_for_each_command(capsys):
    for cmd in (["--help"], ["render", "--help"], ["info", "--help"], ["demo", "--help"]):
        assert main(cmd) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage:"), cmd


def test_python_m_graphc_demo_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    dot_path = tmp_path / "mlp.dot"
    proc = subprocess.run([sys.executable, "-m", "graphc", "demo", "--out", str(dot_path),
                           "--steps", "2"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert dot_path.read_text().startswith("digraph")
    svg = tmp_path / "mlp.svg"
    assert ET.parse(svg).getroot().tag.endswith("svg")
    assert re.search(r"rendered by (dot|graphviz-pure)", proc.stdout), proc.stdout
    err = float(proc.stdout.split("relative error")[1].split()[0])
    assert err < 1e-5
    proc = subprocess.run([sys.executable, "-m", "graphc", "--help"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0 and "render" in proc.stdout and "info" in proc.stdout


def test_loaded_graph_evaluates_like_the_original(saved):
    g, path = saved
    g2 = gc.load(path)
    rng = np.random.default_rng(0)
    feed = {"x": rng.standard_normal((4, 3)), "W": rng.standard_normal((3, 2))}
    np.testing.assert_array_equal(gc.eval(g2["dz/dW"], feed), gc.eval(g["dz/dW"], feed))
