"""Save and load graphs as versioned JSON (`save`, `load`); never pickle, never eval.

The format (version 3, documented in docs/inspection.md). Version 2 added inner graphs (an
op's body, nested in its parameters) and multi-output nodes (such as `split`, whose entry has
`"outputs": [{"shape", "dtype"}, ...]` in place of its own shape and dtype); version 3 added the
loops and branches (`scan`, `while_loop`, `cond`: multi-output nodes holding bodies, which may
hold loops in turn). Older files are newer ones without these, and still load:

    {"format": "graphc", "version": 1, "name": "mlp",
     "nodes": [{"name": "X", "op": "input", "inputs": [], "shape": ["batch", 784],
                "dtype": "float32", "role": "forward", "scope": ""},
               {"name": "c", "op": "constant", "inputs": [], "shape": [3], "dtype": "float64",
                "role": "forward", "scope": "", "value": {"dtype": "float64", "shape": [3],
                "data": "<base64 of the little-endian bytes, C order>"}},
               {"name": "s", "op": "sum", "inputs": [1], "params": {"axis": [0],
                "keepdims": false}, "shape": [], ...}]}

Nodes are listed in the graph's insertion order and refer to their inputs by position in that
list, so a file can only describe a DAG. An op is its registered name; its parameters are JSON
values, with tuples as lists and tagged objects for the rest ({"dim": "2*batch"},
{"dtype": "int64"}, {"slice": [start, stop, step]}, {"ellipsis": true}). A symbolic dimension
is a string holding an arithmetic expression over names and integers, read by
`graphc.ir.exprtext` (`ast`, rebuilt with sympy operators from a fixed table, bounded in length,
size and exponents): no text of the file is ever executed.

`load` rebuilds every node through `Graph.apply`, so each op's own shape rule re-checks the
file, and compares the result with the recorded shape and dtype. Any problem raises
`LoadError` naming the file and the location (`nodes[12].params.axis`).

An op that holds a graph (`gc.remat`) writes it in its parameters as `{"graph": {"name": ...,
"nodes": [...], "inputs": [positions], "outputs": [positions]}}`, its nodes in the same form
as the top level's. The loader reads an inner graph exactly as a top-level one (every check
above, cycles included), at most `MAX_GRAPH_DEPTH` graphs deep, and counts its nodes against
the same `max_nodes` as the rest of the file.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import os
import stat
import tempfile

import numpy as np
import sympy

from graphc.errors import GraphcError, GraphError, LoadError
from graphc.ir import exprtext, types
from graphc.ir.body import BODY, Body
from graphc.ir.graph import ROLES, Graph, Node
from graphc.ir.op import OPS, Constant, Input, output_types
from graphc.ir.params import MAX_INT, Callables, kinds_of

FORMAT = "graphc"
VERSION = 3  # what save writes; load reads 1 (no inner graphs, no multi-output nodes), 2
VERSIONS = (1, 2, 3)  # (no loops) and 3
LOOPS = ("scan", "while_loop", "cond")  # the ops version 3 added
MAX_BYTES = 1 << 30  # largest total of constant data (decoded) that load accepts by default
MAX_NODES = 5_000_000  # most nodes load accepts by default (about 1 KB of memory each)
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64")
NODE_KEYS = {"name", "op", "inputs", "shape", "dtype", "role", "scope", "params", "value"}
MULTI_KEYS = NODE_KEYS - {"shape", "dtype", "value"} | {"outputs"}  # version 2: a multi-output
#   node lists one {"shape", "dtype"} per output instead of its own shape and dtype
MAX_PARAM_DEPTH = 8  # lists in lists in a parameter (scatter_add's windows need 3)
MAX_DIM_TEXT = 200  # characters of one symbolic dimension expression
MAX_GRAPH_DEPTH = 32  # inner graphs inside inner graphs (a loop in a remat in a loop ...)
GRAPH_KEYS = {"name", "nodes", "inputs", "outputs"}

# -- save -------------------------------------------------------------------------------------
def save(graph: Graph, path) -> str:
    """Write `graph` to a JSON file that `load` reads back; returns the path.

    Examples:
        >>> import os, tempfile, numpy as np, graphc as gc
        >>> g = gc.Graph("f")
        >>> x = g.input("x", shape=("n",))
        >>> y = (2.0 * gc.exp(x)).sum()
        >>> path = gc.save(g, os.path.join(tempfile.mkdtemp(), "f.json"))
        >>> g2 = gc.load(path)
        >>> [n.name for n in g2.nodes] == [n.name for n in g.nodes]
        True
        >>> float(g2.nodes[-1].eval({"x": np.zeros(3)}))
        6.0
    """
    text = dumps(graph)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".graphc-", suffix=".json", dir=folder)
    except OSError as e:
        raise GraphError(f"save: cannot write to folder {folder!r}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise GraphError(f"save: cannot write {path!r}: {e.strerror}") from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def dumps(graph: Graph) -> str:
    """The JSON text of a graph (what `save` writes)."""
    return json.dumps(to_data(graph), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def to_data(graph: Graph) -> dict:
    """The graph as plain JSON data: dicts, lists, strings, numbers."""
    if not isinstance(graph, Graph):
        raise GraphError(f"save: expected a Graph, got {type(graph).__name__}")
    return {"format": FORMAT, "version": VERSION, "name": graph.name,
            "nodes": _nodes_to_json(graph)}


def _nodes_to_json(graph: Graph) -> list:
    nodes = []
    for n in graph.nodes:
        entry = {"name": n.name, "op": n.op.name, "inputs": [x.index for x in n.inputs],
                 "shape": [_dim_to_json(d, n) for d in n.shape], "dtype": n.dtype.name,
                 "role": n.role, "scope": n.scope}
        if n.op.multi:
            del entry["shape"], entry["dtype"]
            entry["outputs"] = [{"shape": [_dim_to_json(d, n) for d in s], "dtype": d.name}
                                for s, d in output_types(n)]
        if isinstance(n.op, Constant):
            entry["value"] = _array_to_json(n.op.value)
        elif not isinstance(n.op, Input) and n.op.params():
            entry["params"] = {k: _param_to_json(v, n, k) for k, v in n.op.params().items()}
        nodes.append(entry)
    return nodes


def _body_to_json(body: Body) -> dict:
    """An inner graph: its nodes as a top-level graph's, its inputs and outputs by position."""
    g = body.graph
    return {"graph": {"name": g.name, "nodes": _nodes_to_json(g),
                      "inputs": [x.index for x in g.inputs],
                      "outputs": [o.index for o in body.outputs]}}


