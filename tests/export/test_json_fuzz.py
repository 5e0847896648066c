"""A fuzz run over the JSON format, with a fixed seed so CI is reproducible.

Start from real files (every op case of tests/ops/cases.py with its gradient, so every op
parameter appears), mutate them (hostile values, deletions, duplications, swapped nodes,
off-by-one numbers), and load. A mutated file must either raise `LoadError` or give a graph
that saves back to the same text and compiles and runs (or refuses its inputs with a
`GraphcError`); anything else is a bug, and no payload may ever run (the marker file).

`GRAPHC_FUZZ_EXAMPLES` sets the number of mutated files (CI: 600). The nightly-size run,
documented in docs/robustness.md, is `GRAPHC_FUZZ_EXAMPLES=100000 GRAPHC_FUZZ_SEED=<n>
python -m pytest tests/export/test_json_fuzz.py`.
"""

from __future__ import annotations

import copy
import json
import os
import time

import numpy as np
import pytest

import graphc as gc
from graphc.export import json as gjson
from graphc.ir.gcpause import collector_paused
from tests.export.test_hostile_files import CODE, MARKER, NEWLINE_CODE
from tests.export.test_json import build_case, paths
from tests.ops.cases import CASES

EXAMPLES = int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "600"))
SEED = int(os.environ.get("GRAPHC_FUZZ_SEED", "20261201"))

HOSTILE = [CODE, NEWLINE_CODE, "", "x" * 300, "\x00", "'", "\n", "object", "float64",
           "input", "constant", "grad", "n", "n**9", "9**9**9", -1, 0, 1, 2, 63, 64, -65,
           1 << 62, 1 << 63, 10**30, 0.5, -0.0, 1e308, True, False, None, [], {}, [[[]]],
           [CODE], [-1], [0, 0], [True], [1.5], {"dim": CODE}, {"dim": "n*2"},
           {"dim": "(a+b+c+d)**8"}, {"dtype": "object"}, {"dtype": "int8"},
           {"slice": [None, None, 0]}, {"slice": [CODE, 1, 1]}, {"ellipsis": True},
           {"ellipsis": False}, {"value": 1}, {"__class__": CODE}]


def base_documents() -> list[dict]:
    rng = np.random.default_rng(0)
    docs = []
    for case in CASES:
        g, _ = build_case(case, rng)
        docs.append(json.loads(gjson.dumps(g)))
    return docs


def mutate(doc: dict, rng: np.random.Generator) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(int(rng.integers(1, 4))):
        spots = list(paths(doc))[1:]
        where = spots[int(rng.integers(len(spots)))]
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        key = where[-1]
        action = rng.choice(["hostile", "hostile", "delete", "duplicate", "bump", "swap"])
        if action == "hostile":
            parent[key] = copy.deepcopy(HOSTILE[int(rng.integers(len(HOSTILE)))])
        elif action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif action == "bump" and type(parent[key]) is int:
            parent[key] += int(rng.choice([-1, 1]))
        elif action == "swap" and isinstance(parent, list) and len(parent) > 1:
            other = int(rng.integers(len(parent)))
            parent[key], parent[other] = parent[other], parent[key]
    return doc


def feed_for(g: gc.Graph, rng) -> dict:
    sizes: dict = {}
    feed = {}
    for x in g.inputs:
        shape = []
        for d in x.shape:
            if isinstance(d, int):
                shape.append(d)
            else:
                for s in sorted(d.free_symbols, key=str):
                    sizes.setdefault(s, int(rng.integers(1, 4)))
                shape.append(int(d.subs(sizes)))
        if x.dtype.kind == "f":
            feed[x.name] = rng.standard_normal(shape).astype(x.dtype)
        else:
            feed[x.name] = rng.integers(0, 2, shape).astype(x.dtype)
    return feed


@pytest.fixture(autouse=True)
def no_marker():
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    yield
    assert not os.path.exists(MARKER), "a mutated file ran code"


def test_fuzz_json_format_fixed_seed():
    rng = np.random.default_rng(SEED)
    bases = base_documents()
    outcomes = {"LoadError": 0, "loaded": 0, "ran": 0, "refused inputs": 0}
    slowest = 0.0
    for k in range(EXAMPLES):
        doc = mutate(bases[k % len(bases)], rng)
        # the load's own time: a full collection of the test's heap (every base document)
        # may fall due during any load, and takes longer the more op cases there are
        with collector_paused():
            start = time.perf_counter()
            try:
                g = gjson.from_data(doc, max_nodes=10_000)
            except gc.LoadError:
                g = None
            slowest = max(slowest, time.perf_counter() - start)
        if g is None:
            outcomes["LoadError"] += 1
            continue
        outcomes["loaded"] += 1
        text = gjson.dumps(g)
        assert gjson.dumps(gjson.loads(text)) == text, f"example {k}: not a fixed point"
        outputs = [n for n in g.nodes if n.op.name not in ("input", "constant")]
        if not outputs or k % 3:  # compile every third graph that loads: codegen sees them
            continue
        try:
            f = gc.function(g.inputs, outputs[-3:])
            with np.errstate(all="ignore"):
                f(**feed_for(g, rng))
            outcomes["ran"] += 1
        except gc.GraphcError:
            outcomes["refused inputs"] += 1
    print(outcomes, f"slowest load {slowest:.3f} s")
    assert slowest < 1.0, f"the slowest load took {slowest:.2f} s"
    # the mutations must reach both sides, or the fuzz tests nothing
    assert outcomes["LoadError"] > EXAMPLES // 4 and outcomes["loaded"] > EXAMPLES // 20, outcomes
    assert outcomes["ran"] > 0, outcomes
