"""Custom derivative rules: `gc.custom_vjp` and `gc.custom_jvp` (used by grad, vjp, jvp, hvp in
both modes, jacobian, hessian, vmap; every order where the rule is differentiable; saved and
loaded), and a user op with hand-written rules (the GP solve of docs/custom-ops.md) through
hessian, jacobian and vmap by the default batching rule and by its own."""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import numpy as np
import pytest

import graphc as gc
from graphc.autodiff import CustomJVP, CustomVJP, NoForwardRule


# -- a user op: the GP solve of docs/custom-ops.md ------------------------------------------------
@gc.register
@dataclasses.dataclass(frozen=True)
class Solve(gc.Op):
    """x = A^{-1} b for a square A, b a vector or a matrix of right-hand sides."""

    name: ClassVar[str] = "user_solve"
    arity: ClassVar[int] = 2

    def infer(self, A, b):
        if A.ndim != 2 or A.shape[0] != A.shape[1] or b.ndim not in (1, 2) \
                or b.shape[0] != A.shape[0]:
            raise gc.ShapeError(f"user_solve: A {A.shape} must be square and b {b.shape} "
                                "must have as many rows")
        return b.shape, b.dtype

    def forward(self, A, b):
        return np.linalg.solve(A, b)

    # x = A^-1 b:  db -> A^-1 db,  dA -> -A^-1 dA x;  cotangents A^-T g and -(A^-T g) x^T
    def bprop(self, inputs, out, g, i):
        A, _ = inputs
        gb = solve(gc.transpose(A), g)
        if i == 1:
            return gb
        return -gc.outer(gb, out) if out.ndim == 1 else -(gb @ gc.transpose(out))

    def jvp(self, inputs, out, t, i):
        A, _ = inputs
        return solve(A, t) if i == 1 else -solve(A, t @ out)


def solve(A, b):
    return gc.apply(Solve(), A, b)


@gc.register
@dataclasses.dataclass(frozen=True)
class BatchedSolve(Solve):
    """The same op with a batching rule: a batch of right-hand sides is one solve with them
    as columns; a batch of matrices runs NumPy's stacked solve."""

    name: ClassVar[str] = "user_solve_batched"

    def forward(self, A, b):
        if A.ndim == 3:  # stacked matrices, the batch rule's form
            return np.linalg.solve(A, b[..., None])[..., 0] if b.ndim == 2 else \
                np.linalg.solve(A, b)
        return np.linalg.solve(A, b)

    def infer(self, A, b):
        if A.ndim == 3:
            return b.shape, b.dtype
        return Solve.infer(self, A, b)

    def batch(self, node, ins, m):
        (A, a_b), (b, b_b) = ins
        if not a_b and node.inputs[1].ndim == 1:  # (m, n) right-hand sides: columns
            return gc.transpose(gc.apply(BatchedSolve(), A, gc.transpose(b)))
        return NotImplemented  # the general rule: row by row


def gp_objective(log_ls, y, X):
    """y^T K^-1 y for an RBF kernel of length scale exp(log_ls), plus a jitter."""
    d2 = (X[:, None] - X[None]) ** 2  # data: squared distances of the inputs
    K = gc.exp(-d2 / (2.0 * gc.exp(2.0 * log_ls))) + np.eye(X.shape[0]) * 0.5
    return (y * solve(K, y)).sum()


def gp_numpy(log_ls, y, X):
    K = np.exp(-(X[:, None] - X[None]) ** 2 / (2 * np.exp(2 * log_ls))) + 0.5 * np.eye(len(X))
    return y @ np.linalg.solve(K, y)


def test_hessian_of_a_user_op_with_hand_written_rules(rng):
    g = gc.Graph("gp")
    theta = g.input("theta", shape=(2,))
    Xd = np.linspace(-1, 1, 5)
    y = g.constant(rng.standard_normal(5))
    z = gp_objective(theta[0], y, Xd) * gc.exp(theta[1])
    H = gc.hessian(z, theta)
    at = np.array([0.1, -0.2])
    Hv = H.eval({theta: at})
    eps = 1e-4

    def f(t):
        return gp_numpy(t[0], y.op.value, Xd) * np.exp(t[1])

    fd = np.array([[(f(at + eps * (ei + ej)) - f(at + eps * (ei - ej)) - f(at - eps * (ei - ej))
                     + f(at - eps * (ei + ej))) / (4 * eps * eps)
                    for ej in np.eye(2)] for ei in np.eye(2)])
    np.testing.assert_allclose(Hv, fd, rtol=1e-5)
    gc.check_grad(z, theta, at={theta: at}, order=2)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(gc.hessian(z, theta, mode=mode).eval({theta: at}), Hv,
                                   rtol=1e-10)