def _dim_to_json(d, n: Node):
    if isinstance(d, int):
        return d
    text = str(d)
    if len(text) > MAX_DIM_TEXT or not types.dim_eq(_parse_dim(text, "shape"), d):
        raise GraphError(f"save: node {n.name!r} has the dimension {text!r}, which the file "
                         "format cannot represent")
    return text


def _param_to_json(v, n: Node, key: str):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            raise GraphError(f"save: node {n.name!r} parameter {key!r} is {v}; only finite "
                             "numbers can be saved")
        return float(v)
    if isinstance(v, (tuple, list)):
        return [_param_to_json(x, n, key) for x in v]
    if isinstance(v, slice):
        return {"slice": [_param_to_json(x, n, key) for x in (v.start, v.stop, v.step)]}
    if v is Ellipsis:
        return {"ellipsis": True}
    if isinstance(v, np.dtype):
        return {"dtype": v.name}
    if isinstance(v, sympy.Expr):
        return {"dim": _dim_to_json(v, n)}
    if isinstance(v, Body):
        return _body_to_json(v)
    if isinstance(v, Callables):
        return None  # Python functions (custom derivative rules): a file holds no code
    raise GraphError(f"save: node {n.name!r} parameter {key!r} = {v!r} of type "
                     f"{type(v).__name__} has no JSON form")


def _array_to_json(a: np.ndarray) -> dict:
    le = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "data": base64.b64encode(le.tobytes()).decode("ascii")}


