"""Cases for convolution and pooling (graphc/ops/conv.py): 1-, 2- and 3-D, stride, dilation,
padding (ints, pairs, "same") and groups, ragged edges, and the internal ops that the
derivatives build (conv_transpose, conv_weight_vjp, max_pool_vjp/jvp, avg_pool_vjp) driven
directly. Pools get distinct values, so no tie is within the finite-difference step."""

from __future__ import annotations

import graphc as gc
from graphc.ops.conv import AvgPoolVJP, ConvTranspose, ConvWeightVJP, MaxPoolJVP, MaxPoolVJP
from tests.ops.cases import Case, distinct, normal


def _geometry(d, stride=1, padding=0, dilation=1, groups=1):
    return {"stride": (stride,) * d if isinstance(stride, int) else stride,
            "padding": ((padding, padding),) * d if isinstance(padding, int) else padding,
            "dilation": (dilation,) * d if isinstance(dilation, int) else dilation,
            "groups": groups}


CASES: list[Case] = [
    # conv: the public function, PyTorch's geometry
    Case("conv", gc.conv, [(2, 3, 6), (4, 3, 3)], id="conv1d"),
    Case("conv", lambda x, w: gc.conv(x, w, stride=2, padding=1, dilation=2),
         [(2, 2, 8), (3, 2, 3)], id="conv1d_stride_dilation_pad_ragged"),
    Case("conv", lambda x, w: gc.conv(x, w, padding="same"), [(2, 2, 6), (2, 2, 4)],
         id="conv1d_same_even_kernel"),
    Case("conv", gc.conv, [(2, 2, 5, 4), (3, 2, 3, 2)], id="conv2d"),
    Case("conv", lambda x, w: gc.conv(x, w, stride=(2, 1), padding=((1, 0), (0, 1)), groups=2),
         [(1, 4, 5, 4), (4, 2, 2, 3)], id="conv2d_groups_stride_pairs"),
    Case("conv", lambda x, w: gc.conv(x, w, padding="same", groups=3, dilation=(1, 2)),
         [(1, 3, 4, 5), (3, 1, 3, 2)], id="conv2d_depthwise_same_dilated"),
    Case("conv", lambda x, w: gc.conv(x, w, stride=(1, 2, 1), dilation=(2, 1, 1), padding=1),
         [(1, 2, 4, 3, 3), (2, 2, 2, 2, 2)], id="conv3d"),
    Case("conv", lambda x, w: gc.tanh(gc.conv(x, w, stride=2, groups=2)), [(2, 4, 7), (2, 2, 3)],
         order=3, id="conv1d_tanh_third_order"),
    # a kernel of >= FFT_TAPS taps: conv, conv_transpose and conv_weight_vjp go through the FFT
    Case("conv", lambda x, w: gc.conv(x, w, padding=((2, 1),), groups=2), [(2, 4, 53), (2, 2, 50)],
         id="conv1d_fft_long_kernel"),
    # the derivative ops of the family, applied directly (each is another's bprop)
    Case("conv_transpose", lambda y, w: gc.apply(
        ConvTranspose(**_geometry(1, stride=2, padding=1), size=(8,)), y, w),
         [(2, 3, 4), (3, 2, 3)], id="conv_transpose1d_ragged"),
    Case("conv_transpose", lambda y, w: gc.apply(
        ConvTranspose(**_geometry(2, dilation=(2, 1), groups=2), size=(5, 3)), y, w),
         [(1, 4, 3, 2), (4, 1, 2, 2)], id="conv_transpose2d_groups"),
    Case("conv_weight_vjp", lambda x, y: gc.apply(
        ConvWeightVJP(**_geometry(1, stride=2, padding=1), kernel=(3,)), x, y),
         [(2, 2, 8), (2, 3, 4)], id="conv_weight_vjp1d"),
    Case("conv_weight_vjp", lambda x, y: gc.apply(
        ConvWeightVJP(**_geometry(2, stride=(1, 2), groups=2), kernel=(2, 2)), x, y),
         [(1, 4, 4, 5), (1, 2, 3, 2)], id="conv_weight_vjp2d_groups"),
    # pools: floor mode (ragged edges dropped), overlapping windows, 1-3 spatial axes
    Case("max_pool", lambda x: gc.max_pool(x, 2), [(2, 2, 7)], [distinct], id="max_pool1d"),
    Case("max_pool", lambda x: gc.max_pool(x, (2, 3), stride=(1, 2)), [(2, 2, 4, 6)],
         [distinct], id="max_pool2d_overlapping"),
    Case("max_pool", lambda x: gc.max_pool(x, 2, stride=(2, 1, 2)), [(1, 2, 4, 3, 5)],
         [distinct], id="max_pool3d"),
    Case("max_pool_vjp", lambda x, g: gc.apply(MaxPoolVJP((2, 2), (1, 2)), x, g),
         [(1, 2, 4, 5), (1, 2, 3, 2)], [distinct, normal], id="max_pool_vjp2d"),
    Case("max_pool_jvp", lambda x, t: gc.apply(MaxPoolJVP((3,), (2,)), x, t),
         [(2, 2, 8), (2, 2, 8)], [distinct, normal], id="max_pool_jvp1d"),
    Case("avg_pool", lambda x: gc.avg_pool(x, 2), [(2, 2, 7)], id="avg_pool1d"),
    Case("avg_pool", lambda x: gc.avg_pool(x, (2, 3), stride=(1, 2)), [(2, 2, 4, 6)],
         id="avg_pool2d_overlapping"),
    Case("avg_pool", lambda x: gc.avg_pool(gc.sin(x), 2, stride=(2, 1, 2)), [(1, 2, 4, 3, 5)],
         id="avg_pool3d_of_sin"),
    Case("avg_pool_vjp", lambda g: gc.apply(AvgPoolVJP((2, 2), (1, 2), (4, 5)), g),
         [(1, 2, 3, 2)], id="avg_pool_vjp2d"),
]
