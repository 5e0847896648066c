"""Each rewrite rule: it fires on its pattern (structure) and keeps the value (NumPy oracle,
and sympy on scalar graphs)."""

import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.ops.elementwise import Cast
from graphc.rewrite import RULES, optimize


def ops_of(opt):
    return [n.op.name for n in opt.graph.nodes if n.op.name not in ("input", "constant")]


def run(opt, values):
    f = gc.function(opt.inputs, opt.outputs, optimize=False)
    return f(*values)


def scalar_case(build):
    g = gc.Graph()
    x = g.input("x")
    return g, x, build(x)


M43 = np.arange(12.0).reshape(4, 3) - 5.0

# (rule, builder of the pattern from x of shape (4,) positive, ops expected after, oracle)
CASES = [
    ("mul_by_one_to_x", lambda x: x * 1.0, [], lambda v: v),
    ("div_by_one_to_x", lambda x: x / 1.0, [], lambda v: v),
    ("add_zero_to_x", lambda x: 0.0 + x, [], lambda v: v),
    ("zero_minus_x_to_neg", lambda x: 0.0 - x, ["neg"], lambda v: -v),
    ("mul_by_zero_to_zeros", lambda x: gc.tanh(x) * 0.0, [],
     lambda v: np.zeros_like(v)),
    ("mul_by_minus_one_to_neg", lambda x: x * -1.0, ["neg"], lambda v: -v),
    ("neg_neg_to_x", lambda x: gc.neg(-gc.exp(x)), ["exp"], np.exp),
    ("add_neg_to_sub", lambda x: gc.exp(x) + (-x), ["exp", "sub"], lambda v: np.exp(v) - v),
    ("mul_same_to_square", lambda x: gc.exp(x) * gc.exp(x), ["exp", "square"],
     lambda v: np.exp(v) ** 2),
    ("pow_const_to_simpler", lambda x: x ** 2.0, ["square"], lambda v: v ** 2),
    ("scalar_products_to_product", lambda x: 3.0 * (2.0 * x), ["mul"], lambda v: 6 * v),
    ("add_n_zeros_to_add_n", lambda x: gc.add_n([x, gc.zeros_like(x), gc.exp(x)]),
     ["exp", "add_n"], lambda v: v + np.exp(v)),
    ("add_n_repeated_to_scaled", lambda x: gc.add_n([gc.exp(x), gc.exp(x), x]),
     ["exp", "mul", "add_n"], lambda v: 2 * np.exp(v) + v),
    ("transpose_transpose_to_transpose",
     lambda x: gc.transpose(gc.transpose(x.reshape(2, 2))), ["reshape"], lambda v: v.reshape(2, 2)),
    ("reshape_chain_to_reshape", lambda x: x.reshape(2, 2).reshape(1, 4).reshape(4),
     [], lambda v: v),
    ("cast_to_same_dtype_to_x", lambda x: gc.exp(x.graph.apply(Cast(np.dtype("float64")), [x])),
     ["exp"], np.exp),
    ("stop_gradient_to_x", lambda x: gc.stop_gradient(gc.exp(x)), ["exp"], np.exp),
    ("broadcast_into_elementwise_to_implicit",
     lambda x: gc.broadcast_to(gc.sum(x), (4,)) * x, ["sum", "mul"], lambda v: v.sum() * v),
    ("sum_of_broadcast_to_scaled_sum", lambda x: gc.sum(gc.broadcast_to(x, (3, 4)), axis=0),
     ["mul"], lambda v: 3 * v),
    ("sum_of_square_to_dot", lambda x: gc.sum(gc.square(x.reshape(2, 2))), ["matmul"],
     lambda v: np.sum(v ** 2)),
    ("constant_inputs_to_constant", lambda x: x + gc.exp(x.graph.constant(np.ones(4))),
     ["add"], lambda v: v + np.e),
    ("shape_only_op_to_constant", lambda x: x + gc.ones_like(x), ["add"], lambda v: v + 1),
    ("log_one_plus_to_log1p", lambda x: gc.log(1.0 + x), ["log1p"], np.log1p),
    ("exp_minus_one_to_expm1", lambda x: gc.exp(x) - 1.0, ["expm1"], np.expm1),
    ("log1p_of_exp_to_softplus", lambda x: gc.log1p(gc.exp(x)), ["softplus"],
     lambda v: np.logaddexp(0, v)),
    ("log_of_exp_to_x", lambda x: gc.log(gc.exp(x)), [], lambda v: v),
    ("log_sigmoid_to_neg_softplus", lambda x: gc.log(gc.sigmoid(x)), ["neg", "softplus", "neg"],
     lambda v: -np.logaddexp(0, -v)),
    ("log_one_minus_sigmoid_to_neg_softplus", lambda x: gc.log(1.0 - gc.sigmoid(x)),
     ["softplus", "neg"], lambda v: -np.logaddexp(0, v)),
    ("log_one_minus_sigmoid_to_neg_softplus", lambda x: gc.log1p(-gc.sigmoid(x)),
     ["softplus", "neg"], lambda v: -np.logaddexp(0, v)),
    ("quotients_times_denominators_to_products",
     lambda x: (gc.cos(x) / gc.exp(x)) * (gc.exp(x) * gc.sin(x)), ["cos", "sin", "mul"],
     lambda v: np.cos(v) * np.sin(v)),
    ("quotients_times_denominators_to_products",  # the chain rule's sum over two logs
     lambda x: (gc.cos(x) * (1.0 / gc.exp(x)) - gc.sin(x) / gc.tanh(x)) * (gc.exp(x) * gc.tanh(x)),
     ["cos", "tanh", "mul", "sin", "exp", "mul", "sub"],
     lambda v: np.cos(v) * np.tanh(v) - np.sin(v) * np.exp(v)),
    ("log_softmax_to_log_softmax", lambda x: gc.log(gc.softmax(x)), ["log_softmax"],
     lambda v: v - np.log(np.exp(v).sum())),
    ("reshape_of_kept_sum_to_sum",
     lambda x: gc.sum(x.reshape(2, 2), axis=0, keepdims=True).reshape(2), ["reshape", "sum"],
     lambda v: v.reshape(2, 2).sum(0)),
    ("squeeze_of_matmul_of_expand_dims_to_matmul",
     lambda x: gc.squeeze(gc.expand_dims(x, 0) @ x.graph.constant(M43), 0), ["matmul"],
     lambda v: v @ M43),
    ("squeeze_of_matmul_of_expand_dims_to_matmul",
     lambda x: gc.squeeze(x.graph.constant(M43.T) @ gc.expand_dims(x, -1), -1), ["matmul"],
     lambda v: M43.T @ v),
    ("uniform_constant_to_scalar",
     lambda x: x.graph.constant(np.full(4, 3.0)) * (2.0 * x), ["mul"], lambda v: 6 * v),
    ("mul_by_cast_bool_to_mul", lambda x: gc.exp(x) * gc.cast(x > 1.0, "float64"),
     ["exp", "greater", "mul"], lambda v: np.exp(v) * (v > 1.0)),
]