# -- load -------------------------------------------------------------------------------------
def load(path, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> Graph:
    """Read a graph written by `save`, checking everything; a bad file raises LoadError.

    Nothing in the file is executed. `max_bytes` bounds the constants' decoded size (and so
    the file's size), `max_nodes` the number of nodes (and so the memory the graph takes).
    Only regular files are read: a device, a pipe or a socket is refused before reading.

    Examples:
        >>> import os, tempfile, graphc as gc
        >>> path = os.path.join(tempfile.mkdtemp(), "bad.json")
        >>> _ = open(path, "w").write('{"format": "graphc", "version": 99, "nodes": []}')
        >>> gc.load(path)
        Traceback (most recent call last):
        ...
        graphc.errors.LoadError: ...bad.json: version: ...reads versions 1 to 3, the file has 99
    """
    where = os.fspath(path)
    limit = file_limit(max_bytes, max_nodes)
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not hang before fstat can refuse it
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise LoadError(f"{where}: cannot read the file: {e.strerror or e}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise LoadError(f"{where}: not a regular file (a device, pipe, socket or folder); "
                        "graphc reads graphs from regular files only")
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > limit:
            raise LoadError(f"{where}: the file has {info.st_size} bytes, more than the "
                            f"{limit} allowed for max_bytes={max_bytes}, max_nodes={max_nodes}")
        try:
            # the size fstat gave, plus one byte to notice a file that grows meanwhile
            raw = fh.read(info.st_size + 1)
        except OSError as e:
            raise LoadError(f"{where}: cannot read the file: {e.strerror or e}") from None
    if len(raw) > info.st_size:
        raise LoadError(f"{where}: the file grew while it was being read")
    return loads(raw, max_bytes=max_bytes, where=where, max_nodes=max_nodes)


def file_limit(max_bytes: int, max_nodes: int) -> int:
    """The largest file `load` reads: base64 constants plus up to 2 KB of JSON per node."""
    return 2 * max_bytes + 2048 * max_nodes + (1 << 20)


def loads(text: str | bytes, max_bytes: int = MAX_BYTES, where: str = "<string>",
          max_nodes: int = MAX_NODES) -> Graph:
    """A graph from JSON text (what `load` does after reading the file)."""
    limit = file_limit(max_bytes, max_nodes)
    if not isinstance(text, (str, bytes)):
        raise LoadError(f"{where}: expected JSON text (str or bytes), got {type(text).__name__}")
    if len(text) > limit:
        raise LoadError(f"{where}: {len(text)} characters of JSON, more than the {limit} "
                        f"allowed for max_bytes={max_bytes}, max_nodes={max_nodes}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise LoadError(f"{where}: not UTF-8 text: {e}") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise LoadError(f"{where}: not valid JSON: {e.msg} (line {e.lineno}, column "
                        f"{e.colno})") from None
    except RecursionError:
        raise LoadError(f"{where}: JSON nested too deeply") from None
    except _NonFinite as e:
        raise LoadError(f"{where}: {e} is not allowed; JSON numbers must be finite") from None
    except ValueError as e:  # an integer past Python's digit limit, and the like
        raise LoadError(f"{where}: not valid JSON: {e}") from None
    del text
    try:  # the data is ours: each node's entry is dropped once built, to bound peak memory
        return _Reader(where, max_bytes, max_nodes, consume=True).graph(data)
    except (RecursionError, MemoryError, OverflowError) as e:
        raise LoadError(f"{where}: {type(e).__name__}: {e}") from None


class _NonFinite(ValueError):
    pass


def _reject_constant(token: str):
    raise _NonFinite(token)


def from_data(data, max_bytes: int = MAX_BYTES, where: str = "<data>",
              max_nodes: int = MAX_NODES) -> Graph:
    """A graph from JSON data (dicts and lists), validated as `load` does."""
    try:
        return _Reader(where, max_bytes, max_nodes).graph(data)
    except LoadError:
        raise
    except (RecursionError, MemoryError, OverflowError) as e:
        raise LoadError(f"{where}: {type(e).__name__}: {e}") from None


class _Reader:
    """Validating reader: every check names its location inside the file."""

    def __init__(self, where: str, max_bytes: int, max_nodes: int = MAX_NODES,
                 consume: bool = False):
        self.where = where
        self.budget = max_bytes
        self.max_nodes = max_nodes
        self.nodes_left = max_nodes  # shared by the top-level graph and every inner graph
        self.consume = consume
        self.version = VERSION
        self.depth = 0  # inner graphs open around the one being read

    def fail(self, loc: str, msg: str):
        raise LoadError(f"{self.where}: {loc}: {msg}")

    def graph(self, data) -> Graph:
        if not isinstance(data, dict):
            self.fail("top level", f"expected a JSON object, got {_kind(data)}")
        if data.get("format") != FORMAT:
            self.fail("format", f"expected {FORMAT!r}, got {data.get('format')!r}")
        version = data.get("version")
        if version not in VERSIONS or isinstance(version, bool):
            self.fail("version", f"this graphc reads versions 1 to {VERSION}, the file has "
                      f"{version!r}")
        self.version = version
        extra = set(data) - {"format", "version", "name", "nodes"}
        if extra:
            self.fail("top level", f"unknown keys {sorted(extra)}")
        name = data.get("name", "graph")
        if not isinstance(name, str):
            self.fail("name", f"expected a string, got {_kind(name)}")
        return self.nodes(name, data.get("nodes"), "")

    def nodes(self, name, entries, at: str) -> Graph:
        """A graph of `entries`, each checked; `at` locates an inner graph in the file."""
        if not isinstance(entries, list):
            self.fail(f"{at}nodes", f"expected a list, got {_kind(entries)}")
        if len(entries) > self.nodes_left:
            self.fail(f"{at}nodes", f"{len(entries)} nodes, more than the "
                      f"{self.nodes_left} left of max_nodes={self.max_nodes}")
        self.nodes_left -= len(entries)
        self.check_order(entries, at)
        try:
            g = Graph(name)
        except GraphcError as e:
            self.fail(f"{at}name", str(e))
        for k, entry in enumerate(entries):
            self.node(g, k, entry, at)
            if self.consume:
                entries[k] = None
        return g

    def body(self, v, loc: str) -> Body:
        """An inner graph (`{"graph": {...}}`), checked exactly as a top-level one, and then
        its inputs (all its input nodes, in order) and outputs."""
        if self.version < 2:
            self.fail(loc, f"inner graphs need version 2 files, this one is {self.version}")
        if not isinstance(v, dict) or set(v) != {"graph"} or not isinstance(v["graph"], dict):
            self.fail(loc, "expected an object {\"graph\": {...}}")
        data = v["graph"]
        extra = set(data) - GRAPH_KEYS
        if extra:
            self.fail(f"{loc}.graph", f"unknown keys {sorted(extra)}")
        if self.depth >= MAX_GRAPH_DEPTH:
            self.fail(loc, f"inner graphs nest at most {MAX_GRAPH_DEPTH} deep")
        at = f"{loc}.graph."
        name = data.get("name", "graph")
        if not isinstance(name, str):
            self.fail(f"{at}name", f"expected a string, got {_kind(name)}")
        self.depth += 1
        try:
            g = self.nodes(name, data.get("nodes"), at)
        finally:
            self.depth -= 1
        ins = data.get("inputs")
        if ins != [x.index for x in g.inputs]:
            self.fail(f"{at}inputs", "expected the positions of the graph's input nodes, in "
                      f"order: {[x.index for x in g.inputs]}, got {json.dumps(ins)[:80]}")
        outs = data.get("outputs")
        if not isinstance(outs, list) or not outs:
            self.fail(f"{at}outputs", f"expected a non-empty list, got {_kind(outs)}")
        for j, i in enumerate(outs):
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(g.nodes):
                self.fail(f"{at}outputs[{j}]", f"expected the position of a node "
                          f"(0..{len(g.nodes) - 1}), got {_kind(i)}")
        return Body(g, [g.nodes[i] for i in outs])

    def check_order(self, entries: list, at: str = "") -> None:
        """Inputs must point backwards; otherwise tell a cycle from a mere misordering."""
        import networkx as nx

        def edges():
            for k, e in enumerate(entries):
                ins = e.get("inputs") if isinstance(e, dict) else None
                for j in ins if isinstance(ins, list) else ():
                    if type(j) is int and 0 <= j < len(entries):
                        yield j, k

        bad = next(((k, j) for j, k in edges() if j >= k), None)
        if bad is None:
            return
        dg = nx.DiGraph(edges())
        try:
            cycle = nx.find_cycle(dg)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " -> ".join(f"nodes[{a}]" for a, _ in cycle) + f" -> nodes[{cycle[0][0]}]"
            self.fail(f"{at}nodes[{bad[0]}].inputs", f"the inputs form a cycle: {path}")
        self.fail(f"{at}nodes[{bad[0]}].inputs", f"refers to nodes[{bad[1]}], which comes later; "
                  "nodes must be listed inputs first (a topological order)")

    def node(self, g: Graph, k: int, e, at: str = "") -> None:
        loc = f"{at}nodes[{k}]"
        if not isinstance(e, dict):
            self.fail(loc, f"expected a JSON object, got {_kind(e)}")
        op_name = e.get("op")  # checked below; here only to know which keys a node may have
        multi = (self.version >= 2 and isinstance(op_name, str)
                 and getattr(OPS.get(op_name), "multi", False))
        extra = set(e) - (MULTI_KEYS if multi else NODE_KEYS)
        if extra:
            self.fail(loc, f"unknown keys {sorted(extra)}")
        name = self.field(e, loc, "name", str)
        if not name:
            self.fail(f"{loc}.name", "expected a non-empty string")
        if name in g:
            self.fail(f"{loc}.name", f"{name!r} is already the name of an earlier node")
        loc = f"{at}nodes[{k}] ({name!r})"
        op_name = self.field(e, loc, "op", str)
        if op_name in LOOPS and self.version < 3:
            self.fail(f"{loc}.op", f"{op_name} needs a version 3 file, this one is "
                      f"{self.version}")
        cls = OPS.get(op_name)
        if cls is None:
            self.fail(f"{loc}.op", f"unknown op {op_name!r}; this graphc registers "
                      f"{len(OPS)} ops (is a custom op's module imported?)")
        role = self.field(e, loc, "role", str)
        if role not in ROLES:
            self.fail(f"{loc}.role", f"expected one of {ROLES}, got {role!r}")
        scope = self.field(e, loc, "scope", str)
        if scope and (any(not p for p in scope.split("/"))):
            self.fail(f"{loc}.scope", f"expected names joined by '/', got {scope!r}")
        if multi:
            outs = self.field(e, loc, "outputs", list)
            expected = []
            for j, o in enumerate(outs):
                if not isinstance(o, dict) or set(o) != {"shape", "dtype"}:
                    self.fail(f"{loc}.outputs[{j}]", "expected an object with exactly the keys "
                              "shape, dtype")
                expected.append((self.shape(o["shape"], f"{loc}.outputs[{j}].shape"),
                                 self.dtype(o["dtype"], f"{loc}.outputs[{j}].dtype")))
        else:
            shape = self.shape(e.get("shape"), f"{loc}.shape")
            dtype = self.dtype(e.get("dtype"), f"{loc}.dtype")
        ins = self.field(e, loc, "inputs", list)
        for j, i in enumerate(ins):
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < k:
                self.fail(f"{loc}.inputs[{j}]", f"expected the position of an earlier node "
                          f"(0..{k - 1}), got {i!r}")
        if cls.arity is not None and len(ins) != cls.arity:
            self.fail(f"{loc}.inputs", f"{op_name} takes {cls.arity} inputs, got {len(ins)}")
        if "value" in e and cls is not Constant:
            self.fail(f"{loc}.value", f"only constants have a value, not {op_name}")
        inputs = [g.nodes[i] for i in ins]
        try:
            with g.role(role):
                if cls is Input:
                    self.no_params(e, loc)
                    node = g.input(name, shape, dtype)
                elif cls is Constant:
                    self.no_params(e, loc)
                    value = self.array(e.get("value"), f"{loc}.value")
                    node = g.constant(value, name=name)
                else:
                    op = self.op(cls, e.get("params", {}), f"{loc}.params")
                    node = g.apply(op, inputs, name=name)
        except LoadError:
            raise
        except GraphcError as e2:
            self.fail(loc, f"{op_name} rejects its inputs or parameters: {e2}")
        except Exception as e2:  # an op's own checks, on values no graph could hold
            self.fail(loc, f"{op_name} could not be built: {type(e2).__name__}: {e2}")
        node.scope = scope
        if node.name != name:
            self.fail(f"{loc}.name", f"could not be kept (became {node.name!r})")
        if multi:
            found = output_types(node)
            if len(found) != len(expected) or any(
                    not types.shape_eq(s1, s2) or d1 != d2
                    for (s1, d1), (s2, d2) in zip(found, expected)):
                self.fail(f"{loc}.outputs", f"the file's outputs differ from what {op_name} "
                          "of the inputs gives: " + ", ".join(
                              f"{types.fmt_shape(s)} {d.name}" for s, d in found))
            return
        if not types.shape_eq(node.shape, shape):
            self.fail(f"{loc}.shape", f"the file says {types.fmt_shape(shape)} but {op_name} "
                      f"of the inputs gives {types.fmt_shape(node.shape)}")
        if node.dtype != dtype:
            self.fail(f"{loc}.dtype", f"the file says {dtype.name} but {op_name} of the "
                      f"inputs gives {node.dtype.name}")

    def field(self, e: dict, loc: str, key: str, kind: type):
        if key not in e:
            self.fail(loc, f"missing key {key!r}")
        v = e[key]
        if not isinstance(v, kind):
            self.fail(f"{loc}.{key}", f"expected a {kind.__name__}, got {_kind(v)}")
        return v

    def no_params(self, e: dict, loc: str) -> None:
        if e.get("params"):
            self.fail(f"{loc}.params", "inputs and constants take no parameters")

    def shape(self, v, loc: str) -> tuple:
        if not isinstance(v, list):
            self.fail(loc, f"expected a list of dimensions, got {_kind(v)}")
        if len(v) > 64:
            self.fail(loc, f"rank {len(v)} is more than 64")
        return tuple(self.dim(d, f"{loc}[{k}]") for k, d in enumerate(v))

    def dim(self, d, loc: str):
        if isinstance(d, int) and not isinstance(d, bool):
            if not 0 <= d <= MAX_INT:
                self.fail(loc, f"a dimension must be an int >= 0 and <= {MAX_INT}, got {d}")
            return d
        if isinstance(d, str):
            try:
                dim = types.as_dim(_parse_dim(d, loc))
            except ValueError as e:
                self.fail(loc, str(e))
            if isinstance(dim, int) and dim > MAX_INT:
                self.fail(loc, f"the dimension {d!r} is too large (more than {MAX_INT})")
            if dim < 0 if isinstance(dim, int) else (dim.is_negative or dim.is_integer is False):
                self.fail(loc, f"a dimension must be an integer >= 0, got {d!r}")
            return dim
        self.fail(loc, f"expected an int or a dimension expression, got {_kind(d)}")

    def dtype(self, v, loc: str) -> np.dtype:
        if v not in DTYPES:
            self.fail(loc, f"expected one of {', '.join(DTYPES)}, got {v!r}")
        return np.dtype(v)

    def array(self, v, loc: str) -> np.ndarray:
        if not isinstance(v, dict) or set(v) != {"dtype", "shape", "data"}:
            self.fail(loc, "expected an object with exactly the keys dtype, shape, data")
        dtype = self.dtype(v["dtype"], f"{loc}.dtype")
        shape = self.shape(v["shape"], f"{loc}.shape")
        if not all(isinstance(d, int) for d in shape):
            self.fail(f"{loc}.shape", "a constant's shape must be made of ints")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self.budget:
            self.fail(loc, f"{nbytes} bytes of constant data exceed the {self.budget} bytes "
                      "left under max_bytes")
        self.budget -= nbytes
        data = v["data"]
        if not isinstance(data, str):
            self.fail(f"{loc}.data", f"expected a base64 string, got {_kind(data)}")
        if len(data) != 4 * math.ceil(nbytes / 3):
            self.fail(f"{loc}.data", f"{len(data)} base64 characters cannot hold the {nbytes} "
                      f"bytes of a {dtype.name} array of shape {types.fmt_shape(shape)}")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as e:
            self.fail(f"{loc}.data", f"not valid base64: {e}")
        if len(raw) != nbytes:
            self.fail(f"{loc}.data", f"decodes to {len(raw)} bytes, expected {nbytes}")
        arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
        if dtype == np.bool_ and not np.isin(np.frombuffer(raw, np.uint8), (0, 1)).all():
            self.fail(f"{loc}.data", "boolean bytes must be 0 or 1")
        return arr

    def op(self, cls, params, loc: str):
        if not isinstance(params, dict):
            self.fail(loc, f"expected a JSON object, got {_kind(params)}")
        if not dataclasses.is_dataclass(cls):
            if params:
                self.fail(loc, f"{cls.name} takes no parameters")
            return cls()
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = set(params) - set(fields)
        if unknown:
            self.fail(loc, f"{cls.name} has no parameters {sorted(unknown)}; it takes "
                      f"{sorted(fields) or 'none'}")
        kwargs = {}
        declared = dict(kinds_of(cls))  # checked by the op itself when it is made
        for key, raw in params.items():
            if declared.get(key) is BODY:
                kwargs[key] = self.body(raw, f"{loc}.{key}")
                continue
            value = self.param(raw, f"{loc}.{key}")
            default = fields[key].default
            if key in declared:
                try:
                    declared[key].check(value, f"{loc}.{key}")
                except GraphError as e:
                    self.fail(f"{loc}.{key}", str(e).split(": ", 1)[-1])
            elif default is not dataclasses.MISSING and default is not None:
                self.check_kind(value, default, f"{loc}.{key}")
            kwargs[key] = value
        missing = [k for k, f in fields.items() if k not in kwargs and f.default is
                   dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            self.fail(loc, f"{cls.name} needs the parameters {missing}")
        try:
            op = cls(**kwargs)
        except Exception as e:
            self.fail(loc, f"{cls.name} rejects these parameters: {type(e).__name__}: {e}")
        return op

    def check_kind(self, value, default, loc: str) -> None:
        """A user op's undeclared parameter must have the kind of the field's default."""
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = (isinstance(value, int) and not isinstance(value, bool)) or isinstance(
                value, sympy.Expr)
        elif isinstance(default, np.dtype):
            ok = isinstance(value, np.dtype)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            self.fail(loc, f"expected a {type(default).__name__}, got {_kind(value)}")

    def param(self, v, loc: str, depth: int = 0):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if depth >= MAX_PARAM_DEPTH:
            self.fail(loc, f"parameters nest at most {MAX_PARAM_DEPTH} lists deep")
        if isinstance(v, list):
            return tuple(self.param(x, f"{loc}[{k}]", depth + 1) for k, x in enumerate(v))
        if isinstance(v, dict) and len(v) == 1:
            (tag, body), = v.items()
            if tag == "dim":
                d = self.dim(body, f"{loc}.dim")
                return d
            if tag == "dtype":
                return self.dtype(body, f"{loc}.dtype")
            if tag == "ellipsis" and body is True:
                return Ellipsis
            if tag == "slice" and isinstance(body, list) and len(body) == 3:
                parts = [self.param(x, f"{loc}.slice[{k}]", depth + 1)
                         for k, x in enumerate(body)]
                if not all(p is None or (isinstance(p, int) and not isinstance(p, bool))
                           for p in parts):
                    self.fail(f"{loc}.slice", f"expected ints or nulls, got {body!r}")
                return slice(*parts)
        self.fail(loc, f"not a parameter value: {json.dumps(v)[:80]}")


def _parse_dim(text: str, loc: str):
    """A sympy dimension from text like "batch" or "2*n + 1", without evaluating the text."""
    if len(text) > MAX_DIM_TEXT:
        raise ValueError(f"dimension expression longer than {MAX_DIM_TEXT} characters")
    return exprtext.dimension(text, types.symbol)


def _kind(v) -> str:
    return "null" if v is None else f"{type(v).__name__} {json.dumps(v)[:40]}" if isinstance(
        v, (bool, int, float, str)) else type(v).__name__