@pytest.mark.parametrize("op", [Solve, BatchedSolve], ids=["default_rule", "own_rule"])
def test_vmap_and_jacobian_of_a_user_op(op, rng):
    g = gc.Graph()
    A = g.input("A", shape=(3, 3))
    B = g.input("B", shape=(6, 3))
    n = len(g)
    X = gc.vmap(lambda b: gc.apply(op(), A, b))(B)
    built = len(g) - n
    Av = np.eye(3) * 3 + rng.standard_normal((3, 3)) * 0.3
    Bv = rng.standard_normal((6, 3))
    np.testing.assert_allclose(X.eval({A: Av, B: Bv}), np.linalg.solve(Av, Bv.T).T, rtol=1e-12)
    assert built >= 6 if op is Solve else built <= 4  # a row each, or one batched solve
    # per-example gradients with respect to the shared matrix (its cotangent summed per row)
    per = gc.vmap(lambda b: gc.grad((gc.apply(op(), A, b) ** 2.0).sum(), A))(B)
    Ainv = np.linalg.inv(Av)
    want = [-2 * np.outer(Ainv.T @ (Ainv @ b), Ainv @ b) for b in Bv]
    np.testing.assert_allclose(per.eval({A: Av, B: Bv}), want, rtol=1e-10)
    b1 = g.input("b", shape=(3,))
    for mode in ("forward", "reverse"):
        J = gc.jacobian(gc.apply(op(), A, b1), [A, b1], mode=mode)
        JA, Jb = gc.eval(J, {A: Av, b1: Bv[0]})
        np.testing.assert_allclose(Jb, Ainv, rtol=1e-10)
        np.testing.assert_allclose(JA, -np.einsum("ij,k->ijk", Ainv, Ainv @ Bv[0]), rtol=1e-10)


@pytest.mark.parametrize("rows", ["n", 40], ids=["symbolic_batch", "large_batch"])
def test_a_user_op_over_a_symbolic_or_large_batch_runs_as_a_loop(rows, rng):
    """No node per row: one row_loop node holding the op, run once per row; its
    derivatives are loops too (per-example gradients, grad of vmap, second order)."""
    g = gc.Graph()
    A = g.input("A", shape=(3, 3))
    B = g.input("B", shape=(rows, 3))
    n = len(g)
    X = gc.vmap(lambda b: solve(A, b))(B)
    assert len(g) == n + 1 and X.op.name == "row_loop" and X.op.batched == (False, True)
    Av = np.eye(3) * 3 + rng.standard_normal((3, 3)) * 0.3
    Ai = np.linalg.inv(Av)
    for m in ((0, 7) if rows == "n" else (40,)):
        Bv = rng.standard_normal((m, 3))
        np.testing.assert_allclose(X.eval({A: Av, B: Bv}), (Ai @ Bv.T).T, rtol=1e-12)
    Bv = rng.standard_normal((7 if rows == "n" else 40, 3))
    pA, pb = gc.eval(gc.vmap(lambda b: gc.grad((solve(A, b) ** 2.0).sum(), [A, b]))(B),
                     {A: Av, B: Bv})
    np.testing.assert_allclose(pA, [-2 * np.outer(Ai.T @ (Ai @ b), Ai @ b) for b in Bv],
                               rtol=1e-10)
    np.testing.assert_allclose(pb, [2 * Ai.T @ (Ai @ b) for b in Bv], rtol=1e-10)
    gc.check_grad((X ** 2.0).sum(), [A, B], at={A: Av, B: Bv}, order=2)
    C = g.input("C", shape=(2, rows, 3))  # a loop of loops
    Cv = rng.standard_normal((2, 7 if rows == "n" else 40, 3))
    np.testing.assert_allclose(gc.vmap(gc.vmap(lambda b: solve(A, b)))(C).eval({A: Av, C: Cv}),
                               np.einsum("ij,abj->abi", Ai, Cv), rtol=1e-12)