@pytest.mark.parametrize("rule, build, after, oracle", CASES, ids=[c[0] for c in CASES])
def test_rule_fires_and_keeps_value(rule, build, after, oracle, rng):
    g = gc.Graph()
    x = g.input("x", shape=(4,))
    y = build(x)
    opt = optimize([x], [y])
    assert rule in opt.fired
    assert sorted(ops_of(opt)) == sorted(after)
    v = rng.uniform(0.5, 2.0, 4)
    want = oracle(v)
    np.testing.assert_allclose(run(opt, [v])[0], want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gc.function(x, y, optimize=False)(v), want, rtol=1e-12)


def test_every_rule_has_a_case():
    tested = {c[0] for c in CASES} | {"cross_entropy_of_softmax_to_fused",
                                      "add_n_of_scatters_to_scatter_add"}
    assert {r.name for r in RULES} == tested


def test_cross_entropy_of_softmax_becomes_fused(rng):
    g = gc.Graph()
    logits = g.input("logits", shape=(5, 3))
    y = g.input("y", shape=(5, 3))
    loss = -gc.sum(y * gc.log(gc.softmax(logits)), axis=-1)
    opt = optimize([logits, y], [loss])
    assert "cross_entropy_of_softmax_to_fused" in opt.fired
    assert ops_of(opt) == ["softmax_cross_entropy"]
    L = rng.standard_normal((5, 3)) * 50
    Y = np.eye(3)[rng.integers(0, 3, 5)]
    want = -(Y * (L - np.log(np.exp(L - L.max(1, keepdims=True)).sum(1, keepdims=True))
                  - L.max(1, keepdims=True))).sum(1)
    np.testing.assert_allclose(run(opt, [L, Y])[0], want, rtol=1e-12, atol=1e-12)


