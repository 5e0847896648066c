"""What autodiff built, remembered per graph, so asking twice for a derivative adds nothing.

A graph is append-only and a node never changes, so the nodes `grad(z, x)` built stay its
answer for as long as they are in the graph. Entries live in `Graph.cache` under keys whose
first item is `TAG` (compiled functions use other keys) and that name nodes by their index, so
no key comparison ever calls a node's overloaded `==`. `Graph._truncate` (a failed transaction,
the end of a scratch block) clears that cache; on top of that, every entry keeps its nodes and
is ignored unless each is still the node at its index.
"""

from __future__ import annotations

import contextlib

from graphc.ir.graph import Graph, Node

TAG = "graphc.autodiff.memo"


def lookup(g: Graph, kind: str, *parts):
    """The value remembered for (kind, parts), or None."""
    key, nodes = _key(kind, parts)
    hit = g.cache.get(key)
    if hit is None:
        return None
    made, value = hit
    if not all(_alive(g, n) for n in nodes):
        return None  # nodes of another graph, or removed ones, that share indices with the key's
    if not all(_alive(g, n) for n in made):
        g.cache.pop(key, None)
        return None
    return value


@contextlib.contextmanager
def kept(g: Graph):
    """Keep the entries whose nodes survive a block (a `scratch`) that clears `g.cache`."""
    snapshot = g.cache.copy()  # one C-level copy: safe while another thread fills the cache
    saved = {k: v for k, v in snapshot.items()
             if type(k) is tuple and k and type(k[0]) is str and k[0] == TAG}
    try:
        yield g
    finally:
        for k, (made, value) in saved.items():
            if k not in g.cache and all(_alive(g, n) for n in made):
                g.cache[k] = (made, value)


def remember(g: Graph, kind: str, *parts, value):
    """Store `value` (nodes, or lists, tuples and dicts of them) for (kind, parts); returns it."""
    key, _ = _key(kind, parts)
    g.cache[key] = (tuple(_nodes_in(value)), value)
    return value


def _key(kind: str, parts: tuple) -> tuple[tuple, list[Node]]:
    nodes: list[Node] = []

    def ident(p):
        if isinstance(p, Node):
            nodes.append(p)
            return ("node", p.index)
        if isinstance(p, (list, tuple)):
            return tuple(ident(q) for q in p)
        return p

    return (TAG, kind, *(ident(p) for p in parts)), nodes


def _alive(g: Graph, n: Node) -> bool:
    return n.graph is g and n.index < len(g.nodes) and g.nodes[n.index] is n


def _nodes_in(value):
    if isinstance(value, Node):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _nodes_in(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _nodes_in(k)
            yield from _nodes_in(v)