def test_hessian_of_a_user_op_over_many_entries_loops(rng):
    g = gc.Graph()
    b = g.input("b", shape=(20,))  # 20 > LOOP_ABOVE rows of the identity
    Av = np.eye(20) * 4 + rng.standard_normal((20, 20)) * 0.2
    A = g.constant(Av)
    z = (gc.sin(solve(A, b)) ** 2.0).sum()
    H = gc.hessian(z, b)
    assert any(n.op.name == "row_loop" for n in g.nodes)
    bv = rng.standard_normal(20)
    x = np.linalg.solve(Av, bv)
    Ai = np.linalg.inv(Av)
    want = Ai.T @ np.diag(2 * np.cos(2 * x)) @ Ai  # d2/db2 of sum(sin(A^-1 b)^2)
    np.testing.assert_allclose(H.eval({b: bv}), want, rtol=1e-10, atol=1e-12)


# -- custom_vjp ----------------------------------------------------------------------------------
CLIP = 0.5


def sin_fwd(x):
    return gc.sin(x), (x,)


def sin_clipped_bwd(res, g):
    (x,) = res
    return (gc.minimum(gc.maximum(g * gc.cos(x), -CLIP), CLIP),)


sin_clipped = gc.custom_vjp(gc.sin, sin_fwd, sin_clipped_bwd)


def clipped_numpy(a, x):
    return np.clip(a * np.cos(x), -CLIP, CLIP)


@pytest.fixture
def clip_setting(rng):
    g = gc.Graph("clip")
    x = g.input("x", shape=(4,))
    a = np.array([0.3, 2.0, -3.0, 0.8])
    z = (sin_clipped(x) * a).sum()
    xv = rng.uniform(-1.2, 1.2, 4)
    return g, x, a, z, xv


def test_custom_vjp_value_is_fns_and_grad_uses_the_rule(clip_setting):
    g, x, a, z, xv = clip_setting
    np.testing.assert_allclose(z.eval({x: xv}), (np.sin(xv) * a).sum(), rtol=1e-14)
    np.testing.assert_allclose(gc.grad(z, x).eval({x: xv}), clipped_numpy(a, xv), rtol=1e-14)
    assert np.abs(clipped_numpy(a, xv)).max() == CLIP  # the rule is not the true gradient
    u = np.array([1.0, -2.0, 0.1, 3.0])
    np.testing.assert_allclose(gc.vjp(sin_clipped(x), x, u).eval({x: xv}),
                               clipped_numpy(u, xv), rtol=1e-14)


@pytest.mark.parametrize("mode", ["reverse", "auto"])
def test_custom_vjp_is_used_by_hvp_and_hessian(clip_setting, mode):
    g, x, a, z, xv = clip_setting
    inside = np.abs(a * np.cos(xv)) < CLIP  # where the clip lets the derivative through
    H = np.diag(np.where(inside, -a * np.sin(xv), 0.0))
    v = np.array([1.0, 0.5, -1.0, 2.0])
    np.testing.assert_allclose(gc.hvp(z, x, v, mode=mode).eval({x: xv}), H @ v, atol=1e-14)
    np.testing.assert_allclose(gc.hessian(z, x, mode=mode).eval({x: xv}), H, atol=1e-14)


def test_custom_vjp_is_used_by_jacobian_and_auto_avoids_forward_mode(clip_setting):
    g, x, a, z, xv = clip_setting
    y = gc.concatenate([sin_clipped(x), sin_clipped(x) * 3.0])  # m > n: auto would go forward
    for mode in ("auto", "reverse"):
        J = gc.jacobian(y, x, mode=mode).eval({x: xv})
        np.testing.assert_allclose(J, np.vstack([np.diag(clipped_numpy(1.0, xv)),
                                                 np.diag(clipped_numpy(3.0, xv))]), atol=1e-14)


