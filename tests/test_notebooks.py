"""The notebooks: each runs top to bottom in a fresh kernel, and is committed with its outputs.

CI runs only `python -m pytest`, so this is where the notebooks are executed (nbclient, a new
`python3` kernel per notebook, working directory `notebooks/`). Each notebook asserts its own
results against independent oracles (the book's exact XOR solution, a hand-written Algorithm
6.4, finite differences, dense eigenvalues, sympy.diff), so a wrong number fails here as a
cell error.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_xor.ipynb", "02_backprop.ipynb", "03_hessian_krylov.ipynb", "04_sympy.ipynb",
         "05_loops.ipynb", "06_curvature.ipynb"]


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_committed_with_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "commit the notebook executed"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    kinds = {k for c in code for o in c.outputs for k in o.get("data", {})}
    want = {"image/svg+xml"} if name == "02_backprop.ipynb" else {"image/png"}
    assert want <= kinds, f"{name}: expected {want} outputs, found {kinds}"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()            # raises CellExecutionError, naming the cell, on any error
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
