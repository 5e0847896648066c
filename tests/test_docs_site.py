"""The documentation site: `mkdocs build --strict` succeeds, and the pages' code runs.

CI runs only `python -m pytest`, so this is where the site is built (strict: any warning,
such as a broken link or an unresolvable API reference, fails) and where the getting-started
page and the Krylov recipes are followed verbatim, block by block, in one session each.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "WARNING" not in log, log
    # every page of the nav was rendered, and the API reference resolved each `::: name`
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    wanted = re.findall(r"^::: (\S+)", (DOCS / "api.md").read_text(), re.M)
    assert len(wanted) >= 25
    missing = [name for name in wanted if f'id="{name}"' not in api]
    assert not missing, f"API reference lacks {missing}"
    assert "Examples" in api and "hessian_operator" in api
    for page in ["getting-started", "backprop", "compiler", "krylov", "performance", "sympy",
                 "curvature"]:
        assert (site / page / "index.html").is_file(), page


def python_blocks(page: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(), re.S | re.M)


@pytest.mark.parametrize("page", ["getting-started.md", "krylov.md", "index.md",
                                  "transforms.md", "curvature.md",
                                  "loops.md"])
def test_page_code_runs_verbatim(page, capsys):
    blocks = python_blocks(page)
    assert blocks, page
    namespace = {"__name__": "__docs__"}
    for k, block in enumerate(blocks):
        exec(compile(block, f"{page}[block {k}]", "exec"), namespace)
    out = capsys.readouterr().out
    if page == "getting-started.md":
        # the values the page states in its comments
        assert "() float64 12" in out and "dJ/dW (3, 2) 34" in out
        assert "ShapeError:" in out and "InputError: input 'W'" in out
        assert namespace["err"] < 1e-6
        assert namespace["J_val"] < 0.68 * 0.01   # training lowered the loss 100-fold
    if page == "krylov.md":
        import numpy as np
        top, dense = namespace["top"], namespace["dense"]
        np.testing.assert_allclose(np.sort(top)[::-1], np.linalg.eigvalsh(dense)[::-1][:3],
                                   rtol=1e-10)
    if page == "curvature.md":
        import numpy as np
        ns = namespace
        assert "True" in out and "False" not in out  # every printed check holds
        np.testing.assert_allclose(ns["krylov"].top_eigenvalues(ns["H"], k=3),
                                   np.linalg.eigvalsh(ns["dense"])[::-1][:3], rtol=1e-8)
        assert abs(np.trapezoid(ns["density"], ns["grid"]) - 1) < 1e-6
    if page == "loops.md":
        # the values the page states in its comments
        assert "[array(4.4), array(2.64)]" in out and "[-0.96 -0.16 -0.16  0.24  1.04]" in out
        assert "2.5937424601000023 23.579476910000025" in out
        assert "[array(1.41421356), array(0.35355339)]" in out and "[0.5, 1.0]" in out
        assert namespace["H"].shape == (3, 3) and "True" in out
    if page == "transforms.md":
        assert "[(32, 784, 256), (32, 256), (32, 256, 10), (32, 10)]" in out
        assert "[ 0.5  1.  -1. ]" in out and "[0.5 1. ]" in out
        assert namespace["per_task"].shape == (4, 3, 5, 5)


def test_compiler_page_listing_is_current():
    """docs/compiler.md shows an example and the `f.source` it prints: run the one, compare."""
    blocks = python_blocks("compiler.md")
    example = next(b for b in blocks if "print(f.source)" in b)
    listing = next(b for b in blocks if b.startswith("def demo"))
    namespace: dict = {}
    exec(compile("import graphc as gc\n" + example.replace("print(f.source)", ""),
                 "compiler.md", "exec"), namespace)
    assert namespace["f"].source.strip() == listing.strip()
    fired = re.search(r"`f.fired` here is `(\(.*?\))`", (DOCS / "compiler.md").read_text(), re.S)
    assert fired and str(namespace["f"].fired) == " ".join(fired.group(1).split())
