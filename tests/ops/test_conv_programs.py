"""Convolution and pooling in real programs, against oracles written without graphc.

- A small CNN (conv, relu, max_pool, conv, relu, avg_pool, dense, softmax cross-entropy): its
  loss and gradient against a hand-written NumPy forward and backward pass (kernel-offset
  loops and einsum), and its gradient and HVP against finite differences.
- conv against scipy.signal.correlate for one channel, and against a naive loop for stride,
  dilation, padding and groups; the pools against naive loops (floor mode, ties).
- A symbolic batch size, batching rules against row-by-row application, save/load, optimized
  against unoptimized code, float32, drawings and errors.
"""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
import scipy.signal

import graphc as gc
from graphc.ops.base import batch_by_rows
from graphc.ops.conv import (
    AvgPool,
    AvgPoolVJP,
    Conv,
    ConvTranspose,
    ConvWeightVJP,
    MaxPool,
    MaxPoolJVP,
    MaxPoolVJP,
)


# -- oracles: plain loops and einsum, no graphc --------------------------------------------
def naive_conv(x, w, stride=1, padding=0, dilation=1, groups=1):
    """y[n, o, p] = sum_{c, k} x_pad[n, g(o) * C/G + c, p * stride + k * dilation] w[o, c, k]."""
    d = x.ndim - 2
    stride = (stride,) * d if isinstance(stride, int) else stride
    dilation = (dilation,) * d if isinstance(dilation, int) else dilation
    if isinstance(padding, int):
        padding = ((padding, padding),) * d
    xp = np.pad(x, ((0, 0), (0, 0), *padding))
    n, c = x.shape[:2]
    o, cg, *kernel = w.shape
    out = [(xp.shape[2 + j] - dilation[j] * (kernel[j] - 1) - 1) // stride[j] + 1
           for j in range(d)]
    y = np.zeros((n, o, *out))
    og = o // groups
    for b, oc, *p in itertools.product(range(n), range(o), *map(range, out)):
        total = 0.0
        for ci, *k in itertools.product(range(cg), *map(range, kernel)):
            at = tuple(p[j] * stride[j] + k[j] * dilation[j] for j in range(d))
            total += xp[(b, oc // og * cg + ci, *at)] * w[(oc, ci, *k)]
        y[(b, oc, *p)] = total
    return y


def naive_pool(x, window, stride, reduce):
    d = x.ndim - 2
    window = (window,) * d if isinstance(window, int) else window
    stride = window if stride is None else (stride,) * d if isinstance(stride, int) else stride
    out = [(x.shape[2 + j] - window[j]) // stride[j] + 1 for j in range(d)]
    y = np.zeros((*x.shape[:2], *out))
    for b, c, *p in itertools.product(*map(range, x.shape[:2]), *map(range, out)):
        idx = (b, c, *(slice(p[j] * stride[j], p[j] * stride[j] + window[j]) for j in range(d)))
        y[(b, c, *p)] = reduce(x[idx])
    return y


def np_conv2d(xp, w):
    """Valid cross-correlation of an already padded (N, C, H, W) by (O, C, kh, kw)."""
    oh, ow = xp.shape[2] - w.shape[2] + 1, xp.shape[3] - w.shape[3] + 1
    y = 0.0
    for i, j in itertools.product(range(w.shape[2]), range(w.shape[3])):
        y = y + np.einsum("nchw,oc->nohw", xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j])
    return y


def np_conv2d_backward(xp, w, gy):
    """Gradients of sum(gy * np_conv2d(xp, w)) with respect to xp and w."""
    oh, ow = gy.shape[2:]
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    for i, j in itertools.product(range(w.shape[2]), range(w.shape[3])):
        window = xp[:, :, i:i + oh, j:j + ow]
        gw[:, :, i, j] = np.einsum("nohw,nchw->oc", gy, window)
        gxp[:, :, i:i + oh, j:j + ow] += np.einsum("nohw,oc->nchw", gy, w[:, :, i, j])
    return gxp, gw


def np_pool2(x, kind):
    """2x2 windows, stride 2, the ragged edge dropped; with the backward pass (max: ties
    share equally)."""
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    blocks = x[:, :, :2 * h2, :2 * w2].reshape(n, c, h2, 2, w2, 2)
    if kind == "max":
        y = blocks.max(axis=(3, 5))
        hit = blocks == y[:, :, :, None, :, None]
        share = hit / hit.sum(axis=(3, 5), keepdims=True)
    else:
        y = blocks.mean(axis=(3, 5))
        share = np.full(blocks.shape, 0.25)

    def backward(gy):
        gx = np.zeros_like(x)
        gx[:, :, :2 * h2, :2 * w2] = (share * gy[:, :, :, None, :, None]).reshape(
            n, c, 2 * h2, 2 * w2)
        return gx

    return y, backward


def np_cnn(x, labels, w1, b1, w2, b2, w3, b3):
    """The CNN's mean loss and its gradient, by hand."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    a1 = np_conv2d(xp, w1) + b1[:, None, None]
    h1 = np.maximum(a1, 0)
    p1, p1_back = np_pool2(h1, "max")
    a2 = np_conv2d(p1, w2) + b2[:, None, None]
    h2 = np.maximum(a2, 0)
    p2, p2_back = np_pool2(h2, "avg")
    f = p2.reshape(len(x), -1)
    logits = f @ w3 + b3
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(x)
    loss = -logp[np.arange(n), labels].mean()
    dlogits = np.exp(logp)
    dlogits[np.arange(n), labels] -= 1
    dlogits /= n
    gw3, gb3 = f.T @ dlogits, dlogits.sum(axis=0)
    dh2 = p2_back((dlogits @ w3.T).reshape(p2.shape))
    da2 = dh2 * (a2 > 0)
    gb2 = da2.sum(axis=(0, 2, 3))
    dp1, gw2 = np_conv2d_backward(p1, w2, da2)
    da1 = p1_back(dp1) * (a1 > 0)
    gb1 = da1.sum(axis=(0, 2, 3))
    _, gw1 = np_conv2d_backward(xp, w1, da1)
    return loss, [gw1, gb1, gw2, gb2, gw3, gb3]


# -- the CNN in graphc -----------------------------------------------------------------------
PARAMS = {"w1": (4, 1, 3, 3), "b1": (4,), "w2": (6, 4, 3, 3), "b2": (6,), "w3": (6, 3),
          "b3": (3,)}


def cnn(g, batch=5, size=9, act=gc.relu):
    x = g.input("x", shape=(batch, 1, size, size))
    labels = g.input("labels", shape=(batch,), dtype="int64")
    p = {k: g.input(k, shape=s) for k, s in PARAMS.items()}
    h = act(gc.conv(x, p["w1"], padding=1) + gc.reshape(p["b1"], (4, 1, 1)))
    h = gc.max_pool(h, 2)
    h = act(gc.conv(h, p["w2"]) + gc.reshape(p["b2"], (6, 1, 1)))
    h = gc.avg_pool(h, 2)
    logits = gc.reshape(h, (h.shape[0], 6)) @ p["w3"] + p["b3"]
    loss = gc.mean(gc.softmax_cross_entropy(logits, labels))
    return x, labels, p, loss


def cnn_values(rng, batch=5, size=9):
    vals = {k: rng.standard_normal(s) * (0.5 if k.startswith("w") else 0.1)
            for k, s in PARAMS.items()}
    return rng.standard_normal((batch, 1, size, size)), rng.integers(0, 3, batch), vals


def test_cnn_loss_and_gradient_match_hand_written_numpy(rng):
    g = gc.Graph("cnn")
    x, labels, p, loss = cnn(g)
    xv, lv, pv = cnn_values(rng)
    wrt = list(p.values())
    f = gc.function([x, labels, *wrt], [loss, *gc.grad(loss, wrt)])
    got = f(xv, lv, *pv.values())
    want_loss, want_grads = np_cnn(xv, lv, *pv.values())
    assert got[0] == pytest.approx(want_loss, rel=1e-12)
    for name, a, b in zip(p, got[1:], want_grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=name)


def test_cnn_gradient_matches_finite_differences(rng):
    g = gc.Graph("cnn")
    x, labels, p, loss = cnn(g)
    xv, lv, pv = cnn_values(rng)
    at = {x: xv, labels: lv, **{p[k]: v for k, v in pv.items()}}
    assert gc.check_grad(loss, list(p.values()), at=at, order=1) < 1e-6


def test_smooth_cnn_second_order_matches_finite_differences(rng):
    """With tanh instead of relu the loss is smooth away from max_pool's ties: second
    derivatives through both pools and both convolutions, in both modes. Two entries of one
    pooling window lie 3.3e-5 apart at this seed, so the finite-difference step is 1e-5 (the
    default 1e-3 steps across the tie and compares two different linear pieces)."""
    g = gc.Graph("cnn")
    x, labels, p, loss = cnn(g, act=gc.tanh)
    xv, lv, pv = cnn_values(rng)
    at = {x: xv, labels: lv, **{p[k]: v for k, v in pv.items()}}
    assert gc.check_grad(loss, [p["w1"], p["w2"], x], at=at, order=2, eps=1e-5) < 1e-6


# -- conv against scipy and a naive loop -------------------------------------------------------
@pytest.mark.parametrize("spatial, kernel", [((11,), (4,)), ((7, 6), (3, 2)),
                                             ((5, 4, 6), (2, 3, 3))])
def test_single_channel_conv_is_scipy_correlate(spatial, kernel, rng):
    g = gc.Graph()
    x = g.input("x", shape=(1, 1, *spatial))
    w = g.input("w", shape=(1, 1, *kernel))
    xv, wv = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    f = gc.function([x, w], [gc.conv(x, w), gc.conv(x, w, padding=[k - 1 for k in kernel])])
    valid, full = f(xv, wv)
    np.testing.assert_allclose(valid[0, 0], scipy.signal.correlate(xv[0, 0], wv[0, 0], "valid"),
                               rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(full[0, 0], scipy.signal.correlate(xv[0, 0], wv[0, 0], "full"),
                               rtol=1e-12, atol=1e-13)


def test_same_padding_with_odd_kernel_is_scipy_same(rng):
    g = gc.Graph()
    x = g.input("x", shape=(1, 1, 6, 7))
    w = g.input("w", shape=(1, 1, 3, 5))
    xv, wv = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    got = gc.conv(x, w, padding="same").eval({x: xv, w: wv})
    np.testing.assert_allclose(got[0, 0], scipy.signal.correlate(xv[0, 0], wv[0, 0], "same"),
                               rtol=1e-12, atol=1e-13)


CONV_VARIANTS = [
    ((2, 3, 9), (4, 3, 3), {}),
    ((2, 4, 10), (6, 2, 3), {"stride": 3, "padding": 2, "dilation": 2, "groups": 2}),
    ((1, 6, 7, 8), (3, 2, 2, 3), {"stride": (2, 1), "dilation": (1, 2), "groups": 3,
                                  "padding": ((0, 2), (1, 0))}),
    ((2, 2, 6, 5), (4, 1, 3, 3), {"groups": 2, "padding": "same"}),
    ((2, 2, 6, 5), (2, 2, 2, 4), {"padding": "same", "dilation": 2}),
    ((1, 2, 5, 6, 4), (4, 1, 2, 3, 2), {"stride": (1, 2, 2), "padding": 1, "groups": 2}),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"padding": "valid", "stride": 4}),
]


@pytest.mark.parametrize("xs, ws, kw", CONV_VARIANTS, ids=[str(v[2]) for v in CONV_VARIANTS])
def test_conv_matches_a_naive_loop(xs, ws, kw, rng):
    g = gc.Graph()
    x, w = g.input("x", shape=xs), g.input("w", shape=ws)
    y = gc.conv(x, w, **kw)
    xv, wv = rng.standard_normal(xs), rng.standard_normal(ws)
    op = y.op
    want = naive_conv(xv, wv, op.stride, op.padding, op.dilation, op.groups)
    for optimize in (True, False):
        np.testing.assert_allclose(gc.function([x, w], y, optimize=optimize)(xv, wv), want,
                                   rtol=1e-12, atol=1e-12)


FFT_VARIANTS = [
    ((2, 4, 70), (6, 2, 50), {"groups": 2, "padding": 3}),
    ((2, 2, 12, 11), (4, 1, 7, 8), {"groups": 2, "padding": ((2, 1), (0, 3))}),
    ((1, 2, 6, 5, 6), (2, 2, 4, 4, 4), {"padding": "same"}),
]


@pytest.mark.parametrize("xs, ws, kw", FFT_VARIANTS, ids=["1d", "2d", "3d"])
def test_large_kernels_go_through_the_fft_and_agree_with_im2col(xs, ws, kw, rng,
                                                              monkeypatch):
    """Kernels of FFT_TAPS taps or more (stride and dilation 1): conv, conv_transpose and
    conv_weight_vjp by FFT, against a naive loop and against the im2col path."""
    conv_module = sys.modules["graphc.ops.conv"]  # (graphc.ops.conv is also the function)
    g = gc.Graph()
    x, w = g.input("x", shape=xs), g.input("w", shape=ws)
    y = gc.conv(x, w, **kw)
    u = g.input("u", shape=y.shape)
    gx, gw = gc.vjp(y, [x, w], u)
    assert {n.op.name for n in g.nodes} >= {"conv", "conv_transpose", "conv_weight_vjp"}
    xv, wv, uv = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(y.shape)
    assert y.op._use_fft(ws[2:], xv, wv)
    f = gc.function([x, w, u], [y, gx, gw])
    fast = f(xv, wv, uv)
    np.testing.assert_allclose(fast[0], naive_conv(xv, wv, 1, y.op.padding, 1, y.op.groups),
                               rtol=1e-11, atol=1e-11)
    monkeypatch.setattr(conv_module, "FFT_TAPS", 10**9)
    assert not y.op._use_fft(ws[2:], xv, wv)
    for a, b in zip(fast, f(xv, wv, uv)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max())


def test_fft_path_gradients_to_second_order(rng):
    g = gc.Graph()
    x, w = g.input("x", shape=(2, 2, 9, 10)), g.input("w", shape=(2, 2, 7, 7))
    y = gc.conv(x, w, padding=((3, 3), (2, 4)))
    z = gc.sum(gc.tanh(y) * rng.standard_normal(y.shape))
    at = {x: rng.standard_normal(x.shape), w: 0.1 * rng.standard_normal(w.shape)}
    assert y.op._use_fft((7, 7), *at.values())
    assert gc.check_grad(z, [x, w], at=at, order=2) < 1e-6


def test_same_padding_puts_the_odd_entry_after_as_pytorch():
    g = gc.Graph()
    x = g.input("x", shape=(1, 1, 5))
    y = gc.conv(x, np.ones((1, 1, 4)), padding="same")  # total 3: one before, two after
    assert y.op.padding == ((1, 2),)
    np.testing.assert_array_equal(y.eval({x: np.arange(1.0, 6.0).reshape(1, 1, 5)}),
                                  [[[6.0, 10.0, 14.0, 12.0, 9.0]]])


# -- pools -----------------------------------------------------------------------------------
POOLS = [((2, 3, 9), 2, None), ((2, 2, 7, 6), (3, 2), (2, 1)), ((1, 2, 5, 4, 5), 2, (1, 2, 3)),
         ((1, 1, 4, 4), 4, None)]


@pytest.mark.parametrize("xs, window, stride", POOLS)
def test_pools_match_naive_loops_in_floor_mode(xs, window, stride, rng):
    g = gc.Graph()
    x = g.input("x", shape=xs)
    xv = rng.standard_normal(xs)
    mx, av = gc.function(x, [gc.max_pool(x, window, stride), gc.avg_pool(x, window, stride)])(xv)
    np.testing.assert_array_equal(mx, naive_pool(xv, window, stride, np.max))
    np.testing.assert_allclose(av, naive_pool(xv, window, stride, np.mean), rtol=1e-14)


def test_max_pool_ties_share_the_gradient_equally_like_max():
    g = gc.Graph()
    x = g.input("x", shape=(1, 1, 2, 4))
    xv = np.array([[[[1.0, 3.0, 2.0, 2.0], [3.0, 0.0, 2.0, 2.0]]]])
    gx = gc.grad(gc.sum(gc.max_pool(x, 2) * np.array([1.0, 8.0])), x).eval({x: xv})
    np.testing.assert_array_equal(gx, [[[[0, 0.5, 2, 2], [0.5, 0, 2, 2]]]])
    # the same convention as the max reduction over the window
    blocks = gc.max(gc.reshape(x, (1, 1, 2, 2, 2)), axis=(2, 4))
    gmax = gc.grad(gc.sum(blocks * np.array([1.0, 8.0])), x).eval({x: xv})
    np.testing.assert_array_equal(gx, gmax)


def test_max_pool_second_order_is_zero_in_x_and_routes_in_g(rng):
    """max_pool is piecewise linear: its Hessian is 0, and grad of grad goes through the
    routing (max_pool_vjp's bprop is max_pool_jvp)."""
    g = gc.Graph()
    x = g.input("x", shape=(1, 2, 4, 4))
    u = g.input("u", shape=(1, 2, 2, 2))
    y = gc.max_pool(x, 2)
    gx = gc.grad(gc.sum(y * u), x)               # max_pool_vjp(x, u)
    gu = gc.grad(gc.sum(gx * gc.sin(x)), u)      # max_pool_jvp(x, sin x): read at the argmax
    h = gc.hessian(gc.sum(y * y), x)
    xv = rng.permutation(32).reshape(1, 2, 4, 4) * 0.1
    uv = rng.standard_normal(u.shape)
    gu_v, h_v = gc.function([x, u], [gu, h])(xv, uv)
    np.testing.assert_allclose(gu_v, naive_pool(np.sin(xv) * (xv == np.repeat(np.repeat(
        naive_pool(xv, 2, None, np.max), 2, 2), 2, 3)), 2, None, np.sum), rtol=1e-14)
    # d^2/dx^2 sum(y^2) = 2 on the argmax entries' diagonal, 0 elsewhere
    hit = (xv == np.repeat(np.repeat(naive_pool(xv, 2, None, np.max), 2, 2), 2, 3)).ravel()
    np.testing.assert_array_equal(h_v.reshape(32, 32), np.diag(2.0 * hit))


# -- symbolic batch size, batching rules, files, optimization --------------------------------
def test_symbolic_batch_size(rng):
    g = gc.Graph()
    x = g.input("x", shape=("n", 2, 6, 6))
    w = g.input("w", shape=(3, 2, 3, 3))
    v = g.input("v", shape=(3, 2, 3, 3))
    y = gc.avg_pool(gc.max_pool(gc.tanh(gc.conv(x, w, padding=1, stride=1)), 2), 3)
    assert y.shape[0] == x.shape[0] and y.shape[1:] == (3, 1, 1)
    z = gc.sum(y * y)
    gw = gc.grad(z, w)
    hv = {mode: gc.hvp(z, w, v, mode=mode) for mode in ("reverse", "forward")}
    f = gc.function([x, w, v], [z, gw, *hv.values()])
    wv, vv = rng.standard_normal(w.shape), rng.standard_normal(v.shape)
    for n in (1, 4):
        xv = rng.standard_normal((n, 2, 6, 6))
        z_v, gw_v, hv_r, hv_f = f(xv, wv, vv)
        fz = gc.function([x, w], z)
        eps = 1e-6
        fd = (fz(xv, wv + eps * vv) - fz(xv, wv - eps * vv)) / (2 * eps)
        assert np.sum(gw_v * vv) == pytest.approx(fd, rel=1e-7)
        np.testing.assert_allclose(hv_r, hv_f, rtol=1e-10, atol=1e-12)
        gfd = (gc.function([x, w], gw)(xv, wv + eps * vv) -
               gc.function([x, w], gw)(xv, wv - eps * vv)) / (2 * eps)
        np.testing.assert_allclose(hv_r, gfd, rtol=1e-5, atol=1e-7)


def test_symbolic_spatial_size_needs_stride_one():
    g = gc.Graph()
    x = g.input("x", shape=("n", 2, "h"))
    assert gc.conv(x, np.ones((3, 2, 3))).shape[2] == x.shape[2] - 2
    with pytest.raises(gc.ShapeError, match="conv.*symbolic spatial size h needs stride 1"):
        gc.conv(x, np.ones((3, 2, 3)), stride=2)
    with pytest.raises(gc.ShapeError, match="max_pool.*needs stride 1"):
        gc.max_pool(x, 2)


def _batch_cases():
    geo = {"stride": (2, 1), "padding": ((1, 0), (0, 1)), "dilation": (1, 2), "groups": 2}
    shapes = {"x": (2, 4, 5, 6), "w": (6, 2, 2, 2), "y": (2, 6, 3, 5)}
    yield Conv(**geo), [shapes["x"], shapes["w"]]
    yield ConvTranspose(**geo, size=(5, 6)), [shapes["y"], shapes["w"]]
    yield ConvWeightVJP(**geo, kernel=(2, 2)), [shapes["x"], shapes["y"]]
    yield MaxPool((2, 2), (1, 2)), [(2, 3, 4, 5)]
    yield MaxPoolVJP((2, 2), (1, 2)), [(2, 3, 4, 5), (2, 3, 3, 2)]
    yield MaxPoolJVP((2, 2), (1, 2)), [(2, 3, 4, 5), (2, 3, 4, 5)]
    yield AvgPool((2, 2), (1, 2)), [(2, 3, 4, 5)]
    yield AvgPoolVJP((2, 2), (1, 2), (4, 5)), [(2, 3, 3, 2)]


@pytest.mark.parametrize("op, shapes", list(_batch_cases()), ids=lambda v: getattr(v, "name", ""))
def test_batching_rules_match_row_by_row(op, shapes, rng):
    m = 3
    for batched in itertools.product([False, True], repeat=len(shapes)):
        if not any(batched):
            continue
        g = gc.Graph()
        ins = [(g.input(f"a{k}", shape=(m, *s) if b else s), b)
               for k, (s, b) in enumerate(zip(shapes, batched))]
        node = gc.apply(op, *[g.input(f"u{k}", shape=s) for k, s in enumerate(shapes)])
        fast = op.batch(node, ins, m)
        slow = batch_by_rows(node, ins, m)
        feed = {a: rng.permutation(int(np.prod(a.shape))).reshape(a.shape) * 0.1 for a, _ in ins}
        a, b = gc.eval([fast, slow], feed)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=str(batched))


def test_jacobian_of_a_cnn_with_symbolic_batch_size_uses_the_batching_rules(rng):
    g = gc.Graph()
    x = g.input("x", shape=("n", 1, 5, 5))
    w = g.input("w", shape=(2, 1, 2, 2))
    y = gc.sum(gc.max_pool(gc.tanh(gc.conv(x, w)), 2), axis=(0, 2, 3))
    J = gc.jacobian(y, w)  # batched over y's 2 entries (reverse) with n symbolic
    xv, wv = rng.standard_normal((3, 1, 5, 5)), rng.standard_normal(w.shape)
    got = gc.function([x, w], J)(xv, wv)
    fy = gc.function([x, w], y)
    eps = 1e-6
    for k in range(wv.size):
        e = np.zeros(wv.size)
        e[k] = eps
        e = e.reshape(wv.shape)
        col = (fy(xv, wv + e) - fy(xv, wv - e)) / (2 * eps)
        np.testing.assert_allclose(got.reshape(2, -1)[:, k], col, rtol=1e-6, atol=1e-8)


def test_save_load_and_optimize_agree_on_a_cnn_gradient_and_hvp(rng, tmp_path):
    g = gc.Graph("cnn")
    x, labels, p, loss = cnn(g, act=gc.tanh)
    wrt = [p["w1"], p["w2"]]
    vs = [g.input(f"v_{k}", shape=w.shape) for k, w in enumerate(wrt)]
    outs = [loss, *gc.grad(loss, wrt), *gc.hvp(loss, wrt, vs)]
    xv, lv, pv = cnn_values(rng)
    feed = {x: xv, labels: lv, **{p[k]: v for k, v in pv.items()},
            **{v: rng.standard_normal(v.shape) for v in vs}}
    inputs = list(feed)
    want = gc.function(inputs, outs, optimize=False)(*feed.values())
    got = gc.function(inputs, outs)(*feed.values())
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    g2 = gc.load(gc.save(g, tmp_path / "cnn.json"))
    loaded = gc.function([g2[n.name] for n in inputs], [g2[o.name] for o in outs])
    for a, b in zip(loaded(*feed.values()), want):
        np.testing.assert_array_equal(a, b)
    f = gc.function(inputs, outs)  # the optimized graph is a graph like any other
    g3 = gc.load(gc.save(f.graph, tmp_path / "opt.json"))
    f3 = gc.function([g3[n.name] for n in inputs], [g3[o.name] for o in outs])
    for a, b in zip(f3(*feed.values()), want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_float32_stays_float32(rng):
    g = gc.Graph()
    x = g.input("x", shape=(2, 3, 6, 6), dtype="float32")
    w = g.input("w", shape=(4, 3, 3, 3), dtype="float32")
    y = gc.avg_pool(gc.max_pool(gc.conv(x, w, padding=1), 2), 3)
    gx, gw = gc.grad(gc.sum(y), [x, w])
    assert y.dtype == gx.dtype == gw.dtype == np.float32
    xv, wv = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    got = gc.function([x, w], [y, gw])(xv.astype(np.float32), wv.astype(np.float32))
    g64 = gc.Graph()
    x64, w64 = g64.input("x", shape=x.shape), g64.input("w", shape=w.shape)
    y64 = gc.avg_pool(gc.max_pool(gc.conv(x64, w64, padding=1), 2), 3)
    want = gc.function([x64, w64], [y64, gc.grad(gc.sum(y64), w64)])(xv, wv)
    for a, b in zip(got, want):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_drawings_and_text_show_the_parameters():
    g = gc.Graph()
    x = g.input("x", shape=(1, 2, 5))
    y = gc.max_pool(gc.conv(x, np.ones((2, 2, 3)), stride=2, padding=1), 2)
    gx = gc.grad(gc.sum(y), x)
    text = gc.debugprint(gx)
    assert "conv(stride=(2,), padding=((1, 1),), dilation=(1,), groups=1)" in text
    assert "conv_transpose(" in text and "size=(5,)" in text and "max_pool_vjp(" in text
    assert "conv_transpose" in gc.to_dot(gx)


def test_to_sympy_writes_max_pool_as_max_and_conv_as_sums():
    import sympy

    g = gc.Graph()
    x = g.input("x", shape=(1, 1, 4))
    w = g.input("w", shape=(1, 1, 2))
    y = gc.max_pool(gc.conv(x, w), 2)
    e = gc.to_sympy(y)
    assert e.shape == (1, 1, 1)
    xs = [sympy.Symbol(f"x[0, 0, {k}]", real=True) for k in range(3)]
    ws = [sympy.Symbol(f"w[0, 0, {k}]", real=True) for k in range(2)]
    want = sympy.Max(ws[0] * xs[0] + ws[1] * xs[1], ws[0] * xs[1] + ws[1] * xs[2])
    by_name = {s.name: s for s in [*xs, *ws]}
    got = e[0, 0, 0].xreplace({s: by_name[s.name] for s in e[0, 0, 0].free_symbols})
    assert sympy.simplify(got - want) == 0


# -- errors ----------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors_and_leave_the_graph_unchanged():
    g = gc.Graph()
    x = g.input("x", shape=(2, 3, 8, 8))
    w = g.input("w", shape=(4, 2, 3, 3))
    w5, v = g.input("w5", shape=(4, 3, 3)), g.input("v", shape=(3, 8))
    mask = x > 0.0
    bad = [
        (lambda: gc.conv(x, w), gc.ShapeError, r"conv.*3 channels.*2 per group x 1 groups"),
        (lambda: gc.conv(x, w5), gc.ShapeError, "rank 4"),
        (lambda: gc.conv(x, np.ones((4, 3, 9, 3))), gc.ShapeError, "shorter than the window"),
        (lambda: gc.conv(x, np.ones((4, 1, 3, 3)), groups=3), gc.ShapeError,
         "4 output channels, not a multiple of groups=3"),
        (lambda: gc.conv(x, np.ones((4, 3, 3, 3)), padding="full"), gc.GraphError,
         "'same' or 'valid'"),
        (lambda: gc.conv(x, np.ones((4, 3, 3, 3)), padding="same", stride=2), gc.GraphError,
         "needs stride 1"),
        (lambda: gc.conv(x, np.ones((4, 3, 3, 3)), stride=0), gc.GraphError, "from 1"),
        (lambda: gc.conv(x, np.ones((4, 3, 3, 3)), stride=(1, 2, 3)), gc.GraphError,
         "tuple of 2 ints"),
        (lambda: gc.conv(x, np.ones((4, 3, 3, 3)), padding=-1), gc.GraphError, "padding"),
        (lambda: gc.conv(v, w), gc.ShapeError, "1 to 3 spatial"),
        (lambda: gc.max_pool(x, (2, 2, 2)), gc.GraphError, "window.*tuple of 2 ints"),
        (lambda: gc.max_pool(x, 9), gc.ShapeError, "shorter than the window"),
        (lambda: gc.avg_pool(mask, 2), gc.ShapeError, "float"),
    ]
    for call, error, pattern in bad:
        before = len(g.nodes)
        with pytest.raises(error, match=pattern) as info:
            call()
        assert "test_conv_programs.py" in str(info.value)  # the user's line
        assert len(g.nodes) == before


def test_a_file_cannot_hold_what_the_builders_refuse(tmp_path):
    import json

    g = gc.Graph()
    x = g.input("x", shape=(1, 1, 6))
    gc.conv(x, np.ones((1, 1, 3)), stride=2)
    gc.save(g, tmp_path / "g.json")
    doc = json.loads((tmp_path / "g.json").read_text())
    node = next(n for n in doc["nodes"] if n["op"] == "conv")
    for key, value in [("stride", [0]), ("dilation", [1, 1]), ("padding", [[1]]),
                       ("groups", 0), ("stride", ["1"])]:
        bad = json.loads(json.dumps(doc))
        next(n for n in bad["nodes"] if n["op"] == "conv")["params"][key] = value
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(gc.LoadError):
            gc.load(tmp_path / "bad.json")
    assert node["params"]["stride"] == [2]
