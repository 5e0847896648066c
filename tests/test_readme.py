"""The README's Python examples run as written (a README that lies is worse than none)."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return [b for b in blocks if not b.lstrip().startswith("def ")]  # generated-source listings


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:  # later blocks build on earlier ones, as a reader's session would
        exec(compile(block, str(README), "exec"), namespace)
    listing = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
                   if b.startswith("def demo"))
    assert namespace["f"].source.strip() == listing.strip()  # the shown f.source is current
    res = namespace["res"]
    assert res.success and abs(res.fun) < 1e-10
    assert len(namespace["top"]) == 3
