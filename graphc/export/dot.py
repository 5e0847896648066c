"""Graphviz drawings of a graph: DOT text (`to_dot`), files rendered by `dot` (`render`), and
the drawing Jupyter shows for a Graph or a Node (`mimebundle`, bounded in size and time).

The drawing is how users see what `grad` built, so it is honest before it is pretty: every node
of the requested subgraph appears (unless constants are asked to be folded into their
consumers' labels), the forward pass and the nodes `grad` inserted sit in separate clusters and
colours, inputs and constants have their own shapes, each node shows its op and shape (symbolic
dimensions by name), and an edge into a non-commutative op names the argument position. An op
that holds a graph (`gc.remat`) has its body drawn beside it as a dotted cluster, whose output
points at the node with a dotted edge.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Iterable

from graphc.errors import GraphcError, GraphError
from graphc.export.text import debugprint, op_label, type_text
from graphc.ir import types, walk
from graphc.ir.body import bodies
from graphc.ir.graph import Graph, Node
from graphc.ir.op import Constant, Input, Output

RANKDIRS = ("TB", "LR", "BT", "RL")
FORMATS = ("svg", "png", "pdf")

FONT = "Helvetica"
STYLE = {  # role -> (node fill, node border, edge colour, cluster fill, cluster label)
    "forward": ("#dbe9f6", "#2b6ca3", "#4a4a4a", "#f5f9fd", "forward pass"),
    "grad": ("#fde0c5", "#c2571a", "#c2571a", "#fff8f1", "gradient: nodes inserted by grad"),
}
INPUT_FILL, CONST_FILL, CONST_BORDER = "#ffffff", "#f1f1f1", "#8c8c8c"
HIGHLIGHT = "#d62728"
MAX_PAD = 16  # nested clusters indented, and named by their path, up to this depth
RENDER_TIMEOUT = 300  # seconds `render` lets the renderer run


class GraphvizError(GraphcError, RuntimeError):
    """Graphviz's `dot` is missing or failed to render a drawing."""


def to_dot(graph_or_nodes, *, rankdir: str = "TB", collapse_constants: bool = False,
           highlight: Iterable[Node] = (), group_scopes: bool = False,
           cluster_roles: bool = True, title: str | None = None) -> str:
    """DOT text of a graph, or of the ancestors of a node or list of nodes (marked as outputs).

    `rankdir` is Graphviz's layout direction ("TB" top-down, "LR" left-to-right, "BT" as in
    the book's figures); `collapse_constants` folds constants into their consumers' labels;
    `highlight` emphasises a set of nodes (say `derivation(dW)`); `group_scopes` draws one
    cluster per `Graph.scope`; `cluster_roles` boxes the forward pass and the gradient apart.

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph("f")
        >>> x = g.input("x", shape=("n",))
        >>> y = gc.tanh(x).sum()
        >>> src = gc.to_dot(y, rankdir="LR")
        >>> src.splitlines()[0], "rankdir=LR" in src, src.count("->")
        ('digraph "f" {', True, 2)
    """
    nodes, outputs, graph = _select(graph_or_nodes)
    if rankdir not in RANKDIRS:
        raise GraphError(f"to_dot: rankdir must be one of {RANKDIRS}, got {rankdir!r}")
    marked = _node_set("highlight", highlight, graph)
    drawn = set(nodes)
    folded: set[Node] = set()
    if collapse_constants:
        used = {x for n in nodes for x in n.inputs}
        folded = {n for n in nodes if isinstance(n.op, Constant) and n in used and n not in outputs}
        drawn -= folded

    roles = {n.role for n in drawn}
    clustered = cluster_roles and len(roles) > 1
    lines = [f"digraph {_q(graph.name if title is None else title)} {{"]
    lines.append(f"  graph [rankdir={rankdir}, fontname={_q(FONT)}, fontsize=12, "
                 "nodesep=0.3, ranksep=0.4, newrank=true, labelloc=t];")
    lines.append(f"  node [fontname={_q(FONT)}, fontsize=11, margin=\"0.12,0.05\", "
                 "height=0.3];")
    lines.append(f"  edge [fontname={_q(FONT)}, fontsize=9, arrowsize=0.7];")
    if title is not None:
        lines.append(f"  label={_q(title)};")

    # Clusters: one per role (when both are present), then nested ones per scope inside it.
    tree: dict = {}
    for n in nodes:
        if n not in drawn:
            continue
        path = ([n.role] if clustered else []) + (n.scope.split("/") if group_scopes
                                                   and n.scope else [])
        branch = tree
        for part in path:
            branch = branch.setdefault(part, {})
        branch.setdefault(None, []).append(n)
    _emit_tree(lines, tree, clustered, folded, marked, outputs, group_scopes, "  ")

    for n in nodes:
        if n not in drawn:
            continue
        for pos, x in enumerate(n.inputs):
            if x not in drawn:
                continue
            lines.append(f"  n{x.index} -> n{n.index}{_edge_attrs(x, n, pos, marked)};")
    _emit_bodies(lines, [(f"n{n.index}", n, "", drawn) for n in nodes if n in drawn])
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(graph_or_nodes, path, format: str | None = None, **options) -> str:  # noqa: A002
    """Draw a graph (or the ancestors of nodes) to an svg, png or pdf file with Graphviz's dot
    (or, without it, the pip-installed renderer of `graphc[render]`: svg and png).

    The format comes from `format` or the file's suffix; `options` are those of `to_dot`.
    Returns the path written.

    Examples:
        >>> import os, tempfile, graphc as gc
        >>> g = gc.Graph("f")
        >>> x = g.input("x", shape=(3,))
        >>> _ = gc.grad(gc.exp(x).sum(), x)
        >>> out = gc.render(g, os.path.join(tempfile.mkdtemp(), "f.svg"))
        >>> open(out).read().count("<svg") > 0
        True
    """
    return run_dot(to_dot(graph_or_nodes, **options), path, format)