def test_custom_vjp_has_no_forward_mode(clip_setting):
    g, x, a, z, xv = clip_setting
    # (sin_clipped(x) * a).sum()'s gradient never reads the node's value, so forward-over-
    # reverse needs no tangent through it; a square's gradient does
    np.testing.assert_allclose(gc.hvp(z, x, np.ones(4), mode="forward").eval({x: xv}),
                               gc.hvp(z, x, np.ones(4), mode="reverse").eval({x: xv}))
    z2 = (sin_clipped(x) ** 2.0).sum()
    n = len(g)
    with pytest.raises(NoForwardRule, match="reverse-mode rule only.*gc.custom_jvp"):
        gc.jvp(z2, x, np.ones(4))
    with pytest.raises(NoForwardRule):
        gc.hvp(z2, x, np.ones(4), mode="forward")
    with pytest.raises(NoForwardRule):
        gc.jacobian(sin_clipped(x), x, mode="forward")
    with pytest.raises(NoForwardRule):
        gc.check_grad(z2, x, at={x: xv}, modes=("forward",))
    assert isinstance(NoForwardRule("m"), gc.GraphError)
    assert len(g) == n + 1  # the one sin_clipped node of the jacobian call
    # auto picks reverse: the square's gradient 2 s clip(cos), differentiated with the rule
    v = np.array([1.0, -1.0, 0.5, 2.0])
    auto = gc.hvp(z2, x, v).eval({x: xv})
    np.testing.assert_allclose(auto, gc.hvp(z2, x, v, mode="reverse").eval({x: xv}))
    s, c = np.sin(xv), np.cos(xv)
    v_in = np.where(np.abs(2 * s * c) < CLIP, v, 0.0)  # through the outer clip of the rule
    # d/dx of 2 F(x) cos(x): through F by the rule again (clipped), and through cos directly
    np.testing.assert_allclose(auto, np.clip(2 * c * v_in * c, -CLIP, CLIP) - 2 * s * s * v_in,
                               atol=1e-14)


def test_custom_vjp_second_order_through_a_differentiable_rule(rng):
    """A rule that is the true derivative, written in ops: every order by finite differences."""
    def fwd(x, w):
        y = gc.tanh(x * w)
        return y, (x, w, y)

    def bwd(res, g):
        x, w, y = res
        d = g * (1.0 - y * y)
        return d * w, d * x

    f = gc.custom_vjp(lambda x, w: gc.tanh(x * w), fwd, bwd)
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    w = g.input("w", shape=(3,))
    z = (f(x, w) ** 2.0).sum() * gc.sin(w).sum()
    at = {x: rng.standard_normal(3), w: rng.standard_normal(3)}
    err = gc.check_grad(z, [x, w], at=at, order=3, modes=("reverse",))
    assert err < 1e-6
    gz = gc.grad(gc.grad(z, x).sum(), w)  # grad of grad: the rule's nodes differentiated
    plain = (gc.tanh(x * w) ** 2.0).sum() * gc.sin(w).sum()
    np.testing.assert_allclose(gz.eval(at), gc.grad(gc.grad(plain, x).sum(), w).eval(at),
                               rtol=1e-12)


def test_custom_vjp_integer_arguments_and_none_cotangents(rng):
    def fwd(logits, labels):
        return gc.softmax_cross_entropy(logits, labels), (logits, labels)

    def bwd(res, g):  # the usual rule, halved: visibly the rule's
        logits, labels = res
        return (0.5 * gc.expand_dims(g, -1) * (gc.softmax(logits)
                                               - gc.one_hot(labels, 3, like=logits)), None)

    f = gc.custom_vjp(gc.softmax_cross_entropy, fwd, bwd)
    g = gc.Graph()
    L = g.input("L", shape=(2, 3))
    y = g.input("y", shape=(2,), dtype="int64")
    Lv, yv = rng.standard_normal((2, 3)), np.array([2, 0])
    p = np.exp(Lv) / np.exp(Lv).sum(1, keepdims=True)
    np.testing.assert_allclose(gc.grad(f(L, y).sum(), L).eval({L: Lv, y: yv}),
                               0.5 * (p - np.eye(3)[yv]), rtol=1e-12)


