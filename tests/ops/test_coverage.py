"""Every registered op has a test case, or is declared as letting no gradient through."""

import graphc  # noqa: F401 - registers the ops
from graphc.ir.op import OPS, Op
from graphc.ops.base import Elementwise
from tests.ops.cases import CASES, NON_DIFFERENTIABLE


def builtin_ops():
    return {name: cls for name, cls in OPS.items()
            if cls.__module__.startswith(("graphc.ops.", "graphc.ir."))
            and not cls.__module__.startswith("graphc.ops.custom")}


def test_every_op_has_a_case_or_is_non_differentiable():
    covered = {c.op for c in CASES} | NON_DIFFERENTIABLE
    missing = sorted(set(builtin_ops()) - covered)
    assert not missing, f"ops without a gradient test case: {missing}"


def test_the_non_differentiable_list_matches_the_ops_declarations():
    declared = {n for n, cls in builtin_ops().items() if not cls.differentiable}
    assert declared == NON_DIFFERENTIABLE


def test_every_differentiable_op_has_bprop_and_jvp():
    for name, cls in builtin_ops().items():
        if not cls.differentiable:
            continue
        if issubclass(cls, Elementwise):
            assert any(d is not None for d in cls.derivs), name
            continue
        assert cls.bprop is not Op.bprop, f"{name} has no bprop"
        assert cls.jvp is not Op.jvp, f"{name} has no jvp"