def run_dot(dot_source: str, path, format: str | None = None) -> str:  # noqa: A002
    """Run Graphviz's `dot` on DOT text and write `path` (svg, png or pdf); returns the path.

    Examples:
        >>> import os, tempfile
        >>> out = run_dot('digraph { a -> b }', os.path.join(tempfile.mkdtemp(), "ab.svg"))
        >>> os.path.getsize(out) > 0
        True
    """
    path = os.fspath(path)
    fmt = (format or os.path.splitext(path)[1].lstrip(".")).lower()
    if fmt not in FORMATS:
        raise GraphError(f"render: cannot tell the output format of {path!r}; expected a "
                         f"format or a file suffix among {', '.join(FORMATS)}, got {fmt!r}")
    _run(dot_source, fmt, ["-o", path], RENDER_TIMEOUT, f"writing {path!r}")
    return path


def _run(dot_source: str, fmt: str, args, timeout: float, target: str) -> bytes:
    """The renderer's standard output for `dot_source` in `fmt`, or a GraphvizError naming the
    program, the `target` and what went wrong; a renderer past `timeout` seconds is killed."""
    exe = find_dot(fmt)
    try:
        proc = subprocess.run([exe, f"-T{fmt}", *args], input=dot_source.encode(),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"render: {exe} took longer than {timeout:g} s {target}, and was "
                            "stopped") from None
    except OSError as e:
        raise GraphvizError(f"render: running {exe} {target} failed: {e}") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip()
        raise GraphvizError(f"render: {exe} -T{fmt} exited with status {proc.returncode} "
                            f"{target}: {msg}")
    return proc.stdout


# The pip-installed renderer (`pip install "graphc[render]"`): graphviz-pure, a self-contained
# port of Graphviz's dot command line; it writes svg and png (not pdf) and installs no `dot`, so
# it never shadows a system Graphviz.
PIP_RENDERER = "graphviz-pure"
PIP_FORMATS = ("svg", "png")


def find_dot(format: str = "svg") -> str:  # noqa: A002
    """The renderer for `format`: Graphviz's `dot` from PATH, else the pip-installed
    graphviz-pure (on PATH or beside this Python, as in a venv that is not activated); or a
    GraphvizError that says how to get one."""
    exe = shutil.which("dot")
    if exe is not None:
        return exe
    here = sysconfig.get_path("scripts")
    pip = shutil.which(PIP_RENDERER) or shutil.which(PIP_RENDERER, path=here)
    if pip is not None and format in PIP_FORMATS:
        return pip
    if pip is not None:
        raise GraphvizError(
            f"render: {format} needs Graphviz's own `dot` (the pip-installed {PIP_RENDERER} "
            f"writes {' and '.join(PIP_FORMATS)}); install Graphviz, or draw to svg or png")
    raise GraphvizError(
        "Graphviz's `dot` program was not found on PATH, so the drawing cannot be rendered. "
        'Install the pip renderer, `pip install "graphc[render]"` (svg and png), or Graphviz '
        "itself: `apt-get install graphviz` (Debian, Ubuntu), `brew install graphviz` (macOS), "
        "`conda install -c conda-forge graphviz`, or see https://graphviz.org/download/. "
        "gc.to_dot(...) gives the DOT text without either.")


