"""The engines of the wider op set in Amaranth's simulator: grouped and depthwise convolution
(per-lane gather), 1-bit lanes (XNOR-popcount, bipolar weights on multi-bit inputs, bipolar
inputs on integer weights), scale-aligned add and 1-D windows. As in :mod:`test_engines`:
outputs == golden with and without idles and back-pressure, model cycles == simulated cycles."""

import numpy as np
import pytest

from lcp.hw.folding import Folding

from tests.hw.irgen import Builder
from tests.hw.test_engines import _rand_fold, check

GROUP_CASES = [
    # C, H, W, O, groups, k, stride, pad, in_bits, wbits
    (4, 5, 5, 4, 4, 3, 1, 1, 4, 4),       # depthwise
    (3, 6, 5, 6, 3, 3, 2, 1, 3, 3),       # depthwise, channel multiplier 2
    (4, 5, 6, 6, 2, 3, 1, 0, 4, 4),       # 2 groups
    (6, 4, 4, 3, 3, 1, 1, 0, 5, 6),       # pointwise grouped
]


@pytest.mark.parametrize("case", range(len(GROUP_CASES)))
def test_grouped_conv(case):
    C, H, W, O, G, k, s, p, ib, wb = GROUP_CASES[case]
    rng = np.random.default_rng(100 + case)
    b = Builder((C, H, W), in_bits=ib, signed=bool(case % 2), seed=case)
    x = b.conv("input", O, k, stride=s, pad=p, wbits=wb, groups=G)
    m = b.model()
    F = (C // G) * k * k
    check(m, Folding(_rand_fold(rng, O, F, x), 16, 32))
    check(m, Folding({x: {"pe": O, "simd": F}}, 64, 64), pauses=False)   # constants


@pytest.mark.parametrize("seed", range(3))
def test_one_bit_dense(seed):
    """bipolar input -> XNOR dense -> sign -> XNOR dense -> bipolar weights on 4-bit input
    -> integer weights on bipolar input (bnn_pynq's FC patterns)."""
    rng = np.random.default_rng(200 + seed)
    b = Builder((16,), in_bits="bipolar", seed=seed)
    d0 = b.dense("input", 8, wbits="bipolar", bias=bool(seed % 2))
    x = b.sign(d0)
    d1 = b.dense(x, 6, wbits="bipolar")
    x = b.threshold(d1, 2)
    d2 = b.dense(x, 4, wbits="bipolar")
    x = b.sign(d2)
    d3 = b.dense(x, 3, wbits=4)
    m = b.model()
    fold = {**_rand_fold(rng, 8, 16, d0), **_rand_fold(rng, 6, 8, d1),
            **_rand_fold(rng, 4, 6, d2), **_rand_fold(rng, 3, 4, d3)}
    check(m, Folding(fold, 16, 16))
    full = {d0: {"pe": 8, "simd": 16}, d1: {"pe": 6, "simd": 8}, d2: {"pe": 4, "simd": 6},
            d3: {"pe": 3, "simd": 4}}
    check(m, Folding(full, 64, 64), pauses=False)


@pytest.mark.parametrize("seed", range(2))
def test_one_bit_conv_pool(seed):
    """cnv's pattern: 8-bit input -> bipolar-weight conv -> sign -> XNOR conv -> max pool of
    bipolar values -> XNOR conv (grouped)."""
    rng = np.random.default_rng(300 + seed)
    b = Builder((3, 6, 6), in_bits=8, signed=True, seed=seed)
    c0 = b.conv("input", 4, 3, wbits="bipolar")
    x = b.sign(c0)
    c1 = b.conv(x, 4, 3, pad=1, wbits="bipolar")
    x = b.sign(c1)
    x = b.maxpool(x, 2)
    c2 = b.conv(x, 4, 1, wbits="bipolar", groups=2)
    m = b.model()
    fold = {**_rand_fold(rng, 4, 27, c0), **_rand_fold(rng, 4, 36, c1),
            **_rand_fold(rng, 4, 2, c2)}
    check(m, Folding(fold, 32, 16))


@pytest.mark.parametrize("groups,wbits", [(1, "bipolar"), (4, "bipolar"), (2, 3)])
def test_one_bit_padded_conv(groups, wbits):
    """Bipolar inputs with zero padding: the padding's zeros contribute nothing (XNOR lanes
    count only the -1/+1 operands; sign-select lanes gate them). The conv is the output, so no
    later sign hides an error."""
    rng = np.random.default_rng(600 + groups)
    b = Builder((4, 5, 5), in_bits="bipolar", seed=groups)
    c = b.conv("input", 4, 3, pad=1, wbits=wbits, groups=groups)
    m = b.model()
    check(m, Folding(_rand_fold(rng, 4, (4 // groups) * 9, c), 16, 32))
    check(m, Folding({c: {"pe": 4, "simd": (4 // groups) * 9}}, 64, 64), pauses=False)


@pytest.mark.parametrize("mul", [(1, 3), (5, 2)])
def test_scaled_add_signed_thresholds(mul):
    """Two requantized paths at different scales (signed thresholds), aligned by the add's
    integer factors."""
    rng = np.random.default_rng(400 + mul[0])
    b = Builder((3, 5, 5), in_bits=4, seed=mul[1])
    c0 = b.conv("input", 4, 3, pad=1)
    x0 = b.threshold(c0, 3, out_lo=-4)
    c1 = b.conv("input", 4, 1)
    x1 = b.threshold(c1, 2, out_lo=-2)
    b.add(x0, x1, mul=mul)
    m = b.model()
    check(m, Folding({**_rand_fold(rng, 4, 27, c0), **_rand_fold(rng, 4, 3, c1)}, 16, 16))


ONE_D_CASES = [
    # C, L, O, k, stride, pad, groups, pool k, pool stride
    (2, 16, 3, 3, 1, 1, 1, 2, 2),
    (3, 11, 4, 5, 2, 2, 1, 3, 1),
    (4, 12, 4, 3, 1, 0, 4, 2, 2),       # depthwise 1-D
]


@pytest.mark.parametrize("case", range(len(ONE_D_CASES)))
def test_one_d(case):
    """Conv1d -> threshold -> MaxPool1d -> flatten -> dense (1-D windows: no line buffer)."""
    C, L, O, k, s, p, G, pk, ps = ONE_D_CASES[case]
    rng = np.random.default_rng(500 + case)
    b = Builder((C, L), in_bits=4, signed=bool(case % 2), seed=case)
    c = b.conv("input", O, k, stride=s, pad=p, groups=G)
    x = b.threshold(c, 3)
    x = b.maxpool(x, pk, stride=ps)
    x = b.flatten(x)
    n = b.tensors[x].shape[0]
    d = b.dense(x, 3)
    m = b.model()
    check(m, Folding({**_rand_fold(rng, O, (C // G) * k, c), **_rand_fold(rng, 3, n, d)}, 16, 16))
