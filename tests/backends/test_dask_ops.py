"""Every op-table case on the dask backend, each input cut into chunks of two along every
axis (several chunks per axis): forward, gradient and HVP equal the NumPy backend's to
1e-12. Dask runs ops without a standard form as one task over whole arrays, so no case is
refused. The threaded scheduler runs these (no client); tests/backends/test_cluster.py runs
a real cluster."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from tests.backends.op_table import CASE_IDS, CASES, check


def chunked(v):
    v = np.asarray(v)
    return da.from_array(v, chunks=tuple(2 for _ in v.shape) or ())


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_on_dask_chunks(case, rng):
    with dask.config.set(scheduler="threads"):
        refused = check(case, rng, "dask", chunked, "dask", True)
    assert refused == []