def derivation(node: Node) -> list[Node]:
    """The nodes `grad` inserted to compute `node` (its ancestors of role "grad"), for
    `to_dot(..., highlight=derivation(dW))`.

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph()
        >>> x = g.input("x")
        >>> dx = gc.grad(gc.sin(x), x)
        >>> [n.op.name for n in derivation(dx)]
        ['constant', 'cos', 'mul']
    """
    if not isinstance(node, Node):
        raise GraphError(f"derivation: expected a graph node, got {type(node).__name__}")
    seen: set[Node] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(x for x in n.inputs if x.role == "grad")
    return sorted((n for n in seen if n.role == "grad" or n is node), key=lambda n: n.index)


# -- Jupyter ----------------------------------------------------------------------------------
# A notebook shows a Graph, or a Node with its ancestors, as its drawing, like the graphviz
# package's objects: `install` gives both classes `_repr_mimebundle_`. Layout time grows much
# faster than the graph (at Graphviz's defaults `dot` takes more than 30 s on a 150-node chain
# whose input feeds every layer), so a notebook's drawing is bounded: past DISPLAY_MAX_NODES
# nodes it is not drawn; from DISPLAY_FAST_NODES nodes on, the layout's iterations are capped
# and edges are straight (curved edges dominate the time of larger drawings); and a renderer
# still running after DISPLAY_TIMEOUT seconds is stopped. Instead of the drawing, the debugprint
# text says why (cut to DISPLAY_MAX_LINES lines, and to DISPLAY_TEXT_DEPTH levels for a graph
# too large to draw). `render` keeps Graphviz's defaults, for any size.
DISPLAY_MAX_NODES = 300  # nodes drawn in a notebook at most (inner graphs' nodes count too)
DISPLAY_FAST_NODES = 100  # from this many nodes on, the layout is DISPLAY_FAST_LAYOUT
DISPLAY_TIMEOUT = 10  # seconds
DISPLAY_MAX_LINES = 400  # lines of text/plain
DISPLAY_TEXT_DEPTH = 8  # debugprint's max_depth for a graph too large to draw
DISPLAY_FAST_LAYOUT = ("-Gnslimit=2", "-Gnslimit1=2", "-Gmclimit=0.1", "-Gsplines=line")
SVG_MIME = "image/svg+xml"


def mimebundle(graph_or_node, include=None, exclude=None) -> dict[str, str]:
    """What Jupyter shows for a Graph or a Node (its ancestors): the drawing as svg, and the
    `debugprint` text as text/plain. Without a drawing (no renderer, too large, too slow, a
    renderer error) the text says why. Never raises: a notebook's display must not.

    `include` and `exclude` are IPython's lists of mime types to compute or to leave out.

    Examples:
        >>> import graphc as gc
        >>> g = gc.Graph("f")
        >>> x = g.input("x", shape=(3,))
        >>> y = gc.exp(x).sum()
        >>> print(mimebundle(y, exclude=[SVG_MIME])["text/plain"])
        #2 sum_2: sum(axis=(0,)) ()
        └─ #1 exp_1: exp (3,)
           └─ #0 x: input (3,)
        >>> "<svg" in y._repr_mimebundle_()[SVG_MIME]
        True
    """
    try:
        wanted = {SVG_MIME} if include is None else set(include)
        wanted -= set(exclude or ())
        bundle: dict[str, str] = {}
        why = None
        size = _drawn_size(graph_or_node, DISPLAY_MAX_NODES)
        if SVG_MIME in wanted:
            svg, why = _display_svg(graph_or_node, size)
            if svg is not None:
                bundle[SVG_MIME] = svg
        bundle["text/plain"] = _display_text(graph_or_node, why, size)
        return bundle
    except Exception as e:  # anything at all: a notebook shows this text instead
        return {"text/plain": f"{_safe_repr(graph_or_node)}\n(not drawn: {type(e).__name__}: "
                              f"{e})"}


DISPLAY_METHODS = {"_repr_mimebundle_": mimebundle}  # IPython's hook, on Graph and on Node


def install() -> None:
    """Let Jupyter show a Graph, and a Node with its ancestors, as a drawing (`mimebundle`),
    as graphc.ops installs the operators on Node; graphc.export calls it once."""
    for cls in (Graph, Node):
        for name, fn in DISPLAY_METHODS.items():
            setattr(cls, name, fn)


