"""What autodiff built, remembered per graph, so asking twice for a derivative adds nothing.

A graph is append-only and a node never changes, so the nodes `grad(z, x)` built stay its
answer for as long as they are in the graph. Entries live in `Graph.cache` under keys whose
first item is `TAG` (compiled functions use other keys) and that name nodes by their index, so
no key comparison ever calls a node's overloaded `==`. Each entry is tied to the nodes of its
key and the nodes it holds, so a rollback (a failed transaction, the end of a scratch block)
drops exactly the entries that refer to a removed node and keeps the others; on top of that,
a lookup ignores an entry unless each of its nodes is still in the graph (a key node of
another graph can share an index with one of this graph's).
"""

from __future__ import annotations

from graphc.ir.graph import Graph, Node

TAG = "graphc.autodiff.memo"


def lookup(g: Graph, kind: str, *parts):
    """The value remembered for (kind, parts), or None."""
    key, nodes = _key(kind, parts)
    hit = g.cache.get(key)
    if hit is None:
        return None
    made, value = hit
    if not all(n in g for n in nodes):
        return None  # nodes of another graph, or removed ones, that share indices with the key's
    if not all(n in g for n in made):
        g.cache.pop(key)
        return None
    return value


def remember(g: Graph, kind: str, *parts, value):
    """Store `value` (nodes, or lists, tuples and dicts of them) for (kind, parts); returns it."""
    key, nodes = _key(kind, parts)
    made = tuple(_nodes_in(value))
    g.cache.put(key, (made, value), [*nodes, *made])
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