def test_custom_vjp_rule_errors_name_the_rule():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    W = g.input("W", shape=(3,))
    bad_shape = gc.custom_vjp(gc.exp, lambda x: (gc.exp(x), x), lambda r, ct: (ct.sum(),))
    with pytest.raises(gc.ShapeError, match=r"custom_vjp\(exp\): bwd's cotangent 0 has shape "
                                            r"\(\), but argument 0 \('x'\) has shape \(3,\)"):
        gc.grad(bad_shape(x).sum(), x)
    bad_count = gc.custom_vjp(gc.mul, lambda a, b: (a * b, None), lambda r, ct: (ct,))
    with pytest.raises(gc.GraphError, match="bwd must return a tuple of 2 cotangent"):
        gc.grad(bad_count(x, W).sum(), x)
    bad_fwd = gc.custom_vjp(gc.exp, lambda x: gc.exp(x), lambda r, ct: (ct,))
    with pytest.raises(gc.GraphError, match=r"fwd must return a pair \(out, residuals\)"):
        gc.grad(bad_fwd(x).sum(), x)
    # fn uses W without taking it: fine for its value and for derivatives in x, not in W
    closed = gc.custom_vjp(lambda a: a * W, lambda a: (a * W, None), lambda r, ct: (ct * W,))
    z = closed(x).sum()
    assert [a.name for a in z.inputs[0].inputs] == ["x", "W"]
    gc.grad(z, x)
    with pytest.raises(gc.GraphError, match=r"with respect to 'W'.*pass 'W' as an argument"):
        gc.grad(z, W)
    with pytest.raises(gc.GraphError, match="fwd must be callable"):
        gc.custom_vjp(gc.exp, None, lambda r, ct: ct)


def test_vmap_of_custom_vjp_per_example_clipped_gradients(rng):
    g = gc.Graph()
    X = g.input("X", shape=(5, 4))
    a = g.input("a", shape=(4,))
    per = gc.vmap(lambda xb: gc.grad((sin_clipped(xb * a) * 2.0).sum(), a))(X)
    Xv, av = rng.uniform(-1, 1, (5, 4)), rng.uniform(-1, 1, 4)
    want = np.clip(2.0 * np.cos(Xv * av), -CLIP, CLIP) * Xv
    np.testing.assert_allclose(per.eval({X: Xv, a: av}), want, rtol=1e-13)
    # the batched node keeps the rule: reverse-mode Hessian-vector products per row
    hv = gc.vmap(lambda xb: gc.hvp((sin_clipped(xb) * 2.0).sum(), xb, a, mode="reverse"))(X)
    inside = np.abs(2.0 * np.cos(Xv)) < CLIP
    np.testing.assert_allclose(hv.eval({X: Xv, a: av}),
                               np.where(inside, -2.0 * np.sin(Xv), 0.0) * av, atol=1e-14)


def test_a_custom_function_closing_over_the_mapped_row():
    """vmap of grad builds the gradient on the stand-ins, where the rule sees the row: fine.
    grad of vmap would call the rule after the vmap, on a row that no longer exists: refused,
    naming the cure."""
    g = gc.Graph()
    X = g.input("X", shape=(5, 4))
    w = g.input("w", shape=(4,))

    def scaled(xb):
        return gc.custom_vjp(lambda v: v * xb, lambda v: (v * xb, None),
                             lambda r, ct: (ct * xb * 2.0,))  # twice the true gradient

    per = gc.vmap(lambda xb: gc.grad(scaled(xb)(w).sum(), w))(X)
    Xv, wv = np.arange(20.0).reshape(5, 4), np.arange(4.0)
    np.testing.assert_allclose(per.eval({X: Xv, w: wv}), 2.0 * Xv)
    values = gc.vmap(lambda xb: scaled(xb)(w))(X)
    np.testing.assert_allclose(values.eval({X: Xv, w: wv}), Xv * wv)  # values batch
    total = values.sum()
    n = len(g)
    with pytest.raises(gc.GraphError, match="cannot be mapped.*pass it as an argument"):
        gc.grad(total, w)
    assert len(g) == n


# -- custom_jvp ----------------------------------------------------------------------------------
def log1pexp(x):
    return gc.log1p(gc.exp(x))


def log1pexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return log1pexp(x), gc.sigmoid(x) * t