def _display_svg(graph_or_node, size: int) -> tuple[str | None, str | None]:
    """The notebook's drawing of `size` nodes (see `_drawn_size`), or None and why not."""
    if size > DISPLAY_MAX_NODES:
        many = (f"{size} nodes" if isinstance(graph_or_node, Graph)
                else f"more than {DISPLAY_MAX_NODES} nodes")
        return None, (f"{many}; a notebook draws at most {DISPLAY_MAX_NODES} "
                      "(graphc.export.dot.DISPLAY_MAX_NODES). gc.render(x, \"graph.svg\") "
                      "draws any size to a file")
    args = DISPLAY_FAST_LAYOUT if size >= DISPLAY_FAST_NODES else ()
    try:
        out = _run(to_dot(graph_or_node), "svg", args, DISPLAY_TIMEOUT, "drawing for a notebook")
    except GraphvizError as e:
        return None, str(e)
    except Exception as e:  # whatever broke, the text is still shown
        return None, f"{type(e).__name__}: {e}"
    return out.decode("utf-8", errors="replace"), None


def _display_text(graph_or_node, why: str | None, size: int) -> str:
    """debugprint's text of a graph (its sinks) or a node, cut to DISPLAY_MAX_LINES lines and,
    for a graph too large to draw, to DISPLAY_TEXT_DEPTH levels; `why` it was not drawn."""
    head = [repr(graph_or_node)] if isinstance(graph_or_node, Graph) else []
    if why is not None:
        head.append(f"(not drawn: {why})")
    deep = size > DISPLAY_MAX_NODES
    try:
        tree = debugprint(graph_or_node, max_depth=DISPLAY_TEXT_DEPTH if deep else None)
    except Exception as e:  # the text is the last resort: keep its head
        tree = f"(debugprint failed: {type(e).__name__}: {e})"
    lines = tree.splitlines()
    if len(lines) > DISPLAY_MAX_LINES:
        left = len(lines) - DISPLAY_MAX_LINES
        lines = [*lines[:DISPLAY_MAX_LINES], f"··· {left} more lines: gc.debugprint prints all"]
    return "\n".join(head + lines)


def _drawn_size(graph_or_node, limit: int) -> int:
    """How many nodes `to_dot` draws for a graph or a node, inner graphs' nodes included,
    counted up to `limit + 1` (so this is quick on a graph of any size)."""
    if isinstance(graph_or_node, Graph):
        if len(graph_or_node.nodes) > limit:
            return len(graph_or_node.nodes)
        stack = list(graph_or_node.nodes)
    else:
        stack = [graph_or_node]
    seen: set[Node] = set()
    while stack and len(seen) <= limit:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(n.inputs)
        for _, body in bodies(n.op):
            stack.extend(body.graph.nodes[:limit + 1])
    return len(seen)


def _safe_repr(obj) -> str:
    try:
        return repr(obj)
    except Exception as e:  # a broken repr must not break the display
        return f"<{type(obj).__name__}: repr failed: {e}>"


# -- pieces -----------------------------------------------------------------------------------
def _select(graph_or_nodes) -> tuple[list[Node], set[Node], Graph]:
    if isinstance(graph_or_nodes, Graph):
        return list(graph_or_nodes.nodes), set(), graph_or_nodes
    outs = [graph_or_nodes] if isinstance(graph_or_nodes, Node) else graph_or_nodes
    if not isinstance(outs, (list, tuple)) or not outs:
        raise GraphError("to_dot: expected a Graph, a node or a non-empty list of nodes, got "
                         f"{graph_or_nodes!r}")
    for k, n in enumerate(outs):
        if not isinstance(n, Node):
            raise GraphError(f"to_dot: item {k} is not a graph node but {type(n).__name__}")
        if n.graph is not outs[0].graph:
            raise GraphError(f"to_dot: node {n.name!r} belongs to graph {n.graph.name!r}, "
                             f"not {outs[0].graph.name!r}")
    return walk.ancestors(outs), set(outs), outs[0].graph


def _node_set(what: str, nodes, graph: Graph) -> set[Node]:
    items = [nodes] if isinstance(nodes, Node) else list(nodes)
    for n in items:
        if not isinstance(n, Node) or n.graph is not graph:
            raise GraphError(f"to_dot: {what} must hold nodes of graph {graph.name!r}, got "
                             f"{n!r}")
    return set(items)


