"""The op list of the API contract (../shared/API.md, "Operations") and what graphc exports agree:
every function the table names is in `gc.__all__` (or `gc.linalg` for its row), callable, and
documented in docs/ops.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import graphc as gc

ROOT = Path(__file__).resolve().parents[1]
API = ROOT.parent / "shared" / "API.md"
NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def table_names() -> dict[str, set[str]]:
    """{"gc": names, "linalg": names} read from the Operations table: the words inside each
    row's backticks that are plain function names (`var(x, axis)` gives `var`; operators,
    methods such as `x.at[idx].add(v)`, shapes and argument lists are not names)."""
    text = API.read_text()
    section = text[text.index("## Operations"):]
    section = section[:section.index("\n## ", 1)]
    out: dict[str, set[str]] = {"gc": set(), "linalg": set()}
    for row in section.splitlines():
        if not row.startswith("| ") or row.startswith("| group") or "---" in row:
            continue
        group, functions = row.split("|")[1:3]
        where = "linalg" if "gc.linalg" in group else "gc"
        for code in re.findall(r"`([^`]*)`", functions):
            flat = re.sub(r"\([^)]*\)", " ", code)  # argument lists out: `zeros(s) ones`
            if code.startswith(("x", "g.", "gc.", "(")) or re.search(r"[=*+/\[.\"|]", flat):
                continue  # an operator, a method, an expression, a shape or an option
            out[where].update(w for w in flat.split() if NAME.match(w))
    return out


NAMES = table_names() if API.exists() else {"gc": set(), "linalg": set()}


@pytest.mark.skipif(not API.exists(), reason="../shared/API.md is not beside this checkout")
@pytest.mark.parametrize("name", sorted(NAMES["gc"]))
def test_every_op_of_the_contract_is_exported(name):
    assert name in gc.__all__, f"API.md lists {name!r}; gc.__all__ does not"
    assert callable(getattr(gc, name))


@pytest.mark.skipif(not API.exists(), reason="../shared/API.md is not beside this checkout")
@pytest.mark.parametrize("name", sorted(NAMES["linalg"]))
def test_every_linalg_function_of_the_contract_is_in_gc_linalg(name):
    assert callable(getattr(gc.linalg, name, None)), f"gc.linalg has no {name!r}"


@pytest.mark.skipif(not API.exists(), reason="../shared/API.md is not beside this checkout")
def test_every_op_of_the_contract_is_in_the_op_docs():
    docs = (ROOT / "docs" / "ops.md").read_text()
    missing = sorted(n for n in NAMES["gc"] | NAMES["linalg"]
                     if not re.search(rf"\b{re.escape(n)}\b", docs))
    assert not missing, f"docs/ops.md does not mention {missing}"