softplus_stable = gc.custom_jvp(log1pexp, log1pexp_jvp)


def test_custom_jvp_gives_stable_derivatives_in_both_modes():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    xv = np.array([-3.0, 0.0, 1000.0])
    z = softplus_stable(x).sum()
    with np.errstate(over="ignore", invalid="ignore"):  # the point of the custom rule
        naive = gc.grad(log1pexp(x).sum(), x).eval({x: xv})
    assert np.isnan(naive[2])  # exp(1000) / (1 + exp(1000))
    s = 1 / (1 + np.exp(-xv))
    np.testing.assert_allclose(gc.grad(z, x).eval({x: xv}), s, rtol=1e-14)  # transposed rule
    np.testing.assert_allclose(gc.jvp(z, x, np.ones(3)).eval({x: xv}), s.sum(), rtol=1e-14)
    for mode in ("forward", "reverse", "auto"):
        np.testing.assert_allclose(gc.hvp(z, x, np.ones(3), mode=mode).eval({x: xv}),
                                   s * (1 - s), rtol=1e-12)
    H = gc.hessian(z, x).eval({x: xv})
    np.testing.assert_allclose(H, np.diag(s * (1 - s)), rtol=1e-12, atol=1e-300)


def test_custom_jvp_non_default_rule_is_used_by_jvp_and_forward_hvp(rng):
    """A rule that is not fn's derivative (twice it) shows which rule each transform used."""
    doubled = gc.custom_jvp(gc.sin, lambda p, t: (gc.sin(p[0]), 2.0 * gc.cos(p[0]) * t[0]))
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    z = (doubled(x) * doubled(x)).sum()  # d/dx = 2 * 2 sin cos
    xv, v = rng.standard_normal(3), rng.standard_normal(3)
    np.testing.assert_allclose(gc.jvp(z, x, v).eval({x: xv}),
                               (4 * np.sin(xv) * np.cos(xv) * v).sum(), rtol=1e-12)
    np.testing.assert_allclose(gc.grad(z, x).eval({x: xv}), 4 * np.sin(xv) * np.cos(xv),
                               rtol=1e-12)
    # second order through the rule's own nodes: d/dx [2 sin(x) * 2 cos(x)] with the inner
    # sin differentiated by the rule again (2 cos) -> 4 (2 cos^2 - sin^2)
    want = 4 * (2 * np.cos(xv) ** 2 - np.sin(xv) ** 2) * v
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(gc.hvp(z, x, v, mode=mode).eval({x: xv}), want, rtol=1e-12)


def test_custom_jvp_several_arguments_and_every_order(rng):
    def f(a, b):
        return gc.tanh(a) * b

    def rule(p, t):
        a, b = p
        ta, tb = t
        y = gc.tanh(a)
        return y * b, (1.0 - y * y) * b * ta + y * tb

    h = gc.custom_jvp(f, rule)
    g = gc.Graph()
    a = g.input("a", shape=(2, 3))
    b = g.input("b", shape=(3,))
    z = (h(a, b) ** 2.0).sum()
    at = {a: rng.standard_normal((2, 3)), b: rng.standard_normal(3)}
    assert gc.check_grad(z, [a, b], at=at, order=3) < 1e-6  # both modes, orders 1..3
    per = gc.vmap(lambda row: gc.grad((h(row, b) ** 2.0).sum(), [row, b]))(a)
    plain = gc.vmap(lambda row: gc.grad((f(row, b) ** 2.0).sum(), [row, b]))(a)
    for p, q in zip(gc.eval(per, at), gc.eval(plain, at)):
        np.testing.assert_allclose(p, q, rtol=1e-12)
    J = gc.jacobian(h(a, b), b, mode="forward").eval(at)
    np.testing.assert_allclose(J, np.tanh(at[a])[:, :, None] * np.eye(3), rtol=1e-12)