def _emit_tree(lines, tree, clustered, folded, marked, outputs, scoped, pad):
    """The nodes and nested clusters of a scope tree, with an explicit stack (scopes may nest
    thousands deep). A cluster's id spells its path while that is short (`cluster_6layer1`),
    then a number; indentation stops growing at `MAX_PAD` levels, so the text stays linear."""
    stack: list = [(tree, (), 0)]  # (subtree to open, its path, its cluster depth) or a "}"
    count = 0
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            lines.append(item)
            continue
        branch, path, depth = item
        ind = pad + "  " * min(depth, MAX_PAD)
        for n in branch.get(None, []):
            lines.append(f"{ind}n{n.index} {_node_attrs(n, folded, marked, outputs, scoped)};")
        subs = [(key, sub) for key, sub in branch.items() if key is not None]
        for key, sub in reversed(subs):
            sub_path = (*path, key)
            count += 1
            cid = ("cluster_" + "_".join(f"{len(p)}{p}" for p in sub_path)
                   if len(sub_path) <= MAX_PAD else f"cluster__{count}")
            head = [f"{ind}subgraph {_q(cid)} {{"]
            if clustered and not path:  # a role cluster
                _, border, _, bg, label = STYLE.get(key, STYLE["forward"])
                head.append(f"{ind}  label={_q(label)}; style=\"rounded,filled\"; "
                            f"fillcolor={_q(bg)}; color={_q(border)}; fontcolor={_q(border)};")
            else:  # a scope cluster
                head.append(f"{ind}  label={_q(key)}; style=\"rounded,dashed\"; "
                            "color=\"#7f7f7f\"; fontcolor=\"#555555\";")
            # pushed in reverse: the head, then the subtree, then its closing brace
            stack.append(f"{ind}}}")
            stack.append((sub, sub_path, depth + 1))
            stack.extend(reversed(head))
    return lines


def _emit_bodies(lines, holders) -> None:
    """Each inner graph as a cluster beside the node that holds it: its nodes and edges, a
    dashed edge from each operand the node passes in to the body input standing for it (a
    loop's carries, scanned arrays and captured values; they are the node's last operands),
    and a dotted edge from its outputs to that node; inner graphs of inner graphs likewise (an
    explicit stack, ids prefixed by a running count so that no two graphs' ids meet)."""
    stack = list(reversed(holders))
    count = 0
    while stack:
        hid, holder, hpre, visible = stack.pop()
        for key, body in bodies(holder.op):
            count += 1
            pre = f"b{count}_"
            lines.append(f"  subgraph {_q(f'cluster_{pre}')} {{")
            lines.append(f"    label={_q(f'{holder.name}: {key} {body.graph.name}')}; "
                         "style=\"rounded,dotted\"; color=\"#7f7f7f\"; fontcolor=\"#555555\";")
            inner = walk.ancestors(list(body.outputs))
            inner += [x for x in body.graph.inputs if x not in set(inner)]
            outs = set(body.outputs)
            for n in inner:
                lines.append(f"    {pre}n{n.index} {_node_attrs(n, set(), set(), outs, False)};")
            lines.append("  }")
            for n in inner:
                for pos, x in enumerate(n.inputs):
                    lines.append(f"  {pre}n{x.index} -> {pre}n{n.index}"
                                 f"{_edge_attrs(x, n, pos, set())};")
            for o in body.outputs:
                lines.append(f"  {pre}n{o.index} -> {hid} [style=\"dotted\", "
                             "arrowhead=\"odot\", constraint=\"false\"];")
            params = body.graph.inputs
            operands = holder.inputs[len(holder.inputs) - len(params):] if len(
                holder.inputs) >= len(params) else ()
            for x, p in zip(operands, params):
                if x in visible:
                    lines.append(f"  {hpre}n{x.index} -> {pre}n{p.index} [style=\"dashed\", "
                                 "color=\"#9a9a9a\", arrowhead=\"empty\"];")
            shown = set(inner)
            stack.extend((f"{pre}n{n.index}", n, pre, shown)
                         for n in reversed(inner) if bodies(n.op))


