"""The command line: `python -m graphc` (or `graphc`) with `demo`, `render` and `info`.

    graphc demo [--out mlp_grad.dot]        the figure 6.11 MLP, differentiated and checked;
                                             also renders the drawing to SVG when dot exists
    graphc render FILE.json -o out.svg      draw a saved graph (svg, png or pdf)
    graphc info FILE.json                   node counts by op and role, inputs, outputs, depth

Exit status: 0 on success, 2 for bad arguments, 1 for a graphc error (bad file, no Graphviz),
with the error's message on stderr.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

import networkx as nx

from graphc.errors import GraphcError
from graphc.export import dot, json, text
from graphc.ir import types


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Examples:
        >>> main(["info", "--help"])  # doctest: +ELLIPSIS
        usage: graphc info [-h] FILE.json
        ...
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv and argv[0] == "demo":  # the demo has its own options and --help
        return _demo(argv[1:])
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except GraphcError as e:
        print(f"graphc {args.command}: error: {e}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="graphc", description="graphc: a symbol-to-symbol graph compiler.",
        epilog="Run `graphc COMMAND --help` for the options of each command.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("demo", help="the figure 6.11 MLP with its gradient; writes a drawing",
                   add_help=False)

    r = sub.add_parser("render", help="draw a saved graph with Graphviz",
                       description="Draw a graph saved by gc.save to svg, png or pdf "
                       "(or DOT text with a .dot output).")
    r.add_argument("file", metavar="FILE.json")
    r.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file; its suffix picks the format (svg, png, pdf, dot)")
    r.add_argument("--outputs", nargs="+", metavar="NAME",
                   help="draw only these nodes and their ancestors")
    r.add_argument("--rankdir", choices=dot.RANKDIRS, default="TB",
                   help="layout direction: TB top-down, LR left-to-right, BT bottom-up as in "
                   "the book (default: %(default)s)")
    r.add_argument("--collapse-constants", action="store_true",
                   help="fold constants into the labels of the nodes that use them")
    r.add_argument("--highlight", nargs="+", default=[], metavar="NAME",
                   help="emphasise these nodes")
    r.add_argument("--highlight-grad", nargs="+", default=[], metavar="NAME",
                   help="emphasise the nodes grad inserted to compute these (e.g. dJ/dW1)")
    r.add_argument("--scopes", action="store_true", help="one cluster per name scope")
    r.add_argument("--no-role-clusters", action="store_true",
                   help="do not box the forward pass and the gradient apart")
    r.set_defaults(run=_render)

    i = sub.add_parser("info", help="summarise a saved graph",
                       description="Node counts by op and role, inputs, outputs (nodes no "
                       "other node uses) and depth (the longest path, in edges).")
    i.add_argument("file", metavar="FILE.json")
    i.set_defaults(run=_info)
    return p


def _demo(argv: list[str]) -> int:
    from graphc import demo

    try:
        status = demo.main(argv)
    except SystemExit as e:  # argparse inside the demo: --help, or bad options
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    if status or any(a in ("-h", "--help") for a in argv):
        return status or 0
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--out", default="mlp_grad.dot")
    dot_path = pre.parse_known_args(argv)[0].out
    try:
        renderer = os.path.basename(dot.find_dot())
    except dot.GraphvizError:
        print("(no Graphviz renderer, so no SVG: `pip install \"graphc[render]\"` or "
              "`apt-get install graphviz` adds one)")
        return 0
    svg = os.path.splitext(dot_path)[0] + ".svg"
    with open(dot_path, encoding="utf-8") as fh:
        dot.run_dot(fh.read(), svg)
    print(f"wrote {os.path.abspath(svg)} (rendered by {renderer})")
    return 0


def _render(args) -> int:
    g = json.load(args.file)
    targets = [g[name] for name in args.outputs] if args.outputs else g
    marked = [g[name] for name in args.highlight]
    for name in args.highlight_grad:
        marked += dot.derivation(g[name])
    options = dict(rankdir=args.rankdir, collapse_constants=args.collapse_constants,
                   highlight=marked, group_scopes=args.scopes,
                   cluster_roles=not args.no_role_clusters)
    if args.output.lower().endswith(".dot"):
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(dot.to_dot(targets, **options))
    else:
        dot.render(targets, args.output, **options)
    print(f"wrote {args.output}")
    return 0


def _info(args) -> int:
    g = json.load(args.file)
    dg = g.to_networkx()
    used = {x for n in g.nodes for x in n.inputs}
    outputs = [n for n in g.nodes if n not in used]
    by_role = collections.Counter(n.role for n in g.nodes)
    print(f"graph {g.name!r}: {len(g.nodes)} nodes, "
          + ", ".join(f"{k} {by_role[k]}" for k in sorted(by_role)))
    print(f"depth: {nx.dag_longest_path_length(dg) if len(dg) else 0} (longest path, in edges)")
    print(f"inputs ({len(g.inputs)}):")
    for n in g.inputs:
        print(f"  {n.name}: {types.fmt_shape(n.shape)} {n.dtype.name}")
    print(f"outputs ({len(outputs)}, nodes no other node uses):")
    for n in outputs:
        print(f"  {text.describe(n)}")
    counts = collections.Counter((n.op.name, n.role) for n in g.nodes)
    ops = sorted({op for op, _ in counts}, key=lambda op: (-sum(
        counts[op, r] for r in by_role), op))
    roles = sorted(by_role)
    width = max(len(op) for op in ops) if ops else 2
    print("nodes by op and role:")
    print(f"  {'op':<{width}}  " + "  ".join(f"{r:>7}" for r in roles))
    for op in ops:
        print(f"  {op:<{width}}  " + "  ".join(f"{counts[op, r]:>7}" for r in roles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