# -- files, drawings, compilation ---------------------------------------------------------------
def test_save_and_load_keep_the_forward_graph_and_refuse_to_invent_the_rule(tmp_path, rng):
    g = gc.Graph("custom")
    x = g.input("x", shape=(4,))
    y = (sin_clipped(x) * 2.0 + softplus_stable(x)).sum()
    gx = gc.grad(y, x)  # built before saving: ordinary nodes from the rules
    path = gc.save(g, tmp_path / "custom.json")
    text = open(path).read()
    for n in json.loads(text)["nodes"]:
        if n["op"] in ("custom_vjp", "custom_jvp"):
            assert n["params"]["rule"] is None and "graph" in n["params"]["body"]
    h = gc.load(path)
    xv = rng.standard_normal(4)
    want = gc.eval([y, gx], {x: xv})
    got = gc.eval([h[y.name], h[gx.name]], {"x": xv})
    for p, q in zip(got, want):
        np.testing.assert_allclose(p, q, rtol=1e-14)
    loaded = [n for n in h.nodes if isinstance(n.op, (CustomVJP, CustomJVP))]
    assert len(loaded) == 2 and all(n.op.rule is None for n in loaded)
    for node in loaded:
        with pytest.raises(gc.GraphError, match="loaded from a file.*holds no code"):
            gc.grad(node.sum(), h["x"])
    # a loaded node still batches for its value
    X = h.input("X", shape=(3, 4))
    vals = gc.vmap(lambda r: gc.apply(loaded[0].op, r))(X)
    Xv = rng.standard_normal((3, 4))
    np.testing.assert_allclose(vals.eval({X: Xv}), np.sin(Xv), rtol=1e-14)


def test_compiled_drawn_printed_and_written_in_sympy(rng):
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    y = (sin_clipped(x) + softplus_stable(x)).sum()
    gx = gc.grad(y, x)
    xv = rng.standard_normal(3)
    raw = gc.function([x], [y, gx], optimize=False)(xv)
    opt = gc.function([x], [y, gx], optimize=True)(xv)
    for p, q in zip(raw, opt):
        np.testing.assert_allclose(p, q, rtol=1e-14)
    text = gc.debugprint(y)
    assert "custom_vjp(body=custom_vjp_sin" in text and "rule=sin_fwd/sin_clipped_bwd" in text
    assert "custom_jvp(body=custom_jvp_log1pexp" in text
    assert "custom_vjp" in gc.to_dot(g)
    s = gc.Graph()
    t = s.input("t")
    expr = gc.to_sympy(sin_clipped(t) * softplus_stable(t))
    import sympy

    ts = sympy.Symbol("t", real=True)
    assert sympy.simplify(expr.subs(expr.free_symbols.pop(), ts)
                          - sympy.sin(ts) * sympy.log(1 + sympy.exp(ts))) == 0


def test_applications_of_one_custom_function_merge():
    g = gc.Graph()
    x = g.input("x", shape=(3,))
    a, b = sin_clipped(x), sin_clipped(x)
    assert a is not b and a.op == b.op
    f = gc.function([x], [a + b])
    assert sum(1 for line in f.source.splitlines() if "# custom_vjp(" in line) == 1


def test_grad_and_jacobian_of_a_vmap_of_custom_functions(rng):
    """The batched nodes carry the rules mapped over the rows: grad of vmap uses them."""
    g = gc.Graph()
    X = g.input("X", shape=(4, 3))
    w = g.input("w", shape=(3,))
    ys = gc.vmap(lambda x: sin_clipped(x * w).sum() + softplus_stable(x - w).sum())(X)
    total = ys.sum()
    Xv, wv = rng.uniform(-1, 1, (4, 3)), rng.uniform(-1, 1, 3)
    s = 1 / (1 + np.exp(-(Xv - wv)))
    want_w = (np.clip(np.cos(Xv * wv), -CLIP, CLIP) * Xv).sum(0) - s.sum(0)
    want_X = np.clip(np.cos(Xv * wv), -CLIP, CLIP) * wv + s
    gX, gw = gc.eval(gc.grad(total, [X, w]), {X: Xv, w: wv})
    np.testing.assert_allclose(gw, want_w, rtol=1e-12)
    np.testing.assert_allclose(gX, want_X, rtol=1e-12)
    J = gc.jacobian(ys, w).eval({X: Xv, w: wv})  # auto: reverse (custom_vjp inside)
    np.testing.assert_allclose(J, np.clip(np.cos(Xv * wv), -CLIP, CLIP) * Xv - s, rtol=1e-12)