def test_merge_shares_repeated_subexpressions():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = gc.tanh(x) * 2.0 + gc.tanh(x) * 2.0
    opt = optimize([x], [y])
    assert ops_of(opt).count("tanh") == 1 and ops_of(opt).count("mul") == 1


def test_mul_by_zero_kept_when_x_may_be_nan():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    opt = optimize([x], [gc.exp(x) * 0.0])
    assert "mul_by_zero_to_zeros" not in opt.fired
    out = run(opt, [np.array([0.0, np.inf, np.nan])])[0]
    assert out[0] == 0 and np.isnan(out[1]) and np.isnan(out[2])


@pytest.mark.parametrize("build", [
    lambda x: gc.log(1.0 + x) * 1.0 + 0.0,
    lambda x: gc.log(gc.sigmoid(x)),
    lambda x: gc.log(1.0 - gc.sigmoid(x)),
    lambda x: (gc.cos(x) / gc.exp(x) + gc.sin(x) / x) * (gc.exp(x) * x),
    lambda x: (x * x) * 3.0 * 2.0,
    lambda x: gc.exp(x) - 1.0 - (-x),
])
def test_scalar_rewrites_agree_with_sympy(build):
    g, x, y = scalar_case(build)
    opt = optimize([x], [y])
    before, after = gc.to_sympy(y), gc.to_sympy(opt.outputs[0])
    s = next(iter(before.free_symbols))
    after = after.subs(next(iter(after.free_symbols)), s)
    assert sympy.simplify((before - after).rewrite(sympy.exp)) == 0


def test_rewrite_leaves_the_callers_graph_alone():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = gc.log(1.0 + x) * 1.0
    n = len(g.nodes)
    optimize([x], [y])
    assert len(g.nodes) == n


def test_rewrites_keep_types():
    g = gc.Graph()
    x = g.input("x", shape=(2, 3), dtype="float32")
    y = gc.sum(gc.broadcast_to(x, (4, 2, 3)), axis=(0,)) * 1.0 + gc.zeros_like(x)
    opt = optimize([x], [y])
    assert opt.outputs[0].shape == (2, 3) and opt.outputs[0].dtype == np.float32


def test_gradient_of_slices_accumulates_in_one_buffer(rng):
    g = gc.Graph()
    W = g.input("W", shape=(3, 2, 2))
    x = g.input("x", shape=(5,))
    z = gc.sum(gc.tanh(W[0] @ W[1]) * W[2]) + gc.sum(x[1:] * x[:-1])
    gW, gx = gc.grad(z, [W, x])
    opt = optimize([W, x], [gW, gx])
    assert opt.fired.count("add_n_of_scatters_to_scatter_add") == 2
    assert "scatter_index" not in ops_of(opt) and ops_of(opt).count("scatter_add") == 2
    Wv, xv = rng.standard_normal((3, 2, 2)), rng.standard_normal(5)
    got = run(opt, [Wv, xv])
    want = gc.function([W, x], [gW, gx], optimize=False)(Wv, xv)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], np.r_[xv[1], xv[:-2] + xv[2:], xv[-2]], rtol=1e-12)


def test_sum_of_square_to_dot_only_for_float64_full_sums(rng):
    g = gc.Graph()
    x = g.input("x", shape=(30, 20))
    x32 = g.input("x32", shape=(30, 20), dtype="float32")
    outs = [gc.sum(gc.square(x)), gc.sum(gc.square(x), axis=0), gc.sum(gc.square(x32))]
    f = gc.function([x, x32], outs)
    assert f.fired.count("sum_of_square_to_dot") == 1
    assert "x.reshape((600,))" in f.source
    v = rng.standard_normal((30, 20)) * 1e3
    got = f(v, v.astype(np.float32))
    np.testing.assert_allclose(got[0], np.sum(v ** 2), rtol=1e-14)
    np.testing.assert_allclose(got[1], np.sum(v ** 2, axis=0), rtol=1e-14)
    assert got[2].dtype == np.float32
    bad = np.zeros((30, 20))
    bad[3, 4] = np.inf
    assert f(bad, bad.astype(np.float32))[0] == np.inf  # IEEE semantics as the sum's
    bad[5, 6] = np.nan
    assert np.isnan(f(bad, bad.astype(np.float32))[0])