def _node_attrs(n: Node, folded, marked, outputs, scoped) -> str:
    fill, border, _, _, _ = STYLE.get(n.role, STYLE["forward"])
    shown = n.name.rsplit("/", 1)[1] if scoped and n.scope and n.name.startswith(
        n.scope + "/") else n.name
    shape = type_text(n)  # a multi-output node: `-> [0] (2,) | [1] (3,)`, one per output
    dtype = "" if n.op.multi or n.dtype.name == "float64" else f" {n.dtype.name}"
    if isinstance(n.op, Input):
        attrs = {"shape": "ellipse", "style": "filled,bold", "fillcolor": INPUT_FILL,
                 "color": border}
        title, detail = shown, f"{shape}{dtype}"
    elif isinstance(n.op, Constant):
        attrs = {"shape": "box", "style": "rounded,filled,dashed", "fillcolor": CONST_FILL,
                 "color": CONST_BORDER, "fontsize": "10"}
        value = _const_text(n)
        title = value if _auto_name(n) else f"{shown} = {value}"
        detail = "" if n.ndim == 0 and not dtype else f"{shape}{dtype}"
    else:
        attrs = {"shape": "box", "style": "rounded,filled", "fillcolor": fill, "color": border}
        if n.op.multi:  # one node for the op, with its outputs listed; its views hang off it
            attrs["shape"] = "box3d"
        elif isinstance(n.op, Output):  # a view: a small tag naming the output it reads
            attrs.update(shape="cds", fontsize="10")
        op = _op_text(n, folded)
        if _auto_name(n):
            title, detail = op, f"{shape}{dtype}"
        else:
            title, detail = shown, f"{op}  {shape}{dtype}"
    if n in marked:
        attrs.update(color=HIGHLIGHT, penwidth="3")
    if n in outputs:
        attrs["peripheries"] = "2"
    label = f"<B>{_html(title)}</B>"
    if detail:
        label += f"<BR/><FONT POINT-SIZE=\"9\">{_html(detail)}</FONT>"
    tip = f"{n.name}: {n.op.label()} {shape} {n.dtype.name} role={n.role} at {_short(n.source)}"
    parts = [f"label=<{label}>", f"tooltip={_q(tip)}"]
    parts += [f"{k}={_q(v)}" for k, v in attrs.items()]
    return "[" + ", ".join(parts) + "]"


def _edge_attrs(x: Node, n: Node, pos: int, marked) -> str:
    _, _, colour, _, _ = STYLE.get(n.role, STYLE["forward"])
    attrs = {"color": colour}
    if n.role != x.role:  # a forward value read by the gradient (or the reverse)
        attrs.update(style="dashed", color=colour + "80", constraint="false")
    if not n.op.commutative and len(n.inputs) > 1:  # argument positions matter: number them
        attrs.update(headlabel=str(pos), fontcolor=colour, labeldistance="1.6",
                     labelangle="35")
    if x in marked and n in marked:
        attrs.update(color=HIGHLIGHT, penwidth="2.2")
    return " [" + ", ".join(f"{k}={_q(v)}" for k, v in attrs.items()) + "]"


def _short(source: str) -> str:
    """A source location relative to the working directory when it lies below it."""
    cwd = os.getcwd() + os.sep
    return source[len(cwd):] if source.startswith(cwd) else source


def _auto_name(n: Node) -> bool:
    """Whether the name is the one Graph made up (`op_index`), so the op says it all."""
    base = n.name.rsplit("/", 1)[-1]
    stem, _, digits = base.rpartition("_")
    return stem == n.op.name and digits.isdigit()


def _const_text(n: Node) -> str:
    v = n.op.value
    if v.size == 1:
        item = v.reshape(()).item()
        return f"{item:.4g}" if isinstance(item, float) else str(item)
    return f"constant{types.fmt_shape(v.shape)}"


def _op_text(n: Node, folded: set[Node]) -> str:
    label = op_label(n.op)
    if not any(x in folded for x in n.inputs):
        return label
    args = ", ".join(("" if _auto_name(x) else x.name + "=") + _const_text(x) if x in folded
                     else "·" for x in n.inputs)
    return f"{label}[{args}]"


def _q(s: str) -> str:
    """A DOT double-quoted string that Graphviz shows as `s`: `&` is written `&amp;` (Graphviz
    reads entities in strings), control characters as visible escapes (see `_visible`)."""
    s = _visible(str(s)).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + s.replace("&", "&amp;") + '"'


def _html(s: str) -> str:
    """Text for an HTML-like label: escaped, control characters visible, newlines as breaks."""
    return html.escape(_visible(s)).replace("\n", "<BR/>")


# Characters that XML (so SVG) cannot hold, or that Graphviz drops from labels (tab, CR and
# other C0/C1 controls): a name holding them is drawn with Python's escape (`\x01`, `\t`).
_INVISIBLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\ufffe\uffff]")


def _visible(s: str) -> str:
    return _INVISIBLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s)
