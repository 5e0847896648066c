"""Every op-table case under array-api-strict (backend="array_api"): forward, gradient and
HVP equal the NumPy backend's to 1e-12, or the op is in the table of what the standard lacks
and the call raises a GraphError naming it."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest

from tests.backends.op_table import CASE_IDS, CASES, check


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_under_array_api_strict(case, rng):
    check(case, rng, "array_api", lambda v: xps.asarray(np.asarray(v)), "array_api_strict",
          False)
